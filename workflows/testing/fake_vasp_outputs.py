"""Text writers of the fake VASP: OUTCAR, vasprun.xml, OSZICAR and CONTCAR in VASP's formats.

Used by :mod:`pqdflow.workflows.testing.fake_vasp`; the formats are those of VASP 5.4 (VTST 3.2
for NEB images); OSZICAR's lines are also what VASP prints on standard output.

The layouts follow real VASP output (the files of ``../shared/vasp_reference``): the lines
that pqdflow's parsers (:mod:`pqdflow.analysis.outcar`, :mod:`pqdflow.analysis.vasprun`),
pymatgen's ``Outcar`` / ``Vasprun`` / ``Oszicar`` and custodian's handlers read are written
as VASP writes them; everything else VASP prints (timings, charges, eigenvalues, DOS) is
left out. The numbers are whatever the caller computed (the fake uses a mock pair
potential: **plumbing, never physics**), and every file says so in its header.

Energies in eV, forces in eV/Å, lengths in Å, stress in kB (VASP's sign: positive =
compressive).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

__all__ = [
    "FAKE_NOTE",
    "FAKE_VERSION",
    "IonicStep",
    "KpointGrid",
    "NebProjection",
    "RunHeader",
    "Species",
    "contcar_text",
    "oszicar_text",
    "outcar_text",
    "vasprun_text",
]

#: Version string printed where VASP prints its own (``vasp.<version>`` in OUTCAR).
FAKE_VERSION = "pqdflow-fake-vasp"
#: One-line label written into every output file.
FAKE_NOTE = (
    "pqdflow fake VASP: mock pair-potential energies and forces, for plumbing tests; not physics"
)
_RULE = "-" * 104
#: VASP's defaults of the tags the outputs echo (EDIFFG and IBRION depend on other tags).
_VASP_DEFAULTS: dict[str, Any] = {
    "NSW": 0,
    "ISIF": 2,
    "NELM": 60,
    "EDIFF": 1e-4,
    "ISPIN": 1,
    "ISMEAR": 1,
    "SIGMA": 0.2,
    "POTIM": 0.5,
    "PREC": "Normal",
    "LASPH": False,
}
_FORCE_RULE = " " + "-" * 83


@dataclass(frozen=True)
class Species:
    """One atom type in POSCAR order: element, atom count and its POTCAR's TITEL and ZVAL."""

    symbol: str
    count: int
    titel: str
    zval: float | None
    mass: float


@dataclass(frozen=True)
class KpointGrid:
    """An automatic k-point mesh (``Gamma`` or ``Monkhorst-Pack``) and its points (no symmetry)."""

    style: str
    divisions: tuple[int, int, int]
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def points(self) -> np.ndarray:
        """Fractional k-points of the full mesh (N x 3), folded into (-0.5, 0.5]."""
        axes = []
        for n, s in zip(self.divisions, self.shift, strict=True):
            if self.style == "Gamma":
                k = (np.arange(n) + s) / n
            else:  # Monkhorst-Pack
                k = (2 * np.arange(n) - n + 1 + 2 * s) / (2 * n)
            axes.append(k - np.ceil(k - 0.5))
        return np.array(list(product(*axes)))


@dataclass(frozen=True)
class RunHeader:
    """What a run knows before its first step.

    Attributes
    ----------
    incar
        INCAR tags as read (numbers and booleans typed).
    species
        Atom types in POSCAR order.
    nelect
        Number of electrons (INCAR NELECT, else the neutral count from the ZVALs).
    kpoints
        The k-point mesh.
    selective
        Per-atom (x, y, z) "may move" flags of POSCAR's selective dynamics, or ``None``.
    cell, positions
        Starting cell (3 x 3) and Cartesian positions (N x 3).
    """

    incar: Mapping[str, Any]
    species: tuple[Species, ...]
    nelect: float
    kpoints: KpointGrid
    selective: np.ndarray | None
    cell: np.ndarray
    positions: np.ndarray

    @property
    def symbols(self) -> list[str]:
        """Element of every atom, in POSCAR order."""
        return [s.symbol for s in self.species for _ in range(s.count)]

    def tag(self, name: str) -> Any:
        """Return an INCAR tag, or VASP's default for the tags the outputs echo."""
        if name in self.incar:
            return self.incar[name]
        if name == "EDIFFG":
            return 10 * float(self.tag("EDIFF"))
        if name == "IBRION":
            return -1 if int(self.tag("NSW")) in (0, -1) else 0
        return _VASP_DEFAULTS.get(name)


@dataclass(frozen=True)
class IonicStep:
    """One energy and force evaluation.

    Energy (eV), raw forces (N x 3, eV/Å, constraints not applied), Cartesian positions
    (N x 3, Å), cell (3 x 3, Å) and stress (3 x 3, kB).
    """

    energy: float
    forces: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    stress: np.ndarray


@dataclass(frozen=True)
class NebProjection:
    """VTST's per-image NEB analysis of one image (tangent towards the next image).

    Attributes
    ----------
    previous_higher, next_higher
        Whether the neighbouring images are higher in energy.
    tangent
        Unit tangent (N x 3).
    spring_parallel, real_parallel
        Spring force and real force along the tangent (eV/Å).
    real_perpendicular
        Norm of the real force perpendicular to the tangent (eV/Å).
    distance_previous, distance_next, angle
        Distances to the neighbouring images (Å) and the angle between the two (degrees).
    spring, lclimb
        SPRING (eV/Å², negative = nudged) and LCLIMB of the run.
    """

    previous_higher: bool
    next_higher: bool
    tangent: np.ndarray
    spring_parallel: float
    real_parallel: float
    real_perpendicular: float
    distance_previous: float
    distance_next: float
    angle: float
    spring: float
    lclimb: bool


# ----------------------------------------------------------------------------- numbers
def _fe(value: float, digits: int, *, lead: bool = False) -> str:
    """Fortran ``E`` format as VASP prints it: ``0.1E-04``, ``-.2E-01`` (``-0.2E-01``: lead)."""
    if value == 0 or not math.isfinite(value):
        return f"0.{'0' * digits}E+00" if value == 0 else str(value)
    exp = math.floor(math.log10(abs(value))) + 1
    text = f"{abs(value) / 10**exp:.{digits}f}"
    if text.startswith("1"):  # rounding reached 1.0
        exp += 1
        text = f"{abs(value) / 10**exp:.{digits}f}"
    if value > 0:
        return f"{text}E{exp:+03d}"
    return f"-{text if lead else text[1:]}E{exp:+03d}"


def _flag(value: Any) -> str:
    return "T" if bool(value) else "F"


def _recip(cell: np.ndarray) -> np.ndarray:
    return np.asarray(np.linalg.inv(cell).T)


def _fractional(positions: np.ndarray, cell: np.ndarray) -> np.ndarray:
    return np.asarray(positions @ np.linalg.inv(cell))


def _grid(encut: float, cell: np.ndarray) -> list[int]:
    """FFT grid from ENCUT: twice the largest wave vector, as PREC = Accurate."""
    kmax = math.sqrt(encut / 3.80998212)  # 1/Å; hbar^2/2m_e = 3.80998 eV Å^2
    return [max(1, math.ceil(4 * kmax * float(np.linalg.norm(a)) / (2 * math.pi))) for a in cell]


# ----------------------------------------------------------------------------- OUTCAR
def _lattice_block(cell: np.ndarray, encut: float) -> list[str]:
    recip = _recip(cell)
    rows = [
        "   " + "".join(f"{v:13.9f}" for v in a) + "   " + "".join(f"{v:13.9f}" for v in b)
        for a, b in zip(cell, recip, strict=True)
    ]
    lengths = np.linalg.norm(cell, axis=1).tolist() + np.linalg.norm(recip, axis=1).tolist()
    return [
        "  VOLUME and BASIS-vectors are now :",
        " " + "-" * 77,
        f"  energy-cutoff  :  {encut:10.2f}",
        f"  volume of cell :  {abs(np.linalg.det(cell)):10.2f}",
        "      direct lattice vectors                 reciprocal lattice vectors",
        *rows,
        "",
        "  length of vectors",
        "   "
        + "".join(f"{v:13.9f}" for v in lengths[:3])
        + "   "
        + "".join(f"{v:13.9f}" for v in lengths[3:]),
        "",
    ]


def _outcar_header(head: RunHeader, *, neb: NebProjection | None) -> list[str]:
    inc = head.tag
    nions = len(head.symbols)
    encut = float(inc("ENCUT"))
    ngx = _grid(encut, head.cell)
    nkpts = len(head.kpoints.points())
    nbands = max(8, math.ceil(head.nelect / 2 + nions / 2))
    lines = [
        f" vasp.{FAKE_VERSION} (pqdflow) complex",
        "  ",
        f" {FAKE_NOTE}.",
        " The layout is VASP 5.4's; only the lines parsers read are written.",
        " running on    1 total cores",
        "",
        _RULE,
        "",
        " INCAR:",
        *(f" POTCAR:    {s.titel}" for s in head.species),
    ]
    for s in head.species:
        zval = f"{s.zval:8.3f}" if s.zval is not None else "     ???"
        lines += [
            f"   VRHFIN ={s.symbol}: (fake)",
            "   LEXCH  = PE",
            f"   TITEL  = {s.titel}",
            f"   POMASS = {s.mass:8.3f}; ZVAL   = {zval}    mass and valenz",
            "",
        ]
    if neb is not None:
        lines += [
            " VTST: version 3.2 (fake: single points on the input band, no band optimiser)",
            "",
            " CHAIN: Running the NEB",
            f" NEB:          SPRING {neb.spring:12.6f}",
            f" NEB:          LCLIMB      {_flag(neb.lclimb)}",
            "",
        ]
    lines += [" POSCAR: " + " ".join(s.symbol for s in head.species), ""]
    lines += _lattice_block(head.cell, encut)[4:-4]
    ediffg = float(inc("EDIFFG"))
    lines += [
        "",
        _RULE,
        "",
        " Dimension of arrays:",
        f"   k-points           NKPTS = {nkpts:6d}   k-points in BZ     NKDIM = {nkpts:6d}"
        f"   number of bands    NBANDS= {nbands:6d}",
        f"   number of dos      NEDOS =    301   number of ions     NIONS = {nions:6d}",
        f"   total plane-waves  NPLWV = {ngx[0] * ngx[1] * ngx[2]:6d}",
        f"   dimension x,y,z NGX = {ngx[0]:5d} NGY = {ngx[1]:5d} NGZ = {ngx[2]:5d}",
        "   ions per type = " + "".join(f"{s.count:5d}" for s in head.species),
        "",
        f" SYSTEM =  {inc('SYSTEM') or 'unknown system'}",
        " POSCAR =  " + " ".join(s.symbol for s in head.species),
        "",
        " Startparameter for this run:",
        f"   PREC   = {str(inc('PREC')).lower()[:6]:>6s}    normal or accurate",
        f"   ISPIN  = {int(inc('ISPIN')):6d}    spin polarized calculation?",
        f"   LASPH  = {_flag(inc('LASPH')):>6s}    aspherical Exc in radial PAW",
        "",
        " Electronic Relaxation 1",
        f"   ENCUT  = {encut:6.1f} eV",
        f"   NELM   = {int(inc('NELM')):6d};   NELMIN=  2; NELMDL= -5     # of ELM steps",
        f"   EDIFF  = {_fe(float(inc('EDIFF')), 1)}   stopping-criterion for ELM",
        "",
        " Ionic relaxation",
        f"   EDIFFG = {_fe(ediffg, 1)}   stopping-criterion for IOM",
        f"   NSW    = {int(inc('NSW')):6d}    number of steps for IOM",
        f"   IBRION = {int(inc('IBRION')):6d}    ionic relax: 0-MD 1-quasi-New 2-CG",
        f"   ISIF   = {int(inc('ISIF')):6d}    stress and relaxation",
        f"   POTIM  = {float(inc('POTIM')):6.4f}    time-step for ionic-motion",
        "",
        "  Ionic Valenz",
        "   ZVAL   = " + "".join(f"{s.zval or 0.0:7.2f}" for s in head.species),
        f"   NELECT = {head.nelect:16.4f}    total number of electrons",
        "",
        " DOS related values:",
        f"   ISMEAR = {int(inc('ISMEAR')):5d};   SIGMA  = {float(inc('SIGMA')):6.2f}"
        "  broadening in eV -4-tet -1-fermi 0-gaus",
        "",
    ]
    if "IVDW" in head.incar:
        lines += [f"   IVDW   = {int(inc('IVDW')):6d}    vdW correction", ""]
    lines += [
        " Exchange correlation treatment:",
        f"   GGA     = {inc('GGA') or '--'!s:>6s}    GGA type",
        "   LEXCH   =      8    internal setting for exchange type",
        "   LHFCALC =      F    Hartree Fock is set to",
        "",
        _RULE,
        "",
    ]
    return lines


def _step_block(head: RunHeader, number: int, step: IonicStep) -> list[str]:
    spin = int(head.tag("ISPIN")) == 2
    mag = "       0.0000000" if spin else ""
    drift = step.forces.sum(axis=0)
    stress = step.stress
    voigt = [stress[0, 0], stress[1, 1], stress[2, 2], stress[0, 1], stress[1, 2], stress[0, 2]]
    lines = [
        f"{'-' * 41} Iteration {number:6d}(   1)  {'-' * 39}",
        "",
        " (fake: no electronic minimisation; one evaluation of the mock potential)",
        f" number of electron {head.nelect:15.7f} magnetization{mag}",
        "",
        f"{'-' * 24} aborting loop because EDIFF is reached {'-' * 40}",
        "",
        "  FORCE on cell =-STRESS in cart. coord.  units (eV):",
        "  in kB   " + "".join(f"{v:12.5f}" for v in voigt),
        f"  external pressure = {np.trace(stress) / 3:11.2f} kB  Pullay stress =        0.00 kB",
        "",
        *_lattice_block(step.cell, float(head.tag("ENCUT"))),
        " POSITION                                       TOTAL-FORCE (eV/Angst)",
        _FORCE_RULE,
    ]
    lines += [
        "".join(f"{x:13.5f}" for x in p) + f"{f[0]:17.6f}{f[1]:14.6f}{f[2]:14.6f}"
        for p, f in zip(step.positions, step.forces, strict=True)
    ]
    lines += [
        _FORCE_RULE,
        "    total drift:" + " " * 25 + "".join(f"{d:14.6f}" for d in drift),
        "",
        _RULE,
        "",
        "  FREE ENERGIE OF THE ION-ELECTRON SYSTEM (eV)",
        "  ---------------------------------------------------",
        f"  free  energy   TOTEN  = {step.energy:18.8f} eV",
        "",
        f"  energy  without entropy= {step.energy:17.8f}  energy(sigma->0) = {step.energy:17.8f}",
        "",
        _RULE,
        "",
    ]
    return lines


def _neb_block(neb: NebProjection) -> list[str]:
    lines = [
        f" NEB: the previous image is higher in energy: {_flag(neb.previous_higher)}",
        f" NEB: the next image is higher in energy    : {_flag(neb.next_higher)}",
    ]
    if neb.previous_higher == neb.next_higher:
        lines.append(" NEB: image is at an extrema")
    lines += ["", " NEB: Tangent", " " + "-" * 46]
    lines += ["".join(f"{v:13.5f}" for v in row) for row in neb.tangent]
    lines += [
        "",
        " NEB: forces: par spring, perp REAL, dneb "
        f"{neb.spring_parallel:12.6f}{neb.real_perpendicular:12.6f}{0.0:12.6f}",
        " NEB: distance to prev, next image, angle between "
        f"{neb.distance_previous:12.6f}{neb.distance_next:12.6f}{neb.angle:12.6f}",
        " NEB: projections on to tangent (spring, REAL) "
        f"{neb.spring_parallel:12.6f}{neb.real_parallel:12.6f}",
        "",
    ]
    return lines


def outcar_text(
    head: RunHeader,
    steps: Sequence[IonicStep],
    *,
    reached: bool,
    neb: NebProjection | None = None,
) -> str:
    """Return the OUTCAR of a finished run with ``steps``.

    ``reached`` prints VASP's "reached required accuracy" (a converged relaxation, or a band
    reported as converged); ``neb`` adds the VTST header and the NEB block after the step.
    """
    lines = _outcar_header(head, neb=neb)
    for number, step in enumerate(steps, start=1):
        lines += _step_block(head, number, step)
        if neb is not None:
            lines += _neb_block(neb)
    if reached:
        lines += ["  ", " reached required accuracy - stopping structural energy minimisation"]
    lines += [
        "",
        " General timing and accounting informations for this job:",
        " ========================================================",
        "  ",
        "                  Total CPU time used (sec):        0.000",
        "                            User time (sec):        0.000",
        "                          System time (sec):        0.000",
        "                         Elapsed time (sec):        0.000",
        "",
    ]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- OSZICAR
def oszicar_text(head: RunHeader, steps: Sequence[IonicStep]) -> str:
    """OSZICAR (also VASP's standard output of the loop): one SCF line and one F= line a step."""
    spin = int(head.tag("ISPIN")) == 2
    lines: list[str] = []
    previous = 0.0
    for number, step in enumerate(steps, start=1):
        e = step.energy
        lines += [
            "       N       E                     dE             d eps       ncg     rms",
            f"DAV:   1    {_fe(e, 12, lead=True)}   {_fe(e - previous, 5, lead=True)}"
            "    0.00000E+00     0   0.000E+00",
            f"{number:4d} F= {_fe(e, 8)} E0= {_fe(e, 8)}  d E ={_fe(e - previous, 6)}"
            + ("  mag=     0.0000" if spin else ""),
        ]
        previous = e
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- vasprun.xml
def _xml_value(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f'  <i type="logical" name="{name}"> {_flag(value)}  </i>'
    if isinstance(value, int):
        return f'  <i type="int" name="{name}">{value:6d}</i>'
    if isinstance(value, float):
        return f'  <i name="{name}">{value:16.8f}</i>'
    text = str(value).strip()
    tokens = text.split()
    if len(tokens) > 1 and all(_is_number(t) for t in tokens):
        return f'  <v name="{name}">' + "".join(f"{float(t):16.8f}" for t in tokens) + " </v>"
    return f'  <i type="string" name="{name}">{escape(text)}</i>'


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _varray(name: str, rows: np.ndarray, indent: str = "  ") -> list[str]:
    body = [f"{indent} <v>" + "".join(f"{v:17.8f}" for v in row) + " </v>" for row in rows]
    return [f'{indent}<varray name="{name}" >', *body, f"{indent}</varray>"]


def _structure(
    name: str | None, cell: np.ndarray, positions: np.ndarray, selective: np.ndarray | None
) -> list[str]:
    opening = f' <structure name="{name}" >' if name else " <structure>"
    lines = [opening, "  <crystal>", *_varray("basis", cell, "   ")]
    lines += [f'   <i name="volume">{abs(np.linalg.det(cell)):16.8f} </i>']
    lines += [*_varray("rec_basis", _recip(cell), "   "), "  </crystal>"]
    lines += _varray("positions", _fractional(positions, cell))
    if selective is not None:
        lines += ['  <varray type="logical" name="selective" >']
        lines += ["   <v>" + "".join(f"  {_flag(f)}" for f in row) + " </v>" for row in selective]
        lines += ["  </varray>"]
    return [*lines, " </structure>"]


def _energies(e: float, indent: str) -> list[str]:
    return [
        f"{indent}<energy>",
        f'{indent} <i name="e_fr_energy">{e:16.8f} </i>',
        f'{indent} <i name="e_wo_entrp">{e:16.8f} </i>',
        f'{indent} <i name="e_0_energy">{e:16.8f} </i>',
        f"{indent}</energy>",
    ]


def vasprun_text(head: RunHeader, steps: Sequence[IonicStep]) -> str:
    """Return the vasprun.xml of a finished run, every ionic step (no eigenvalues, no DOS)."""
    inc = head.tag
    grid = head.kpoints
    kpts = grid.points()
    params: dict[str, Any] = {"ENMAX": float(inc("ENCUT")), "NELECT": float(head.nelect)}
    params |= {t: int(inc(t)) for t in ("ISMEAR", "ISPIN", "NELM", "NSW", "IBRION", "ISIF")}
    params |= {t: float(inc(t)) for t in ("EDIFF", "SIGMA", "EDIFFG", "POTIM")}
    params["GGA"] = str(inc("GGA") or "--")
    lines = [
        '<?xml version="1.0" encoding="ISO-8859-1"?>',
        "<modeling>",
        f"<!-- {FAKE_NOTE} -->",
        " <generator>",
        '  <i name="program" type="string">vasp </i>',
        f'  <i name="version" type="string">{FAKE_VERSION} </i>',
        " </generator>",
        " <incar>",
        *(_xml_value(k, v) for k, v in head.incar.items()),
        " </incar>",
        " <kpoints>",
        f'  <generation param="{grid.style}">',
        '   <v type="int" name="divisions">' + "".join(f"{n:8d}" for n in grid.divisions) + " </v>",
        '   <v name="usershift">' + "".join(f"{s:17.8f}" for s in grid.shift) + " </v>",
        "  </generation>",
        *_varray("kpointlist", kpts),
        *_varray("weights", np.full((len(kpts), 1), 1.0 / len(kpts))),
        " </kpoints>",
        " <parameters>",
        *(_xml_value(k, v) for k, v in params.items()),
        " </parameters>",
        " <atominfo>",
        f"  <atoms>{len(head.symbols):8d} </atoms>",
        f"  <types>{len(head.species):8d} </types>",
        '  <array name="atoms" >',
        '   <dimension dim="1">ion</dimension>',
        '   <field type="string">element</field>',
        '   <field type="int">atomtype</field>',
        "   <set>",
    ]
    for t, s in enumerate(head.species, start=1):
        lines += [f"    <rc><c>{s.symbol:2s}</c><c>{t:4d}</c></rc>"] * s.count
    lines += [
        "   </set>",
        "  </array>",
        '  <array name="atomtypes" >',
        '   <dimension dim="1">type</dimension>',
        '   <field type="int">atomspertype</field>',
        '   <field type="string">element</field>',
        "   <field>mass</field>",
        "   <field>valence</field>",
        '   <field type="string">pseudopotential</field>',
        "   <set>",
    ]
    for s in head.species:
        lines.append(
            f"    <rc><c>{s.count:4d}</c><c>{s.symbol:2s}</c><c>{s.mass:16.8f}</c>"
            f"<c>{s.zval or 0.0:16.8f}</c><c> {escape(s.titel)}</c></rc>"
        )
    lines += ["   </set>", "  </array>", " </atominfo>"]
    lines += _structure("initialpos", head.cell, head.positions, head.selective)
    for step in steps:
        lines += [" <calculation>", "  <scstep>", *_energies(step.energy, "   "), "  </scstep>"]
        lines += ["  " + x for x in _structure(None, step.cell, step.positions, None)]
        lines += _varray("forces", step.forces)
        lines += _varray("stress", step.stress)
        lines += [*_energies(step.energy, "  "), " </calculation>"]
    last = steps[-1]
    lines += _structure("finalpos", last.cell, last.positions, head.selective)
    lines.append("</modeling>")
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- CONTCAR
def contcar_text(head: RunHeader, step: IonicStep, comment: str) -> str:
    """CONTCAR (VASP 5 format, direct coordinates, selective dynamics kept)."""
    lines = [comment, "   1.00000000000000"]
    lines += ["  " + "".join(f"{v:22.16f}" for v in row) for row in step.cell]
    lines += ["   " + "".join(f"{s.symbol:>5s}" for s in head.species)]
    lines += ["   " + "".join(f"{s.count:6d}" for s in head.species)]
    if head.selective is not None:
        lines.append("Selective dynamics")
    lines.append("Direct")
    frac = _fractional(step.positions, step.cell)
    for i, row in enumerate(frac):
        flags = (
            "" if head.selective is None else "".join(f"   {_flag(f)}" for f in head.selective[i])
        )
        lines.append("".join(f"{v:20.16f}" for v in row) + flags)
    return "\n".join(lines) + "\n"

"""Fast, tolerant parsing of finished (or dead) VASP calculations into :class:`VaspCalcDoc`.

One entry point, :func:`parse_calculation`, takes a calculation folder or a single OUTCAR /
vasprun.xml (gzip, bzip2 or xz compressed or not, recognised by content) and returns a
document with the energies of the **last complete ionic step**, forces, flags and the run
parameters VASP actually used (read from OUTCAR / vasprun.xml, never from INCAR, which may
have been edited after the run).

Design, and the VASP quirks it guards against:

* OUTCAR is streamed by :func:`pqdflow.analysis.outcar.scan_outcar`: an OUTCAR cut mid-step
  gives the last complete step.
* vasprun.xml is read by :func:`pqdflow.analysis.vasprun.scan_vasprun`, which stops at the
  first XML error and keeps every ``<calculation>`` closed before it.
* An electronic loop that hit NELM is not converged; a truncated relaxation is never ionically
  converged; forces printed as ``NaN`` are reported as unavailable (``max_force = None``).
* ``max_force`` covers only atoms left free by selective dynamics (POSCAR/CONTCAR flags next to
  the outputs, else vasprun's ``selective`` array).
* A run that died (empty OSZICAR, header-only vasprun.xml, VASP's error text in
  ``vasp.out``/``stdout``) is a document with status ``crashed``, not an exception.
* Files from real clusters: any line ends (CRLF/CR), gzip/bzip2/xz; a file with NUL blocks,
  two runs in it or step records out of order has status ``corrupt`` (never converged).
* Machine-learned force-field runs (VASP >= 6.3): DFT and ML steps are counted and labelled;
  ``energy_kind`` says which kind of step the reported energies come from.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms

from pqdflow.analysis._vaspaux import read_error_message, read_poscar, scan_oszicar
from pqdflow.analysis._vaspio import (
    ScanResult,
    VaspParameters,
    read_head,
)
from pqdflow.analysis.outcar import HEADER, scan_outcar
from pqdflow.analysis.vasprun import scan_vasprun
from pqdflow.errors import ParseError
from pqdflow.provenance import provenance

__all__ = [
    "PARSER_VERSION",
    "EnergyKind",
    "Status",
    "VaspCalcDoc",
    "VaspParameters",
    "find_output",
    "parse_calculation",
    "read_error_message",
    "scan_outcar",
    "scan_vasprun",
]

#: Version of the parsing rules; stored in every document.
PARSER_VERSION = "pqdflow.vasp/2"
Status = Literal["ok", "unconverged", "truncated", "crashed", "corrupt", "no_output"]
EnergyKind = Literal["dft", "ml"]
CalcType = Literal["static", "relax", "md", "other", "unknown"]

_GGA_NAMES = {"PE": "PBE", "RP": "RPBE", "PS": "PBEsol", "91": "PW91", "CA": "LDA", "AM": "AM05"}
_GGA_NAMES |= {"RE": "revPBE", "BO": "optB88", "MK": "optB86b", "OR": "optPBE", "B3": "B3LYP"}
_VDW_NAMES = {1: "D2", 10: "D2", 11: "D3", 12: "D3(BJ)", 13: "D4"}


# ----------------------------------------------------------------------------- documents
@dataclass
class VaspCalcDoc:
    """One parsed VASP calculation. Energies in eV, forces in eV/Å, lengths in Å.

    Attributes
    ----------
    path
        The folder or file parsed.
    status
        ``ok`` (finished and converged), ``unconverged`` (finished, electronic or ionic loop
        not converged), ``truncated`` (stopped early or cut off, no error text), ``crashed``
        (stopped early with an error message), ``corrupt`` (NUL blocks, two runs in one
        file, step records out of order or damaged bytes: see ``corruption``; never
        converged) or ``no_output``.
    energy_sigma0, energy_without_entropy, free_energy
        energy(sigma->0), energy without entropy and free energy TOTEN of the last complete
        ionic step (``None`` when no step completed).
    energy_kind
        ``"dft"`` or ``"ml"``: whether that step was computed by DFT or predicted by VASP's
        machine-learned force field (``ML_LMLFF``); ``None`` when unknown (OSZICAR only).
    max_force, max_force_all_atoms
        Largest force norm over atoms free under selective dynamics / over all atoms, last
        complete step; ``None`` when forces are unavailable (e.g. printed as NaN).
    n_ionic_steps, n_dft_steps, n_ml_steps
        Number of complete ionic steps; of them, DFT steps and ML force-field steps.
    finished
        VASP reached its normal end (OUTCAR "General timing", vasprun ``</modeling>``).
    converged_electronic
        The SCF loop of the last complete DFT step reached EDIFF in fewer than NELM
        iterations; ``None`` if no DFT step.
    converged_ionic
        Relaxations: "reached required accuracy" in a finished run; never true for a cut
        file. ``None`` for static/MD runs.
    error_message
        VASP's own error text from the stdout files next to the outputs, if any.
    structure
        Final structure: ``symbols``, ``cell`` (3x3), ``positions`` (Cartesian), ``free``
        (per-atom selective-dynamics mask or ``None``), ``source`` (file it came from).
    forces
        Forces of the last complete step (N x 3) or ``None``.
    steps
        Per complete ionic step: ``kind`` (``dft``/``ml``), the three energies, SCF iterations
        and SCF convergence (``None`` for ML steps).
    neb
        For VTST NEB images: tangential force (eV/Å, towards the next image), whether the
        previous / next image is higher, LCLIMB.
    corruption
        Why the output cannot be trusted (empty unless ``status`` is ``corrupt``).
    source_files, parser_version, warnings, provenance
        What was read, how, and anything suspicious found on the way.
    """

    path: str
    status: Status
    energy_sigma0: float | None = None
    energy_without_entropy: float | None = None
    free_energy: float | None = None
    max_force: float | None = None
    max_force_all_atoms: float | None = None
    n_ionic_steps: int = 0
    n_dft_steps: int = 0
    n_ml_steps: int = 0
    energy_kind: EnergyKind | None = None
    finished: bool = False
    converged_electronic: bool | None = None
    converged_ionic: bool | None = None
    error_message: str | None = None
    calc_type: CalcType = "unknown"
    magnetization: float | None = None
    structure: dict[str, Any] | None = None
    forces: list[list[float]] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    neb: dict[str, Any] | None = None
    parameters: VaspParameters = field(default_factory=VaspParameters)
    source_files: list[str] = field(default_factory=list)
    parser_version: str = PARSER_VERSION
    warnings: list[str] = field(default_factory=list)
    corruption: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (strict JSON: no NaN)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VaspCalcDoc:
        """Inverse of :meth:`as_dict`."""
        names = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        kwargs["parameters"] = VaspParameters.from_dict(data.get("parameters") or {})
        return cls(**kwargs)

    def to_atoms(self) -> Atoms:
        """Return the final structure as ASE ``Atoms`` (fixed atoms carry ``FixAtoms``).

        Raises
        ------
        ParseError
            The document has no structure.
        """
        if not self.structure:
            raise ParseError(
                self.path, "no final structure was found (no CONTCAR, vasprun or step)"
            )
        s = self.structure
        atoms = Atoms(s["symbols"], positions=s["positions"], cell=s["cell"], pbc=True)
        if s.get("free") is not None:
            atoms.set_constraint(FixAtoms(mask=[not f for f in s["free"]]))
        return atoms


# ----------------------------------------------------------------------------- files and labels
def find_output(folder: str | Path, name: str) -> Path | None:
    """Find output ``name`` in ``folder``: plain, compressed, or the last ``name.relaxN``.

    Parameters
    ----------
    folder
        Calculation folder.
    name
        ``"OUTCAR"``, ``"vasprun.xml"``, ``"OSZICAR"``, ...

    Returns
    -------
    Path or None
        ``name``, ``name.gz``/``.bz2``/``.xz`` (first existing), else the highest-numbered
        ``name.relaxN[.gz]`` (custodian double relaxations), else ``None``.
    """
    folder = Path(folder)
    for suffix in ("", ".gz", ".bz2", ".xz"):
        if (folder / f"{name}{suffix}").is_file():
            return folder / f"{name}{suffix}"
    staged = []
    for cand in folder.glob(f"{name}.relax*"):
        m = re.fullmatch(re.escape(name) + r"\.relax(\d+)(\.gz|\.bz2|\.xz)?", cand.name)
        if m and cand.is_file():
            staged.append((int(m.group(1)), cand))
    return max(staged)[1] if staged else None


def _functional(scan: ScanResult) -> str | None:
    p = scan.params
    if p.lhfcalc:
        screen, aexx = scan.hybrid
        if aexx is not None and abs(aexx - 0.25) < 1e-6 and screen is not None:
            name = (
                "HSE06"
                if abs(screen - 0.2) < 0.011
                else "HSE03"
                if abs(screen - 0.3) < 0.011
                else ""
            )
            name = name or ("PBE0" if screen == 0 else f"hybrid(HFSCREEN={screen})")
        else:
            name = f"hybrid(AEXX={aexx}, HFSCREEN={screen})"
    elif scan.metagga and scan.metagga.upper() not in ("F", "--", "NONE", ".FALSE."):
        name = scan.metagga.upper()
    else:
        tag = (p.gga or "--").upper()
        if tag == "--":
            tag = (scan.lexch or "").upper()
        if not tag:
            return None
        name = _GGA_NAMES.get(tag, tag)
    if p.ldau:
        name += "+U"
    if p.ivdw:
        name += "-" + _VDW_NAMES.get(p.ivdw, f"IVDW{p.ivdw}")
    return name


# ----------------------------------------------------------------------------- assembly
def _sniff(path: Path) -> str:
    if path.stat().st_size == 0:
        raise ParseError(path, "file is empty")
    name = path.name.upper()
    if "OUTCAR" in name:
        return "outcar"
    if "VASPRUN" in name:
        return "vasprun"
    probe = ScanResult(source=path)
    head = read_head(path, 8192, probe)
    if not head.strip():
        raise ParseError(path, probe.broken or "file is empty (or holds only NUL bytes)")
    if head.lstrip().startswith(b"<?xml") or b"<modeling" in head:
        return "vasprun"
    if re.match(rb"\s*vasp\.", head) or HEADER.search(head):
        return "outcar"
    raise ParseError(
        path, "not an OUTCAR or vasprun.xml: neither its name nor its first bytes match"
    )


def _calc_type(p: VaspParameters) -> CalcType:
    if p.nsw is None or p.ibrion is None:
        return "unknown"
    if p.nsw == 0 or p.ibrion == -1:
        return "static"
    return {0: "md", 1: "relax", 2: "relax", 3: "relax"}.get(p.ibrion, "other")  # type: ignore[return-value]


def _merge_params(primary: ScanResult, other: ScanResult | None) -> VaspParameters:
    """Return the primary scan's run parameters, gaps filled from the other output file."""
    params = primary.params
    params.functional = _functional(primary)
    if other is not None:
        other.params.functional = _functional(other)
        for f in fields(params):
            if getattr(params, f.name) in (None, []):
                setattr(params, f.name, getattr(other.params, f.name))
    return params


def _free_mask(
    folder: Path | None, scans: list[ScanResult], nions: int | None
) -> np.ndarray | None:
    for name in ("POSCAR", "CONTCAR"):
        if folder is not None and (folder / name).is_file():
            got = read_poscar(folder / name)
            if got is not None and got[3] is not None and (nions is None or len(got[3]) == nions):
                return got[3]
    for scan in scans:
        if scan.free is not None and (nions is None or len(scan.free) == nions):
            return scan.free
    return None


def _structure(
    folder: Path | None,
    primary: ScanResult,
    v: ScanResult | None,
    symbols: list[str] | None,
    warnings: list[str],
) -> dict[str, Any] | None:
    options: list[tuple[str, list[str] | None, np.ndarray | None, np.ndarray | None]] = []
    if folder is not None and (folder / "CONTCAR").is_file():
        got = read_poscar(folder / "CONTCAR")
        if got is not None and symbols and len(got[2]) != len(symbols):
            # a CONTCAR of another run (copied in, or a restart of another cell)
            warnings.append(
                f"CONTCAR holds {len(got[2])} atoms but the outputs {len(symbols)}; CONTCAR ignored"
            )
        elif got is not None:
            options.append(("CONTCAR", got[0] or symbols, got[1], got[2]))
    if v is not None and v.final is not None and v.finished:
        options.append((v.source.name, symbols, *v.final))
    for scan in (primary, v):
        if scan is not None and scan.steps:
            options.append((scan.source.name, symbols, scan.cell, scan.positions))
    for source, syms, cell, pos in options:
        if syms and cell is not None and pos is not None and len(syms) == len(pos):
            if np.all(np.isfinite(pos)) and np.all(np.isfinite(cell)):
                return {
                    "symbols": syms,
                    "cell": cell.tolist(),
                    "positions": pos.tolist(),
                    "source": source,
                }
    return None


def parse_calculation(path: str | Path) -> VaspCalcDoc:
    """Parse a VASP calculation folder, or a single OUTCAR / vasprun.xml (compressed or not).

    In a folder, OUTCAR is the authority for energies, forces and flags; vasprun.xml fills
    in what OUTCAR lacks, and takes over when the OUTCAR is corrupt or an ML force-field run
    printed ML steps only every NBLOCK steps (if it is intact itself, with a warning).
    OSZICAR is used only when neither exists. Selective-dynamics flags
    come from POSCAR/CONTCAR next to the outputs (also for a single file), else vasprun.xml.
    The final structure is CONTCAR (folders only), else vasprun's ``finalpos``, else the last
    complete step. Error text comes from the stdout files next to the outputs.

    Parameters
    ----------
    path
        Calculation folder or output file.

    Returns
    -------
    VaspCalcDoc
        Always a document for a folder (status ``no_output``/``crashed`` when nothing ran).

    Raises
    ------
    ParseError
        The path does not exist, a file cannot be opened, or a single file is empty (or
        holds no readable text) or is not a VASP output.
    """
    p = Path(path)
    if not p.exists():
        raise ParseError(p, "no such file or folder")
    single = not p.is_dir()
    folder = p.parent if single else p
    if single:
        kind = _sniff(p)
        found = [p if kind == "outcar" else None, p if kind == "vasprun" else None, None]
    else:
        found = [find_output(p, n) for n in ("OUTCAR", "vasprun.xml", "OSZICAR")]
    outcar, vasprun, oszicar = (
        f if f is not None and f.stat().st_size > 0 else None for f in found
    )
    o = scan_outcar(outcar) if outcar else None
    v = scan_vasprun(vasprun) if vasprun else None
    z = scan_oszicar(oszicar) if oszicar and not (o or v) else None
    scans = [s for s in (o, v, z) if s is not None]
    doc = VaspCalcDoc(path=str(p), status="no_output", error_message=read_error_message(folder))
    doc.provenance = provenance(parser_version=PARSER_VERSION)
    doc.source_files = [str(s.source) for s in scans]
    if not scans:
        if any(found):
            doc.warnings.append("output files exist but are empty")
        doc.status = "crashed" if doc.error_message else "no_output"
        return doc
    primary, why = _choose_primary(o, v, scans[0])
    other = v if primary is o else o if primary is v else None
    doc.parameters = params = _merge_params(primary, other)
    doc.calc_type = _calc_type(params)
    doc.warnings = [w for s in scans for w in s.problems] + ([why] if why else [])
    steps = primary.steps
    _fill_steps(doc, steps)
    doc.finished = primary.finished and primary.broken is None
    doc.magnetization = primary.magnetization
    symbols = primary.symbols or (other.symbols if other else None)
    nions = len(symbols) if symbols else primary.nions
    free = _free_mask(folder, scans, nions)
    if steps and primary.forces is not None and primary.forces.shape == (nions, 3):
        norms = np.linalg.norm(primary.forces, axis=1)
        if np.all(np.isfinite(norms)):
            doc.forces = primary.forces.tolist()
            doc.max_force_all_atoms = float(norms.max())
        sel = norms if free is None else norms[free]
        if sel.size and np.all(np.isfinite(sel)):
            doc.max_force = float(sel.max())
        if not np.all(np.isfinite(norms)):
            doc.warnings.append("forces are printed as NaN or unreadable: reported as unavailable")
    if doc.calc_type == "relax":
        if primary is o:
            doc.converged_ionic = o.reached_accuracy and doc.finished
        elif primary is v and params.nsw is not None:
            by_force = (params.ediffg or 0) < 0 and doc.max_force is not None
            tight = (
                by_force and doc.max_force is not None and doc.max_force <= abs(params.ediffg or 0)
            )
            doc.converged_ionic = doc.finished and (len(steps) < params.nsw or tight)
        else:
            doc.converged_ionic = False
    elif doc.calc_type == "unknown" and not doc.finished:
        doc.converged_ionic = False
    doc.structure = _structure(None if single else folder, primary, v, symbols, doc.warnings)
    if doc.structure is not None:
        doc.structure["free"] = free.tolist() if free is not None else None
    if primary is o and o.neb is not None:
        doc.neb = {"lclimb": None, "tangential_force": None, "previous_higher": None}
        doc.neb |= {"next_higher": None, **o.neb}
        if o.neb_step != len(steps):
            doc.neb["tangential_force"] = None
    if o is not None and v is not None and not (v.broken or o.corrupt or primary is v):
        if len(v.steps) != len(o.steps):
            doc.warnings.append(
                f"OUTCAR has {len(o.steps)} ionic steps, vasprun.xml {len(v.steps)}"
            )
    _set_status(doc, primary)
    return doc


def _choose_primary(
    o: ScanResult | None, v: ScanResult | None, first: ScanResult
) -> tuple[ScanResult, str | None]:
    """Pick the scan whose steps make the document (OUTCAR, unless vasprun.xml knows more).

    vasprun.xml takes over from an OUTCAR that is corrupt, or that belongs to an ML
    force-field run printing ML steps only every NBLOCK > 1 steps, when it is intact itself.
    """
    if o is None or first is not o:
        return first, None
    usable = v is not None and not (v.broken or v.corrupt) and bool(v.steps)
    if o.corrupt and v is not None and usable:
        return v, f"{o.source.name} is corrupt: steps and energies are read from {v.source.name}"
    nblock = o.params.nblock or 1
    if nblock > 1 and (o.params.ml_lmlff or any(st["kind"] == "ml" for st in o.steps)):
        thinned = f"{o.source.name} prints ML force-field steps only every NBLOCK = {nblock} steps"
        if v is not None and usable and len(v.steps) > len(o.steps):
            return v, f"{thinned}: steps and energies are read from {v.source.name}"
        return o, f"{thinned}: the ML steps in between are not counted"
    return o, None


def _fill_steps(doc: VaspCalcDoc, steps: list[dict[str, Any]]) -> None:
    """Step records, counts by kind and the energies of the last complete step."""
    doc.steps, doc.n_ionic_steps = steps, len(steps)
    doc.n_dft_steps = sum(st["kind"] == "dft" for st in steps)
    doc.n_ml_steps = sum(st["kind"] == "ml" for st in steps)
    if not steps:
        return
    last = steps[-1]
    doc.free_energy = last["free_energy"]
    doc.energy_without_entropy = last["energy_without_entropy"]
    doc.energy_sigma0 = last["energy_sigma0"]
    doc.energy_kind = last["kind"]
    dft = [st for st in steps if st["kind"] != "ml"]
    doc.converged_electronic = dft[-1]["scf_converged"] if dft else None
    if doc.n_ml_steps:
        doc.warnings.append(
            f"machine-learned force-field run: {doc.n_ml_steps} of {len(steps)} ionic steps are "
            f"ML predictions, {doc.n_dft_steps} DFT; the reported energies come from "
            f"{'an ML' if last['kind'] == 'ml' else 'a DFT'} step (energy_kind)"
        )


def _set_status(doc: VaspCalcDoc, primary: ScanResult) -> None:
    """Status from corruption, completion, error text and convergence, in that order."""
    doc.corruption = list(primary.corrupt)
    if doc.corruption:
        doc.status = "corrupt"
        doc.converged_ionic = False  # a corrupt file is never reported as converged
        doc.converged_electronic = False if doc.converged_electronic else doc.converged_electronic
    elif doc.error_message and not doc.finished:
        doc.status = "crashed"
    elif not doc.finished or not doc.steps:
        doc.status = "truncated"
    elif doc.converged_electronic is False or doc.converged_ionic is False:
        doc.status = "unconverged"
    else:
        doc.status = "ok"

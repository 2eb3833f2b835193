"""Fast, tolerant parsing of finished (or dead) VASP calculations into :class:`VaspCalcDoc`.

One entry point, :func:`parse_calculation`, takes a calculation folder or a single OUTCAR /
vasprun.xml (gzip, bzip2 or xz compressed or not, recognised by content) and returns a
document with the energies of the **last complete ionic step**, forces, flags and the run
parameters VASP actually used (read from OUTCAR / vasprun.xml, never from INCAR, which may
have been edited after the run).

Design, and the VASP quirks it guards against:

* OUTCAR is streamed in chunks cut at ionic-step headers and scanned with a handful of
  literal-prefixed regular expressions (no line-by-line Python loop, no full ``Outcar``).
  A step counts only once its ``energy  without entropy=`` line (two spaces: the end-of-step
  block, not the per-SCF lines) is complete, so an OUTCAR cut mid-step gives the last
  complete step; a trailing partial line is ignored.
* vasprun.xml is fed to an incremental XML parser after the heavy ``<eigenvalues>``,
  ``<dos>`` and ``<projected>`` blocks are dropped from the byte stream; parsing stops at the
  first XML error and keeps every ``<calculation>`` closed before it. The calculation-level
  ``e_wo_entrp`` of VASP < 6.4 actually holds sigma->0 and ``e_0_energy`` junk, so both are
  taken from the last ``<scstep>``, whose labels are right.
* An electronic loop that hit NELM is not converged; a truncated relaxation is never ionically
  converged; forces printed as ``NaN`` are reported as unavailable (``max_force = None``).
* ``max_force`` covers only atoms left free by selective dynamics (POSCAR/CONTCAR flags next to
  the outputs, else vasprun's ``selective`` array).
* A run that died (empty OSZICAR, header-only vasprun.xml, VASP's error text in
  ``vasp.out``/``stdout``) is a document with status ``crashed``, not an exception.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import re
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, Literal, cast

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms

from pqdflow.errors import ParseError
from pqdflow.provenance import provenance

__all__ = [
    "PARSER_VERSION",
    "Status",
    "VaspCalcDoc",
    "VaspParameters",
    "find_output",
    "parse_calculation",
    "read_error_message",
]

#: Version of the parsing rules; stored in every document.
PARSER_VERSION = "pqdflow.vasp/1"
Status = Literal["ok", "unconverged", "truncated", "crashed", "no_output"]
CalcType = Literal["static", "relax", "md", "other", "unknown"]

_READ = 1 << 20  # bytes per read from the (decompressed) stream
_PIECE = 1 << 23  # OUTCAR bytes scanned at once (cut at an ionic-step header)
_STDOUT_NAMES = ("vasp.out", "stdout", "vasp_output", "vasp.log", "vasp.stdout", "std.out", "OUT")
_GGA_NAMES = {"PE": "PBE", "RP": "RPBE", "PS": "PBEsol", "91": "PW91", "CA": "LDA", "AM": "AM05"}
_GGA_NAMES |= {"RE": "revPBE", "BO": "optB88", "MK": "optB86b", "OR": "optPBE", "B3": "B3LYP"}
_VDW_NAMES = {1: "D2", 10: "D2", 11: "D3", 12: "D3(BJ)", 13: "D4"}


# ----------------------------------------------------------------------------- documents
@dataclass
class VaspParameters:
    """Run parameters as VASP used them (from OUTCAR or vasprun.xml; ``None``: not printed).

    Attributes
    ----------
    vasp_version
        VASP version string.
    functional
        Label derived from GGA/LEXCH, LHFCALC/HFSCREEN/AEXX, METAGGA, LDA+U and IVDW, e.g.
        ``"PBE"``, ``"RPBE"``, ``"PBE+U"``, ``"HSE06"``.
    gga
        The raw GGA tag (``"--"`` means: taken from the POTCARs).
    encut
        Plane-wave cutoff (eV).
    nsw, ibrion, isif, nelm, ismear, ispin, ivdw
        Integer tags as used.
    ediff, ediffg, sigma
        Electronic criterion (eV), ionic criterion (eV, or eV/Å when negative), smearing (eV).
    ldau, lhfcalc
        DFT+U and hybrid-functional switches.
    potcar_titels
        TITEL of every POTCAR, in species order.
    """

    vasp_version: str | None = None
    functional: str | None = None
    gga: str | None = None
    encut: float | None = None
    nsw: int | None = None
    ibrion: int | None = None
    isif: int | None = None
    nelm: int | None = None
    ediff: float | None = None
    ediffg: float | None = None
    ismear: int | None = None
    sigma: float | None = None
    ispin: int | None = None
    ldau: bool | None = None
    lhfcalc: bool | None = None
    ivdw: int | None = None
    potcar_titels: list[str] = field(default_factory=list)

    @property
    def potcar_set(self) -> tuple[str, ...]:
        """Sorted, de-duplicated POTCAR TITELs (what a consistency check compares)."""
        return tuple(sorted(set(self.potcar_titels)))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VaspParameters:
        """Inverse of :meth:`as_dict` (unknown keys are ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


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
        (stopped early with an error message) or ``no_output``.
    energy_sigma0, energy_without_entropy, free_energy
        energy(sigma->0), energy without entropy and free energy TOTEN of the last complete
        ionic step (``None`` when no step completed).
    max_force, max_force_all_atoms
        Largest force norm over atoms free under selective dynamics / over all atoms, last
        complete step; ``None`` when forces are unavailable (e.g. printed as NaN).
    n_ionic_steps
        Number of complete ionic steps.
    finished
        VASP reached its normal end (OUTCAR "General timing", vasprun ``</modeling>``).
    converged_electronic
        The last complete step's SCF loop reached EDIFF (not NELM); ``None`` if no step.
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
        Per complete ionic step: the three energies, SCF iterations and SCF convergence.
    neb
        For VTST NEB images: tangential force (eV/Å, towards the next image), whether the
        previous / next image is higher, LCLIMB.
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


# ----------------------------------------------------------------------------- low level
def _num(text: bytes | str | None) -> float:
    """float() that turns unparsable VASP output (``*****``, fused numbers) into NaN."""
    if text is None:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def _int(text: bytes | str | None) -> int | None:
    value = _num(text)
    return None if math.isnan(value) else int(value)


def _bool(text: bytes | str | None) -> bool | None:
    if text is None:
        return None
    t = text.decode() if isinstance(text, bytes) else text
    t = t.strip().strip(".").upper()
    return None if not t else t.startswith("T")


def _opt(value: float) -> float | None:
    return None if math.isnan(value) else value


def _open_binary(path: Path) -> IO[bytes]:
    """Open ``path`` for binary reading, decompressing gzip/bzip2/xz by magic number."""
    with path.open("rb") as handle:
        magic = handle.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    if magic.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if magic.startswith(b"\xfd7zXZ"):
        return lzma.open(path, "rb")
    return path.open("rb")


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


# ----------------------------------------------------------------------------- shared scan result
@dataclass
class _Scan:
    source: Path
    params: VaspParameters = field(default_factory=VaspParameters)
    lexch: str | None = None
    hybrid: tuple[float | None, float | None] = (None, None)  # HFSCREEN, AEXX
    metagga: str | None = None
    nions: int | None = None
    symbols: list[str] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    forces: np.ndarray | None = None
    positions: np.ndarray | None = None
    cell: np.ndarray | None = None
    final: tuple[np.ndarray, np.ndarray] | None = None  # (cell, cartesian positions)
    free: np.ndarray | None = None
    magnetization: float | None = None
    finished: bool = False
    reached_accuracy: bool = False
    neb: dict[str, Any] | None = None
    neb_step: int = -1
    problems: list[str] = field(default_factory=list)
    broken: str | None = None
    timing_at: bool = False


def _chunks(path: Path, scan: _Scan) -> Iterator[bytes]:
    """Yield the decompressed bytes of ``path``; a broken stream ends it and marks ``scan``."""
    try:
        with _open_binary(path) as handle:
            while block := handle.read(_READ):
                yield block
    except (EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        scan.broken = f"{path.name}: compressed stream ends early or is corrupt ({exc})"
        scan.problems.append(scan.broken)


def _head(path: Path, n: int = 512) -> bytes:
    for block in _chunks(path, _Scan(source=path)):
        return block[:n]
    return b""


def _functional(scan: _Scan) -> str | None:
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


def _symbols_from(titels: list[str], counts: list[int]) -> list[str] | None:
    if not titels or len(titels) != len(counts):
        return None
    out: list[str] = []
    for titel, n in zip(titels, counts, strict=True):
        parts = titel.split()
        m = re.match(r"[A-Z][a-z]?", parts[1] if len(parts) > 1 else "")
        if not m:
            return None
        out += [m.group(0)] * n
    return out


# ----------------------------------------------------------------------------- OUTCAR
_O_EVENTS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("iter", re.compile(rb"- Iteration +(\d+)\( *(\d+)\)")),
    ("scf_ok", re.compile(rb"aborting loop because EDIFF is reached")),
    ("scf_no", re.compile(rb"aborting loop EDIFF was not reached")),
    ("forces", re.compile(rb"TOTAL-FORCE \(eV/Angst\)[^\n]*\n -+\n((?:[^\n]*\n)*?) -+\n")),
    ("toten", re.compile(rb"free  energy   TOTEN  = *(\S+) eV")),
    ("ewo", re.compile(rb"energy  without entropy= *(\S+) +energy\(sigma->0\) = *(\S+)")),
    ("lattice", re.compile(rb"direct lattice vectors[^\n]*\n((?:[^\n]*\n){3})")),
    ("mag", re.compile(rb"number of electron +\S+ +magnetization +(\S+)")),
    ("reached", re.compile(rb"reached required accuracy")),
    ("timing", re.compile(rb"General timing and accounting")),
    ("cpu", re.compile(rb"Total CPU time used")),
    ("neb_t", re.compile(rb"NEB: projections on to tangent \(spring, REAL\) +(\S+) +(\S+)")),
    ("neb_h", re.compile(rb"NEB: the (previous|next) image is higher in energy *: *([TF])")),
)
_O_PARAM = re.compile(
    rb"^ +(ENCUT|NSW|IBRION|ISIF|NELM|EDIFFG|EDIFF|ISPIN|ISMEAR|GGA|LHFCALC|HFSCREEN|AEXX"
    rb"|METAGGA|IVDW) *= *([^\s;]+)",
    re.M,
)
_O_SIGMA = re.compile(rb"SIGMA  = *([^\s;]+)")
_O_TITEL = re.compile(rb"TITEL  = *([^\n]*?) *\n")
_O_LEXCH = re.compile(rb"LEXCH  = (\S+)")
_O_TYPES = re.compile(rb"ions per type = *([\d ]+)\n")
_O_NIONS = re.compile(rb"NIONS = *(\d+)")
_O_VERSION = re.compile(rb"^ *(vasp\.[^\n]*?) *$", re.M)
_O_LCLIMB = re.compile(rb"NEB: +LCLIMB +([TF])")
_FLOAT = re.compile(rb"[-+]?\d*\.\d+(?:[Ee][-+]?\d+)?")


def _outcar_header(scan: _Scan, head: bytes) -> None:
    raw: dict[str, bytes] = {}
    for m in _O_PARAM.finditer(head):
        raw[m.group(1).decode()] = m.group(2)  # the last echo is the parameter block
    p = scan.params
    if m2 := _O_VERSION.search(head[:400]):
        p.vasp_version = m2.group(1).decode(errors="replace")
    p.encut, p.ediff, p.ediffg = (_opt(_num(raw.get(k))) for k in ("ENCUT", "EDIFF", "EDIFFG"))
    p.nsw, p.ibrion, p.isif = _int(raw.get("NSW")), _int(raw.get("IBRION")), _int(raw.get("ISIF"))
    p.nelm, p.ismear, p.ispin = (
        _int(raw.get("NELM")),
        _int(raw.get("ISMEAR")),
        _int(raw.get("ISPIN")),
    )
    p.ivdw = _int(raw.get("IVDW"))
    p.gga = raw["GGA"].decode() if "GGA" in raw else None
    p.lhfcalc = _bool(raw.get("LHFCALC"))
    p.ldau = b"LDA+U is selected" in head
    if m2 := _O_SIGMA.search(head):
        p.sigma = _opt(_num(m2.group(1)))
    scan.hybrid = (_opt(_num(raw.get("HFSCREEN"))), _opt(_num(raw.get("AEXX"))))
    scan.metagga = raw["METAGGA"].decode() if "METAGGA" in raw else None
    p.potcar_titels = [t.decode(errors="replace") for t in _O_TITEL.findall(head)]
    if m2 := _O_LEXCH.search(head):
        scan.lexch = m2.group(1).decode(errors="replace")
    if m2 := _O_NIONS.search(head):
        scan.nions = int(m2.group(1))
    if m2 := _O_TYPES.search(head):
        scan.symbols = _symbols_from(p.potcar_titels, [int(x) for x in m2.group(1).split()])
    if m2 := _O_LCLIMB.search(head):
        scan.neb = {"lclimb": m2.group(1) == b"T"}


class _OutcarState:
    """Per-step state of the OUTCAR event machine."""

    def __init__(self, scan: _Scan) -> None:
        self.scan = scan
        self.ion = 0
        self.n_scf = 0
        self.scf_ok: bool = False
        self.toten = math.nan
        self.block: np.ndarray | None = None
        self.lattice: np.ndarray | None = None
        self.mag: float | None = None

    def feed(self, piece: bytes) -> None:
        events = [(m.start(), kind, m) for kind, rx in _O_EVENTS for m in rx.finditer(piece)]
        events.sort(key=lambda e: e[0])
        scan = self.scan
        for _, kind, m in events:
            if kind == "iter":
                ion = int(m.group(1))
                if ion != self.ion:
                    self.ion, self.scf_ok, self.toten, self.block = ion, False, math.nan, None
                self.n_scf = int(m.group(2))
            elif kind == "scf_ok":
                self.scf_ok = True
            elif kind == "scf_no":
                self.scf_ok = False
            elif kind == "forces":
                self.block = self._forces(m.group(1))
            elif kind == "toten":
                self.toten = _num(m.group(1))
            elif kind == "ewo":
                self._complete(_num(m.group(1)), _num(m.group(2)))
            elif kind == "lattice":
                rows = [_FLOAT.findall(line)[:3] for line in m.group(1).splitlines()]
                if all(len(r) == 3 for r in rows):
                    self.lattice = np.array([[_num(x) for x in r] for r in rows])
            elif kind == "mag":
                self.mag = _opt(_num(m.group(1)))
            elif kind == "reached":
                scan.reached_accuracy = True
            elif kind == "timing":
                scan.timing_at = True
            elif kind == "cpu" and scan.timing_at:
                scan.finished = True
            elif kind.startswith("neb"):
                neb = scan.neb if scan.neb is not None else {}
                if kind == "neb_t":
                    neb["tangential_force"] = _opt(_num(m.group(2)))
                else:
                    neb[f"{m.group(1).decode()}_higher"] = m.group(2) == b"T"
                scan.neb, scan.neb_step = neb, len(scan.steps)

    def _forces(self, text: bytes) -> np.ndarray:
        """N x 6 (position, force) array; NaN-filled when the block cannot be read."""
        nions = self.scan.nions
        values = text.split()
        if nions and len(values) == 6 * nions:
            arr = np.array([_num(v) for v in values]) if b"*" in text else None
            if arr is None:
                try:
                    arr = np.array(values, dtype=float)
                except ValueError:
                    arr = np.array([_num(v) for v in values])
            return arr.reshape(nions, 6)
        self.scan.problems.append(f"unreadable TOTAL-FORCE block in ionic step {self.ion}")
        return np.full((nions or 0, 6), math.nan)

    def _complete(self, e_wo: float, e_0: float) -> None:
        scan = self.scan
        scan.steps.append(
            {
                "free_energy": _opt(self.toten),
                "energy_without_entropy": _opt(e_wo),
                "energy_sigma0": _opt(e_0),
                "n_scf": self.n_scf,
                "scf_converged": self.scf_ok,
            }
        )
        if self.block is not None:
            scan.positions, scan.forces = self.block[:, :3], self.block[:, 3:]
        else:
            scan.positions = scan.forces = None
        scan.cell, scan.magnetization = self.lattice, self.mag


def scan_outcar(path: Path) -> _Scan:
    """Stream an OUTCAR (compressed or not) into a :class:`_Scan`."""
    scan = _Scan(source=path)
    state = _OutcarState(scan)
    buffer, header_done = b"", False
    for block in _chunks(path, scan):
        buffer += block
        if len(buffer) < _PIECE:
            continue
        start = buffer.rfind(b"- Iteration ")
        if start <= 0:
            continue
        cut = buffer.rfind(b"\n", 0, start) + 1
        if not header_done:
            _outcar_header(scan, buffer[: buffer.find(b"- Iteration ")])
            header_done = True
        state.feed(buffer[:cut])
        buffer = buffer[cut:]
    buffer = buffer[: buffer.rfind(b"\n") + 1]  # a trailing partial line is not output
    if not header_done:
        first = buffer.find(b"- Iteration ")
        _outcar_header(scan, buffer if first < 0 else buffer[:first])
    state.feed(buffer)
    return scan


# ----------------------------------------------------------------------------- vasprun.xml
_V_HEAVY = (b"<eigenvalues", b"<projected", b"<dos>", b"<dos ", b"<dielectricfunction")
_V_TAG = re.compile(rb"<([A-Za-z_]+)[ >/]")


def _strip_heavy(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Drop eigenvalue/DOS/projection blocks from a vasprun byte stream (they are not needed)."""
    closing: bytes | None = None
    buf = b""
    for chunk in chunks:
        buf += chunk
        out: list[bytes] = []
        while buf:
            if closing is None:
                hits = [i for i in (buf.find(tag) for tag in _V_HEAVY) if i >= 0]
                if not hits:
                    keep = max(0, len(buf) - 24)  # an opening tag may straddle the boundary
                    out.append(buf[:keep])
                    buf = buf[keep:]
                    break
                i = min(hits)
                m = _V_TAG.match(buf, i)
                out.append(buf[:i])
                buf = buf[i:]
                if m is None:  # tag name not complete yet: wait for more bytes
                    break
                closing = b"</" + m.group(1) + b">"
            else:
                j = buf.find(closing)
                if j < 0:
                    buf = buf[-len(closing) :]
                    break
                buf, closing = buf[j + len(closing) :], None
        if out:
            yield b"".join(out)
    if closing is None and buf:
        yield buf


def _varray(el: ET.Element | None) -> np.ndarray | None:
    if el is None:
        return None
    try:
        return np.array([(v.text or "").split() for v in el.iter("v")], dtype=float)
    except ValueError:
        return None


def _vasprun_structure(el: ET.Element) -> tuple[np.ndarray, np.ndarray] | None:
    cell = _varray(el.find("crystal/varray[@name='basis']"))
    frac = _varray(el.find("varray[@name='positions']"))
    if (
        cell is None
        or frac is None
        or cell.shape != (3, 3)
        or frac.ndim != 2
        or frac.shape[1:] != (3,)
    ):
        return None
    return cell, frac @ cell


def _vasprun_calculation(scan: _Scan, el: ET.Element) -> None:
    energy = el.find("energy")
    scsteps = el.findall("scstep")
    if energy is None or not scsteps:
        scan.problems.append(f"<calculation> {len(scan.steps) + 1} without energies; ignored")
        return
    e_calc = {i.get("name"): _num(i.text) for i in energy.iter("i")}
    e_last = {i.get("name"): _num(i.text) for i in scsteps[-1].iter("i")}
    scan.steps.append(
        {
            "free_energy": _opt(e_calc.get("e_fr_energy", math.nan)),
            # VASP < 6.4 mislabels these at calculation level; the scstep labels are right.
            "energy_without_entropy": _opt(e_last.get("e_wo_entrp", math.nan)),
            "energy_sigma0": _opt(e_last.get("e_0_energy", math.nan)),
            "n_scf": len(scsteps),
            "scf_converged": None,  # set once NELM is known: NELM iterations = not converged
        }
    )
    scan.forces = _varray(el.find("varray[@name='forces']"))
    struct = el.find("structure")
    got = _vasprun_structure(struct) if struct is not None else None
    scan.cell, scan.positions = got if got else (None, None)


def _vasprun_params(scan: _Scan, params: dict[str, str], incar: dict[str, str]) -> None:
    merged = {**incar, **params}
    p = scan.params
    p.encut, p.ediff, p.ediffg, p.sigma = (
        _opt(_num(merged.get(k))) for k in ("ENCUT", "EDIFF", "EDIFFG", "SIGMA")
    )
    p.nsw, p.ibrion, p.isif = (
        _int(merged.get("NSW")),
        _int(merged.get("IBRION")),
        _int(merged.get("ISIF")),
    )
    p.nelm, p.ismear, p.ispin = (
        _int(merged.get("NELM")),
        _int(merged.get("ISMEAR")),
        _int(merged.get("ISPIN")),
    )
    p.ivdw = _int(merged.get("IVDW"))
    p.gga = merged["GGA"].strip() if "GGA" in merged else None
    p.lhfcalc, p.ldau = _bool(merged.get("LHFCALC")), _bool(merged.get("LDAU"))
    scan.hybrid = (_opt(_num(merged.get("HFSCREEN"))), _opt(_num(merged.get("AEXX"))))
    scan.metagga = merged.get("METAGGA", "").strip() or None
    if p.potcar_titels and (p.gga or "--") == "--":
        prefix = p.potcar_titels[0].split()[0].upper()
        scan.lexch = {"PAW_PBE": "PE", "PAW_GGA": "91", "US": "CA", "PAW": "CA"}.get(prefix)


def scan_vasprun(path: Path) -> _Scan:
    """Read a vasprun.xml (compressed or not) up to its end or its first XML error."""
    scan = _Scan(source=path)
    parser: ET.XMLPullParser = ET.XMLPullParser(events=("start", "end"))
    stack: list[str] = []
    params: dict[str, str] = {}
    incar: dict[str, str] = {}
    for block in _strip_heavy(_chunks(path, scan)):
        try:
            parser.feed(block)
            events = cast("list[tuple[str, ET.Element]]", list(parser.read_events()))
        except ET.ParseError as exc:
            scan.broken = f"{path.name}: malformed XML, reading stopped ({exc})"
            scan.problems.append(scan.broken)
            break
        for event, el in events:
            tag = el.tag
            if event == "start":
                stack.append(tag)
                continue
            stack.pop()
            parent = stack[-1] if stack else ""
            if tag == "i":
                name = el.get("name") or ""
                if parent == "generator" and name == "version":
                    scan.params.vasp_version = (el.text or "").strip()
                elif parent == "incar":
                    incar[name] = el.text or ""
                elif "parameters" in stack:
                    params[name] = el.text or ""
            elif tag == "array" and parent == "atominfo":
                rows = [[(c.text or "").strip() for c in rc.iter("c")] for rc in el.iter("rc")]
                if el.get("name") == "atoms":
                    scan.symbols = [r[0] for r in rows if r]
                elif el.get("name") == "atomtypes":
                    scan.params.potcar_titels = [r[-1] for r in rows if r]
            elif tag == "calculation":
                _vasprun_calculation(scan, el)
                el.clear()
            elif tag == "structure" and el.get("name") in ("initialpos", "finalpos"):
                flags = el.find("varray[@name='selective']")
                if flags is not None:
                    rows = [(v.text or "").upper().split() for v in flags.iter("v")]
                    scan.free = np.array([any(t.startswith("T") for t in r) for r in rows])
                if el.get("name") == "finalpos":
                    scan.final = _vasprun_structure(el)
                el.clear()
            elif tag == "modeling":
                scan.finished = True
    _vasprun_params(scan, params, incar)
    nelm = scan.params.nelm
    for step in scan.steps:
        step["scf_converged"] = nelm is None or step["n_scf"] < nelm
    scan.nions = len(scan.symbols) if scan.symbols else None
    return scan


# ----------------------------------------------------------------------------- small files
def _read_poscar(
    path: Path,
) -> tuple[list[str] | None, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(symbols or None, cell, Cartesian positions, free mask or None); None if unreadable."""
    try:
        lines = path.read_text(errors="replace").splitlines()
        scale = float(lines[1].split()[0])
        cell = np.array([[float(x) for x in lines[i].split()[:3]] for i in (2, 3, 4)])
        if scale < 0:  # negative scale = target volume
            scale = (-scale / abs(np.linalg.det(cell))) ** (1 / 3)
        cell *= scale
        row, types = 5, None
        if not lines[5].split()[0].lstrip("+-").isdigit():
            types, row = [t.split("/")[0].split("_")[0] for t in lines[5].split()], 6
        counts = [int(x) for x in lines[row].split() if x.isdigit()]
        row += 1
        selective = lines[row].strip()[:1] in "sS"
        row += int(selective)
        cartesian = lines[row].strip()[:1] in "cCkK"
        body = [lines[row + 1 + k].split() for k in range(sum(counts))]
        pos = np.array([[float(x) for x in r[:3]] for r in body])
    except (ValueError, IndexError, OSError, ZeroDivisionError):
        return None
    if pos.shape != (sum(counts), 3) or not counts:
        return None
    positions = pos * scale if cartesian else pos @ cell
    free = None
    if selective:
        free = np.array([any(f.upper().startswith("T") for f in r[3:6]) for r in body])
    symbols = None
    if types and len(types) == len(counts):
        symbols = [s for s, n in zip(types, counts, strict=True) for _ in range(n)]
    return symbols, cell, positions, free


_ERROR_LINE = re.compile(
    r"^.*(?:\bERROR\b|VERY BAD NEWS|internal error|fatal error|ZBRENT: fatal|BAD TERMINATION"
    r"|Segmentation fault|SIGSEGV|forrtl: severe|not hermitian|LAPACK: Routine|MPI_ABORT"
    r"|DUE TO TIME LIMIT|oom-kill|Out Of Memory|Killed).*$",
    re.M | re.I,
)


def read_error_message(folder: str | Path) -> str | None:
    """VASP's (or the MPI launcher's) error text from the stdout files in ``folder``.

    Looks at ``vasp.out``, ``stdout``, ``vasp_output``, ``vasp.log`` ... and ``slurm-*.out``;
    collects VASP 6 ``ERROR`` boxes and lines naming an error (not warnings).

    Returns
    -------
    str or None
        Up to five distinct error lines joined by `` | ``, or ``None``.
    """
    folder = Path(folder)
    files = [folder / n for n in _STDOUT_NAMES] + sorted(folder.glob("slurm-*.out"))
    found: list[str] = []
    for f in files:
        if not f.is_file():
            continue
        with f.open("rb") as handle:
            handle.seek(max(0, f.stat().st_size - (2 << 20)))
            text = handle.read().decode("utf-8", errors="replace")
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if "EEEEEEE  RRRRRR" in line:  # VASP 6 error box: keep its words, not the banner
                for box in lines[i + 1 : i + 30]:
                    words = box.strip(" |-")
                    if box.strip().startswith("---") and found:
                        break
                    if words and not set(words) <= set("ERO# "):
                        found.append(" ".join(words.split()))
        found += [" ".join(m.group(0).split()) for m in _ERROR_LINE.finditer(text)]
    unique = [s for s in dict.fromkeys(found) if s]
    return " | ".join(unique[:5]) if unique else None


def _scan_oszicar(path: Path) -> _Scan:
    scan = _Scan(source=path)
    text = b"".join(_chunks(path, scan))
    for m in re.finditer(rb"^ *\d+ F= *(\S+) +E0= *(\S+)", text, re.M):
        scan.steps.append(
            {
                "free_energy": _opt(_num(m.group(1))),
                "energy_without_entropy": None,
                "energy_sigma0": _opt(_num(m.group(2))),
                "n_scf": None,
                "scf_converged": None,
            }
        )
    if scan.steps:
        scan.problems.append("only OSZICAR was found: energies have 8 digits, completion unknown")
    return scan


# ----------------------------------------------------------------------------- assembly
def _sniff(path: Path) -> str:
    if path.stat().st_size == 0:
        raise ParseError(path, "file is empty")
    name = path.name.upper()
    if "OUTCAR" in name:
        return "outcar"
    if "VASPRUN" in name:
        return "vasprun"
    head = _head(path)
    if not head:
        raise ParseError(path, "file is empty")
    if head.lstrip().startswith(b"<?xml") or b"<modeling" in head:
        return "vasprun"
    if re.match(rb"\s*vasp\.", head):
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


def _merge_params(primary: _Scan, other: _Scan | None) -> VaspParameters:
    params = primary.params
    params.functional = _functional(primary)
    if other is not None:
        other.params.functional = _functional(other)
        for f in fields(params):
            if getattr(params, f.name) in (None, []):
                setattr(params, f.name, getattr(other.params, f.name))
    return params


def _free_mask(folder: Path | None, scans: list[_Scan], nions: int | None) -> np.ndarray | None:
    for name in ("POSCAR", "CONTCAR"):
        if folder is not None and (folder / name).is_file():
            got = _read_poscar(folder / name)
            if got is not None and got[3] is not None and (nions is None or len(got[3]) == nions):
                return got[3]
    for scan in scans:
        if scan.free is not None and (nions is None or len(scan.free) == nions):
            return scan.free
    return None


def _structure(
    folder: Path | None, primary: _Scan, v: _Scan | None, symbols: list[str] | None
) -> dict[str, Any] | None:
    options: list[tuple[str, list[str] | None, np.ndarray | None, np.ndarray | None]] = []
    if folder is not None and (folder / "CONTCAR").is_file():
        got = _read_poscar(folder / "CONTCAR")
        if got is not None:
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
    in what OUTCAR lacks, OSZICAR is used only when neither exists. Selective-dynamics flags
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
        The path does not exist, or a single file is empty or not a VASP output.
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
    z = _scan_oszicar(oszicar) if oszicar and not (o or v) else None
    scans = [s for s in (o, v, z) if s is not None]
    doc = VaspCalcDoc(path=str(p), status="no_output", error_message=read_error_message(folder))
    doc.provenance = provenance(parser_version=PARSER_VERSION)
    doc.source_files = [str(s.source) for s in scans]
    if not scans:
        if any(found):
            doc.warnings.append("output files exist but are empty")
        doc.status = "crashed" if doc.error_message else "no_output"
        return doc
    primary = scans[0]
    doc.parameters = params = _merge_params(primary, v if primary is o else None)
    doc.calc_type = _calc_type(params)
    doc.warnings = [w for s in scans for w in s.problems]
    steps = primary.steps
    doc.steps, doc.n_ionic_steps = steps, len(steps)
    doc.finished = primary.finished and primary.broken is None
    if steps:
        last = steps[-1]
        doc.free_energy = last["free_energy"]
        doc.energy_without_entropy = last["energy_without_entropy"]
        doc.energy_sigma0 = last["energy_sigma0"]
        doc.converged_electronic = last["scf_converged"]
    doc.magnetization = primary.magnetization
    symbols = primary.symbols or (v.symbols if v else None)
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
            tight = by_force and doc.max_force <= abs(params.ediffg or 0)  # type: ignore[operator]
            doc.converged_ionic = doc.finished and (len(steps) < params.nsw or tight)
        else:
            doc.converged_ionic = False
    elif doc.calc_type == "unknown" and not doc.finished:
        doc.converged_ionic = False
    doc.structure = _structure(None if single else folder, primary, v, symbols)
    if doc.structure is not None:
        doc.structure["free"] = free.tolist() if free is not None else None
    if primary is o and o.neb is not None:
        doc.neb = {"lclimb": None, "tangential_force": None, "previous_higher": None}
        doc.neb |= {"next_higher": None, **o.neb}
        if o.neb_step != len(steps):
            doc.neb["tangential_force"] = None
    if o is not None and v is not None and v.broken is None and len(v.steps) != len(o.steps):
        doc.warnings.append(f"OUTCAR has {len(o.steps)} ionic steps, vasprun.xml {len(v.steps)}")
    if doc.error_message and not doc.finished:
        doc.status = "crashed"
    elif not doc.finished or not steps:
        doc.status = "truncated"
    elif doc.converged_electronic is False or doc.converged_ionic is False:
        doc.status = "unconverged"
    else:
        doc.status = "ok"
    return doc

"""Streaming OUTCAR scanner: energies, forces, flags and run parameters of a VASP run.

:func:`scan_outcar` streams an OUTCAR (gzip, bzip2 or xz compressed or not) in chunks cut at
ionic-step headers and scans each with a handful of literal-prefixed regular expressions (no
line-by-line Python loop, no full ``Outcar``). A step counts only once its
``energy  without entropy=`` line (two spaces: the end-of-step block, not the per-SCF lines)
is complete, so an OUTCAR cut mid-step gives the last complete step; a trailing partial line
is ignored. The result is a raw :class:`~pqdflow.analysis._vaspio.ScanResult`;
:func:`pqdflow.analysis.vasp.parse_calculation` turns it into a document.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from pqdflow.analysis._vaspio import ScanResult, nan_to_none, num, read_chunks, to_bool, to_int

__all__ = ["scan_outcar"]

_PIECE = 1 << 23  # OUTCAR bytes scanned at once (cut at an ionic-step header)


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


def _outcar_header(scan: ScanResult, head: bytes) -> None:
    raw: dict[str, bytes] = {}
    for m in _O_PARAM.finditer(head):
        raw[m.group(1).decode()] = m.group(2)  # the last echo is the parameter block
    p = scan.params
    if m2 := _O_VERSION.search(head[:400]):
        p.vasp_version = m2.group(1).decode(errors="replace")
    p.encut, p.ediff, p.ediffg = (
        nan_to_none(num(raw.get(k))) for k in ("ENCUT", "EDIFF", "EDIFFG")
    )
    p.nsw, p.ibrion, p.isif = (
        to_int(raw.get("NSW")),
        to_int(raw.get("IBRION")),
        to_int(raw.get("ISIF")),
    )
    p.nelm, p.ismear, p.ispin = (
        to_int(raw.get("NELM")),
        to_int(raw.get("ISMEAR")),
        to_int(raw.get("ISPIN")),
    )
    p.ivdw = to_int(raw.get("IVDW"))
    p.gga = raw["GGA"].decode() if "GGA" in raw else None
    p.lhfcalc = to_bool(raw.get("LHFCALC"))
    p.ldau = b"LDA+U is selected" in head
    if m2 := _O_SIGMA.search(head):
        p.sigma = nan_to_none(num(m2.group(1)))
    scan.hybrid = (nan_to_none(num(raw.get("HFSCREEN"))), nan_to_none(num(raw.get("AEXX"))))
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

    def __init__(self, scan: ScanResult) -> None:
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
                self.toten = num(m.group(1))
            elif kind == "ewo":
                self._complete(num(m.group(1)), num(m.group(2)))
            elif kind == "lattice":
                rows = [_FLOAT.findall(line)[:3] for line in m.group(1).splitlines()]
                if all(len(r) == 3 for r in rows):
                    self.lattice = np.array([[num(x) for x in r] for r in rows])
            elif kind == "mag":
                self.mag = nan_to_none(num(m.group(1)))
            elif kind == "reached":
                scan.reached_accuracy = True
            elif kind == "timing":
                scan.timing_at = True
            elif kind == "cpu" and scan.timing_at:
                scan.finished = True
            elif kind.startswith("neb"):
                neb = scan.neb if scan.neb is not None else {}
                if kind == "neb_t":
                    neb["tangential_force"] = nan_to_none(num(m.group(2)))
                else:
                    neb[f"{m.group(1).decode()}_higher"] = m.group(2) == b"T"
                scan.neb, scan.neb_step = neb, len(scan.steps)

    def _forces(self, text: bytes) -> np.ndarray:
        """N x 6 (position, force) array; NaN-filled when the block cannot be read."""
        nions = self.scan.nions
        values = text.split()
        if nions and len(values) == 6 * nions:
            arr = np.array([num(v) for v in values]) if b"*" in text else None
            if arr is None:
                try:
                    arr = np.array(values, dtype=float)
                except ValueError:
                    arr = np.array([num(v) for v in values])
            return arr.reshape(nions, 6)
        self.scan.problems.append(f"unreadable TOTAL-FORCE block in ionic step {self.ion}")
        return np.full((nions or 0, 6), math.nan)

    def _complete(self, e_wo: float, e_0: float) -> None:
        scan = self.scan
        scan.steps.append(
            {
                "free_energy": nan_to_none(self.toten),
                "energy_without_entropy": nan_to_none(e_wo),
                "energy_sigma0": nan_to_none(e_0),
                "n_scf": self.n_scf,
                "scf_converged": self.scf_ok,
            }
        )
        if self.block is not None:
            scan.positions, scan.forces = self.block[:, :3], self.block[:, 3:]
        else:
            scan.positions = scan.forces = None
        scan.cell, scan.magnetization = self.lattice, self.mag


def scan_outcar(path: Path) -> ScanResult:
    """Stream an OUTCAR (compressed or not) into a :class:`ScanResult`."""
    scan = ScanResult(source=path)
    state = _OutcarState(scan)
    buffer, header_done = b"", False
    for block in read_chunks(path, scan):
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

"""Streaming OUTCAR scanner: energies, forces, flags and run parameters of a VASP run.

:func:`scan_outcar` streams an OUTCAR (gzip, bzip2 or xz compressed or not) in chunks cut at
ionic-step headers and scans each with a handful of literal-prefixed regular expressions (no
line-by-line Python loop, no full ``Outcar``). A step counts only once its
``energy  without entropy=`` line (two spaces: the end-of-step block, not the per-SCF lines)
is complete, so an OUTCAR cut mid-step gives the last complete step; a trailing partial line
is ignored. The result is a raw :class:`~pqdflow.analysis._vaspio.ScanResult`;
:func:`pqdflow.analysis.vasp.parse_calculation` turns it into a document.

What real files from clusters need:

* Line endings and NUL bytes are normalised by :func:`~pqdflow.analysis._vaspio.read_chunks`.
* A step's SCF loop converged only if VASP printed "EDIFF is reached" for it **and** it took
  fewer than NELM iterations (a loop stopped by NELM is not converged, whatever is printed).
* Machine-learned force-field runs (VASP >= 6.3, ``ML_LMLFF``): every MD step starts with an
  ML prediction (``TOTAL-FORCE (eV/Angst) (ML)``, ``ML energy  without entropy=``). When VASP
  rejects it, a DFT step (``Iteration N(..)`` lines, N = the MD step) follows at the same
  structure and replaces it; otherwise the ML prediction is the step. Steps are labelled
  ``kind = "dft"`` or ``"ml"``.
* Integrity: a second VASP header (two runs in one file) and DFT steps that complete out of
  order (a step number that goes back, repeats, or skips steps that never completed) mark
  the file corrupt.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from pqdflow.analysis._vaspio import (
    ML_MODES,
    ScanResult,
    below_nelm,
    decode,
    nan_to_none,
    num,
    read_chunks,
    to_bool,
    to_int,
)

__all__ = ["scan_outcar"]

_PIECE = 1 << 23  # OUTCAR bytes scanned at once (cut before a step's first line)


#: VASP's banner, e.g. ``vasp.6.3.0 20Jan22 (build ...``, ``vasp.5.4.4.18Apr17-6-g9f1 (build``
#: (literal-first patterns only: a leading ``^`` or look-behind makes a scan 20x slower)
HEADER = re.compile(rb"vasp\.\d+\.\d+\.\d+\S*[ \t]+(?:\(build|\d\d[A-Z][a-z]{2}\d\d)")
_STEP_MARKERS = (b"- Iteration ", b"  ML FORCE on cell")  # a piece may be cut before these

_O_EVENTS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("header", HEADER),
    ("iter", re.compile(rb"- Iteration *(\d+)\( *(\d+)\)")),
    (
        "forces",
        re.compile(rb"TOTAL-FORCE \(eV/Angst\)( \(ML\))?[^\n]*\n -+\n((?:[^\n]*\n)*?) -+\n"),
    ),
    ("toten", re.compile(rb"free  energy   TOTEN  = *(\S+) eV")),
    # "ML energy  without entropy= x  ML energy(sigma->0) = y" does not match: "ML " intervenes
    ("ewo", re.compile(rb"energy  without entropy= *(\S+) +energy\(sigma->0\) = *(\S+)")),
    ("lattice", re.compile(rb"direct lattice vectors[^\n]*\n((?:[^\n]*\n){3})")),
    ("mag", re.compile(rb"number of electron +\S+ +magnetization +(\S+)")),
)
#: plain phrases, found with bytes.find (several times faster than a regular expression)
_O_PHRASES: tuple[tuple[str, bytes], ...] = (
    ("scf_ok", b"aborting loop because EDIFF is reached"),
    ("scf_no", b"aborting loop EDIFF was not reached"),
    ("reached", b"reached required accuracy"),
    ("timing", b"General timing and accounting"),
    ("cpu", b"Total CPU time used"),
)
#: scanned only where a piece has ``ML energy`` / ``NEB:`` at all (one fast search each)
_O_ML_EVENTS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("ml_toten", re.compile(rb"free  energy ML TOTEN  = *(\S+) eV")),
    ("ml_e", re.compile(rb"ML energy  without entropy= *(\S+) +ML energy\(sigma->0\) = *(\S+)")),
)
_O_NEB_EVENTS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("neb_t", re.compile(rb"NEB: projections on to tangent \(spring, REAL\) +(\S+) +(\S+)")),
    ("neb_h", re.compile(rb"NEB: the (previous|next) image is higher in energy *: *([TF])")),
)
_O_PARAM = re.compile(
    rb"^ +(ENCUT|NSW|IBRION|ISIF|NELM|EDIFFG|EDIFF|ISPIN|ISMEAR|GGA|LHFCALC|HFSCREEN|AEXX"
    rb"|METAGGA|IVDW|NBLOCK|ML_LMLFF|ML_MODE) *= *([^\s;]+)",
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


def _find_all(text: bytes, phrase: bytes) -> Iterator[int]:
    """Every position of ``phrase`` in ``text``."""
    at = text.find(phrase)
    while at >= 0:
        yield at
        at = text.find(phrase, at + len(phrase))


def _at_line_start(text: bytes, i: int) -> bool:
    """``text[i]`` starts a line, after at most one blank (VASP's banner indent)."""
    before = text[max(0, i - 2) : i]
    return before in (b"", b"\n", b" ") if i < 2 else before[-1:] == b"\n" or before == b"\n "


def _header_end(text: bytes) -> int:
    """Where the run's header ends: before its first step (or -1 if no step started yet)."""
    found = [i for i in (text.find(marker) for marker in _STEP_MARKERS) if i >= 0]
    return min(found) if found else -1


def _outcar_header(scan: ScanResult, head: bytes) -> None:
    raw: dict[str, bytes] = {}
    for m in _O_PARAM.finditer(head):
        raw[decode(m.group(1))] = m.group(2)  # the last echo is the parameter block
    p = scan.params
    if m2 := HEADER.search(head, 0, 8192) or _O_VERSION.search(head[:400]):
        end = head.find(b"\n", m2.start())
        p.vasp_version = decode(head[m2.start() : end if end >= 0 else None]).strip()
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
    p.nblock = to_int(raw.get("NBLOCK"))
    p.ml_lmlff = to_bool(raw.get("ML_LMLFF"))
    if "ML_MODE" in raw:
        p.ml_mode = decode(raw["ML_MODE"]).strip("'\"").lower()
    if p.ml_lmlff is None and p.ml_mode in ML_MODES:
        p.ml_lmlff = True  # VASP >= 6.4: ML_MODE alone switches the force field on
    p.gga = decode(raw["GGA"]) if "GGA" in raw else None
    p.lhfcalc = to_bool(raw.get("LHFCALC"))
    p.ldau = b"LDA+U is selected" in head
    if m2 := _O_SIGMA.search(head):
        p.sigma = nan_to_none(num(m2.group(1)))
    scan.hybrid = (nan_to_none(num(raw.get("HFSCREEN"))), nan_to_none(num(raw.get("AEXX"))))
    scan.metagga = decode(raw["METAGGA"]) if "METAGGA" in raw else None
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
        self.headers = 0
        self.last_ion = 0  # step number of the last DFT step completed
        self.disorder: list[str] = []  # step records out of order
        self.ml_toten = math.nan
        self.ml_block: np.ndarray | None = None
        self.pending_ml: dict[str, object] | None = None  # ML prediction not yet confirmed
        self.ml_seen = False

    def feed(self, piece: bytes) -> None:
        active = _O_EVENTS
        if b"ML energy" in piece:
            active += _O_ML_EVENTS
        if b"NEB:" in piece:
            active += _O_NEB_EVENTS
        events: list[tuple[int, str, re.Match[bytes] | None]] = [
            (m.start(), kind, m) for kind, rx in active for m in rx.finditer(piece)
        ]
        events += [(at, kind, None) for kind, text in _O_PHRASES for at in _find_all(piece, text)]
        events.sort(key=lambda e: e[0])
        for _, kind, m in events:
            if m is None:
                self._phrase(kind)
            else:
                self._match(kind, m, piece)

    def _phrase(self, kind: str) -> None:
        scan = self.scan
        if kind == "scf_ok":
            self.scf_ok = True
        elif kind == "scf_no":
            self.scf_ok = False
        elif kind == "reached":
            scan.reached_accuracy = True
        elif kind == "timing":
            scan.timing_at = True
        elif kind == "cpu" and scan.timing_at:
            scan.finished = True

    def _match(self, kind: str, m: re.Match[bytes], piece: bytes) -> None:
        scan = self.scan
        if kind == "iter":
            self.pending_ml = None  # VASP rejected the ML prediction: a DFT step follows
            ion = int(m.group(1))
            if ion != self.ion:
                self.ion, self.scf_ok, self.toten, self.block = ion, False, math.nan, None
            self.n_scf = int(m.group(2))
        elif kind == "forces":
            if m.group(1):
                self.ml_block = self._forces(m.group(2))
            else:
                self.block = self._forces(m.group(2))
        elif kind == "toten":
            self.toten = num(m.group(1))
        elif kind == "ewo":
            self._complete(num(m.group(1)), num(m.group(2)))
        elif kind == "ml_toten":
            self.ml_toten = num(m.group(1))
        elif kind == "ml_e":
            self._ml_prediction(num(m.group(1)), num(m.group(2)))
        elif kind == "lattice":
            rows = [_FLOAT.findall(line)[:3] for line in m.group(1).splitlines()]
            if all(len(r) == 3 for r in rows):
                self.lattice = np.array([[num(x) for x in r] for r in rows])
        elif kind == "mag":
            self.mag = nan_to_none(num(m.group(1)))
        elif kind == "header":
            if _at_line_start(piece, m.start()):
                end = piece.find(b"\n", m.start())
                self._header(decode(piece[m.start() : end if end >= 0 else None]).strip())
        elif kind.startswith("neb"):
            neb = scan.neb if scan.neb is not None else {}
            if kind == "neb_t":
                neb["tangential_force"] = nan_to_none(num(m.group(2)))
            else:
                neb[f"{m.group(1).decode()}_higher"] = m.group(2) == b"T"
            scan.neb, scan.neb_step = neb, len(scan.steps)

    def finish(self) -> None:
        """End of the file: settle a pending ML prediction, report disorder."""
        if self.pending_ml is not None:
            if self.scan.finished:  # the run ended normally after it: it was the last step
                self._record(self.pending_ml)
            else:  # cut before VASP kept it (next prediction) or rejected it (DFT started)
                self.scan.problems.append(
                    "the file ends after an ML prediction that VASP had not yet kept or "
                    "rejected: it is not counted as a step"
                )
            self.pending_ml = None
        if self.disorder:
            more = f" ({len(self.disorder) - 3} more)" if len(self.disorder) > 3 else ""
            listed = "; ".join(self.disorder[:3])
            self.scan.flag_corrupt(f"step records out of order: {listed}{more}")

    def _header(self, line: str) -> None:
        self.headers += 1
        if self.headers > 1:
            how = (
                "after the first run had finished (runs appended)"
                if self.scan.timing_at
                else "before the first run had finished (runs interleaved)"
            )
            self.scan.flag_corrupt(
                f"a second VASP run ({line}) starts after {len(self.scan.steps)} ionic steps, {how}"
            )

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

    def _ml_prediction(self, e_wo: float, e_0: float) -> None:
        self.ml_seen = True
        if self.pending_ml is not None:  # the previous prediction was kept: an ML step
            self._record(self.pending_ml)
        self.pending_ml = {
            "kind": "ml",
            "free_energy": nan_to_none(self.ml_toten),
            "energy_without_entropy": nan_to_none(e_wo),
            "energy_sigma0": nan_to_none(e_0),
            "n_scf": None,
            "scf_converged": None,
            "block": self.ml_block,
            "lattice": self.lattice,
        }
        self.ml_toten, self.ml_block = math.nan, None

    def _complete(self, e_wo: float, e_0: float) -> None:
        scan = self.scan
        self.pending_ml = None
        nelm = scan.params.nelm
        expected = len(scan.steps) + 1
        ml_run = self.ml_seen or bool(scan.params.ml_lmlff)
        if self.ion <= self.last_ion:
            self.disorder.append(f"ionic step {self.ion} completes after step {self.last_ion}")
        elif self.ion != expected and not ml_run:  # ML runs skip the numbers of ML steps
            lost = (
                f"the record of step {expected} is"
                if self.ion == expected + 1
                else f"the records of steps {expected}..{self.ion - 1} are"
            )
            self.disorder.append(
                f"ionic step {self.ion} completes where step {expected} was due ({lost} missing)"
            )
        self.last_ion = max(self.last_ion, self.ion)
        self._record(
            {
                "kind": "dft",
                "free_energy": nan_to_none(self.toten),
                "energy_without_entropy": nan_to_none(e_wo),
                "energy_sigma0": nan_to_none(e_0),
                "n_scf": self.n_scf,
                # NELM iterations = stopped by NELM, even where "EDIFF is reached" was printed
                "scf_converged": self.scf_ok and below_nelm(self.n_scf, nelm),
                "block": self.block,
                "lattice": self.lattice,
            }
        )
        self.scf_ok, self.n_scf = False, 0

    def _record(self, step: dict[str, object]) -> None:
        scan = self.scan
        block = step.pop("block")
        lattice = step.pop("lattice")
        scan.steps.append(step)
        if isinstance(block, np.ndarray):
            scan.positions, scan.forces = block[:, :3], block[:, 3:]
        else:
            scan.positions = scan.forces = None
        scan.cell = lattice if isinstance(lattice, np.ndarray) else None
        scan.magnetization = self.mag


def scan_outcar(path: Path, *, piece_bytes: int = _PIECE) -> ScanResult:
    """Stream an OUTCAR (compressed or not, any line ends) into a :class:`ScanResult`.

    Parameters
    ----------
    path
        The OUTCAR.
    piece_bytes
        How much text is scanned at once (cut before a step's first line); any size gives
        the same result, smaller ones use less memory.
    """
    scan = ScanResult(source=path)
    state = _OutcarState(scan)
    parts: list[bytes] = []  # text not scanned yet, joined once a piece is full
    size, header_done = 0, False
    for block in read_chunks(path, scan):
        parts.append(block)
        size += len(block)
        if size < piece_bytes:
            continue
        buffer = b"".join(parts)
        parts = [buffer]
        start = max(buffer.rfind(marker) for marker in _STEP_MARKERS)
        if start <= 0:
            continue
        cut = buffer.rfind(b"\n", 0, start) + 1
        if not header_done:
            _outcar_header(scan, buffer[: _header_end(buffer)])
            header_done = True
        state.feed(buffer[:cut])
        parts = [buffer[cut:]]
        size = len(parts[0])
    buffer = b"".join(parts)
    buffer = buffer[: buffer.rfind(b"\n") + 1]  # a trailing partial line is not output
    if not header_done:
        end = _header_end(buffer)
        _outcar_header(scan, buffer if end < 0 else buffer[:end])
    state.feed(buffer)
    state.finish()
    return scan

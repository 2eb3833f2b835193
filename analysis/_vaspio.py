"""Shared low level of the VASP output readers: run parameters, scan record, byte streams.

Used by :mod:`pqdflow.analysis.outcar`, :mod:`pqdflow.analysis.vasprun` and
:mod:`pqdflow.analysis.vasp`; not a public API (import the documents from
:mod:`pqdflow.analysis.vasp`).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import re
import zlib
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

from pqdflow.errors import ParseError

__all__ = [
    "ML_MODES",
    "ScanResult",
    "VaspParameters",
    "below_nelm",
    "decode",
    "nan_to_none",
    "num",
    "open_binary",
    "read_chunks",
    "read_head",
    "to_bool",
    "to_int",
]

_READ = 1 << 20  # bytes per block handed on (and per read from a plain file)
_READ_COMPRESSED = 1 << 16  # bytes per read from a compressed stream
_NUL_RUN = re.compile(rb"\x00+")
#: ``ML_MODE`` values that switch VASP's machine-learned force field on (VASP >= 6.4)
ML_MODES = ("train", "select", "refit", "refitbayesian", "run")


# ----------------------------------------------------------------------------- run parameters
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
    ml_lmlff, ml_mode
        Machine-learned force field (VASP >= 6.3): ``ML_LMLFF`` and ``ML_MODE`` (VASP >= 6.4,
        e.g. ``"train"``, ``"run"``); ``None`` when not printed.
    nblock
        ``NBLOCK``: an ML run's OUTCAR prints ML steps only every NBLOCK steps.
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
    ml_lmlff: bool | None = None
    ml_mode: str | None = None
    nblock: int | None = None

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


# ----------------------------------------------------------------------------- numbers
def num(text: bytes | str | None) -> float:
    """float() that turns unparsable VASP output (``*****``, fused numbers) into NaN."""
    if text is None:
        return math.nan
    try:
        return float(text)
    except ValueError:
        return math.nan


def to_int(text: bytes | str | None) -> int | None:
    """int() of :func:`num`; ``None`` when the text is missing or unparsable."""
    value = num(text)
    return None if math.isnan(value) else int(value)


def below_nelm(n_scf: int, nelm: int | None) -> bool:
    """Tell whether an SCF loop of ``n_scf`` iterations stopped before NELM could stop it.

    VASP 5 prints "EDIFF is reached" also for a loop that NELM cut off, so the count decides.
    ``NELM = 1`` asks for one deliberate pass (e.g. ``ALGO = Exact`` for optics), not a
    converging loop: it is not judged by the count.
    """
    return nelm is None or nelm == 1 or n_scf < nelm


def decode(text: bytes) -> str:
    """Bytes of a VASP output as text; undecodable bytes (a corrupt file) become U+FFFD."""
    return text.decode("utf-8", errors="replace")


def to_bool(text: bytes | str | None) -> bool | None:
    """Fortran logical (``T``, ``.TRUE.``, ``F`` ...) as bool; ``None`` when missing or blank."""
    if text is None:
        return None
    t = decode(text) if isinstance(text, bytes) else text
    t = t.strip().strip(".").upper()
    return None if not t else t.startswith("T")


def nan_to_none(value: float) -> float | None:
    """``None`` for NaN, else ``value``."""
    return None if math.isnan(value) else value


def open_binary(path: Path) -> IO[bytes]:
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


# ----------------------------------------------------------------- scan record, byte streams
@dataclass
class ScanResult:
    """What one output file (OUTCAR, vasprun.xml or OSZICAR) says, before assembly.

    Energies in eV, forces in eV/Å, lengths in Å. ``steps`` holds one dict per complete
    ionic step (``kind``: ``"dft"`` or ``"ml"``, a machine-learned force-field step);
    ``forces``/``positions``/``cell`` belong to the last one. ``problems`` collects
    warnings; ``broken`` is set when the stream or XML ended in an error; ``corrupt`` lists
    what makes the file untrustworthy (NUL bytes, two runs in one file, step records out of
    order, a damaged compressed stream).
    """

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
    corrupt: list[str] = field(default_factory=list)
    timing_at: bool = False

    def flag_corrupt(self, reason: str) -> None:
        """Record why the file cannot be trusted (also as a warning)."""
        self.corrupt.append(reason)
        self.problems.append(f"{self.source.name} is corrupt: {reason}")


def _decompressed(path: Path, scan: ScanResult) -> Iterator[bytes]:
    """Raw decompressed blocks of ``path``; a cut or damaged stream ends them and marks ``scan``.

    Compressed streams are read in small steps, so a cut one still yields everything that
    was written before the cut.

    Raises
    ------
    ParseError
        The file cannot be opened (permissions, a folder, vanished).
    """
    try:
        handle = open_binary(path)
    except OSError as exc:
        raise ParseError(path, f"cannot be read ({exc.strerror or exc})") from exc
    plain = isinstance(handle, io.BufferedReader)
    parts: list[bytes] = []
    size = 0
    try:
        with handle:
            while chunk := handle.read(_READ if plain else _READ_COMPRESSED):
                parts.append(chunk)
                size += len(chunk)
                if size >= _READ:
                    yield b"".join(parts)
                    parts, size = [], 0
    except EOFError as exc:  # a cut gzip/bzip2/xz file: the run's output just stops
        scan.broken = f"{path.name}: compressed stream ends early ({exc})"
        scan.problems.append(scan.broken)
    except (zlib.error, lzma.LZMAError, OSError) as exc:  # bad CRC or block; a disk error
        what = "file could not be read to its end" if plain else "compressed stream is damaged"
        scan.broken = f"{path.name}: {what}, reading stopped ({exc})"
        scan.flag_corrupt(f"{what} ({exc})")
    if parts:
        yield b"".join(parts)


def read_chunks(path: Path, scan: ScanResult) -> Generator[bytes, None, None]:
    r"""Yield the decompressed bytes of ``path`` as text with ``\n`` line ends and no NUL bytes.

    Windows (``\r\n``) and old Mac (``\r``) line ends become ``\n``, so every reader
    sees the same bytes whatever machine the file went through. Each run of NUL bytes (a file
    system that lost writes: the data they replaced is gone) becomes one line break, so no
    two partial lines fuse into a valid-looking one, and is recorded in ``scan`` as
    corruption when the generator ends or is closed. A cut or damaged compressed stream ends
    the text and is recorded too.
    """
    offset, nul_total, nul_first, nul_runs = 0, 0, -1, 0
    cr_held = False  # the previous block ended with "\r" (its "\n" may start the next one)
    nul_held = False  # the previous block ended inside a NUL run
    try:
        for raw in _decompressed(path, scan):
            size = len(raw)
            if b"\x00" in raw:
                runs = [m.span() for m in _NUL_RUN.finditer(raw)]
                if nul_first < 0:
                    nul_first = offset + runs[0][0]
                nul_runs += len(runs) - int(nul_held and runs[0][0] == 0)
                nul_total += sum(b - a for a, b in runs)
                nul_held = runs[-1][1] == size
                raw = _NUL_RUN.sub(b"\n", raw)
            else:
                nul_held = False
            offset += size
            block = b"\r" + raw if cr_held else raw
            cr_held = block.endswith(b"\r")
            if cr_held:
                block = block[:-1]
            if b"\r" in block:
                block = block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
            if block:
                yield block
        if cr_held:
            yield b"\n"
    finally:  # also when the reader stops early (it must close this generator)
        if nul_total:
            scan.flag_corrupt(
                f"{nul_total} NUL bytes in {nul_runs} block(s), the first at byte {nul_first} "
                "(data lost by the file system)"
            )


def read_head(path: Path, n: int = 512, scan: ScanResult | None = None) -> bytes:
    """First ``n`` decompressed bytes of ``path`` (``b""`` if unreadable; why, in ``scan``)."""
    for block in read_chunks(path, scan if scan is not None else ScanResult(source=path)):
        return block[:n]
    return b""

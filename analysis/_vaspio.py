"""Shared low level of the VASP output readers: run parameters, scan record, byte streams.

Used by :mod:`pqdflow.analysis.outcar`, :mod:`pqdflow.analysis.vasprun` and
:mod:`pqdflow.analysis.vasp`; not a public API (import the documents from
:mod:`pqdflow.analysis.vasp`).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import IO, Any, cast

import numpy as np

__all__ = [
    "ScanResult",
    "VaspParameters",
    "nan_to_none",
    "num",
    "open_binary",
    "read_chunks",
    "read_head",
    "to_bool",
    "to_int",
]

_READ = 1 << 20  # bytes per read from the (decompressed) stream


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


def to_bool(text: bytes | str | None) -> bool | None:
    """Fortran logical (``T``, ``.TRUE.``, ``F`` ...) as bool; ``None`` when missing or blank."""
    if text is None:
        return None
    t = text.decode() if isinstance(text, bytes) else text
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
    ionic step; ``forces``/``positions``/``cell`` belong to the last one. ``problems``
    collects warnings; ``broken`` is set when the stream or XML ended in an error.
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
    timing_at: bool = False


def read_chunks(path: Path, scan: ScanResult) -> Iterator[bytes]:
    """Yield the decompressed bytes of ``path``; a broken stream ends it and marks ``scan``."""
    try:
        with open_binary(path) as handle:
            while block := handle.read(_READ):
                yield block
    except (EOFError, zlib.error, lzma.LZMAError, OSError) as exc:
        scan.broken = f"{path.name}: compressed stream ends early or is corrupt ({exc})"
        scan.problems.append(scan.broken)


def read_head(path: Path, n: int = 512) -> bytes:
    """First ``n`` decompressed bytes of ``path`` (``b""`` if unreadable)."""
    for block in read_chunks(path, ScanResult(source=path)):
        return block[:n]
    return b""

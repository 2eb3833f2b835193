"""DFT check of an ML screening result: "ML geometry, DFT energy".

For structures an ML potential has relaxed (NEB images, binding-reaction cells), compute DFT
single points with any ASE calculator factory (GPAW locally, see
:func:`pqdflow.workflows.engine.gpaw_calc.gpaw_calculator_factory`; a VASP single point on a
cluster) and report the DFT energies and barrier next to the ML ones, with the ML - DFT
difference. Each single point is written to ``<directory>/<label>.json`` as it finishes and
is read back instead of recomputed (restart); the summary is ``dft_check.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.io import read

from pqdflow.documents.results import NebDoc
from pqdflow.errors import InputError, ParseError
from pqdflow.fileio import atomic_write_json
from pqdflow.provenance import provenance

__all__ = ["DftCheckDoc", "dft_check_images", "neb_check_images"]

SUMMARY_FILE = "dft_check.json"


@dataclass
class DftCheckDoc:
    """DFT single points on ML geometries, next to the ML energies (eV).

    Attributes
    ----------
    labels
        One label per structure (``"initial"``, ``"saddle"``, ``"final"``, ...).
    ml_energies, dft_energies
        Total energies (eV); ``ml_energies`` may be empty when unknown.
    ml_relative, dft_relative
        Energies relative to the first structure (eV).
    ml_barrier, dft_barrier
        Highest energy minus the first (eV): the forward barrier when the structures are
        the initial, saddle and final images of a band. ``ml_barrier`` is None without ML
        energies.
    difference
        ``ml_barrier - dft_barrier`` (eV), or None.
    relative_difference
        ``ml_relative - dft_relative`` per structure (eV).
    cpu_seconds
        CPU time of each single point (0 for one read back from disk).
    calculator
        Name of the DFT calculator class.
    provenance
        pqdflow version, time and ``extra`` given by the caller.
    """

    labels: list[str]
    ml_energies: list[float]
    dft_energies: list[float]
    ml_relative: list[float]
    dft_relative: list[float]
    ml_barrier: float | None
    dft_barrier: float
    difference: float | None
    relative_difference: list[float]
    cpu_seconds: list[float]
    calculator: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def table(self) -> str:
        """Return a small text table: label, ML and DFT relative energies, difference."""
        lines = [f"{'image':>10} {'ML (eV)':>10} {'DFT (eV)':>10} {'ML-DFT':>9} {'CPU s':>7}"]
        for i, label in enumerate(self.labels):
            ml = f"{self.ml_relative[i]:10.4f}" if self.ml_relative else f"{'-':>10}"
            diff = f"{self.relative_difference[i]:+9.4f}" if self.relative_difference else ""
            lines.append(
                f"{label:>10} {ml} {self.dft_relative[i]:10.4f} {diff:>9} "
                f"{self.cpu_seconds[i]:7.0f}"
            )
        if self.ml_barrier is not None and self.difference is not None:
            lines.append(
                f"barrier: ML {self.ml_barrier:.4f} eV, DFT {self.dft_barrier:.4f} eV, "
                f"ML - DFT {self.difference:+.4f} eV"
            )
        else:
            lines.append(f"barrier: DFT {self.dft_barrier:.4f} eV")
        return "\n".join(lines)


def _ml_energy(atoms: Atoms) -> float | None:
    calc = atoms.calc
    if calc is not None and "energy" in getattr(calc, "results", {}):
        return float(calc.results["energy"])
    return None


def _positions_key(atoms: Atoms) -> list[list[float]]:
    return [[round(float(x), 4) for x in row] for row in atoms.get_positions()]


def _single_point(
    atoms: Atoms, factory: Callable[[], Calculator], record: Path | None
) -> tuple[float, float, str]:
    """Energy (eV), CPU seconds and calculator name; read back from ``record`` if there."""
    if record is not None and record.is_file():
        try:
            data = json.loads(record.read_text())
            energy, calc_name, key = (
                float(data["energy"]),
                str(data["calculator"]),
                data["positions"],
            )
        except (OSError, ValueError, KeyError) as exc:
            raise ParseError(record, f"not a DFT single-point record ({exc})") from exc
        if data.get("symbols") != atoms.get_chemical_symbols() or not np.allclose(
            key, _positions_key(atoms), atol=2e-4
        ):
            raise InputError(
                f"{record} holds a single point of another structure; use another directory "
                "or delete the record to recompute"
            )
        return energy, 0.0, calc_name
    work = atoms.copy()
    work.calc = factory()
    start = time.process_time()
    energy = float(work.get_potential_energy())
    cpu = time.process_time() - start
    calc_name = type(work.calc).__name__
    if record is not None:
        atomic_write_json(
            record,
            {
                "energy": energy,
                "cpu_seconds": cpu,
                "calculator": calc_name,
                "symbols": work.get_chemical_symbols(),
                "positions": _positions_key(work),
            },
        )
    return energy, cpu, calc_name


def dft_check_images(
    images: Sequence[Atoms],
    calculator_factory: Callable[[], Calculator],
    *,
    labels: Sequence[str] | None = None,
    ml_energies: Sequence[float] | None = None,
    directory: str | Path | None = None,
    extra: dict[str, Any] | None = None,
) -> DftCheckDoc:
    """DFT single points on ML-relaxed structures; DFT vs ML energies and barrier.

    Parameters
    ----------
    images
        Structures on the ML geometry, e.g. the initial, climbing and final images of an ML
        band (:func:`neb_check_images`). Not modified.
    calculator_factory
        Returns a fresh DFT calculator per structure.
    labels
        One per image (default ``image_00``, ...); also the record file names.
    ml_energies
        ML total energies (eV); default: from each image's attached calculator results, if
        all have them.
    directory
        Folder for the per-image records and ``dft_check.json``; a record already there is
        read back instead of recomputed. ``None``: nothing written.
    extra
        Added to the provenance.

    Raises
    ------
    InputError
        Fewer than two images, or labels / ML energies that do not match the images.
    """
    if len(images) < 2:
        raise InputError(f"a DFT check needs at least 2 structures, got {len(images)}")
    names = list(labels) if labels is not None else [f"image_{i:02d}" for i in range(len(images))]
    if len(names) != len(images) or len(set(names)) != len(names):
        raise InputError(f"labels {names} must be unique, one per image ({len(images)})")
    if ml_energies is None:
        found = [_ml_energy(a) for a in images]
        ml = [e for e in found if e is not None] if all(e is not None for e in found) else []
    else:
        ml = [float(e) for e in ml_energies]
        if len(ml) != len(images):
            raise InputError(f"{len(ml)} ML energies for {len(images)} images; give one each")
    folder = None if directory is None else Path(directory)
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    dft: list[float] = []
    cpu: list[float] = []
    calculators: list[str] = []
    for name, atoms in zip(names, images, strict=True):
        record = None if folder is None else folder / f"{name}.json"
        energy, seconds, calc_name = _single_point(atoms, calculator_factory, record)
        dft.append(energy)
        cpu.append(seconds)
        calculators.append(calc_name)
    dft_rel = [e - dft[0] for e in dft]
    ml_rel = [e - ml[0] for e in ml] if ml else []
    ml_barrier = max(ml_rel) if ml else None
    dft_barrier = max(dft_rel)
    doc = DftCheckDoc(
        labels=names,
        ml_energies=ml,
        dft_energies=dft,
        ml_relative=ml_rel,
        dft_relative=dft_rel,
        ml_barrier=ml_barrier,
        dft_barrier=dft_barrier,
        difference=None if ml_barrier is None else ml_barrier - dft_barrier,
        relative_difference=[m - d for m, d in zip(ml_rel, dft_rel, strict=True)] if ml else [],
        cpu_seconds=cpu,
        calculator=",".join(sorted(set(calculators))),
        provenance=provenance(**(extra or {})),
    )
    if folder is not None:
        atomic_write_json(folder / SUMMARY_FILE, doc.as_dict())
    return doc


def neb_check_images(neb: NebDoc) -> tuple[list[Atoms], list[str], list[float]]:
    """Return the initial, climbing (or highest) and final images of a finished ML band.

    Returns the images (read from the band file, with the ML energies of the document),
    their labels (``initial``, ``saddle``, ``final``) and ML energies (eV).

    Raises
    ------
    ParseError
        If the band file is missing or does not match the document.
    """
    path = Path(neb.directory) / neb.band_path
    try:
        band = read(path, index=":", format="extxyz")
    except (OSError, ValueError, StopIteration) as exc:
        raise ParseError(path, f"cannot read the band ({exc})") from exc
    if not isinstance(band, list) or len(band) != len(neb.image_energies):
        raise ParseError(path, f"expected {len(neb.image_energies)} images")
    energies = list(neb.image_energies)
    top = neb.climbing_index
    if top is None or top in (0, len(band) - 1):
        top = int(np.argmax(energies[1:-1])) + 1
    picks = [0, top, len(band) - 1]
    return (
        [band[i].copy() for i in picks],
        ["initial", "saddle", "final"],
        [float(energies[i]) for i in picks],
    )

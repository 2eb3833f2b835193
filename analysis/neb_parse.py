"""Parse a finished VASP (VTST) NEB folder into energies, forces and barriers.

Layout: numbered sub-folders ``00 .. NN``; ``00`` and ``NN`` are the fixed endpoints (VASP
never computes them, so they usually hold only a POSCAR), ``01 .. NN-1`` the moving images,
each with its own OUTCAR. Image energies and forces come from the image OUTCARs through
:func:`pqdflow.analysis.vasp.parse_calculation`.

Endpoint energies, in order of preference: outputs in the endpoint folders themselves, the
relaxations that produced the endpoints (``endpoint_dirs``), energies given directly
(``endpoint_energies``); otherwise the barrier is measured from image 01 and labelled
``reference="image_01"``; an endpoint energy is never invented.

Barriers come from :func:`pqdflow.analysis.barriers.neb_barrier` (highest image and a cubic
Hermite spline through energies and tangential forces). Tangential forces are VTST's
``NEB: projections on to tangent (spring, REAL)`` where printed, else the projection of the
forces on the central-difference, minimum-image tangent; relaxed endpoints get 0.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pqdflow.analysis._vaspaux import read_poscar
from pqdflow.analysis.barriers import BarrierDoc, neb_barrier, path_coordinates
from pqdflow.analysis.vasp import PARSER_VERSION, VaspCalcDoc, parse_calculation
from pqdflow.errors import InputError, ParseError
from pqdflow.provenance import provenance

__all__ = ["EnergyKey", "NebParseDoc", "parse_neb"]

EnergyKey = Literal["energy_sigma0", "energy_without_entropy", "free_energy"]
EndpointSource = Literal["endpoint_folders", "relaxations", "given", "missing"]


@dataclass
class NebParseDoc:
    """A parsed NEB band. Energies in eV, forces in eV/Å.

    Attributes
    ----------
    path
        The NEB folder.
    status
        ``ok`` (every image finished and converged), ``unconverged`` (all images have
        energies, some not converged) or ``incomplete`` (some image has no energy).
    image_dirs, image_status
        Moving-image folders (``01 ..``) and their parse status.
    energies, max_forces, tangential_forces
        Per moving image: the chosen energy (``energy_key``), largest force on a free atom,
        force along the path (towards the last image).
    endpoint_energies
        Initial and final state energies, ``None`` where unknown.
    endpoint_source
        Where they came from: ``endpoint_folders``, ``relaxations``, ``given`` or ``missing``.
    reference
        ``initial_state`` or ``image_01`` (endpoint energies missing; labelled in ``notes``).
    climbing_image
        Image number (1-based, as the folder name) of the climbing image, if LCLIMB.
    barrier
        :class:`~pqdflow.analysis.barriers.BarrierDoc` as a dict (forward/reverse, highest
        image and spline, ``climbing_is_highest``), ``None`` when energies are missing.
    corrupt_images
        Image folders whose output is corrupt (NUL blocks, two runs in one file, step
        records out of order): their energies are used but cannot be trusted (``notes``).
    """

    path: str
    status: Literal["ok", "unconverged", "incomplete"]
    energy_key: EnergyKey
    image_dirs: list[str]
    image_status: list[str]
    energies: list[float | None]
    max_forces: list[float | None]
    tangential_forces: list[float | None]
    endpoint_energies: list[float | None]
    endpoint_source: EndpointSource
    reference: Literal["initial_state", "image_01"]
    climbing_image: int | None = None
    corrupt_images: list[str] = field(default_factory=list)
    barrier: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    parser_version: str = PARSER_VERSION
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def barrier_doc(self) -> BarrierDoc | None:
        """The barrier as a :class:`BarrierDoc` (``None`` when it could not be computed)."""
        return BarrierDoc.from_dict(self.barrier) if self.barrier else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NebParseDoc:
        """Inverse of :meth:`as_dict`."""
        return cls(**data)


def _band_folders(path: Path) -> list[Path]:
    folders = sorted(
        (d for d in path.iterdir() if d.is_dir() and re.fullmatch(r"\d{2,3}", d.name)),
        key=lambda d: int(d.name),
    )
    if len(folders) < 3:
        raise ParseError(
            path, f"an NEB folder needs numbered image folders 00, 01, ..., found {len(folders)}"
        )
    numbers = [int(d.name) for d in folders]
    if numbers != list(range(len(folders))):
        raise ParseError(
            path, f"image folders must be numbered 00..{len(folders) - 1:02d}, got {numbers}"
        )
    return folders


def _positions(folder: Path, doc: VaspCalcDoc | None) -> tuple[np.ndarray, np.ndarray] | None:
    """(cell, Cartesian positions) of an image: its final structure, else its POSCAR."""
    if doc is not None and doc.structure:
        return np.array(doc.structure["cell"]), np.array(doc.structure["positions"])
    for name in ("CONTCAR", "POSCAR"):
        got = read_poscar(folder / name) if (folder / name).is_file() else None
        if got is not None:
            return got[1], got[2]
    return None


def _consistent(
    geoms: list[tuple[np.ndarray, np.ndarray] | None], notes: list[str]
) -> list[tuple[np.ndarray, np.ndarray] | None]:
    """Return the band's geometries, or all ``None`` when they do not describe one band.

    A band needs the same number of atoms in every image and invertible, finite cells; a
    corrupt or foreign image folder otherwise breaks the path coordinates.
    """
    known = [g for g in geoms if g is not None]
    shapes = {g[1].shape for g in known}
    cells_ok = all(
        g[0].shape == (3, 3) and np.all(np.isfinite(g[0])) and abs(np.linalg.det(g[0])) > 1e-6
        for g in known
    )
    if len(shapes) <= 1 and cells_ok and all(np.all(np.isfinite(g[1])) for g in known):
        return geoms
    notes.append("image geometries differ in atom count or are unreadable: no path coordinates")
    return [None] * len(geoms)


def _tangential_from_forces(
    forces: np.ndarray, prev: np.ndarray, nxt: np.ndarray, cell: np.ndarray
) -> float:
    """Force along the central-difference, minimum-image tangent (towards ``nxt``)."""
    d = nxt - prev
    frac = d @ np.linalg.inv(cell)
    tangent = (frac - np.round(frac)) @ cell
    norm = float(np.linalg.norm(tangent))
    return float(np.sum(forces * tangent) / norm) if norm > 0 else float("nan")


def _endpoint_energy(doc: VaspCalcDoc, key: EnergyKey) -> float | None:
    value = getattr(doc, key)
    return float(value) if value is not None and doc.status != "no_output" else None


def parse_neb(
    path: str | Path,
    *,
    endpoint_energies: tuple[float, float] | None = None,
    endpoint_dirs: tuple[str | Path, str | Path] | None = None,
    energy_key: EnergyKey = "energy_sigma0",
) -> NebParseDoc:
    """Parse an NEB folder (``00 .. NN``) into image energies, forces and barriers.

    Parameters
    ----------
    path
        The NEB run folder.
    endpoint_energies
        Energies (eV) of the relaxed initial and final states, used when the endpoint
        folders have no outputs.
    endpoint_dirs
        Folders of the relaxations that produced the endpoints (parsed for their energies),
        used when the endpoint folders have no outputs. Give this or ``endpoint_energies``.
    energy_key
        Which energy of each image to use: ``energy_sigma0`` (default),
        ``energy_without_entropy`` or ``free_energy``.

    Returns
    -------
    NebParseDoc

    Raises
    ------
    ParseError
        Not an NEB folder, or an image folder that cannot be parsed.
    InputError
        Both ``endpoint_energies`` and ``endpoint_dirs`` given, or an unknown ``energy_key``.
    """
    if energy_key not in ("energy_sigma0", "energy_without_entropy", "free_energy"):
        raise InputError(
            "energy_key must be energy_sigma0, energy_without_entropy or free_energy, "
            f"got {energy_key!r}"
        )
    if endpoint_energies is not None and endpoint_dirs is not None:
        raise InputError("give endpoint_energies or endpoint_dirs, not both")
    root = Path(path)
    if not root.is_dir():
        raise ParseError(root, "NEB path is not a folder")
    folders = _band_folders(root)
    docs = [parse_calculation(d) for d in folders]
    images, image_docs = folders[1:-1], docs[1:-1]
    notes: list[str] = []

    ends: list[float | None] = [
        _endpoint_energy(docs[0], energy_key),
        _endpoint_energy(docs[-1], energy_key),
    ]
    source: EndpointSource = "endpoint_folders"
    if None in ends:
        if endpoint_dirs is not None:
            relaxed = [parse_calculation(d) for d in endpoint_dirs if Path(d).exists()]
            if len(relaxed) < 2:
                notes.append(f"endpoint relaxation folders {list(map(str, endpoint_dirs))} missing")
            ends = [_endpoint_energy(d, energy_key) for d in relaxed] + [None] * (2 - len(relaxed))
            source = "relaxations"
            for d in relaxed:
                if d.status != "ok":
                    notes.append(f"endpoint relaxation {d.path} has status {d.status}")
            if None in ends:
                ends, source = [None, None], "missing"
                notes.append("an endpoint relaxation has no energy: the endpoint energy is missing")
        elif endpoint_energies is not None:
            ends, source = [float(e) for e in endpoint_energies], "given"
        else:
            ends, source = [None, None], "missing"
            notes.append(
                f"endpoint folders {folders[0].name} and {folders[-1].name} have no outputs and no "
                "relaxation energies were given: the endpoint energy is missing"
            )

    energies = [getattr(d, energy_key) for d in image_docs]
    max_forces = [d.max_force for d in image_docs]
    geoms = _consistent(
        [
            _positions(f, d if i not in (0, len(folders) - 1) else None)
            for i, (f, d) in enumerate(zip(folders, docs, strict=True))
        ],
        notes,
    )
    corrupt = []
    for folder, d in zip(images, image_docs, strict=True):
        if d.status == "corrupt":
            corrupt.append(folder.name)
            why = "; ".join(d.corruption)
            notes.append(f"image {folder.name} is corrupt ({why}): its energy is suspect")
    tangential: list[float | None] = []
    for k, d in enumerate(image_docs, start=1):
        t = d.neb.get("tangential_force") if d.neb else None
        prev, here, nxt = geoms[k - 1], geoms[k], geoms[k + 1]
        if t is None and d.forces is not None and prev and here and nxt:
            if np.shape(d.forces) != np.shape(here[1]):
                tangential.append(None)
                continue
            t = _tangential_from_forces(np.array(d.forces), prev[1], nxt[1], here[0])
            notes.append(
                f"image {folders[k].name}: tangential force from forces and the path tangent"
            )
        tangential.append(t)

    climbing = None
    if any(d.neb and d.neb.get("lclimb") for d in image_docs):
        peaks = [
            k
            for k, d in enumerate(image_docs, start=1)
            if d.neb
            and d.neb.get("previous_higher") is False
            and d.neb.get("next_higher") is False
            and energies[k - 1] is not None
        ]
        if peaks:
            climbing = max(peaks, key=lambda k: energies[k - 1])

    with_ends = None not in ends
    reference: Literal["initial_state", "image_01"] = "initial_state" if with_ends else "image_01"
    band_e = [ends[0], *energies, ends[1]] if with_ends else list(energies)
    band_t = [0.0, *tangential, 0.0] if with_ends else list(tangential)
    band_g = geoms if with_ends else geoms[1:-1]
    offset = 0 if with_ends else 1
    barrier = None
    if None in band_e:
        missing = [folders[k].name for k, e in enumerate(energies, start=1) if e is None]
        notes.append(f"no energy for images {missing}: no barrier")
    else:
        coords = None
        known_g = [g for g in band_g if g is not None]
        if len(known_g) == len(band_g):
            coords = path_coordinates([g[1] for g in known_g], known_g[0][0])
            if np.any(np.diff(coords) <= 0):
                coords = None
                notes.append(
                    "images do not advance along the path: unit reaction-coordinate steps used"
                )
        known_t = [t for t in band_t if t is not None and np.isfinite(t)]
        forces_ok = len(known_t) == len(band_t) and coords is not None
        barrier = neb_barrier(
            band_e,
            coords,
            known_t if forces_ok else None,
            reference=reference,
            climbing_index=None if climbing is None else climbing - offset,
        ).as_dict()
    statuses: list[str] = [d.status for d in image_docs]
    status: Literal["ok", "unconverged", "incomplete"] = "ok"
    if any(e is None for e in energies):
        status = "incomplete"
    elif any(s != "ok" for s in statuses):
        status = "unconverged"
    return NebParseDoc(
        path=str(root),
        status=status,
        energy_key=energy_key,
        image_dirs=[str(f) for f in images],
        image_status=statuses,
        energies=energies,
        max_forces=max_forces,
        tangential_forces=tangential,
        endpoint_energies=ends,
        endpoint_source=source,
        reference=reference,
        climbing_image=climbing,
        corrupt_images=corrupt,
        barrier=barrier,
        notes=notes,
        provenance=provenance(parser_version=PARSER_VERSION),
    )

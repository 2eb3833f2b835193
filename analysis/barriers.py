"""Activation energies from NEB image energies (and tangential forces where known).

A barrier is reported two ways, as ASE's ``NEBTools`` and VTST's ``nebbarrier.pl`` do:
from the highest image, and from a cubic Hermite spline through the image energies whose
slopes are minus the tangential forces (or a plain cubic spline when forces are unknown).
Both directions are given: forward = max - first, reverse = max - last.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.interpolate import CubicHermiteSpline, CubicSpline

from pqdflow.documents.results import NebDoc
from pqdflow.errors import InputError

__all__ = ["BarrierDoc", "band_spline", "neb_barrier", "path_coordinates", "summarize_neb"]

Reference = Literal["initial_state", "image_01"]


@dataclass(frozen=True)
class BarrierDoc:
    """Barrier of one NEB band (energies in eV, path coordinate in Å).

    Attributes
    ----------
    energies
        Image energies relative to the first energy given (eV).
    reaction_coordinate
        Cumulative path length at each image (Å).
    reference
        What the first energy is: ``"initial_state"`` (a relaxed endpoint) or
        ``"image_01"`` (the first moving image, when endpoint energies are missing).
    forward, reverse
        Highest image minus the first / the last energy (eV).
    forward_spline, reverse_spline
        The same from the spline maximum (eV).
    highest_index
        Index of the highest image.
    climbing_index
        Index of the climbing image, if one was used.
    climbing_is_highest
        False flags a climbing image that is not the highest image.
    """

    energies: list[float]
    reaction_coordinate: list[float]
    reference: Reference
    forward: float
    reverse: float
    forward_spline: float
    reverse_spline: float
    highest_index: int
    climbing_index: int | None = None
    climbing_is_highest: bool | None = None
    spline_method: str = "hermite"
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BarrierDoc:
        """Inverse of :meth:`as_dict`."""
        return cls(**data)


def path_coordinates(positions: Sequence[np.ndarray], cell: np.ndarray | None = None) -> np.ndarray:
    """Cumulative path length (Å) along a band, minimum-image where a cell is given."""
    coords = [0.0]
    inv = np.linalg.inv(cell) if cell is not None else None
    for a, b in itertools.pairwise(positions):
        d = np.asarray(b, float) - np.asarray(a, float)
        if cell is not None and inv is not None:
            frac = d @ inv
            frac -= np.round(frac)
            d = frac @ cell
        coords.append(coords[-1] + float(np.linalg.norm(d)))
    return np.array(coords)


def band_spline(
    reaction_coordinate: npt.ArrayLike,
    energies: npt.ArrayLike,
    tangential_forces: npt.ArrayLike | None = None,
) -> tuple[Any, str]:
    """Return the smooth curve through a band's images: (callable E(s) or None, method).

    A cubic Hermite spline whose slopes are minus the tangential forces (``"hermite"``, as
    ASE's NEBTools fits a band), a natural cubic spline when any force is unknown or none is
    given (``"cubic"``), or None for a two-point band.

    Raises
    ------
    InputError
        Forces of another length than the energies.
    """
    s = np.asarray(reaction_coordinate, dtype=float)
    e = np.asarray(energies, dtype=float)
    if tangential_forces is not None:
        f = np.array(
            [np.nan if v is None else v for v in np.asarray(tangential_forces, dtype=object)],
            dtype=float,
        )
        if f.shape != e.shape:
            raise InputError(f"{len(f)} tangential forces for {len(e)} energies")
        if np.all(np.isfinite(f)):
            return CubicHermiteSpline(s, e, -f), "hermite"
    if len(e) > 2:
        return CubicSpline(s, e, bc_type="natural"), "cubic"
    return None, "cubic"


def neb_barrier(
    energies: npt.ArrayLike,
    reaction_coordinate: npt.ArrayLike | None = None,
    tangential_forces: npt.ArrayLike | None = None,
    *,
    reference: Reference = "initial_state",
    climbing_index: int | None = None,
) -> BarrierDoc:
    """Forward/reverse barriers from image energies.

    Parameters
    ----------
    energies
        Total energies of the images in path order (eV), endpoints included where known.
    reaction_coordinate
        Path length at each image (Å); evenly spaced unit steps if omitted.
    tangential_forces
        Force along the path at each image (eV/Å), positive pointing towards the last image.
        Used as spline slopes (dE/ds = -F_t); a plain cubic spline if omitted or if any
        entry is None/NaN.
    reference
        Label of the first energy (see :class:`BarrierDoc`).
    climbing_index
        Index of the climbing image, to flag whether it is the highest.

    Raises
    ------
    InputError
        Fewer than 2 energies, non-finite values, or mismatched lengths.
    """
    e = np.asarray(energies, dtype=float)
    if e.ndim != 1 or len(e) < 2:
        raise InputError(f"need at least 2 image energies for a barrier, got {len(e)}")
    if not np.all(np.isfinite(e)):
        raise InputError(f"image energies must be finite, got {e.tolist()}")
    s = (
        np.arange(len(e), dtype=float)
        if reaction_coordinate is None
        else np.asarray(reaction_coordinate, dtype=float)
    )
    if s.shape != e.shape:
        raise InputError(f"{len(s)} reaction coordinates for {len(e)} energies")
    if np.any(np.diff(s) <= 0):
        raise InputError("reaction coordinate must increase strictly along the band")
    rel = e - e[0]
    spline, method = band_spline(s, rel, tangential_forces)
    highest = int(np.argmax(rel))
    e_max = float(rel[highest])
    if spline is not None:
        grid = np.linspace(s[0], s[-1], 2001)
        e_spline = max(float(np.max(spline(grid))), e_max)
    else:
        e_spline = e_max
    notes: list[str] = []
    climbing_is_highest = None
    if climbing_index is not None:
        climbing_is_highest = climbing_index == highest
        if not climbing_is_highest:
            notes.append(f"climbing image {climbing_index} is not the highest image ({highest})")
    if reference == "image_01":
        notes.append(
            "endpoint energies missing: barrier measured from image 01, not the initial state"
        )
    return BarrierDoc(
        energies=rel.tolist(),
        reaction_coordinate=s.tolist(),
        reference=reference,
        forward=e_max,
        reverse=e_max - float(rel[-1]),
        forward_spline=e_spline,
        reverse_spline=e_spline - float(rel[-1]),
        highest_index=highest,
        climbing_index=climbing_index,
        climbing_is_highest=climbing_is_highest,
        spline_method=method,
        notes=notes,
    )


def summarize_neb(doc: NebDoc) -> dict[str, Any]:
    """Barrier summary of a band, recomputed from its energies independently of the backend.

    Returns the path name and label, forward/reverse barriers from the highest image and
    from the spline (eV), the highest and climbing image indices, convergence, and the
    difference between this barrier and the one the NEB run reported (eV; ~0 unless the
    run's own analysis disagrees). A hop with no band (its endpoints relaxed into one state,
    ``n_images`` 0) gives the document's endpoint differences and its reason.
    """
    if doc.n_images == 0:
        return {
            "name": doc.path,
            "label": doc.label,
            "backend": doc.backend,
            "Ea_eV": float(doc.Ea_eV),
            "Ea_reverse_eV": float(doc.Ea_reverse_eV),
            "Ea_spline_eV": float(doc.Ea_spline_eV),
            "Ea_reverse_spline_eV": float(doc.Ea_reverse_spline_eV),
            "highest_index": None,
            "climbing_index": None,
            "climbing_is_highest": False,
            "converged": False,
            "reported_minus_recomputed_eV": 0.0,
            "notes": [doc.stop_reason or "no band was run"],
        }
    barrier = neb_barrier(
        doc.image_energies,
        doc.reaction_coordinate or None,
        doc.tangential_forces or None,
        climbing_index=doc.climbing_index,
    )
    return {
        "name": doc.path,
        "label": doc.label,
        "backend": doc.backend,
        "Ea_eV": barrier.forward,
        "Ea_reverse_eV": barrier.reverse,
        "Ea_spline_eV": barrier.forward_spline,
        "Ea_reverse_spline_eV": barrier.reverse_spline,
        "highest_index": barrier.highest_index,
        "climbing_index": doc.climbing_index,
        "climbing_is_highest": barrier.climbing_is_highest,
        "converged": bool(doc.converged),
        "reported_minus_recomputed_eV": float(doc.Ea_eV) - barrier.forward,
        "notes": list(barrier.notes),
    }

"""The surrogate NEB's cheap band, anchored to the oracle's endpoint basins.

A cheap universal potential (CHGNet) and the oracle (DFT, or SevenNet standing in for it)
prefer different octahedral tilts. Relaxed on the cheap potential alone, the band's host
slides towards the cheap potential's tilt basin: on the I-into-V_Br hop in CsPbBr2I the
cheap band's host sat 0.34 Å (rms) from the oracle's initial endpoint, and the oracle's
climbing-image refinement started there converged onto a saddle of another host basin,
60 meV below the tight reference (issue 15).

:class:`AnchoredCalculator` removes that pull at no oracle cost. Each interior image ``j``
(fraction ``s = j / (n + 1)`` along the band) gets a first-order correction

    E_j(x) = E_cheap(x) + ΔE_j - ΔF_j · (x - x_j⁰),    F_j(x) = F_cheap(x) + ΔF_j,

with ``ΔE_j, ΔF_j`` interpolated linearly between the endpoints' oracle-minus-cheap
energies and forces, and ``x_j⁰`` the image's start geometry. Optionally, atoms that move
further than ``mobile_cutoff`` between the endpoints (the hopping halide) get no force
correction; measured on the mixed hop that made the seed worse (the climbing image again
slid 63 meV below the reference), so by default every atom is corrected. The oracle's
forces at its own relaxed endpoints are zero, so the corrected potential keeps the
endpoints stationary and the images near them in the oracle's basins; its energies sit on
the oracle's scale at the endpoints. A band that does not converge on it (on the V_I hop
the one-image saddle-first stage ran up the linear correction to 6 eV) is converged again
on the bare cheap potential (:func:`seed_band`). The correction changes only the cheap
seed band: the reported barrier is always the oracle's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.geometry import find_mic

from pqdflow.errors import InputError
from pqdflow.workflows.engine.neb import BandOutcome, optimize_band
from pqdflow.workflows.engine.neb_band import NebSettings

__all__ = ["AnchoredCalculator", "SeedBand", "anchored_calculators", "seed_band"]


class AnchoredCalculator(Calculator):
    """A cheap calculator plus a constant first-order correction (eV, eV/Å).

    ``E(x) = E_cheap(x) + delta_e - delta_f · (x - anchor)``, ``F(x) = F_cheap(x) + delta_f``.

    Parameters
    ----------
    cheap
        The cheap calculator (its own instance: it is called for every evaluation).
    anchor
        Positions where the correction is ``delta_e`` (Å), shape ``(n_atoms, 3)``.
    delta_e
        Energy correction at ``anchor`` (eV).
    delta_f
        Force correction (eV/Å), shape ``(n_atoms, 3)``.
    """

    implemented_properties = ["energy", "forces"]  # noqa: RUF012  # ASE's convention
    nolabel = True

    def __init__(
        self, cheap: Calculator, anchor: np.ndarray, delta_e: float, delta_f: np.ndarray
    ) -> None:
        super().__init__()
        self.cheap = cheap
        self.anchor = np.array(anchor, dtype=float)
        self.delta_e = float(delta_e)
        self.delta_f = np.array(delta_f, dtype=float)
        if self.anchor.shape != self.delta_f.shape or self.anchor.ndim != 2:
            raise InputError(
                f"anchored calculator: anchor {self.anchor.shape} and force correction "
                f"{self.delta_f.shape} must both have shape (n_atoms, 3)"
            )
        self.n_calls = 0

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Cheap energy and forces plus the correction."""
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        if len(self.atoms) != len(self.anchor):
            raise InputError(
                f"anchored calculator built for {len(self.anchor)} atoms got {len(self.atoms)}"
            )
        work = self.atoms.copy()
        work.calc = self.cheap
        energy = float(work.get_potential_energy())
        forces = np.array(work.get_forces(apply_constraint=False), dtype=float)
        self.n_calls += 1
        energy += self.delta_e - float(np.vdot(self.delta_f, work.positions - self.anchor))
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": forces + self.delta_f,
        }


def anchored_calculators(
    images: Sequence[Atoms],
    cheap: Sequence[Calculator],
    endpoint_deltas: tuple[tuple[float, np.ndarray], tuple[float, np.ndarray]],
    *,
    mobile_cutoff: float | None = None,
) -> list[AnchoredCalculator]:
    """One :class:`AnchoredCalculator` per interior image, corrections interpolated.

    Parameters
    ----------
    images
        The start band, endpoints included (anchors are the interior images' positions).
    cheap
        One cheap calculator per interior image.
    endpoint_deltas
        ``((ΔE_i, ΔF_i), (ΔE_f, ΔF_f))``: oracle minus cheap energy (eV) and forces (eV/Å)
        at the initial and final endpoints.
    mobile_cutoff
        Atoms displaced more than this between the endpoints (Å, minimum image) get no
        force correction (None: every atom is corrected).

    Raises
    ------
    InputError
        A number of calculators that differs from the interior images.
    """
    n = len(images) - 2
    if len(cheap) != n:
        raise InputError(f"anchored band: {len(cheap)} calculators for {n} interior images")
    (de_i, df_i), (de_f, df_f) = endpoint_deltas
    first, last = images[0], images[-1]
    moved, _ = find_mic(last.positions - first.positions, first.cell, first.pbc)
    cutoff = math.inf if mobile_cutoff is None else mobile_cutoff
    keep = (np.linalg.norm(moved, axis=1) <= cutoff)[:, None]
    df_i = np.where(keep, np.asarray(df_i, dtype=float), 0.0)
    df_f = np.where(keep, np.asarray(df_f, dtype=float), 0.0)
    out = []
    for j, (image, calc) in enumerate(zip(images[1:-1], cheap, strict=True), start=1):
        s = j / (n + 1)
        out.append(
            AnchoredCalculator(
                calc,
                image.positions,
                (1 - s) * de_i + s * de_f,
                (1 - s) * df_i + s * df_f,
            )
        )
    return out


@dataclass
class SeedBand:
    """The cheap seed band's outcome and which potential converged it.

    Attributes
    ----------
    outcome
        The cheap band (:class:`~pqdflow.workflows.engine.neb.BandOutcome`; its energies are
        the corrected ones when ``seed`` is ``"anchored"``).
    seed
        ``"anchored"``, ``"cheap"`` or ``"cheap (anchored band did not converge)"``.
    n_force_calls
        Cheap calls of every attempt, endpoints included.
    """

    outcome: BandOutcome
    seed: str
    n_force_calls: int


def seed_band(
    images: list[Atoms],
    cheap_factory: Callable[[], Calculator],
    settings: NebSettings,
    *,
    anchor: bool,
    e_initial: float,
    e_final: float,
    endpoint_forces: tuple[np.ndarray, np.ndarray] | None = None,
) -> SeedBand:
    """Converge the surrogate's cheap band in place, anchored to the oracle's endpoints.

    With ``anchor``, the band is converged on :func:`anchored_calculators`; a band that
    does not converge there (a first-order correction extrapolated too far) is started
    again from the same images on the bare cheap potential.

    Parameters
    ----------
    images
        The start band, endpoints included; modified in place.
    cheap_factory
        Returns a new cheap calculator per call.
    settings
        Recipe of the cheap band.
    anchor
        Anchor the band (else the bare cheap potential).
    e_initial, e_final
        The oracle's endpoint energies (eV).
    endpoint_forces
        The oracle's endpoint forces (eV/Å); None: zero, as at relaxed endpoints.
    """
    n = len(images) - 2
    cheap = cheap_factory()
    e_ci, f_ci = _cheap_point(cheap, images[0])
    e_cf, f_cf = _cheap_point(cheap, images[-1])
    calls = 2
    start = [image.positions.copy() for image in images]
    seed = "cheap"
    if anchor:
        f_i, f_f = endpoint_forces or (np.zeros_like(f_ci), np.zeros_like(f_cf))
        deltas = ((e_initial - e_ci, f_i - f_ci), (e_final - e_cf, f_f - f_cf))
        anchored = anchored_calculators(images, [cheap_factory() for _ in range(n)], deltas)
        out = optimize_band(
            images, list[Calculator](anchored), settings, e_initial=e_initial, e_final=e_final
        )
        calls += out.n_force_calls
        if out.converged:
            return SeedBand(out, "anchored", calls)
        for image, positions in zip(images, start, strict=True):
            image.positions = positions
        seed = "cheap (anchored band did not converge)"
    out = optimize_band(
        images, [cheap_factory() for _ in range(n)], settings, e_initial=e_ci, e_final=e_cf
    )
    return SeedBand(out, seed, calls + out.n_force_calls)


def _cheap_point(cheap: Calculator, atoms: Atoms) -> tuple[float, np.ndarray]:
    work = atoms.copy()
    work.calc = cheap
    return float(work.get_potential_energy()), np.array(work.get_forces(apply_constraint=False))

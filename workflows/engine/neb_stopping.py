"""The NEB stopping rule: a band is done when its barrier is known, not when forces are small.

:func:`refine_climbing_image` runs after the band optimiser has met the per-image force
criteria. It asks :func:`~pqdflow.workflows.engine.saddle_check.estimate_saddle_error` how far
the climbing image's energy is from the saddle's (a few force calls: Hessian-vector
products along the tangent, the residual force and its Krylov directions). Within the
tolerance, the band is done. Otherwise the climbing image takes the model's Newton step
onto the saddle (a soft tilt mode that would take an optimiser dozens of steps takes one),
the band optimiser re-converges the band, and the check repeats. Where the region is not
near a first-order saddle, the climbing image's criterion is halved instead.

Every probe is one force call of the band's calculator, counted; a force-call budget that
runs out stops the refinement, and the last estimate is reported with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase.calculators.calculator import Calculator
from ase.mep.neb import BaseNEB, NEBState

from pqdflow.workflows.engine.neb_band import TieredNEB
from pqdflow.workflows.engine.saddle_check import (
    SaddleEstimate,
    estimate_saddle_error,
    finite_difference_hvp,
)

__all__ = ["BarrierCheck", "climbing_tangent", "refine_climbing_image"]

#: Climbing-image criterion (eV/Å) below which halving stops.
_CLIMB_FMAX_FLOOR = 0.002


@dataclass
class BarrierCheck:
    """Outcome of the stopping rule on one band.

    Attributes
    ----------
    estimate
        The last :class:`~pqdflow.workflows.engine.saddle_check.SaddleEstimate` (None when no
        budget was left for one).
    within_tolerance
        Whether the climbing image's energy is known to be within ``tolerance`` (eV).
    tolerance
        The barrier tolerance (eV).
    rounds
        Checks made.
    newton_steps
        Newton steps taken by the climbing image onto the model saddle.
    reason
        Empty when within tolerance, else what the last estimate says (error above the
        tolerance, no first-order saddle) or that no estimate was possible.
    budget_spent
        The force-call budget ended the refinement.
    history
        One :meth:`SaddleEstimate.as_dict` per check, with the climbing index.
    """

    estimate: SaddleEstimate | None
    within_tolerance: bool
    tolerance: float
    rounds: int = 0
    newton_steps: int = 0
    reason: str = ""
    budget_spent: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error(self) -> float | None:
        """Estimated barrier error (eV); None when unknown."""
        if self.estimate is None or not math.isfinite(self.estimate.error):
            return None
        return float(self.estimate.error)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "tolerance_eV": self.tolerance,
            "error_eV": self.error,
            "within_tolerance": self.within_tolerance,
            "rounds": self.rounds,
            "newton_steps": self.newton_steps,
            "reason": self.reason,
            "budget_spent": self.budget_spent,
            "history": list(self.history),
        }


def climbing_tangent(neb: BaseNEB, index: int | None = None) -> np.ndarray:
    """Improved tangent (unit, shape ``(n_atoms, 3)``) at an interior image (default: imax).

    The band's energies must be current (call ``neb.get_forces()`` first).
    """
    assert neb.energies is not None
    i = int(neb.imax if index is None else index)
    state = NEBState(neb, neb.images, neb.energies)
    tangent = np.asarray(neb.neb_method.get_tangent(state, state.spring(i - 1), state.spring(i), i))
    norm = float(np.linalg.norm(tangent))
    return tangent / norm if norm > 0 else tangent


def _capped(step: np.ndarray, maxstep: float) -> np.ndarray:
    longest = float(np.sqrt((step**2).sum(axis=1)).max()) if step.size else 0.0
    return step * (maxstep / longest) if longest > maxstep else step


def refine_climbing_image(
    neb: TieredNEB,
    probe: Calculator,
    reoptimize: Callable[[], None],
    *,
    tolerance: float = 0.01,
    max_probes: int = 6,
    rounds: int = 6,
    probe_step: float = 0.01,
    maxstep: float = 0.2,
    budget_left: Callable[[], float] | None = None,
) -> BarrierCheck:
    """Apply the stopping rule to a converged band; move its climbing image until it holds.

    Parameters
    ----------
    neb
        A band with a climbing image whose images carry calculators
        (:class:`~pqdflow.workflows.engine.neb.TieredNEB`: ``climb_fmax`` is halved where the
        region is not near a first-order saddle).
    probe
        Calculator of the Hessian-vector probes (a counting wrapper around the climbing
        image's own inner calculator keeps the image's cached result).
    reoptimize
        Re-converges the band after the climbing image moved (the band optimiser).
    tolerance
        Barrier tolerance (eV).
    max_probes
        Most probes (force calls) per check.
    rounds
        Most checks; between two, one Newton step (or a halved climbing criterion).
    probe_step
        Finite-difference displacement (Å).
    maxstep
        Longest atomic displacement of a Newton step (Å).
    budget_left
        Force calls still allowed (None: unlimited). A check needs ``max_probes`` of them;
        the climbing image moves only while a move and the next check still fit, so the
        last estimate always belongs to the band that is reported. ``reoptimize`` must
        keep ``max_probes`` calls in reserve.
    """
    check = BarrierCheck(estimate=None, within_tolerance=False, tolerance=tolerance)
    n_interior = len(neb.images) - 2
    for k in range(rounds):
        if budget_left is not None and budget_left() < max_probes:
            check.budget_spent = True
            check.reason = "no barrier check: the force-call budget was spent"
            return check
        neb.get_forces()
        index = int(neb.imax)
        image = neb.images[index]
        forces = image.get_forces()
        hvp = finite_difference_hvp(image, probe, forces, step=probe_step)
        estimate = estimate_saddle_error(
            forces, climbing_tangent(neb, index), hvp, max_probes=max_probes
        )
        check.estimate = estimate
        check.rounds = k + 1
        check.history.append({"climbing_index": index, **estimate.as_dict()})
        if estimate.within(tolerance):
            check.within_tolerance = True
            return check
        if k == rounds - 1:
            break
        if budget_left is not None and budget_left() < 2 * max_probes + n_interior:
            # moving now would leave no budget to check the new point: report this one
            check.budget_spent = True
            check.reason = _reason(estimate, tolerance, check.rounds)
            return check
        if estimate.status == "ok":
            image.positions = image.positions + _capped(estimate.step, maxstep)
            check.newton_steps += 1
        else:
            neb.climb_fmax = max(0.5 * float(neb.climb_fmax), _CLIMB_FMAX_FLOOR)
        reoptimize()
    assert check.estimate is not None
    check.reason = _reason(check.estimate, tolerance, check.rounds)
    return check


def _reason(estimate: SaddleEstimate, tolerance: float, rounds: int) -> str:
    if estimate.status != "ok":
        return f"barrier check ({rounds} rounds): {estimate.status}"
    return (
        f"barrier check ({rounds} rounds): estimated error {estimate.error * 1000:.1f} meV, "
        f"above the {tolerance * 1000:.1f} meV tolerance"
    )

"""A safeguarded limited-memory quasi-Newton optimiser for NEB bands.

:class:`BandLBFGS` moves all interior images of a band together with the L-BFGS two-loop
recursion (Nocedal & Wright, *Numerical Optimization*, 2nd ed., Algorithm 7.4), with the
safeguards a band needs because NEB forces are not the gradient of any energy:

* a curvature pair ``(s, y)`` is stored only when ``s . y > 0``;
* a step that does not point along the force (``d . F <= 0``) is replaced by a steepest
  descent step and the memory is cleared;
* the memory is cleared when the climbing image changes; when the largest image force
  grows by more than half after a step, the memory is cleared, the trust radius halved
  and the initial Hessian guess doubled (stiff modes, e.g. C-H and C-N bonds of ligands,
  next to soft Pb-X tilts); the trust radius grows back by 20 % per step that lowers the
  largest force, up to ``maxstep``;
* it gives up when it stops making progress (``patience``), restoring the best band seen,
  so the caller can finish with FIRE;
* every step is capped so no atom moves more than the trust radius.

It converges a band whose images each have their own criterion (``image_thresholds``),
so the climbing image can be converged harder than the rest, and it keeps images that
the band reports as frozen (zero force) out of the curvature pairs.

Measured on the V_Br hop of ``benchmarks/neb_efficiency.py`` (2x2x2 CsPbBr3, 5 images,
climbing image): 36-44 image force calls on the mock and 35-54 on CHGNet when started
from a converged one-image band, against 175-190 for ASE's FIRE on a linear band.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Protocol

import numpy as np

from pqdflow.errors import InputError

__all__ = ["BandLBFGS"]


class _Band(Protocol):
    """What :class:`BandLBFGS` needs from a band (``TieredNEB`` provides it)."""

    nimages: int
    climb: bool
    imax: int

    def get_positions(self) -> np.ndarray: ...

    def set_positions(self, positions: np.ndarray, adjust_positions: bool = True) -> None: ...

    def get_forces(self) -> np.ndarray: ...

    def image_fmax(self) -> np.ndarray: ...

    def image_thresholds(self) -> np.ndarray: ...


class BandLBFGS:
    """Safeguarded L-BFGS over the interior images of a band.

    Parameters
    ----------
    band
        The band (:class:`~pqdflow.workflows.engine.neb.TieredNEB`): its ``get_forces`` returns
        NEB forces (zero on frozen images) and ``image_thresholds`` each image's criterion.
    alpha
        Initial Hessian guess (eV/Å²): the first step is ``F / alpha``. Soft lattices
        (octahedral tilts of CsPbX3) want a small value; 3 was measured best there.
    maxstep
        Largest displacement of any atom in one step (Å).
    memory
        Number of curvature pairs kept.
    patience
        Steps without a new lowest largest image force after which :meth:`run` gives up
        (``stalled``), leaving the best band seen in place; also when the largest force
        exceeds five times that best.

    Attributes
    ----------
    nsteps
        Steps taken by the last :meth:`run`.
    stalled
        Whether the last :meth:`run` gave up for lack of progress (the caller should
        finish with a more robust optimiser, e.g. FIRE).
    """

    def __init__(
        self,
        band: _Band,
        *,
        alpha: float = 3.0,
        maxstep: float = 0.15,
        memory: int = 20,
        patience: int = 30,
    ) -> None:
        for name, value in (("alpha", alpha), ("maxstep", maxstep)):
            if not (np.isfinite(value) and value > 0):
                raise InputError(f"BandLBFGS {name} must be a positive number, got {value!r}")
        for name, count in (("memory", memory), ("patience", patience)):
            if count < 1:
                raise InputError(f"BandLBFGS {name} must be >= 1, got {count}")
        self.band = band
        self.alpha = float(alpha)
        self.maxstep = float(maxstep)
        self.memory = int(memory)
        self.patience = int(patience)
        self.nsteps = 0
        self.stalled = False

    def converged(self) -> bool:
        """Whether every interior image is below its own criterion."""
        return bool(np.all(self.band.image_fmax() < self.band.image_thresholds()))

    def _direction(
        self, force: np.ndarray, pairs: deque[tuple[np.ndarray, np.ndarray]], alpha: float
    ) -> np.ndarray:
        """Quasi-Newton step ``H F`` by the two-loop recursion (``H0 = 1/alpha``)."""
        q = force.copy()
        history = []
        for s, y in reversed(pairs):
            rho = 1.0 / float(np.dot(y, s))
            a = rho * float(np.dot(s, q))
            history.append((a, rho, s, y))
            q -= a * y
        d = q / alpha
        for a, rho, s, y in reversed(history):
            d += s * (a - rho * float(np.dot(y, d)))
        return d

    def run(
        self,
        fmax: float | None = None,
        steps: int = 1000,
        stop: Callable[[], bool] | None = None,
    ) -> bool:
        """Optimise until every image is below its criterion or ``steps`` are taken.

        Parameters
        ----------
        fmax
            Ignored (each image's criterion comes from the band); accepted so the class
            can stand in for an ASE optimiser.
        steps
            Step limit.
        stop
            Asked before every step; True ends the run where it is (a force-call budget).

        Returns
        -------
        bool
            Whether the band converged.
        """
        band = self.band
        n_interior = band.nimages - 2
        x = np.asarray(band.get_positions()).reshape(-1).copy()
        force = np.asarray(band.get_forces()).reshape(-1).copy()
        pairs: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=self.memory)
        climbing = band.imax if band.climb else None
        largest = float(band.image_fmax().max())
        best, best_x, since_best = largest, x.copy(), 0
        trust = self.maxstep
        alpha = self.alpha
        self.nsteps = 0
        self.stalled = False
        while self.nsteps < steps:
            if self.converged():
                return True
            if stop is not None and stop():
                return False
            if since_best >= self.patience or largest > 5.0 * best:
                # no progress: leave the best band seen in place for the caller
                self.stalled = True
                band.set_positions(best_x.reshape(-1, 3))
                return False
            d = self._direction(force, pairs, alpha)
            if float(np.dot(d, force)) <= 0.0:
                pairs.clear()
                d = force / alpha
            longest = float(np.sqrt((d.reshape(-1, 3) ** 2).sum(axis=1)).max())
            if longest > trust:
                d *= trust / longest
            band.set_positions((x + d).reshape(-1, 3))
            self.nsteps += 1
            x_new = np.asarray(band.get_positions()).reshape(-1).copy()
            force_new = np.asarray(band.get_forces()).reshape(-1).copy()
            largest_new = float(band.image_fmax().max())
            climbing_new = band.imax if band.climb else None
            s = x_new - x
            y = force - force_new
            frozen = (force_new.reshape(n_interior, -1) == 0).all(axis=1) | (
                force.reshape(n_interior, -1) == 0
            ).all(axis=1)
            s.reshape(n_interior, -1)[frozen] = 0.0
            y.reshape(n_interior, -1)[frozen] = 0.0
            if largest_new > 1.5 * largest:
                # overshoot: forget the model, shorten the steps, assume stiffer modes
                pairs.clear()
                trust = max(0.5 * trust, 0.01)
                alpha = min(2.0 * alpha, 100.0)
            else:
                if largest_new < largest:
                    trust = min(1.2 * trust, self.maxstep)
                if climbing_new != climbing:
                    pairs.clear()
                elif float(np.dot(s, y)) > 0.0:
                    pairs.append((s, y))
            climbing, largest = climbing_new, largest_new
            x, force = x_new, force_new
            if largest < best:
                best, best_x, since_best = largest, x.copy(), 0
            else:
                since_best += 1
        return self.converged()

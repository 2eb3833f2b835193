"""A Gaussian process on the residual between an expensive oracle and a cheap potential.

The surrogate NEB (:mod:`pqdflow.workflows.engine.surrogate_neb`) models the oracle's energy as
the cheap potential's plus a learned correction, ``E_o(x) = E_c(x) + r(x)``. The
correction ``r`` is a Gaussian process over the free atoms' Cartesian coordinates with a
squared-exponential kernel, trained on energies *and* forces: each oracle point gives one
energy residual and ``3 n_free`` gradient residuals (``∇r = F_c - F_o``), the
derivative-observation GP of GP-NEB (Koistinen et al., J. Chem. Phys. 147, 152720, 2017).

Hyperparameters: the prior mean is the first-order Taylor expansion of the residual at an
anchor observation (the surrogate NEB anchors at its latest saddle point: near it the
surrogate is the cheap potential plus the oracle's own energy and force residual, a
Newton model with the cheap potential's curvature), or the mean energy residual. The
signal variance is profiled out of the marginal likelihood and the length scale is its
maximiser on a fixed grid. The observation noise is a small jitter
relative to the signal variance (deterministic oracles; the GP interpolates the oracle's
energies and forces at its own points).

:class:`SurrogateCalculator` is the surrogate as an ASE calculator.

Units: positions Å, energies eV, forces eV/Å.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from scipy.linalg import cho_factor, cho_solve, solve_triangular

from pqdflow.errors import InputError

__all__ = ["ResidualGP", "SurrogateCalculator"]

#: Length scales (Å) tried when fitting.
DEFAULT_LENGTH_SCALES = (0.4, 0.6, 0.9, 1.3, 2.0, 3.0, 4.5)


@dataclass(frozen=True)
class _Fit:
    length: float
    variance: float
    mean: float
    anchor_x: np.ndarray | None
    anchor_g: np.ndarray | None
    factor: tuple[np.ndarray, bool]
    alpha: np.ndarray
    log_likelihood: float


class ResidualGP:
    """GP regression of ``r = E_oracle - E_cheap`` from energies and forces.

    Parameters
    ----------
    mask
        Boolean mask over ``3 n_atoms`` coordinates: the free ones (fixed atoms never move
        along a band, so they carry no information).
    length_scales
        Candidate length scales (Å); the marginal-likelihood maximiser is used.
    energy_jitter, gradient_jitter
        Observation noise relative to the signal variance (energy), and to the signal
        variance over the squared length scale (gradients).
    """

    def __init__(
        self,
        mask: np.ndarray,
        *,
        length_scales: Sequence[float] = DEFAULT_LENGTH_SCALES,
        energy_jitter: float = 1e-8,
        gradient_jitter: float = 1e-6,
    ) -> None:
        self.mask = np.asarray(mask, dtype=bool).reshape(-1)
        if not self.mask.any():
            raise InputError("the residual GP needs at least one free coordinate")
        if not length_scales or any(not (math.isfinite(v) and v > 0) for v in length_scales):
            raise InputError(f"length scales must be positive numbers, got {length_scales!r}")
        self.length_scales = tuple(float(v) for v in length_scales)
        self.energy_jitter = float(energy_jitter)
        self.gradient_jitter = float(gradient_jitter)
        self._x: list[np.ndarray] = []
        self._e: list[float] = []
        self._g: list[np.ndarray] = []
        self._fit: _Fit | None = None

    def __len__(self) -> int:
        return len(self._x)

    def _features(self, positions: np.ndarray) -> np.ndarray:
        flat = np.asarray(positions, dtype=float).reshape(-1)
        if flat.size != self.mask.size:
            raise InputError(
                f"positions of {flat.size // 3} atoms given to a GP of {self.mask.size // 3}"
            )
        return flat[self.mask]

    def add(self, positions: np.ndarray, residual: float, gradient: np.ndarray) -> int:
        """Add one observation; return its index (a repeated point is not stored twice).

        Parameters
        ----------
        positions
            Geometry, shape ``(n_atoms, 3)`` (Å), unwrapped like the band's images.
        residual
            ``E_oracle - E_cheap`` (eV).
        gradient
            ``∇(E_oracle - E_cheap) = F_cheap - F_oracle``, shape ``(n_atoms, 3)`` (eV/Å).
        """
        x = self._features(positions)
        g = np.asarray(gradient, dtype=float).reshape(-1)[self.mask]
        if not (math.isfinite(residual) and np.all(np.isfinite(g))):
            raise InputError("a GP observation must have a finite energy and finite forces")
        for index, other in enumerate(self._x):
            if float(np.abs(x - other).max()) < 1e-5:
                return index
        self._x.append(x)
        self._e.append(float(residual))
        self._g.append(g)
        self._fit = None
        return len(self._x) - 1

    def _kernel(self, length: float) -> np.ndarray:
        """Prior covariance (unit variance) of all energies and gradients, jitter added."""
        x = np.array(self._x)
        n, d = x.shape
        diff = x[:, None, :] - x[None, :, :]  # x_i - x_j
        k = np.exp(-0.5 * (diff**2).sum(axis=2) / length**2)
        inv2 = 1.0 / length**2
        k_eg = (k[:, :, None] * diff * inv2).reshape(n, n * d)  # cov(f_i, d_b f_j)
        # cov(d_a f_i, d_b f_j) = k_ij (delta_ab / l^2 - (x_i - x_j)_a (x_i - x_j)_b / l^4)
        d_a = diff.transpose(0, 2, 1)[:, :, :, None]  # [i, a, j, -]
        d_b = diff[:, None, :, :]  # [i, -, j, b]
        k_gg = k[:, None, :, None] * (np.eye(d)[None, :, None, :] * inv2 - d_a * d_b * inv2**2)
        k_gg = k_gg.reshape(n * d, n * d)
        full = np.block([[k, k_eg], [k_eg.T, k_gg]])
        jitter = np.concatenate(
            [np.full(n, self.energy_jitter), np.full(n * d, self.gradient_jitter * inv2)]
        )
        full[np.diag_indices_from(full)] += jitter
        return full

    def fit(self, anchor: int | None = None) -> float:
        """Choose the hyperparameters; return the length scale (Å).

        Parameters
        ----------
        anchor
            Index of the observation whose first-order Taylor expansion
            ``r_a + ∇r_a · (x - x_a)`` is the prior mean; None: the mean energy residual.
            Away from the data a constant mean falls back to the cheap potential, whose
            saddle is elsewhere, and a band relaxed on the surrogate follows it; the
            anchored mean keeps the oracle's force residual (use it inside a trust region:
            a linear trend has no bound).

        Raises
        ------
        InputError
            Without observations, or with an anchor that is not one.
        """
        if not self._x:
            raise InputError("the residual GP has no observations to fit")
        x, e, g = np.array(self._x), np.array(self._e), np.array(self._g)
        anchor_x = anchor_g = None
        if anchor is None:
            mean = float(np.mean(e))
            y = np.concatenate([e - mean, g.reshape(-1)])
        else:
            if not 0 <= anchor < len(self._x):
                raise InputError(f"anchor={anchor} is not one of {len(self._x)} observations")
            mean, anchor_x, anchor_g = float(e[anchor]), x[anchor], g[anchor]
            trend = mean + (x - anchor_x) @ anchor_g
            y = np.concatenate([e - trend, (g - anchor_g).reshape(-1)])
        best: _Fit | None = None
        for length in self.length_scales:
            try:
                factor = cho_factor(self._kernel(length), lower=True)
            except np.linalg.LinAlgError:
                continue
            alpha0 = cho_solve(factor, y)
            variance = max(float(y @ alpha0) / y.size, 1e-12)
            log_det = 2.0 * float(np.log(np.diag(factor[0])).sum())
            loglik = -0.5 * y.size * math.log(variance) - 0.5 * log_det
            if best is None or loglik > best.log_likelihood:
                best = _Fit(length, variance, mean, anchor_x, anchor_g, factor, alpha0, loglik)
        if best is None:
            raise InputError("the residual GP covariance is singular for every length scale")
        self._fit = best
        return best.length

    @property
    def length_scale(self) -> float | None:
        """Fitted length scale (Å), None before :meth:`fit`."""
        return None if self._fit is None else self._fit.length

    def _fitted(self) -> _Fit:
        if self._fit is None:
            self.fit()
        assert self._fit is not None
        return self._fit

    def _cross(self, x: np.ndarray, fit: _Fit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Unit-variance cross covariances of f(x) with the observations, and x - X_j."""
        xs = np.array(self._x)
        diff = x[None, :] - xs
        k = np.exp(-0.5 * (diff**2).sum(axis=1) / fit.length**2)
        k_star = np.concatenate([k, (k[:, None] * diff / fit.length**2).reshape(-1)])
        return k, diff, k_star

    def predict(
        self, positions: np.ndarray, *, std: bool = False
    ) -> tuple[float, np.ndarray, float]:
        """Residual energy, its gradient and (when ``std``) its standard deviation.

        Returns
        -------
        (energy, gradient, std)
            ``energy`` in eV; ``gradient`` shape ``(n_atoms, 3)`` in eV/Å (zero on fixed
            atoms); ``std`` in eV (nan unless asked for).
        """
        fit = self._fitted()
        x = self._features(positions)
        n = len(self._x)
        k, diff, k_star = self._cross(x, fit)
        a_e = fit.alpha[:n]
        a_g = fit.alpha[n:].reshape(n, -1)
        inv2 = 1.0 / fit.length**2
        energy = fit.mean + float(k_star @ fit.alpha)
        trend = np.zeros_like(x)
        if fit.anchor_x is not None and fit.anchor_g is not None:
            energy += float((x - fit.anchor_x) @ fit.anchor_g)
            trend = fit.anchor_g
        proj = (diff * a_g).sum(axis=1)
        grad_free = (
            -(k * a_e)[:, None] * diff * inv2
            + k[:, None] * a_g * inv2
            - (k * proj)[:, None] * diff * inv2**2
        ).sum(axis=0)
        gradient = np.zeros(self.mask.size)
        gradient[self.mask] = grad_free + trend
        sigma = math.nan
        if std:
            v = solve_triangular(fit.factor[0], k_star, lower=True)
            sigma = math.sqrt(max(fit.variance * (1.0 - float(v @ v)), 0.0))
        return energy, gradient.reshape(-1, 3), sigma


class SurrogateCalculator(Calculator):
    """Cheap potential plus the residual GP: ``E = E_cheap + r``, ``F = F_cheap - ∇r``.

    ``results["uncertainty"]`` is the GP's standard deviation (eV) when asked for
    (``uncertainty=True``).
    """

    implemented_properties = ("energy", "free_energy", "forces")
    nolabel = True

    def __init__(self, cheap: Calculator, gp: ResidualGP, *, uncertainty: bool = False) -> None:
        super().__init__()
        self.cheap = cheap
        self.gp = gp
        self.uncertainty = uncertainty

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Evaluate the cheap potential and add the GP's mean correction."""
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        work = self.atoms.copy()
        work.calc = self.cheap
        energy = float(work.get_potential_energy())
        forces = np.array(work.get_forces(apply_constraint=False), dtype=float)
        r, grad, sigma = self.gp.predict(work.positions, std=self.uncertainty)
        self.results = {
            "energy": energy + r,
            "free_energy": energy + r,
            "forces": forces - grad,
            "uncertainty": sigma,
        }

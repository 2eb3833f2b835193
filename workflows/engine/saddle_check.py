"""How far is a climbing image's energy from the saddle's? The NEB stopping rule.

A per-atom force threshold does not bound the barrier: along a soft mode of curvature
``c`` (eV/Å²) a residual force ``f`` (eV/Å) leaves the image ``f² / 2c`` above the saddle.
The octahedral tilts of CsPbX3 are that soft: at 0.02 eV/Å a climbing image sat 3-39 meV
above a tight reference (issue 15). This module measures the curvature where the force
points instead of assuming it.

:func:`estimate_saddle_error` builds a small subspace that holds the path tangent, the
force perpendicular to it and the Krylov directions grown from that force, each with one
Hessian-vector product (:func:`finite_difference_hvp`: one force call at a displaced
geometry). In the subspace the energy is a quadratic model with Ritz curvatures ``λ_k``
and force components ``φ_k``; its stationary point lies ``-½ Σ φ_k²/λ_k`` (eV) away in
energy, and

    error = ½ Σ_k φ_k² / |λ_k|

bounds the distance of the image's energy from the saddle's in the model (tangent and
perpendicular parts are added in magnitude, never allowed to cancel). For a positive
definite perpendicular block this is the Gauss-quadrature estimate of ``½ fᵀH⁻¹f``: it
grows with the subspace and is exact once the force's Krylov space is covered. A region
with no negative curvature, or more than one, is not near a first-order saddle: the
estimate is then infinite and says why.

The model also gives the Newton step to its stationary point (``step``), which
:func:`pqdflow.workflows.engine.neb.optimize_band` uses to move the climbing image onto the saddle
in a few force calls where an optimiser crawls along soft modes.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.constraints import FixAtoms

from pqdflow.errors import InputError

__all__ = [
    "HessianVectorProduct",
    "SaddleEstimate",
    "estimate_saddle_error",
    "finite_difference_hvp",
    "free_mask",
    "recycled_estimate",
]

#: ``v -> H v`` for a unit vector ``v`` over all ``3 n_atoms`` coordinates (eV/Å²).
HessianVectorProduct = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class SaddleEstimate:
    """What the quadratic model around a climbing image says (eV, Å, eV/Å²).

    Attributes
    ----------
    error
        Conservative distance of the image's energy from the model saddle's (eV);
        ``inf`` when the region is not near a first-order saddle (see ``status``).
    shift
        Model saddle energy minus image energy (eV, signed); ``nan`` when refused.
    step
        Displacement to the model saddle, shape ``(n_atoms, 3)`` (Å); when refused, an
        eigenvector-following step instead (uphill along the mode closest to the tangent,
        downhill along the others).
    n_negative
        Negative curvatures in the subspace (1 near a first-order saddle).
    tangent_curvature
        Curvature along the path tangent (negative near the saddle).
    softest_curvature
        Smallest positive curvature found (the soft mode that costs accuracy).
    tangent_overlap
        |overlap| of the negative-curvature mode with the tangent (nan without one).
    n_probes
        Hessian-vector products spent (force calls of the caller).
    force_norm
        Norm of the whole force vector (eV/Å), not the per-atom maximum.
    status
        ``"ok"`` or why the estimate is refused.
    """

    error: float
    shift: float
    step: np.ndarray = field(repr=False)
    n_negative: int
    tangent_curvature: float
    softest_curvature: float
    tangent_overlap: float
    n_probes: int
    force_norm: float
    status: str = "ok"

    def within(self, tolerance: float) -> bool:
        """Whether the image's energy is known to be within ``tolerance`` (eV) of the saddle."""
        return self.status == "ok" and self.error <= tolerance

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary (``step`` left out; ``None`` for inf / nan)."""

        def number(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "error_eV": number(self.error),
            "shift_eV": number(self.shift),
            "n_negative": self.n_negative,
            "tangent_curvature": number(self.tangent_curvature),
            "softest_curvature": number(self.softest_curvature),
            "tangent_overlap": number(self.tangent_overlap),
            "n_probes": self.n_probes,
            "force_norm": number(self.force_norm),
            "status": self.status,
        }


def free_mask(atoms: Atoms) -> np.ndarray:
    """Boolean mask over ``3 n_atoms`` coordinates: True where ``FixAtoms`` leaves it free."""
    mask = np.ones((len(atoms), 3), dtype=bool)
    for constraint in atoms.constraints:
        if isinstance(constraint, FixAtoms):
            mask[constraint.get_indices()] = False
    return mask.reshape(-1)


def finite_difference_hvp(
    atoms: Atoms,
    calculator: Calculator,
    forces: np.ndarray,
    *,
    step: float = 0.01,
    central: bool = False,
) -> HessianVectorProduct:
    """Hessian-vector products of ``calculator`` at ``atoms`` by finite differences.

    ``H v = -(F(x + h v) - F(x)) / h`` (forward: one force call per product, reusing
    ``forces`` = F(x)) or ``-(F(x + h v) - F(x - h v)) / 2h`` (``central``: two calls, for
    potentials whose forces carry float32 noise). Fixed atoms (``FixAtoms``) never move and
    their rows are zero.

    Parameters
    ----------
    atoms
        The geometry (not modified; a copy is displaced).
    calculator
        Evaluates the displaced copies; give it its own instance (or the inner calculator
        of a counting wrapper) so the image's cached result survives.
    forces
        Forces at ``atoms`` (eV/Å), shape ``(n_atoms, 3)``.
    step
        Displacement length ``h`` along the unit vector (Å).
    central
        Central instead of forward differences.
    """
    if not (math.isfinite(step) and step > 0):
        raise InputError(f"finite-difference step must be a positive number of Å, got {step!r}")
    mask = free_mask(atoms)
    base = atoms.positions.copy()
    f0 = np.asarray(forces, dtype=float).reshape(-1)
    probe = atoms.copy()
    probe.calc = calculator

    def force_at(v: np.ndarray) -> np.ndarray:
        probe.positions = base + v.reshape(-1, 3)
        return np.asarray(probe.get_forces(), dtype=float).reshape(-1)

    def hvp(v: np.ndarray) -> np.ndarray:
        v = np.where(mask, np.asarray(v, dtype=float).reshape(-1), 0.0)
        if central:
            out = -(force_at(step * v) - force_at(-step * v)) / (2 * step)
        else:
            out = -(force_at(step * v) - f0) / step
        return np.where(mask, out, 0.0)

    return hvp


def _orthonormal(vector: np.ndarray, basis: list[np.ndarray]) -> np.ndarray | None:
    """``vector`` orthogonalised against ``basis`` (twice) and normalised; None if in its span."""
    norm0 = float(np.linalg.norm(vector))
    if norm0 == 0.0:
        return None
    w = vector.copy()
    for _ in range(2):
        for b in basis:
            w -= float(np.dot(b, w)) * b
    norm = float(np.linalg.norm(w))
    if norm < 1e-6 * norm0:
        return None
    return w / norm


def _following_step(
    v: np.ndarray, vectors: np.ndarray, curvatures: np.ndarray, phi: np.ndarray
) -> np.ndarray:
    """Eigenvector-following step where the model has no single negative curvature.

    The Ritz mode closest to the tangent (``v[0]``) is followed uphill, every other mode
    downhill, each by ``|φ_k| / |λ_k|`` (eV/Å over eV/Å²; a zero curvature gives no step).
    """
    scale = np.where(curvatures != 0, 1.0 / np.where(curvatures != 0, np.abs(curvatures), 1), 0)
    sign = np.ones_like(curvatures)
    sign[int(np.argmax(np.abs(vectors[0])))] = -1.0
    return np.asarray(v.T @ (vectors @ (sign * phi * scale)))


def _model(
    basis: list[np.ndarray], products: list[np.ndarray], force: np.ndarray, n_atoms: int
) -> SaddleEstimate:
    """Quadratic model in ``span(basis)``: Ritz pairs, Newton step, error estimate."""
    v = np.array(basis)
    t_mat = v @ np.array(products).T
    t_mat = 0.5 * (t_mat + t_mat.T)
    curvatures, vectors = np.linalg.eigh(t_mat)
    phi = vectors.T @ (v @ force)
    n_negative = int(np.sum(curvatures < 0))
    positive = curvatures[curvatures > 0]
    softest = float(positive.min()) if positive.size else float("nan")
    overlap = float(abs(vectors[0, int(np.argmin(curvatures))])) if n_negative else float("nan")
    force_norm = float(np.linalg.norm(force))
    common: dict[str, Any] = {
        "n_negative": n_negative,
        "tangent_curvature": float(t_mat[0, 0]),
        "softest_curvature": softest,
        "tangent_overlap": overlap,
        "n_probes": len(products),
        "force_norm": force_norm,
    }
    if n_negative != 1 or np.any(curvatures == 0):
        status = (
            "no negative curvature: the image is not near a saddle along the path"
            if n_negative == 0
            else f"{n_negative} negative curvatures: not near a first-order saddle"
        )
        return SaddleEstimate(
            error=math.inf,
            shift=math.nan,
            step=_following_step(v, vectors, curvatures, phi).reshape(n_atoms, 3),
            status=status,
            **common,
        )
    ratio = phi / curvatures
    step = v.T @ (vectors @ ratio)
    return SaddleEstimate(
        error=0.5 * float(np.sum(phi**2 / np.abs(curvatures))),
        shift=-0.5 * float(np.sum(phi * ratio)),
        step=step.reshape(n_atoms, 3),
        **common,
    )


def estimate_saddle_error(
    forces: np.ndarray,
    tangent: np.ndarray,
    hvp: HessianVectorProduct,
    *,
    max_probes: int = 6,
    rtol: float = 0.1,
) -> SaddleEstimate:
    """Estimate how far a climbing image's energy is from the saddle's.

    Parameters
    ----------
    forces
        True (not NEB-projected) forces at the image, shape ``(n_atoms, 3)`` (eV/Å);
        fixed atoms' rows zero.
    tangent
        Path tangent at the image (any norm), same shape.
    hvp
        Hessian-vector products at the image (e.g. :func:`finite_difference_hvp`).
    max_probes
        Most Hessian-vector products (subspace dimension), >= 2.
    rtol
        The subspace (at least tangent, force and one Krylov direction) stops growing once
        the error estimate changes by less than this fraction between two sizes. The
        estimate only grows with the subspace, so a small one is never accepted early on
        the strength of the first, Rayleigh-quotient curvature alone.

    Returns
    -------
    SaddleEstimate
        ``within(tolerance)`` is the stopping rule.
    """
    if max_probes < 2:
        raise InputError(f"max_probes must be >= 2 (tangent and force), got {max_probes}")
    f = np.asarray(forces, dtype=float).reshape(-1)
    t = np.asarray(tangent, dtype=float).reshape(-1)
    n_atoms = f.size // 3
    t_norm = float(np.linalg.norm(t))
    if f.size != t.size or f.size % 3 or not t_norm > 0:
        raise InputError(
            f"forces ({f.size} values) and a non-zero tangent ({t.size} values) of one "
            "image are needed"
        )
    basis = [t / t_norm]
    products = [hvp(basis[0])]
    f_perp = f - float(np.dot(f, basis[0])) * basis[0]
    candidate = _orthonormal(f_perp, basis) if np.linalg.norm(f_perp) > 1e-12 else None
    if candidate is None:
        candidate = _orthonormal(products[0], basis)
    estimate = _model(basis, products, f, n_atoms)
    previous = math.inf
    while candidate is not None and len(products) < max_probes:
        basis.append(candidate)
        products.append(hvp(candidate))
        estimate = _model(basis, products, f, n_atoms)
        if estimate.n_negative > 1:
            break  # Ritz values only fall as the subspace grows: it stays refused
        if estimate.status == "ok":
            if len(products) >= 3 and abs(estimate.error - previous) <= rtol * estimate.error:
                break
            previous = estimate.error
        candidate = _orthonormal(products[-1], basis)
    return estimate


def recycled_estimate(
    forces: np.ndarray, pairs: list[tuple[np.ndarray, np.ndarray]], *, min_new: float = 0.3
) -> SaddleEstimate:
    """Rebuild the quadratic model of :func:`estimate_saddle_error` from recorded probes.

    A saddle search that checks its point several times has spent one Hessian-vector
    product per probe at each point. Near a saddle the Hessian changes little between
    them, so all of them together span a larger subspace than any one check: the Newton
    step in that subspace reaches soft modes a single check leaves out. No force call is
    made.

    Parameters
    ----------
    forces
        True forces at the current point (eV/Å), shape ``(n_atoms, 3)``; fixed atoms' rows
        zero.
    pairs
        ``(v, H v)`` pairs over all ``3 n_atoms`` coordinates (eV/Å²), the current point's
        first, its path tangent the very first (it defines ``tangent_curvature`` and the
        mode followed where the model is refused). They are orthonormalised in order.
    min_new
        A direction is kept only if more than this fraction of its norm lies outside the
        span of those before it (older, nearly parallel probes would add noise).

    Raises
    ------
    InputError
        No pairs, or pairs whose size differs from the forces'.
    """
    f = np.asarray(forces, dtype=float).reshape(-1)
    if not pairs or any(np.size(v) != f.size or np.size(p) != f.size for v, p in pairs):
        raise InputError(f"recycled estimate needs (v, Hv) pairs of {f.size} values each")
    basis: list[np.ndarray] = []
    products: list[np.ndarray] = []
    for v, p in pairs:
        w = np.asarray(v, dtype=float).reshape(-1).copy()
        hw = np.asarray(p, dtype=float).reshape(-1).copy()
        norm0 = float(np.linalg.norm(w))
        if norm0 == 0.0:
            continue
        for b, hb in zip(basis, products, strict=True):
            overlap = float(np.dot(b, w))
            w -= overlap * b
            hw -= overlap * hb
        norm = float(np.linalg.norm(w))
        if norm <= min_new * norm0:
            continue
        basis.append(w / norm)
        products.append(hw / norm)
    return _model(basis, products, f, f.size // 3)

"""ML-seeded surrogate NEB: few calls of an expensive oracle to a barrier it confirms.

Users pay per DFT force call. Surrogate NEB methods (GP-NEB, Koistinen et al., J. Chem.
Phys. 147, 152720, 2017; ML-NEB, Garrido Torres et al., Phys. Rev. Lett. 122, 156001,
2019) report about an order of magnitude fewer evaluations than a conventional NEB at the
same barrier. This recipe seeds the surrogate with a cheap universal potential and keeps
the oracle for what only it can settle:

1. **Cheap band.** The cheap potential (CHGNet), anchored to the oracle's relaxed endpoints
   by a first-order correction that keeps the host in their tilt basins
   (:func:`~pqdflow.workflows.engine.surrogate_seed.seed_band`, cheap calls only),
   converges the band between them.
2. **First batch.** The oracle evaluates the cheap band's climbing image (its highest
   image; ``first_batch="climbing"``, the default), that image and its two neighbours
   (``"neighbours"``) or every interior image (``"all"``) in one batch (one FireWorks round
   for VASP). The other images keep the cheap band's energies, shifted onto the oracle's
   endpoint energies (``energy_sources`` says which is which): they only give the tangent.
3. **Surrogate rounds.** The highest image is the climbing image; its tangent comes from
   its neighbours. At its latest oracle point, the cheap potential's curvature (a few
   finite-difference Hessian-vector products, cheap calls) and the oracle's force give a
   quadratic model (:func:`~pqdflow.workflows.engine.saddle_check.estimate_saddle_error`);
   the climbing image takes the model's Newton step onto the saddle (at most ``maxstep``)
   and the oracle evaluates it (one call per round): a quasi-Newton saddle search with the
   cheap Hessian. Rounds stop once the model puts the saddle within half the tolerance.
4. **Oracle check.** The same model with the oracle's own curvature (``check_probes``
   oracle calls) is pqdflow's stopping rule: the barrier is accepted when the climbing
   image's oracle energy is known within ``barrier_tol`` of the saddle's; otherwise one
   more Newton step and check (``oracle_checks``).

The reported barrier is always the oracle energy of the climbing image minus the oracle
energy of the initial endpoint. The other images stay at the cheap band's geometries (they
give the tangent; first-batch oracle energies are kept in ``rounds[0]``): the result is the
first-order saddle the cheap band leads to, as for any climbing-image NEB. With the default
first batch the climbing image is the cheap band's highest image: on a path where the
oracle puts a distinctly higher saddle at another image than the cheap potential does,
only ``first_batch="all"`` sees it (the cost: one oracle call per image). An oracle
budget that runs out stops the band with the last confirmed point and ``stopped_early``.

The oracle is a batch function (:data:`Oracle`): a list of structures in, one
``(energy, forces)`` per structure out. :func:`calculator_oracle` makes one from any ASE
calculator factory, :func:`registry_oracle` from an in-process backend of the registry
(``mock``, ``chgnet``, ``gpaw``). For VASP on a cluster the same function submits one
FireWorks workflow of single points per batch and returns their parsed energies and
forces; the rounds send one structure per batch, and the probes of one check could go
as one batch too (they are sequential here: a Krylov subspace).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator

from pqdflow.documents.results import NebDoc
from pqdflow.errors import BackendError, InputError
from pqdflow.fileio import guard_outputs, move_outputs_aside
from pqdflow.workflows.engine.calculators import CountingCalculator
from pqdflow.workflows.engine.neb import BandOutcome, band_trajectory, write_band_document
from pqdflow.workflows.engine.neb_band import NebSettings, interpolate_images
from pqdflow.workflows.engine.oracle import (
    CalculatorOracle,
    Oracle,
    OracleBudgetSpent,
    OracleCalculator,
    calculator_oracle,
)
from pqdflow.workflows.engine.saddle_check import (
    HessianVectorProduct,
    SaddleEstimate,
    estimate_saddle_error,
    finite_difference_hvp,
    free_mask,
    recycled_estimate,
)
from pqdflow.workflows.engine.surrogate_seed import seed_band

__all__ = [
    "CalculatorOracle",
    "Oracle",
    "OracleCalculator",
    "SurrogateOutcome",
    "SurrogateSettings",
    "calculator_oracle",
    "first_batch_images",
    "registry_oracle",
    "run_surrogate_band",
    "surrogate_band",
]

_LOG = logging.getLogger(__name__)


#: Accepted :attr:`SurrogateSettings.first_batch` values.
FIRST_BATCHES = ("climbing", "neighbours", "all")


def _default_cheap() -> NebSettings:
    return NebSettings(climb_fmax=0.01, barrier_check=False)


@dataclass(frozen=True)
class SurrogateSettings:
    """The surrogate recipe (energies eV, forces eV/Å).

    Attributes
    ----------
    barrier_tol
        The climbing image's oracle energy must be known within this of the oracle's
        saddle (default 0.010).
    max_oracle_calls
        Oracle budget, endpoints excluded (they arrive relaxed).
    max_rounds
        Most surrogate rounds: a Newton step of the climbing image on the cheap potential's
        curvature and the oracle's force, then one oracle call there. They stop early once
        that model puts the saddle within half the tolerance. Default 0: on the V_Br hop
        (CHGNet seed, SevenNet oracle) CHGNet's curvature sent the steps uphill.
    oracle_checks
        Most checks with the oracle's own curvature (``check_probes`` oracle calls each);
        between two, a Newton step on the oracle's model.
    check_probes
        Hessian-vector probes of one check (subspace size).
    probe_step
        Finite-difference step of a probe (Å).
    maxstep
        Longest atomic displacement of one Newton step (Å).
    cheap
        Recipe of the cheap seed band (its barrier is never reported).
    anchor_cheap
        Converge the cheap band on the cheap potential plus a first-order correction
        interpolated from the oracle's endpoints
        (:func:`~pqdflow.workflows.engine.surrogate_seed.anchored_calculators`; no oracle
        calls), so the host stays in the oracle's endpoint basins (default True).
    first_batch
        Which images of the cheap band the oracle evaluates first: ``"climbing"`` (the
        cheap band's highest interior image, one call; default), ``"neighbours"`` (it and
        its two neighbours) or ``"all"``. The climbing image is the highest of those on the
        oracle. Measured on the six cases of ``benchmarks/neb_efficiency.py`` (SevenNet
        oracle, CHGNet seed, 2026-12-01): with ``"all"`` the oracle's highest image was the
        cheap band's in every case and the barriers were identical, at 189 oracle calls
        instead of 165.
    recycle_probes
        Most oracle Hessian-vector products, this check's and earlier ones', whose
        subspace gives the Newton step between two checks
        (:func:`~pqdflow.workflows.engine.saddle_check.recycled_estimate`; no extra calls).
        The stopping rule uses this check's probes alone. Default 0 (this check's only):
        with 24, older probes (taken up to 0.2 Å away) mostly gave a model with several
        negative curvatures, and on the V_I hop the steps it did take cost 10 more oracle
        calls and left the band unconverged.
    """

    barrier_tol: float = 0.010
    max_oracle_calls: int = 60
    max_rounds: int = 0
    oracle_checks: int = 6
    check_probes: int = 6
    probe_step: float = 0.01
    maxstep: float = 0.2
    cheap: NebSettings = field(default_factory=_default_cheap)
    anchor_cheap: bool = True
    first_batch: str = "climbing"
    recycle_probes: int = 0

    def __post_init__(self) -> None:
        for name in ("barrier_tol", "probe_step", "maxstep"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(
                    f"surrogate setting {name} must be a positive number, got {value!r}"
                )
        if self.max_rounds < 0:
            raise InputError(f"surrogate setting max_rounds must be >= 0, got {self.max_rounds}")
        if self.first_batch not in FIRST_BATCHES:
            raise InputError(
                f"surrogate setting first_batch must be one of {list(FIRST_BATCHES)}, "
                f"got {self.first_batch!r}"
            )
        if self.recycle_probes < 0:
            raise InputError(
                f"surrogate setting recycle_probes must be >= 0, got {self.recycle_probes}"
            )
        for name, least in (("max_oracle_calls", 1), ("oracle_checks", 1), ("check_probes", 2)):
            if getattr(self, name) < least:
                raise InputError(
                    f"surrogate setting {name} must be >= {least}, got {getattr(self, name)}"
                )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["cheap"] = self.cheap.as_dict()
        return out


@dataclass
class SurrogateOutcome(BandOutcome):
    """A surrogate band's result: a :class:`~pqdflow.workflows.engine.neb.BandOutcome` plus.

    ``energies``: the oracle's at the endpoints, at the first batch's images and, at the
    climbing image, its last oracle point (``images`` holds those geometries); the other
    images' are the cheap band's, shifted onto the oracle's endpoint energies
    (``energy_sources``: ``"oracle"`` or ``"cheap"`` per image). ``fmax`` is the largest
    per-atom oracle force on the other first-batch images (not projected: they are not
    converged on the oracle, they only give the tangent), or the cheap band's ``fmax`` when
    the oracle evaluated no other image; ``fmax_climbing`` the oracle's climbing force at
    the climbing image.
    ``n_force_calls`` counts the cheap potential's calls, ``n_oracle_calls`` the oracle's.
    ``barrier`` is the confirmed forward barrier (eV): the climbing image's oracle energy
    minus the initial one.
    """

    barrier: float = math.nan
    n_oracle_batches: int = 0
    energy_sources: list[str] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    cheap_barrier: float = math.nan
    seed: str = ""


def registry_oracle(
    name: str, atoms: Atoms, *, kind: str = "bulk", charge: int = 0, **settings: Any
) -> CalculatorOracle:
    """Build a batch oracle from an in-process registry backend (mock, chgnet, gpaw).

    Parameters
    ----------
    name
        Registry name (:func:`~pqdflow.workflows.backends.backend_names`).
    atoms
        A structure of the band (GPAW builds its calculator per cell).
    kind, charge
        Passed to the backend's per-cell factory (``"bulk"``/``"slab"``; total charge).
    settings
        Backend settings (:func:`~pqdflow.workflows.backends.get_backend`).

    Raises
    ------
    BackendError
        An unknown name, or a backend that does not run in this process (``vasp``: send
        each batch as one FireWorks workflow of single points instead).
    """
    from pqdflow.workflows.backends import get_backend

    backend = get_backend(name, **settings)
    factory_for = getattr(backend, "factory_for", None)
    if factory_for is None:
        raise BackendError(
            f"backend {name!r} has no in-process calculator; wrap its single points in a "
            "batch oracle (one FireWorks workflow per batch) instead"
        )
    return calculator_oracle(factory_for(atoms, kind, charge))


def surrogate_band(
    images: list[Atoms],
    cheap_factory: Callable[[], Calculator],
    oracle: Oracle,
    settings: SurrogateSettings | None = None,
    *,
    e_initial: float,
    e_final: float,
    endpoint_forces: tuple[np.ndarray, np.ndarray] | None = None,
    on_stage: Callable[[str, list[Atoms]], None] | None = None,
) -> SurrogateOutcome:
    """Converge a band with few oracle calls; report a barrier the oracle confirmed.

    Parameters
    ----------
    images
        The start band, endpoints included
        (:func:`~pqdflow.workflows.engine.neb.interpolate_images`); modified in place.
    cheap_factory
        Returns a new cheap calculator (e.g. CHGNet) per call.
    oracle
        Batch oracle (:data:`Oracle`); endpoints are never sent to it.
    settings
        The recipe (defaults: :class:`SurrogateSettings`).
    e_initial, e_final
        The oracle's energies of the relaxed endpoints (eV), kept fixed.
    endpoint_forces
        The oracle's forces at the endpoints (eV/Å), for ``anchor_cheap``; None: zero,
        as at relaxed endpoints.
    on_stage
        Called with a stage name (``"cheap"``, ``"round N"``, ``"finish"``) and the images.

    Raises
    ------
    InputError
        Bad settings, non-finite endpoint energies or a band without interior images.
    CalculationFailed
        An oracle result without a finite energy and forces of the right shape.
    """
    settings = settings or SurrogateSettings()
    n = len(images) - 2
    if n < 1:
        raise InputError(f"a surrogate NEB needs interior images, got a band of {len(images)}")
    for name, value in (("e_initial", e_initial), ("e_final", e_final)):
        if not math.isfinite(value):
            raise InputError(f"surrogate NEB: endpoint energy {name} must be finite, got {value}")
    if settings.max_oracle_calls < n + 1:
        raise InputError(
            f"surrogate NEB: max_oracle_calls={settings.max_oracle_calls} cannot cover the "
            f"first batch of {n} images and one more call; raise it to at least {n + 1}"
        )
    seeded = seed_band(
        images,
        cheap_factory,
        settings.cheap,
        anchor=settings.anchor_cheap,
        e_initial=e_initial,
        e_final=e_final,
        endpoint_forces=endpoint_forces,
    )
    cheap_out = seeded.outcome
    if on_stage is not None:
        on_stage("cheap", images)
    oracle_calc = OracleCalculator(oracle, settings.max_oracle_calls)
    batch_e = _on_oracle_scale(cheap_out.energies, e_initial, e_final)
    cheap_top = int(np.argmax(batch_e[1:-1])) + 1
    picked = first_batch_images(settings.first_batch, cheap_top, n)
    results = dict(
        zip(
            picked,
            oracle_calc.evaluate(
                [images[j].copy() for j in picked], [f"image {j}" for j in picked]
            ),
            strict=True,
        )
    )
    sources = ["oracle"] + ["cheap"] * n + ["oracle"]
    for j, (energy, _) in results.items():
        batch_e[j] = energy
        sources[j] = "oracle"
    c = max(picked, key=lambda j: batch_e[j])
    rounds: list[dict[str, Any]] = [
        {
            "round": 0,
            "cheap_climbing_index": cheap_top,
            "oracle_eV": [
                e - e_initial if source == "oracle" else None
                for e, source in zip(batch_e, sources, strict=True)
            ],
        }
    ]
    others = [
        float(np.sqrt((_free(images[j], forces) ** 2).sum(axis=1)).max())
        for j, (_, forces) in results.items()
        if j != c
    ]
    climbing = images[c]
    tangent = _path_tangent(images, c)
    x_c, (e_c, f_c) = climbing.positions.copy(), results[c]
    cheap_probe = CountingCalculator(cheap_factory())
    estimate: SaddleEstimate | None = None
    memory: list[tuple[np.ndarray, np.ndarray]] = []
    stopped = ""
    oracle_checks = 0
    try:
        for k in range(1, settings.max_rounds + settings.oracle_checks + 1):
            # surrogate rounds: the cheap potential's curvature, the oracle's force; then
            # oracle rounds: the oracle's own curvature (the stopping rule)
            on_oracle = k > settings.max_rounds or (
                estimate is not None and estimate.within(0.5 * settings.barrier_tol)
            )
            if on_oracle and oracle_checks >= settings.oracle_checks:
                break
            left = settings.max_oracle_calls - oracle_calls(oracle_calc)
            if on_oracle and left < settings.check_probes + 1:
                stopped = f"oracle budget of {settings.max_oracle_calls} calls spent"
                break
            point = climbing.copy()
            point.positions = x_c
            calc: Calculator = oracle_calc if on_oracle else cheap_probe
            fresh: list[tuple[np.ndarray, np.ndarray]] = []
            hvp = _recording(
                finite_difference_hvp(point, calc, f_c, step=settings.probe_step), fresh
            )
            estimate = estimate_saddle_error(
                _free(point, f_c), tangent, hvp, max_probes=settings.check_probes
            )
            record: dict[str, Any] = {
                "round": k,
                "curvature": "oracle" if on_oracle else "cheap",
                "oracle_eV": e_c - e_initial,
                **estimate.as_dict(),
            }
            step = estimate.step
            if on_oracle and settings.recycle_probes:
                # the oracle's earlier probes near this point: a larger subspace for the step
                memory = (fresh + memory)[: settings.recycle_probes]
                if len(memory) > len(fresh):
                    recycled = recycled_estimate(_free(point, f_c), memory)
                    record["recycled"] = recycled.as_dict()
                    if recycled.status == "ok":
                        step = recycled.step
            rounds.append(record)
            _LOG.info("surrogate NEB round %s: %s", k, record)
            if on_oracle:
                oracle_checks += 1
                if estimate.within(settings.barrier_tol) or oracle_checks >= settings.oracle_checks:
                    break  # the reported point is always the last checked one
            if settings.max_oracle_calls - oracle_calls(oracle_calc) < 1 + settings.check_probes:
                stopped = f"oracle budget of {settings.max_oracle_calls} calls spent"
                break
            moved = climbing.copy()
            moved.positions = x_c + _capped(step, settings.maxstep)
            ((energy, forces),) = oracle_calc.evaluate([moved], [f"round {k}"])
            record["predicted_shift_eV"] = estimate.shift
            record["oracle_shift_eV"] = energy - e_c
            x_c, e_c, f_c = moved.positions.copy(), energy, forces
            if on_stage is not None:
                climbing.positions = x_c
                on_stage(f"round {k}", images)
    except OracleBudgetSpent:
        stopped = f"oracle budget of {settings.max_oracle_calls} calls spent"
    climbing.positions = x_c
    if on_stage is not None:
        on_stage("finish", images)
    return _outcome(
        images,
        c,
        (e_c, f_c),
        batch_e,
        estimate if estimate is not None and rounds[-1].get("curvature") == "oracle" else None,
        oracle_calc,
        stopped,
        settings,
        counts=(seeded.n_force_calls + cheap_probe.n_calls, cheap_out.n_force_calls),
        others_fmax=max(others) if others else cheap_out.fmax,
        energy_sources=sources,
        rounds=rounds,
        cheap_barrier=max(cheap_out.energies) - cheap_out.energies[0],
        seed=seeded.seed,
    )


def first_batch_images(kind: str, top: int, n: int) -> list[int]:
    """Interior image indices (1..n) the oracle evaluates first.

    Parameters
    ----------
    kind
        ``"climbing"`` (``top`` alone), ``"neighbours"`` (``top`` and the interior images
        beside it) or ``"all"``.
    top
        Index of the cheap band's highest interior image.
    n
        Number of interior images.
    """
    if kind == "all":
        return list(range(1, n + 1))
    if kind == "neighbours":
        return [j for j in (top - 1, top, top + 1) if 1 <= j <= n]
    if kind == "climbing":
        return [top]
    raise InputError(f"first_batch must be one of {list(FIRST_BATCHES)}, got {kind!r}")


def _on_oracle_scale(energies: list[float], e_initial: float, e_final: float) -> list[float]:
    """Band energies shifted so the endpoints carry the oracle's energies.

    The shift is interpolated linearly along the image index, as the anchored seed's
    correction is (zero for an anchored band, whose endpoints already carry them).
    """
    n = len(energies) - 1
    d_i, d_f = e_initial - energies[0], e_final - energies[-1]
    return [float(e) + (1 - j / n) * d_i + (j / n) * d_f for j, e in enumerate(energies)]


def _recording(
    hvp: HessianVectorProduct, pairs: list[tuple[np.ndarray, np.ndarray]]
) -> HessianVectorProduct:
    """Wrap ``hvp`` so that every ``(v, H v)`` it computes is appended to ``pairs``."""

    def recorded(v: np.ndarray) -> np.ndarray:
        product = hvp(v)
        pairs.append((np.asarray(v, dtype=float).reshape(-1).copy(), product.copy()))
        return product

    return recorded


def oracle_calls(oracle_calc: OracleCalculator) -> int:
    """Oracle calls spent so far."""
    return oracle_calc.n_calls


def _free(atoms: Atoms, forces: np.ndarray) -> np.ndarray:
    return np.where(free_mask(atoms).reshape(-1, 3), forces, 0.0)


def _capped(step: np.ndarray, maxstep: float) -> np.ndarray:
    longest = float(np.sqrt((step**2).sum(axis=1)).max()) if step.size else 0.0
    return step * (maxstep / longest) if longest > maxstep else step


def _path_tangent(images: list[Atoms], c: int) -> np.ndarray:
    """Return the unit tangent at image ``c`` (neighbours' difference, free atoms only)."""
    tangent = images[c + 1].positions - images[c - 1].positions
    tangent = np.where(free_mask(images[c]).reshape(-1, 3), tangent, 0.0)
    return tangent / float(np.linalg.norm(tangent))


def _outcome(
    images: list[Atoms],
    c: int,
    confirmed: tuple[float, np.ndarray],
    batch_e: list[float],
    check: SaddleEstimate | None,
    oracle_calc: OracleCalculator,
    stopped: str,
    settings: SurrogateSettings,
    *,
    counts: tuple[int, int],
    others_fmax: float,
    energy_sources: list[str],
    rounds: list[dict[str, Any]],
    cheap_barrier: float,
    seed: str = "",
) -> SurrogateOutcome:
    """Report the oracle's energy at the climbing image, never a surrogate's."""
    e_conf, f_conf = confirmed
    reasons = [stopped] if stopped else []
    if check is None:
        reasons.append("the oracle never checked the climbing image's curvature")
    elif not check.within(settings.barrier_tol):
        reasons.append(
            f"barrier check: {check.status}"
            if check.status != "ok"
            else f"barrier check: estimated error {check.error * 1000:.1f} meV above the "
            f"{settings.barrier_tol * 1000:.1f} meV tolerance"
        )
    energies = list(batch_e)
    energies[c] = e_conf
    converged = not reasons
    tangent = _path_tangent(images, c)
    free = _free(images[c], f_conf)
    f_t = float(np.vdot(free, tangent))
    climb_force = free - 2.0 * f_t * tangent
    for j, image in enumerate(images):
        forces = f_conf if j == c else np.zeros((len(image), 3))
        image.calc = SinglePointCalculator(image, energy=energies[j], forces=forces)
    cheap_calls, cheap_band_calls = counts
    return SurrogateOutcome(
        images=images,
        energies=energies,
        tangential_forces=[0.0 if j != c else f_t for j in range(len(images))],
        climbing_index=c,
        fmax=others_fmax,
        fmax_climbing=float(np.sqrt((climb_force**2).sum(axis=1)).max()),
        converged=converged,
        n_force_calls=cheap_calls,
        n_steps=len(rounds) - 1,
        stage_force_calls={"cheap_band": cheap_band_calls, "oracle": oracle_calc.n_calls},
        start="cheap band",
        optimizer="surrogate",
        barrier_error=None if check is None or check.status != "ok" else check.error,
        check={} if check is None else check.as_dict(),
        stopped_early=not converged,
        stop_reason="; ".join(dict.fromkeys(reasons)),
        barrier_confirmed=True,
        n_oracle_calls=oracle_calc.n_calls,
        barrier=e_conf - batch_e[0],
        n_oracle_batches=oracle_calc.n_batches,
        energy_sources=list(energy_sources),
        rounds=rounds,
        cheap_barrier=cheap_barrier,
        seed=seed,
    )


def run_surrogate_band(
    initial: Atoms,
    final: Atoms,
    cheap_factory: Callable[[], Calculator],
    oracle: Oracle,
    directory: str | Path,
    *,
    path: str,
    backend: str,
    e_initial: float,
    e_final: float,
    label: str = "",
    n_images: int = 5,
    settings: SurrogateSettings | None = None,
    initial_name: str = "initial",
    final_name: str = "final",
    meta: Mapping[str, Any] | None = None,
    force: bool = False,
) -> NebDoc:
    """Run :func:`surrogate_band` and document it in ``directory`` like a plain band.

    Writes ``neb.extxyz`` (the band after each stage), ``band.extxyz`` and, last and
    atomically, ``result.json``: a :class:`~pqdflow.documents.results.NebDoc` whose
    barrier is the oracle-confirmed one (``barrier_confirmed``), with ``n_oracle_calls``,
    the estimated error, ``stopped_early`` / ``stop_reason`` and, under
    ``meta["surrogate"]``, every round.

    Parameters
    ----------
    backend
        Name of the oracle's backend, recorded in the document.
    force
        Move a folder with earlier outputs aside instead of refusing.

    Raises
    ------
    OverwriteError
        ``directory`` already holds outputs and ``force`` is False (nothing is written).
    EndpointError, InputError
        Mismatched endpoints or bad settings, before anything is written.
    """
    settings = settings or SurrogateSettings()
    images = interpolate_images(
        initial,
        final,
        n_images,
        method=settings.cheap.interpolation,
        idpp_fmax=settings.cheap.idpp_fmax,
    )
    directory = Path(directory)
    guard_outputs(directory, force=force)
    if force:
        move_outputs_aside(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with band_trajectory(directory) as record:
        outcome = surrogate_band(
            images,
            cheap_factory,
            oracle,
            settings,
            e_initial=e_initial,
            e_final=e_final,
            on_stage=record,
        )
    details = {
        "barrier_eV": outcome.barrier,
        "cheap_barrier_eV": outcome.cheap_barrier,
        "seed": outcome.seed,
        "n_oracle_batches": outcome.n_oracle_batches,
        "energy_sources": outcome.energy_sources,
        "rounds": outcome.rounds,
    }
    return write_band_document(
        directory,
        outcome,
        cell=np.array(initial.cell),
        path=path,
        backend=backend,
        label=label,
        initial_name=initial_name,
        final_name=final_name,
        settings=settings.as_dict(),
        barrier_tol=settings.barrier_tol,
        meta={**dict(meta or {}), "surrogate": details},
        confirmed_only=True,
    )

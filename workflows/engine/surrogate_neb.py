"""ML-seeded surrogate NEB: few calls of an expensive oracle to a barrier it confirms.

Users pay per DFT force call. Surrogate NEB methods (GP-NEB, Koistinen et al., J. Chem.
Phys. 147, 152720, 2017; ML-NEB, Garrido Torres et al., Phys. Rev. Lett. 122, 156001,
2019) report about an order of magnitude fewer evaluations than a conventional NEB at the
same barrier. This recipe seeds the surrogate with a cheap universal potential:

1. **Cheap band.** The cheap potential (CHGNet) converges the band between the oracle's
   relaxed endpoints with pqdflow's recipe (:func:`~pqdflow.workflows.engine.neb.optimize_band`).
2. **First batch.** The oracle evaluates the band's interior images in one batch (one
   FireWorks round for VASP), so the correction is known along the whole path.
3. **Surrogate.** Cheap potential + a Gaussian process on the residual, trained on the
   oracle's energies and forces (:class:`~pqdflow.workflows.engine.residual_gp.ResidualGP`). The
   band is re-converged on the surrogate (cheap calls only), its climbing image tightly.
4. **Next batch.** The oracle evaluates the surrogate's climbing image (no further than
   ``trust_radius`` from the nearest oracle point) and every image whose energy the
   surrogate cannot rule out being above the saddle (``confidence`` standard deviations).
5. **Stopping rule.** The barrier is the oracle energy of an oracle-evaluated climbing
   point ``x_c``. It is accepted when (a) the surrogate, trained on ``x_c``, puts its own
   saddle within ``barrier_tol`` of that energy; (b) the local quadratic model (the oracle's
   force at ``x_c``, the surrogate's curvatures, see
   :func:`~pqdflow.workflows.engine.saddle_check.estimate_saddle_error`) puts the saddle within
   ``barrier_tol``; (c) the surrogate had predicted the oracle energy at ``x_c`` within
   ``barrier_tol`` before seeing it (waived when ``x_c`` is the surrogate's own saddle);
   (d) no other image may lie above it. The estimated error is the larger of (a) and (b).

The reported barrier is always an oracle energy difference at an oracle-evaluated point:
never a surrogate prediction. An oracle budget that runs out stops the loop with the best
confirmed point so far, ``stopped_early`` and its estimated error.

The oracle is a batch function (:data:`Oracle`): a list of structures in, one
``(energy, forces)`` per structure out. :func:`calculator_oracle` makes one from any ASE
calculator factory of the registry (SevenNet, GPAW, VASP through ASE); a FireWorks
workflow of single points is the same function with one workflow per batch.
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
from ase.optimize import FIRE

from pqdflow.documents.results import NebDoc
from pqdflow.errors import InputError
from pqdflow.fileio import guard_outputs, move_outputs_aside
from pqdflow.workflows.engine.band_optimizer import BandLBFGS
from pqdflow.workflows.engine.calculators import CountingCalculator
from pqdflow.workflows.engine.neb import BandOutcome, optimize_band, write_band_document
from pqdflow.workflows.engine.neb_band import (
    NebSettings,
    TieredNEB,
    fix_endpoint,
    interpolate_images,
    tangential_forces,
)
from pqdflow.workflows.engine.oracle import (
    CalculatorOracle,
    Oracle,
    calculator_oracle,
    evaluate_batch,
)
from pqdflow.workflows.engine.relax import write_frame
from pqdflow.workflows.engine.residual_gp import ResidualGP, SurrogateCalculator
from pqdflow.workflows.engine.saddle_check import (
    estimate_saddle_error,
    finite_difference_hvp,
    free_mask,
)

__all__ = [
    "CalculatorOracle",
    "Oracle",
    "SurrogateCalculator",
    "SurrogateOutcome",
    "SurrogateSettings",
    "calculator_oracle",
    "run_surrogate_band",
    "surrogate_band",
]


_LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class SurrogateSettings:
    """The surrogate recipe (energies eV, forces eV/Å, lengths Å).

    Attributes
    ----------
    barrier_tol
        The barrier must be known within this of the oracle's saddle (default 0.010).
    max_oracle_calls
        Oracle budget, endpoints excluded (they arrive relaxed).
    max_rounds
        Most oracle batches.
    cheap
        Recipe of the cheap seed band (its own stopping rule is off: its barrier is not
        reported).
    band_fmax, band_climb_fmax
        Criteria of the bands converged on the surrogate (cheap calls only).
    confidence
        Standard deviations of the surrogate's energy by which an image must stay below
        the confirmed saddle not to be evaluated.
    trust_radius
        Longest atomic displacement of a new climbing point from the nearest oracle point.
    first_batch
        ``"band"``: the oracle evaluates every interior image of the cheap band first;
        ``"climbing"``: its climbing image only.
    check_probes
        Subspace size of the local check (surrogate Hessian-vector products, cheap).
    probe_step
        Finite-difference step of those probes (central differences).
    max_steps
        Step limit of each surrogate band.
    """

    barrier_tol: float = 0.010
    max_oracle_calls: int = 60
    max_rounds: int = 25
    cheap: NebSettings = field(
        default_factory=lambda: NebSettings(climb_fmax=0.01, barrier_check=False)
    )
    band_fmax: float = 0.03
    band_climb_fmax: float = 0.003
    confidence: float = 2.0
    trust_radius: float = 0.2
    first_batch: str = "band"
    check_probes: int = 12
    probe_step: float = 0.01
    max_steps: int = 500

    def __post_init__(self) -> None:
        for name in (
            "barrier_tol",
            "band_fmax",
            "band_climb_fmax",
            "confidence",
            "trust_radius",
            "probe_step",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(
                    f"surrogate setting {name} must be a positive number, got {value!r}"
                )
        for name in ("max_oracle_calls", "max_rounds", "max_steps"):
            if getattr(self, name) < 1:
                raise InputError(
                    f"surrogate setting {name} must be >= 1, got {getattr(self, name)}"
                )
        if self.check_probes < 2:
            raise InputError(
                f"surrogate setting check_probes must be >= 2, got {self.check_probes}"
            )
        if self.first_batch not in ("band", "climbing"):
            raise InputError(
                f"surrogate first_batch={self.first_batch!r} is unknown; "
                "choose 'band' or 'climbing'"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        out["cheap"] = self.cheap.as_dict()
        return out


@dataclass
class SurrogateOutcome(BandOutcome):
    """A surrogate band's result: a :class:`~pqdflow.workflows.engine.neb.BandOutcome` plus.

    ``images`` is the last surrogate band with the confirmed climbing point in its place;
    ``energies`` holds the oracle energy there and at the endpoints, the surrogate's
    elsewhere (``energy_sources``). ``n_force_calls`` counts the cheap potential's calls,
    ``n_oracle_calls`` the oracle's. ``barrier`` is the confirmed forward barrier (eV).
    """

    barrier: float = math.nan
    n_oracle_batches: int = 0
    energy_sources: list[str] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    oracle_points: list[dict[str, Any]] = field(default_factory=list)
    cheap_barrier: float = math.nan


@dataclass
class _Point:
    """One oracle evaluation."""

    positions: np.ndarray
    energy: float
    forces: np.ndarray
    kind: str
    round: int
    predicted: float | None = None
    predicted_std: float | None = None
    check: dict[str, Any] = field(default_factory=dict)
    gp_index: int = -1


def _longest(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a - b) ** 2).sum(axis=1)).max())


class _Surrogate:
    """Bookkeeping of one surrogate NEB run (oracle points, GP, cheap calls)."""

    def __init__(
        self,
        template: Atoms,
        cheap_factory: Callable[[], Calculator],
        oracle: Oracle,
        settings: SurrogateSettings,
    ) -> None:
        self.template = template
        self.cheap_factory = cheap_factory
        self.oracle = oracle
        self.settings = settings
        self.mask = free_mask(template)
        self.gp = ResidualGP(self.mask)
        self.points: list[_Point] = []
        self.cheap_counters: list[CountingCalculator] = []
        self.n_batches = 0

    def cheap(self) -> CountingCalculator:
        calc = CountingCalculator(self.cheap_factory())
        self.cheap_counters.append(calc)
        return calc

    @property
    def cheap_calls(self) -> int:
        return sum(c.n_calls for c in self.cheap_counters)

    def surrogate(self, *, uncertainty: bool = False) -> SurrogateCalculator:
        return SurrogateCalculator(self.cheap(), self.gp, uncertainty=uncertainty)

    def single_point(
        self, calc: Calculator, positions: np.ndarray
    ) -> tuple[float, np.ndarray, float]:
        atoms = self.template.copy()
        atoms.positions = positions
        atoms.calc = calc
        energy = float(atoms.get_potential_energy())
        forces = np.array(atoms.get_forces(apply_constraint=False), dtype=float)
        sigma = float(calc.results.get("uncertainty", math.nan))
        return energy, forces, sigma

    def observe(self, positions: np.ndarray, energy: float, forces: np.ndarray) -> int:
        """Add an oracle (or endpoint) observation to the GP via the cheap residual."""
        e_c, f_c, _ = self.single_point(self.cheap(), positions)
        return self.gp.add(positions, energy - e_c, f_c - forces)

    def evaluate(
        self, batch: list[tuple[str, np.ndarray, float | None, float | None]], k: int
    ) -> list[_Point]:
        """Run one oracle batch; every result checked, stored and observed by the GP."""
        structures = []
        for _, positions, _, _ in batch:
            atoms = self.template.copy()
            atoms.positions = positions
            structures.append(atoms)
        labels = [f"the {kind} point of round {k}" for kind, *_ in batch]
        results = evaluate_batch(self.oracle, structures, labels)
        self.n_batches += 1
        new = []
        for (kind, positions, predicted, sigma), (energy, forces) in zip(
            batch, results, strict=True
        ):
            point = _Point(positions.copy(), energy, forces, kind, k, predicted, sigma)
            point.gp_index = self.observe(positions, energy, forces)
            self.points.append(point)
            new.append(point)
        return new


def _distance_to_data(run: _Surrogate, positions: np.ndarray) -> float:
    """Longest atomic displacement (Å) from the nearest oracle point."""
    return min(_longest(p.positions, positions) for p in run.points)


def _relax_on_surrogate(
    run: _Surrogate, images: list[Atoms], settings: SurrogateSettings
) -> tuple[TieredNEB, list[float], list[float], int]:
    """Converge the band on the surrogate in place; (band, energies, stds, steps).

    The relaxation stops early once an image leaves the trust region (``trust_radius``
    from every oracle point): beyond it the surrogate is extrapolating, and the band would
    follow its artefacts (GP-NEB's early stopping, Koistinen et al. 2017).
    """
    for image in images[1:-1]:
        image.calc = run.surrogate()
    cheap = settings.cheap
    neb = TieredNEB(
        images,
        k=cheap.k,
        climb=True,
        fmax=settings.band_fmax,
        climb_fmax=settings.band_climb_fmax,
    )

    def outside() -> bool:
        return any(
            _distance_to_data(run, im.positions) > settings.trust_radius for im in images[1:-1]
        )

    opt = BandLBFGS(
        neb,  # type: ignore[arg-type]  # TieredNEB
        alpha=cheap.qn_alpha,
        maxstep=min(cheap.qn_maxstep, 0.5 * settings.trust_radius),
        memory=cheap.qn_memory,
    )
    opt.run(steps=settings.max_steps, stop=outside)
    steps = opt.nsteps
    if opt.stalled and not outside():
        fire = FIRE(neb, logfile=None)
        for _ in fire.irun(fmax=settings.band_climb_fmax, steps=settings.max_steps):
            if outside():
                break
        steps += int(fire.nsteps)
    neb.get_forces()
    assert neb.energies is not None
    energies = [float(e) for e in neb.energies]
    stds = [0.0] + [run.gp.predict(im.positions, std=True)[2] for im in images[1:-1]] + [0.0]
    return neb, energies, stds, steps


def _tangent(images: list[Atoms], index: int, mask: np.ndarray) -> np.ndarray:
    """Central-difference path tangent at ``index`` (unit vector, fixed atoms zero)."""
    t = (images[index + 1].positions - images[index - 1].positions).reshape(-1)
    t = np.where(mask, t, 0.0)
    return (t / np.linalg.norm(t)).reshape(-1, 3)


def _judge(
    run: _Surrogate,
    point: _Point,
    images: list[Atoms],
    c: int,
    energies: list[float],
    stds: list[float],
    settings: SurrogateSettings,
) -> dict[str, Any]:
    """Apply the stopping rule to an oracle-evaluated climbing point (module docstring)."""
    tol = settings.barrier_tol
    delta = energies[c] - point.energy
    atoms = run.template.copy()
    atoms.positions = point.positions
    probe = run.surrogate()
    atoms.calc = probe
    surrogate_forces = atoms.get_forces()
    hvp = finite_difference_hvp(
        atoms, run.surrogate(), surrogate_forces, step=settings.probe_step, central=True
    )
    oracle_forces = np.where(run.mask.reshape(-1, 3), point.forces, 0.0)
    local = estimate_saddle_error(
        oracle_forces, _tangent(images, c, run.mask), hvp, max_probes=settings.check_probes
    )
    moved = _longest(images[c].positions, point.positions)
    prediction = math.inf if point.predicted is None else abs(point.energy - point.predicted)
    waived = moved <= 0.02
    others = [
        j
        for j in range(1, len(images) - 1)
        if j != c and energies[j] + settings.confidence * stds[j] > point.energy + tol
    ]
    error = max(abs(delta), local.error)
    accepted = (
        local.status == "ok" and error <= tol and (prediction <= tol or waived) and not others
    )
    return {
        "accepted": bool(accepted),
        "error_eV": float(error) if math.isfinite(error) else None,
        "surrogate_saddle_minus_confirmed_eV": float(delta),
        "local": local.as_dict(),
        "prediction_error_eV": float(prediction) if math.isfinite(prediction) else None,
        "surrogate_saddle_distance": moved,
        "images_possibly_higher": others,
    }


def _next_batch(
    run: _Surrogate,
    images: list[Atoms],
    c: int,
    energies: list[float],
    stds: list[float],
    reference: float,
    settings: SurrogateSettings,
) -> list[tuple[str, np.ndarray, float | None, float | None]]:
    """Pick the next oracle points: the surrogate's climbing image, then uncertain images.

    Uncertain: an image that moved more than half the trust radius from every oracle
    point, or whose energy the surrogate cannot rule out (``confidence`` standard
    deviations) being above ``reference`` (the latest confirmed saddle energy) plus the
    tolerance.
    """
    batch: list[tuple[str, np.ndarray, float | None, float | None]] = []
    target = images[c].positions.copy()
    nearest = min(run.points, key=lambda p: _longest(p.positions, target))
    distance = _longest(nearest.positions, target)
    if distance > settings.trust_radius:
        target = nearest.positions + (target - nearest.positions) * (
            settings.trust_radius / distance
        )
    if distance > 1e-3:
        e_pred, _, sigma = run.single_point(run.surrogate(uncertainty=True), target)
        batch.append(("climbing", target, e_pred, sigma))
    z, tol = settings.confidence, settings.barrier_tol
    for j in range(1, len(images) - 1):
        if j == c:
            continue
        far = _distance_to_data(run, images[j].positions) > 0.5 * settings.trust_radius
        doubtful = energies[j] + z * stds[j] > reference + tol and stds[j] > 0.1 * tol
        if far or doubtful:
            batch.append((f"image {j}", images[j].positions.copy(), energies[j], stds[j]))
    return batch


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
        The oracle's forces on the endpoints (eV/Å); default zero (relaxed).
    on_stage
        Called with a stage name (``"cheap"``, ``"round N"``, ``"final"``) and the images.

    Raises
    ------
    InputError
        Bad settings or a band without interior images.
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
    run = _Surrogate(images[0], cheap_factory, oracle, settings)
    e_ci, f_ci, _ = run.single_point(run.cheap(), images[0].positions)
    e_cf, f_cf, _ = run.single_point(run.cheap(), images[-1].positions)
    cheap_out = optimize_band(
        images, [cheap_factory() for _ in range(n)], settings.cheap, e_initial=e_ci, e_final=e_cf
    )
    if on_stage is not None:
        on_stage("cheap", images)
    zero = np.zeros((len(images[0]), 3))
    f_oi, f_of = endpoint_forces if endpoint_forces is not None else (zero, zero)
    run.gp.add(images[0].positions, e_initial - e_ci, f_ci - np.asarray(f_oi))
    run.gp.add(images[-1].positions, e_final - e_cf, f_cf - np.asarray(f_of))
    fix_endpoint(images[0], e_initial)
    fix_endpoint(images[-1], e_final)
    c0 = int(np.argmax(cheap_out.energies[1:-1])) + 1
    order = [c0] + (
        [j for j in range(1, n + 1) if j != c0] if settings.first_batch == "band" else []
    )
    batch: list[tuple[str, np.ndarray, float | None, float | None]] = [
        ("climbing" if j == c0 else f"image {j}", images[j].positions.copy(), None, None)
        for j in order
    ][: settings.max_oracle_calls]
    rounds: list[dict[str, Any]] = []
    accepted: _Point | None = None
    reason = f"{settings.max_rounds} oracle rounds done"
    n_steps = cheap_out.n_steps
    for k in range(settings.max_rounds):
        run.evaluate(batch, k)
        # prior mean: the residual's Taylor expansion at the latest saddle point
        latest = [p for p in run.points if p.kind == "climbing"][-1]
        run.gp.fit(anchor=latest.gp_index)
        neb, energies, stds, steps = _relax_on_surrogate(run, images, settings)
        n_steps += steps
        c = int(neb.imax)
        if on_stage is not None:
            on_stage(f"round {k}", images)
        record: dict[str, Any] = {
            "round": k,
            "batch": [kind for kind, *_ in batch],
            "length_scale": run.gp.length_scale,
            "surrogate_barrier_eV": energies[c] - e_initial,
            "climbing_index": c,
            "surrogate_steps": steps,
            "surrogate_fmax": [float(v) for v in neb.image_fmax()],
        }
        climbing = [p for p in run.points if p.kind == "climbing"]
        point = climbing[-1]
        if point.round == k:
            point.check = _judge(run, point, images, c, energies, stds, settings)
            record["check"] = point.check
            if point.check["accepted"]:
                accepted = point
                rounds.append(record)
                _LOG.info("surrogate NEB round %s (accepted): %s", k, record)
                break
        rounds.append(record)
        _LOG.info("surrogate NEB round %s: %s", k, record)
        left = settings.max_oracle_calls - len(run.points)
        if left <= 0:
            reason = f"oracle budget of {settings.max_oracle_calls} calls spent"
            break
        batch = _next_batch(run, images, c, energies, stds, point.energy, settings)[:left]
        if not batch:
            reason = "the surrogate's saddle is an oracle point that fails the stopping rule"
            break
    return _outcome(
        run, images, neb, energies, c, accepted, reason, rounds, cheap_out, n_steps, e_initial
    )


def _outcome(
    run: _Surrogate,
    images: list[Atoms],
    neb: TieredNEB,
    energies: list[float],
    c: int,
    accepted: _Point | None,
    reason: str,
    rounds: list[dict[str, Any]],
    cheap_out: BandOutcome,
    n_steps: int,
    e_initial: float,
) -> SurrogateOutcome:
    """Put the confirmed point into the band and document it."""
    climbing = [p for p in run.points if p.kind == "climbing"]
    if accepted is not None:
        best = accepted
    else:
        judged = [p for p in climbing if p.check.get("error_eV") is not None]
        best = min(judged, key=lambda p: p.check["error_eV"]) if judged else climbing[-1]
    tangential = tangential_forces(neb)
    tangent = _tangent(images, c, run.mask)
    images[c].positions = best.positions
    images[c].calc = SinglePointCalculator(images[c], energy=best.energy, forces=best.forces)
    for j in range(1, len(images) - 1):
        if j != c:
            image = images[j]
            image.calc = SinglePointCalculator(
                image, energy=energies[j], forces=image.get_forces(apply_constraint=False)
            )
    oracle_forces = np.where(run.mask.reshape(-1, 3), best.forces, 0.0)
    f_t = float(np.vdot(oracle_forces, tangent))
    climb_force = oracle_forces - 2.0 * f_t * tangent
    tangential[c] = f_t
    out_energies = list(energies)
    out_energies[c] = best.energy
    sources = ["oracle"] + ["surrogate"] * (len(images) - 2) + ["oracle"]
    sources[c] = "oracle"
    norms = neb.image_fmax()
    others = np.delete(norms, c - 1)
    error = best.check.get("error_eV")
    return SurrogateOutcome(
        images=images,
        energies=out_energies,
        tangential_forces=tangential,
        climbing_index=c,
        fmax=float(others.max()) if others.size else 0.0,
        fmax_climbing=float(np.sqrt((climb_force**2).sum(axis=1)).max()),
        converged=accepted is not None,
        n_force_calls=run.cheap_calls + cheap_out.n_force_calls,
        n_steps=n_steps,
        stage_force_calls={
            "cheap_band": cheap_out.n_force_calls,
            "surrogate": run.cheap_calls,
            "oracle": len(run.points),
        },
        start=f"cheap band ({cheap_out.start})",
        optimizer="surrogate",
        barrier_error=error,
        check=dict(best.check),
        stopped_early=accepted is None,
        stop_reason="" if accepted is not None else reason,
        barrier_confirmed=True,
        n_oracle_calls=len(run.points),
        barrier=best.energy - e_initial,
        n_oracle_batches=run.n_batches,
        energy_sources=sources,
        rounds=rounds,
        oracle_points=[
            {
                "round": p.round,
                "kind": p.kind,
                "energy_eV": p.energy,
                "predicted_eV": p.predicted,
                "predicted_std_eV": p.predicted_std,
            }
            for p in run.points
        ],
        cheap_barrier=max(cheap_out.energies) - cheap_out.energies[0],
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
    endpoint_forces: tuple[np.ndarray, np.ndarray] | None = None,
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
    ``meta["surrogate"]``, every round and oracle point.

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
    with (directory / "neb.extxyz").open("w") as handle:

        def record(stage: str, band: list[Atoms]) -> None:
            for image in band:
                image.info["neb_stage"] = stage
                write_frame(handle, image)

        outcome = surrogate_band(
            images,
            cheap_factory,
            oracle,
            settings,
            e_initial=e_initial,
            e_final=e_final,
            endpoint_forces=endpoint_forces,
            on_stage=record,
        )
    details = {
        "barrier_eV": outcome.barrier,
        "cheap_barrier_eV": outcome.cheap_barrier,
        "n_oracle_batches": outcome.n_oracle_batches,
        "energy_sources": outcome.energy_sources,
        "rounds": outcome.rounds,
        "oracle_points": outcome.oracle_points,
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

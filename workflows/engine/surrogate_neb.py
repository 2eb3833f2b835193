"""ML-seeded surrogate NEB: few calls of an expensive oracle to a barrier it confirms.

Users pay per DFT force call. Surrogate NEB methods (GP-NEB, Koistinen et al., J. Chem.
Phys. 147, 152720, 2017; ML-NEB, Garrido Torres et al., Phys. Rev. Lett. 122, 156001,
2019) report about an order of magnitude fewer evaluations than a conventional NEB at the
same barrier. This recipe seeds the surrogate with a cheap universal potential and keeps
the oracle for what only it can settle:

1. **Cheap band.** The cheap potential (CHGNet) converges the band between the oracle's
   relaxed endpoints (:func:`~pqdflow.workflows.engine.neb.optimize_band`, cheap calls).
2. **First batch.** The oracle evaluates every interior image in one batch (one FireWorks
   round for VASP).
3. **Surrogate rounds.** Each image carries the cheap potential plus a first-order
   correction anchored at its latest oracle point (:class:`CorrectedCalculator`: the
   oracle's energy and forces there, the cheap potential's curvature). The band is
   re-converged on that surface (cheap calls only) and the oracle evaluates the new
   climbing image (one call per round), which becomes its anchor. This is a quasi-Newton
   search for the oracle's saddle with the cheap Hessian; rounds stop once the surrogate
   predicts the oracle's climbing energy within ``predict_tol`` or after ``max_rounds``.
4. **Oracle finish.** The climbing image is then converged on the oracle itself, the other
   images staying on their corrected surfaces, with pqdflow's stopping rule
   (:mod:`~pqdflow.workflows.engine.neb_stopping`: oracle curvature probes, Newton steps
   onto the saddle): the band is done when the climbing image's oracle energy is known
   within ``barrier_tol`` of the saddle's.

The reported barrier is always the oracle energy of the climbing image minus the oracle
energy of the initial endpoint; a band whose climbing image ends on another image than the
oracle's, or where a surrogate image may lie above the confirmed saddle, is reported as
not converged with the reason. An oracle budget that runs out stops the band with the last
confirmed point, ``stopped_early`` and its estimated error.

The oracle is a batch function (:data:`Oracle`): a list of structures in, one
``(energy, forces)`` per structure out. :func:`calculator_oracle` makes one from any ASE
calculator factory, :func:`registry_oracle` from an in-process backend of the registry
(``mock``, ``chgnet``, ``gpaw``). For VASP on a cluster the same function submits one
FireWorks workflow of single points per batch and returns their parsed energies and
forces; the finish stage sends one structure per batch.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from pqdflow.documents.results import NebDoc
from pqdflow.errors import BackendError, InputError
from pqdflow.fileio import guard_outputs, move_outputs_aside
from pqdflow.workflows.engine.neb import BandOutcome, optimize_band, write_band_document
from pqdflow.workflows.engine.neb_band import NebSettings, fix_endpoint, interpolate_images
from pqdflow.workflows.engine.oracle import (
    CalculatorOracle,
    Oracle,
    calculator_oracle,
    evaluate_batch,
)
from pqdflow.workflows.engine.relax import write_frame

__all__ = [
    "CalculatorOracle",
    "CorrectedCalculator",
    "Oracle",
    "OracleCalculator",
    "SurrogateOutcome",
    "SurrogateSettings",
    "calculator_oracle",
    "registry_oracle",
    "run_surrogate_band",
    "surrogate_band",
]

_LOG = logging.getLogger(__name__)


def _default_cheap() -> NebSettings:
    return NebSettings(climb_fmax=0.01, barrier_check=False)


def _default_band() -> NebSettings:
    return NebSettings(fmax=0.03, climb_fmax=0.005, barrier_check=False, saddle_first=False)


def _default_finish() -> NebSettings:
    return NebSettings(fmax=0.05, climb_fmax=0.02, saddle_first=False, max_steps=200)


@dataclass(frozen=True)
class SurrogateSettings:
    """The surrogate recipe (energies eV, forces eV/Å).

    Attributes
    ----------
    barrier_tol
        The climbing image's oracle energy must be known within this of the oracle's
        saddle (default 0.010); it replaces ``finish.barrier_tol``.
    max_oracle_calls
        Oracle budget, endpoints excluded (they arrive relaxed).
    max_rounds
        Most surrogate rounds (one oracle call each) before the oracle finish.
    predict_tol
        Surrogate rounds stop once the surrogate predicted the oracle's climbing energy
        within this (eV).
    cheap
        Recipe of the cheap seed band (its barrier is never reported).
    band
        Recipe of the bands converged on the corrected surfaces (cheap calls only).
    finish
        Recipe of the oracle finish (its stopping rule is what accepts the barrier).
    """

    barrier_tol: float = 0.010
    max_oracle_calls: int = 60
    max_rounds: int = 4
    predict_tol: float = 0.005
    cheap: NebSettings = field(default_factory=_default_cheap)
    band: NebSettings = field(default_factory=_default_band)
    finish: NebSettings = field(default_factory=_default_finish)

    def __post_init__(self) -> None:
        for name in ("barrier_tol", "predict_tol"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(
                    f"surrogate setting {name} must be a positive number, got {value!r}"
                )
        if self.max_rounds < 0:
            raise InputError(f"surrogate setting max_rounds must be >= 0, got {self.max_rounds}")
        if self.max_oracle_calls < 1:
            raise InputError(
                f"surrogate setting max_oracle_calls must be >= 1, got {self.max_oracle_calls}"
            )
        if not self.finish.barrier_check or not self.finish.climb:
            raise InputError(
                "surrogate setting finish needs climb=True and barrier_check=True: its "
                "stopping rule is what accepts the barrier"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        out = asdict(self)
        for name in ("cheap", "band", "finish"):
            out[name] = getattr(self, name).as_dict()
        return out


@dataclass
class SurrogateOutcome(BandOutcome):
    """A surrogate band's result: a :class:`~pqdflow.workflows.engine.neb.BandOutcome` plus.

    ``energies`` holds the oracle's energies at the endpoints and the climbing image, the
    surrogate's elsewhere (``energy_sources``). ``n_force_calls`` counts the cheap
    potential's calls, ``n_oracle_calls`` the oracle's. ``barrier`` is the confirmed
    forward barrier (eV): the climbing image's oracle energy minus the initial one.
    """

    barrier: float = math.nan
    n_oracle_batches: int = 0
    energy_sources: list[str] = field(default_factory=list)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    cheap_barrier: float = math.nan


class _OracleBudgetSpent(Exception):
    """Raised inside a band optimisation when the oracle budget is spent."""


class OracleCalculator(Calculator):
    """An ASE calculator that sends each structure to a batch oracle as a batch of one.

    Keeps every result (``history``; :meth:`find`) so a caller can check that a reported
    energy is the oracle's at the reported geometry.

    Parameters
    ----------
    oracle
        The batch oracle (:data:`Oracle`).
    budget
        Most calls; one more raises an internal stop that :func:`surrogate_band` turns
        into ``stopped_early`` (None: unlimited).
    """

    implemented_properties = ["energy", "forces"]  # noqa: RUF012  # ASE's convention
    nolabel = True

    def __init__(self, oracle: Oracle, budget: int | None = None) -> None:
        super().__init__()
        self.oracle = oracle
        self.budget = budget
        self.n_calls = 0
        self.n_batches = 0
        self.history: list[tuple[np.ndarray, float, np.ndarray]] = []

    def evaluate(
        self, structures: Sequence[Atoms], labels: Sequence[str]
    ) -> list[tuple[float, np.ndarray]]:
        """One oracle batch, checked and counted (budget enforced)."""
        if self.budget is not None and self.n_calls + len(structures) > self.budget:
            raise _OracleBudgetSpent
        results = evaluate_batch(self.oracle, structures, labels)
        self.n_calls += len(structures)
        self.n_batches += 1
        for atoms, (energy, forces) in zip(structures, results, strict=True):
            self.history.append((atoms.positions.copy(), energy, forces))
        return results

    def find(self, positions: np.ndarray) -> tuple[float, np.ndarray] | None:
        """Return the oracle's energy and forces at ``positions`` (Å) if it was evaluated there."""
        for done, energy, forces in reversed(self.history):
            if done.shape == np.shape(positions) and np.allclose(done, positions, atol=1e-8):
                return energy, forces
        return None

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Energy and forces of ``atoms`` from the oracle (its earlier result, if any)."""
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        known = self.find(self.atoms.positions)
        if known is None:  # a point evaluated before (an anchor) is not paid for twice
            ((energy, forces),) = self.evaluate([self.atoms.copy()], ["climbing image"])
        else:
            energy, forces = known
        self.results = {"energy": energy, "free_energy": energy, "forces": forces.copy()}


class CorrectedCalculator(Calculator):
    """A cheap calculator plus a first-order correction to an oracle point (eV, eV/Å).

    ``E(x) = E_cheap(x) + ΔE - ΔF · (x - x0)`` and ``F(x) = F_cheap(x) + ΔF``, with ``ΔE``
    and ``ΔF`` the oracle's minus the cheap potential's energy and forces at the anchor
    ``x0``: the oracle's energy and forces at ``x0``, the cheap potential's curvature.

    Parameters
    ----------
    cheap
        The cheap calculator.
    """

    implemented_properties = ["energy", "forces"]  # noqa: RUF012  # ASE's convention
    nolabel = True

    def __init__(self, cheap: Calculator) -> None:
        super().__init__()
        self.cheap = cheap
        self.anchor: np.ndarray | None = None
        self.delta_e = 0.0
        self.delta_f: np.ndarray | None = None
        self.n_calls = 0

    def set_anchor(self, positions: np.ndarray, delta_e: float, delta_f: np.ndarray) -> None:
        """Anchor the correction at ``positions`` (Å) and forget cached results."""
        self.anchor = np.array(positions, dtype=float)
        self.delta_e = float(delta_e)
        self.delta_f = np.array(delta_f, dtype=float)
        self.reset()

    def calculate(
        self,
        atoms: Atoms | None = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = tuple(all_changes),
    ) -> None:
        """Cheap energy and forces plus the correction."""
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        work = self.atoms.copy()
        work.calc = self.cheap
        energy = float(work.get_potential_energy())
        forces = np.array(work.get_forces(apply_constraint=False), dtype=float)
        self.n_calls += 1
        if self.anchor is not None and self.delta_f is not None:
            energy += self.delta_e - float(np.vdot(self.delta_f, work.positions - self.anchor))
            forces = forces + self.delta_f
        self.results = {"energy": energy, "free_energy": energy, "forces": forces}


def _cheap_point(cheap: Calculator, atoms: Atoms) -> tuple[float, np.ndarray]:
    work = atoms.copy()
    work.calc = cheap
    return float(work.get_potential_energy()), np.array(work.get_forces(apply_constraint=False))


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
    cheap = cheap_factory()
    e_ci, _ = _cheap_point(cheap, images[0])
    e_cf, _ = _cheap_point(cheap, images[-1])
    cheap_out = optimize_band(
        images, [cheap_factory() for _ in range(n)], settings.cheap, e_initial=e_ci, e_final=e_cf
    )
    if on_stage is not None:
        on_stage("cheap", images)
    oracle_calc = OracleCalculator(oracle, settings.max_oracle_calls)
    corrected = [CorrectedCalculator(cheap_factory()) for _ in range(n)]
    anchors: dict[int, tuple[np.ndarray, float]] = {}
    n_anchor_calls = 0

    def anchor(j: int, energy: float, forces: np.ndarray) -> None:
        """Anchor image j's correction at its current positions (one cheap call)."""
        nonlocal n_anchor_calls
        e_c, f_c = _cheap_point(corrected[j - 1].cheap, images[j])
        n_anchor_calls += 1
        corrected[j - 1].set_anchor(images[j].positions, energy - e_c, forces - f_c)
        anchors[j] = (images[j].positions.copy(), energy)

    def attach(calcs: Sequence[Calculator]) -> None:
        fix_endpoint(images[0], e_initial)
        fix_endpoint(images[-1], e_final)
        for image, calc in zip(images[1:-1], calcs, strict=True):
            image.calc = calc

    interior = [image.copy() for image in images[1:-1]]
    results = oracle_calc.evaluate(interior, [f"image {j}" for j in range(1, n + 1)])
    for j, (energy, forces) in enumerate(results, start=1):
        anchor(j, energy, forces)
    rounds: list[dict[str, Any]] = [
        {"round": 0, "oracle_eV": [energy - e_initial for energy, _ in results]}
    ]
    c = int(np.argmax([energy for energy, _ in results])) + 1
    n_steps = cheap_out.n_steps
    final: BandOutcome | None = None
    stopped = ""
    reserve = settings.finish.check_probes + 2
    try:
        for k in range(1, settings.max_rounds + 1):
            if oracle_calc.n_calls + 1 + reserve > settings.max_oracle_calls:
                break
            attach(corrected)
            out = optimize_band(
                images, list(corrected), settings.band, e_initial=e_initial, e_final=e_final
            )
            n_steps += out.n_steps
            c = int(np.argmax(out.energies[1:-1])) + 1
            predicted = out.energies[c]
            ((energy, forces),) = oracle_calc.evaluate([images[c].copy()], [f"round {k}"])
            anchor(c, energy, forces)
            record = {
                "round": k,
                "climbing_index": c,
                "predicted_eV": predicted - e_initial,
                "oracle_eV": energy - e_initial,
            }
            rounds.append(record)
            _LOG.info("surrogate NEB round %s: %s", k, record)
            if on_stage is not None:
                on_stage(f"round {k}", images)
            if abs(predicted - energy) <= settings.predict_tol:
                break
        calcs: list[Calculator] = list(corrected)
        calcs[c - 1] = oracle_calc
        images[c].positions = anchors[c][0]
        attach(calcs)
        final = optimize_band(
            images, calcs, _finish_settings(settings), e_initial=e_initial, e_final=e_final
        )
    except _OracleBudgetSpent:
        stopped = f"oracle budget of {settings.max_oracle_calls} calls spent"
    if on_stage is not None:
        on_stage("finish", images)
    cheap_calls = 2 + cheap_out.n_force_calls + n_anchor_calls + sum(x.n_calls for x in corrected)
    return _outcome(
        images,
        final,
        c,
        anchors[c],
        oracle_calc,
        stopped,
        settings,
        e_initial=e_initial,
        counts=(cheap_calls, cheap_out.n_force_calls, n_steps),
        rounds=rounds,
        cheap_barrier=max(cheap_out.energies) - cheap_out.energies[0],
    )


def _surrogate_fmax(images: list[Atoms], c: int) -> float:
    """Largest per-atom force norm (eV/Å, not NEB-projected) of the surrogate images."""
    norms = [
        float(np.sqrt((image.get_forces() ** 2).sum(axis=1)).max())
        for j, image in enumerate(images[1:-1], start=1)
        if j != c
    ]
    return max(norms, default=0.0)


def _finish_settings(settings: SurrogateSettings) -> NebSettings:
    values = settings.finish.as_dict()
    values["barrier_tol"] = settings.barrier_tol
    return NebSettings(**values)


def _outcome(
    images: list[Atoms],
    final: BandOutcome | None,
    c: int,
    last_anchor: tuple[np.ndarray, float],
    oracle_calc: OracleCalculator,
    stopped: str,
    settings: SurrogateSettings,
    *,
    e_initial: float,
    counts: tuple[int, int, int],
    rounds: list[dict[str, Any]],
    cheap_barrier: float,
) -> SurrogateOutcome:
    """Report the oracle's energy at the climbing image, never a surrogate's."""
    reasons = [stopped] if stopped else []
    confirmed = None
    if final is not None:
        if final.climbing_index != c:
            reasons.append(
                f"the band's highest image is {final.climbing_index}, a surrogate image, not "
                f"the oracle's climbing image {c}"
            )
        confirmed = oracle_calc.find(images[c].positions)
        if not final.converged:
            reasons.append(final.stop_reason or "the oracle finish did not converge")
    if confirmed is None:
        # no finished oracle band: report the last oracle point of the climbing image
        images[c].positions = last_anchor[0]
        confirmed = oracle_calc.find(last_anchor[0])
    assert confirmed is not None  # every anchor is an oracle evaluation
    e_conf, f_conf = confirmed
    energies = [math.nan] * len(images)
    for j, image in enumerate(images):
        if j != c:
            energies[j] = float(image.get_potential_energy())
    energies[c] = e_conf
    energies[0] = float(images[0].get_potential_energy())
    higher = [j for j in range(1, len(images) - 1) if j != c and energies[j] > e_conf]
    if higher:
        reasons.append(f"surrogate images {higher} lie above the confirmed climbing image")
    converged = bool(final is not None and final.converged and not reasons)
    sources = ["oracle"] + ["surrogate"] * (len(images) - 2) + ["oracle"]
    sources[c] = "oracle"
    cheap_calls, cheap_band_calls, n_steps = counts
    return SurrogateOutcome(
        images=images,
        energies=energies,
        tangential_forces=[0.0] * len(images) if final is None else final.tangential_forces,
        climbing_index=c,
        fmax=_surrogate_fmax(images, c) if final is None else final.fmax,
        fmax_climbing=(
            float(np.sqrt((f_conf**2).sum(axis=1)).max()) if final is None else final.fmax_climbing
        ),
        converged=converged,
        n_force_calls=cheap_calls,
        n_steps=n_steps + (0 if final is None else final.n_steps),
        stage_force_calls={"cheap_band": cheap_band_calls, "oracle": oracle_calc.n_calls},
        start="cheap band",
        optimizer="surrogate",
        barrier_error=None if final is None else final.barrier_error,
        check={} if final is None else final.check,
        stopped_early=not converged,
        stop_reason="; ".join(dict.fromkeys(reasons)),
        barrier_confirmed=True,
        n_oracle_calls=oracle_calc.n_calls,
        barrier=e_conf - e_initial,
        n_oracle_batches=oracle_calc.n_batches,
        energy_sources=sources,
        rounds=rounds,
        cheap_barrier=cheap_barrier,
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
            on_stage=record,
        )
    details = {
        "barrier_eV": outcome.barrier,
        "cheap_barrier_eV": outcome.cheap_barrier,
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

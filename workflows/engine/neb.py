"""Climbing-image NEB with any ASE calculator, tuned for few force calls to an accurate barrier.

The recipe (defaults in :class:`NebSettings`), built on measured facts about halide-vacancy
hops under ML potentials (``shared/NEB_NOTES.md``):

1. **Endpoints** arrive relaxed (the runner relaxes NEB endpoints tighter than the band) and
   carry fixed single-point energies: they are never recomputed.
2. **Start path**: linear interpolation with the minimum-image convention, then the IDPP
   path converged tightly (``idpp_fmax``; ASE's ``interpolate(method="idpp")`` stops at a
   loose 0.1 and often changes nothing). :func:`pqdflow.structures.defects.interpolate_band`
   is used when that module is installed.
3. **Saddle first** (``saddle_first``): a one-image climbing band between the endpoints is
   converged to ``saddle_fmax`` (a handful of force calls: one image), and the full band is
   rebuilt through that point, tight IDPP on each side. The IDPP midpoint of a V_Br hop
   sits ~1 eV above the saddle on the mock; this start removes most of the work. If the
   one-image band does not converge, or finds no point above both endpoints, the plain
   IDPP band is used and the document says so.
4. **Band**: climbing image, improved tangent, pqdflow's safeguarded L-BFGS
   (:class:`~pqdflow.workflows.engine.band_optimizer.BandLBFGS`, ``optimizer="qn"``). Every
   image is converged to ``fmax`` (per-atom force norm) and the climbing image harder, to
   ``climb_fmax`` (the paper's EDIFFG, 0.02 eV/Å), because the barrier depends on it
   alone. Images already below their threshold are not moved, so they are not recomputed
   (ASE's result cache; a frozen image that a neighbour's move pushes back above its
   threshold moves again). FIRE, BFGS, LBFGS, MDMin and a first loose ODE stage remain
   selectable.
5. **Stopping rule** (``barrier_tol``, 10 meV): force criteria met is not enough. A few
   force calls measure the curvature along the tangent and where the climbing image's
   residual force points (:mod:`pqdflow.workflows.engine.neb_stopping`); the band is done when
   the climbing image's energy is known to be within ``barrier_tol`` of the saddle's. A
   soft tilt mode that leaves it further away gets a Newton step onto the saddle and the
   check repeats. A band that runs out of steps or of its force-call budget
   (``max_force_calls``) says so (``stopped_early``) and reports its estimated error.

The barrier is reported from the highest image and from a Hermite spline through image
energies and tangential forces, forward and reverse
(:func:`pqdflow.analysis.barriers.neb_barrier`). Every interior-image force evaluation is
counted, the saddle-first stage's and the stopping rule's probes included. Settings, the
band class and the start path live in :mod:`pqdflow.workflows.engine.neb_band` (re-exported);
the ML-seeded surrogate NEB for an expensive oracle in
:mod:`pqdflow.workflows.engine.surrogate_neb`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.mep.neb import NEB, BaseNEB, NEBOptimizer
from ase.optimize import BFGS, FIRE, LBFGS, MDMin

from pqdflow.analysis.barriers import neb_barrier, path_coordinates
from pqdflow.documents.results import NebDoc
from pqdflow.errors import InputError
from pqdflow.provenance import provenance
from pqdflow.workflows.engine.band_optimizer import BandLBFGS
from pqdflow.workflows.engine.calculators import CountingCalculator
from pqdflow.workflows.engine.neb_band import (
    COVALENT_ELEMENTS,
    BandOptimizer,
    NebSettings,
    TieredNEB,
    fix_endpoint,
    interpolate_images,
    resolve_optimizer,
    tangential_forces,
)
from pqdflow.workflows.engine.neb_stopping import BarrierCheck, refine_climbing_image
from pqdflow.workflows.engine.relax import RESULT_FILE, write_frame

__all__ = [
    "COVALENT_ELEMENTS",
    "FLAT_BAND_FMAX",
    "BandOutcome",
    "NebSettings",
    "TieredNEB",
    "band_trajectory",
    "interpolate_images",
    "optimize_band",
    "resolve_optimizer",
    "run_band",
    "write_band_document",
]

#: eV/Å: the flat-path rule of :func:`optimize_band` applies once no image's NEB force
#: exceeds this (a band roughly on its path, not one still far from it). On the AnHI-only
#: surface of ``make study`` (CHGNet, 2026-12-01) the Br hop beside the anilinium had a 13
#: meV barrier and no negative curvature along its path; FIRE spent 3948 force calls (15
#: min) to its step limit on it.
FLAT_BAND_FMAX: float = 0.1


@dataclass
class BandOutcome:
    """What :func:`optimize_band` reached (energies eV, forces eV/Å).

    ``images`` holds the final band (endpoints included) with single-point results.
    ``stage_force_calls`` splits ``n_force_calls`` by stage (``"saddle"``, ``"loose"``,
    ``"band"``, and ``"fire_fallback"`` when the quasi-Newton band stage stalled and FIRE
    finished it); ``start`` says how the band was started (``"saddle-first"``, or why the
    plain interpolated band was kept). ``check`` is the stopping rule's record
    (:meth:`~pqdflow.workflows.engine.neb_stopping.BarrierCheck.as_dict`; empty when it was off),
    ``barrier_error`` its estimated error of the climbing image's energy (eV; None when
    unknown) and ``stopped_early`` / ``stop_reason`` say why a band that is not converged
    stopped (step limit, force-call budget, barrier check). ``barrier_confirmed`` and
    ``n_oracle_calls`` matter for surrogate bands, whose barrier comes from another
    calculator than most force calls (None: ``n_force_calls``).
    """

    images: list[Atoms]
    energies: list[float]
    tangential_forces: list[float]
    climbing_index: int | None
    fmax: float
    fmax_climbing: float
    converged: bool
    n_force_calls: int
    n_steps: int
    stage_force_calls: dict[str, int] = field(default_factory=dict)
    start: str = "interpolated"
    optimizer: str = ""
    barrier_error: float | None = None
    check: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    stop_reason: str = ""
    barrier_confirmed: bool = True
    n_oracle_calls: int | None = None


def _optimizer(name: BandOptimizer, neb: BaseNEB, settings: NebSettings) -> Any:
    if name == "ode":
        return NEBOptimizer(neb, logfile=None, method="ode")
    if name == "qn":
        return BandLBFGS(
            neb,  # type: ignore[arg-type]  # TieredNEB
            alpha=settings.qn_alpha,
            maxstep=settings.qn_maxstep,
            memory=settings.qn_memory,
        )
    cls = {"fire": FIRE, "lbfgs": LBFGS, "bfgs": BFGS, "mdmin": MDMin}[name]
    return cls(neb, logfile=None)


def _saddle_first(
    images: list[Atoms],
    calculator: CountingCalculator,
    settings: NebSettings,
    e_initial: float,
    e_final: float,
    stop: Callable[[], bool] | None = None,
) -> tuple[list[Atoms] | None, str, int]:
    """Converge a one-image climbing band; return the band through it, a note, steps.

    The band has the saddle at interior index ``(n - 1) // 2`` and tight IDPP on each
    side; ``None`` (and the reason) when the one-image band fails or finds no barrier.
    """
    initial, final = images[0], images[-1]
    n_interior = len(images) - 2
    trio = interpolate_images(
        initial, final, 1, method=settings.interpolation, idpp_fmax=settings.idpp_fmax, check=False
    )
    fix_endpoint(trio[0], e_initial)
    fix_endpoint(trio[-1], e_final)
    trio[1].calc = calculator
    one = TieredNEB(
        trio,
        k=settings.k,
        climb=True,
        fmax=settings.saddle_fmax,
        climb_fmax=settings.saddle_fmax,
        dynamic=False,
    )
    opt = BandLBFGS(
        one,  # type: ignore[arg-type]  # TieredNEB (ASE types its attributes loosely)
        alpha=settings.qn_alpha,
        maxstep=settings.qn_maxstep,
        memory=settings.qn_memory,
    )
    ok = opt.run(steps=min(settings.max_steps, 100), stop=stop)
    assert one.energies is not None
    e_saddle = float(one.energies[1])
    if not ok:
        return None, "interpolated (one-image climbing band did not converge)", opt.nsteps
    if e_saddle <= max(e_initial, e_final):
        return None, "interpolated (one-image band found no point above the endpoints)", opt.nsteps
    saddle = trio[1].copy()
    saddle.calc = None
    n_left = (n_interior - 1) // 2
    n_right = n_interior - 1 - n_left
    # same atoms by construction: the saddle is an image of this band
    kw: dict[str, Any] = {
        "method": settings.interpolation,
        "idpp_fmax": settings.idpp_fmax,
        "check": False,
    }
    left = interpolate_images(initial, saddle, n_left, **kw) if n_left else [initial, saddle]
    right = interpolate_images(saddle, final, n_right, **kw) if n_right else [saddle, final]
    band = [initial, *left[1:-1], saddle, *right[1:-1], final]
    return band, "saddle-first", opt.nsteps


def _run_optimizer(
    opt: Any, fmax: float, steps: int, stop: Callable[[], bool] | None
) -> tuple[int, bool]:
    """Run an optimiser (budget-aware when ``stop`` is given); return (steps, stopped)."""
    if isinstance(opt, BandLBFGS):
        opt.run(steps=steps, stop=stop)
        return opt.nsteps, stop is not None and stop()
    if stop is None or isinstance(opt, NEBOptimizer):
        opt.run(fmax=fmax, steps=steps)
        return int(opt.nsteps), False
    start = int(opt.nsteps)
    for _ in opt.irun(fmax=fmax, steps=steps):
        if stop():
            return int(opt.nsteps) - start, True
    return int(opt.nsteps) - start, False


def optimize_band(
    images: list[Atoms],
    calculators: list[Calculator],
    settings: NebSettings,
    *,
    e_initial: float,
    e_final: float,
    on_stage: Callable[[str, list[Atoms]], None] | None = None,
    probe: Calculator | None = None,
) -> BandOutcome:
    """Converge a band in place with the staged recipe of :class:`NebSettings`.

    Parameters
    ----------
    images
        The band, endpoints included (from :func:`interpolate_images`); modified in place
        (with ``saddle_first`` its interior is replaced by the band through the saddle).
    calculators
        One calculator per interior image (never shared: ASE's per-image result cache is
        what makes frozen images free). Each is wrapped to count evaluations; the middle
        image's also serves the one-image band, so its final point is not recomputed.
    settings
        The recipe.
    e_initial, e_final
        Fixed endpoint energies (eV).
    on_stage
        Called with the stage name and the images after each stage (``"start"`` is the
        band the optimisation starts from).
    probe
        Calculator of the stopping rule's probes (default: the climbing image's own
        calculator; its cached result is kept either way). Its calls are counted
        (stage ``"check"``).
    """
    n_interior = len(images) - 2
    if len(calculators) != n_interior:
        raise InputError(f"{len(calculators)} calculators for {n_interior} interior images")
    if len({id(c) for c in calculators}) != len(calculators):
        raise InputError("each NEB image needs its own calculator instance")
    counted = [CountingCalculator(c) for c in calculators]
    stage_calls: dict[str, int] = {}
    n_steps = 0
    start = "interpolated"
    probes: list[CountingCalculator] = []

    def calls() -> int:
        return sum(c.n_calls for c in counted) + sum(p.n_calls for p in probes)

    checking = settings.barrier_check and settings.climb and n_interior >= 1
    stop: Callable[[], bool] | None = None
    if settings.max_force_calls is not None:
        budget = settings.max_force_calls
        # keep room for the stopping rule's probes (and one step's overshoot)
        reserve = settings.check_probes + n_interior if checking else 0

        def stop() -> bool:
            return calls() >= budget - reserve

    if settings.saddle_first and settings.climb and n_interior >= 1:
        middle = counted[(n_interior - 1) // 2]
        band, start, steps = _saddle_first(images, middle, settings, e_initial, e_final, stop)
        n_steps += steps
        stage_calls["saddle"] = middle.n_calls
        if band is not None:
            for image, new in zip(images[1:-1], band[1:-1], strict=True):
                image.positions = new.positions
    fix_endpoint(images[0], e_initial)
    fix_endpoint(images[-1], e_final)
    for image, calc in zip(images[1:-1], counted, strict=True):
        image.calc = calc
    budget_hit = False
    neb = TieredNEB(
        images,
        k=settings.k,
        climb=False,
        fmax=settings.fmax,
        climb_fmax=settings.climb_fmax,
        dynamic=settings.dynamic,
    )
    if on_stage is not None:
        on_stage("start", images)
    # the flat-path rule: a band whose highest image stays within barrier_tol of the higher
    # endpoint bounds the barrier from above (the mountain-pass property: every continuous
    # path between the two minima rises at least to the lowest saddle), so the barrier is
    # known within the tolerance (it lies in [0, bound]) without a converged climbing image
    flat_bound: list[float] = []

    def band_stop() -> bool:
        if stop is not None and stop():
            return True
        if not checking or neb.energies is None:
            return False
        bound = float(max(neb.energies[1:-1])) - max(e_initial, e_final)
        if bound > settings.barrier_tol or float(neb.image_fmax().max()) > FLAT_BAND_FMAX:
            return False
        flat_bound.append(max(bound, 0.0))
        return True

    if settings.loose_fmax > 0:
        before = calls()
        loose: BaseNEB
        if settings.loose_optimizer == "ode":
            loose = NEB(images, k=settings.k, climb=settings.climb, method="improvedtangent")
        else:
            neb.fmax = settings.loose_fmax
            neb.climb_fmax = settings.loose_fmax
            neb.climb = settings.climb
            loose = neb
        opt = _optimizer(resolve_optimizer(settings.loose_optimizer, images), loose, settings)
        steps, hit = _run_optimizer(
            opt, settings.loose_fmax, settings.max_steps, band_stop if loose is neb else stop
        )
        n_steps += steps
        budget_hit |= hit and not flat_bound
        stage_calls["loose"] = calls() - before
        if on_stage is not None:
            on_stage("loose", images)
    neb.fmax = settings.fmax
    neb.climb_fmax = settings.climb_fmax
    neb.climb = settings.climb
    band_optimizer = resolve_optimizer(settings.optimizer, images)

    def converge_band() -> None:
        nonlocal n_steps, budget_hit
        if flat_bound:
            return
        target = float(neb.climb_fmax) if settings.climb else settings.fmax
        before = calls()
        if checking:
            neb.get_forces()  # current energies (cached: the optimiser starts from them)
            if band_stop() and flat_bound:
                stage_calls["band"] = stage_calls.get("band", 0) + calls() - before
                return
        opt = _optimizer(band_optimizer, neb, settings)
        steps, hit = _run_optimizer(opt, target, settings.max_steps, band_stop)
        n_steps += steps
        budget_hit |= hit and not flat_bound
        stage_calls["band"] = stage_calls.get("band", 0) + calls() - before
        if getattr(opt, "stalled", False) and not hit:
            # the quasi-Newton model broke down (stiff ligand bonds next to soft tilts): it
            # left its best band in place; FIRE finishes from there
            before = calls()
            fire = _optimizer("fire", neb, settings)
            steps, hit = _run_optimizer(fire, target, settings.max_steps, band_stop)
            n_steps += steps
            budget_hit |= hit and not flat_bound
            stage_calls["fire_fallback"] = stage_calls.get("fire_fallback", 0) + calls() - before

    converge_band()
    check = None
    if flat_bound:
        check = BarrierCheck(
            estimate=None,
            within_tolerance=True,
            tolerance=settings.barrier_tol,
            history=[{"status": "flat path", "upper_bound_eV": flat_bound[-1]}],
        )
    elif checking:
        inner = counted[int(neb.imax) - 1].inner if probe is None else probe
        probes.append(CountingCalculator(inner))
        max_calls = settings.max_force_calls
        check = refine_climbing_image(
            neb,
            probes[-1],
            converge_band,
            tolerance=settings.barrier_tol,
            max_probes=settings.check_probes,
            # a band that did not meet its force criteria gets its estimate, no refinement
            rounds=settings.check_rounds if bool(neb.image_converged().all()) else 1,
            probe_step=settings.probe_step,
            budget_left=None if max_calls is None else lambda: max_calls - calls(),
        )
        stage_calls["check"] = probes[-1].n_calls
        if not check.within_tolerance:
            neb.get_forces()
            if band_stop() and flat_bound:  # the refinement left a band that bounds it
                check = BarrierCheck(
                    estimate=None,
                    within_tolerance=True,
                    tolerance=settings.barrier_tol,
                    rounds=check.rounds,
                    newton_steps=check.newton_steps,
                    history=[
                        *check.history,
                        {"status": "flat path", "upper_bound_eV": flat_bound[-1]},
                    ],
                )
    norms = neb.image_fmax()
    climbing = int(neb.imax) if settings.climb else None
    if climbing is not None:
        fmax_climbing = float(norms[climbing - 1])
        others = np.delete(norms, climbing - 1)
    else:
        fmax_climbing = float("nan")
        others = norms
    fmax = float(others.max()) if others.size else 0.0
    forces_met = fmax <= settings.fmax and (
        climbing is None or fmax_climbing <= float(neb.climb_fmax)
    )
    converged = bool(flat_bound) or (forces_met and (check is None or check.within_tolerance))
    reasons = []
    if not converged:
        if budget_hit or (check is not None and check.budget_spent):
            reasons.append(f"force-call budget (max_force_calls={settings.max_force_calls}) spent")
        elif not forces_met:
            reasons.append(f"force criteria not met within max_steps={settings.max_steps}")
        if check is not None and check.reason:
            reasons.append(check.reason)
    assert neb.energies is not None
    energies = [float(e) for e in neb.energies]
    tangential = tangential_forces(neb)
    if on_stage is not None:
        on_stage("climb", images)
    return BandOutcome(
        images=images,
        energies=energies,
        tangential_forces=tangential,
        climbing_index=climbing,
        fmax=fmax,
        fmax_climbing=fmax_climbing,
        converged=bool(converged),
        n_force_calls=calls(),
        n_steps=n_steps,
        stage_force_calls=stage_calls,
        start=start,
        optimizer=band_optimizer,
        barrier_error=flat_bound[-1] if flat_bound else (None if check is None else check.error),
        check={} if check is None else check.as_dict(),
        stopped_early=not converged,
        stop_reason="; ".join(reasons),
    )


def run_band(
    initial: Atoms,
    final: Atoms,
    calculator_factory: Callable[[], Calculator],
    directory: str | Path,
    *,
    path: str,
    backend: str,
    label: str = "",
    n_images: int = 5,
    e_initial: float,
    e_final: float,
    settings: NebSettings | None = None,
    initial_name: str = "initial",
    final_name: str = "final",
    meta: Mapping[str, Any] | None = None,
) -> NebDoc:
    """Build, converge and document one NEB band in ``directory``.

    Parameters
    ----------
    initial, final
        Relaxed endpoints (same atoms, same cell).
    calculator_factory
        Returns a new calculator per call (one per image).
    directory
        NEB folder (created): ``neb.extxyz`` (the band after each stage), ``band.extxyz``
        (final band) and, last and atomically, ``result.json``.
    path, backend, label, initial_name, final_name, meta
        Recorded in the document.
    n_images
        Intermediate images.
    e_initial, e_final
        Relaxed endpoint energies (eV), kept fixed.
    settings
        The recipe (defaults: :class:`NebSettings`).

    Raises
    ------
    EndpointError, InputError
        Mismatched endpoints or bad settings, before anything is written.
    """
    settings = settings or NebSettings()
    for name, value in (("e_initial", e_initial), ("e_final", e_final)):
        if not math.isfinite(value):
            raise InputError(f"NEB {path!r}: endpoint energy {name} must be finite, got {value}")
    # a mismatch the runner already flagged (meta["endpoint_check"]) is not re-raised here
    flagged = (meta or {}).get("endpoint_check", {}).get("passed") is False
    images = interpolate_images(
        initial,
        final,
        n_images,
        method=settings.interpolation,
        idpp_fmax=settings.idpp_fmax,
        check=not flagged,
    )
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    calculators = [calculator_factory() for _ in range(n_images)]
    probe = calculator_factory() if settings.barrier_check else None
    with band_trajectory(directory) as record:
        outcome = optimize_band(
            images,
            calculators,
            settings,
            e_initial=e_initial,
            e_final=e_final,
            on_stage=record,
            probe=probe,
        )
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
        barrier_tol=settings.barrier_tol if settings.barrier_check else None,
        meta=meta,
    )


@contextmanager
def band_trajectory(directory: Path) -> Iterator[Callable[[str, list[Atoms]], None]]:
    """Open ``directory/neb.extxyz``; yield ``record(stage, band)`` appending every image.

    Each image is written with its energy and forces and tagged ``info["neb_stage"]``; the
    band recipes pass ``record`` as their ``on_stage`` callback.
    """
    with (Path(directory) / "neb.extxyz").open("w") as handle:

        def record(stage: str, band: list[Atoms]) -> None:
            for image in band:
                image.info["neb_stage"] = stage
                write_frame(handle, image)

        yield record


def write_band_document(
    directory: Path,
    outcome: BandOutcome,
    *,
    cell: np.ndarray,
    path: str,
    backend: str,
    label: str,
    initial_name: str,
    final_name: str,
    settings: Mapping[str, Any],
    barrier_tol: float | None,
    meta: Mapping[str, Any] | None = None,
    confirmed_only: bool = False,
) -> NebDoc:
    """Write ``band.extxyz`` and, last and atomically, ``result.json`` for a band outcome.

    The barrier comes from the outcome's energies (highest image and spline,
    :func:`~pqdflow.analysis.barriers.neb_barrier`); ``n_oracle_calls`` defaults to
    ``n_force_calls`` (the band's calculator is the one the barrier comes from). With
    ``confirmed_only`` (a surrogate band, whose other images carry model energies) every
    barrier field, spline ones included, is the climbing image's confirmed energy.
    """
    tmp = directory / ".band.extxyz.tmp"
    with tmp.open("w") as handle:
        for image in outcome.images:
            write_frame(handle, image)
    tmp.replace(directory / "band.extxyz")
    coords = path_coordinates([im.get_positions() for im in outcome.images], cell)
    barrier = neb_barrier(
        outcome.energies,
        coords,
        outcome.tangential_forces,
        reference="initial_state",
        climbing_index=outcome.climbing_index,
    )
    if confirmed_only and outcome.climbing_index is not None:
        top = barrier.energies[outcome.climbing_index]
        barrier = replace(
            barrier,
            forward=top,
            reverse=top - barrier.energies[-1],
            forward_spline=top,
            reverse_spline=top - barrier.energies[-1],
            notes=[
                *barrier.notes,
                "confirmed only: the barrier is the climbing image's oracle energy; the "
                "other images' energies are the surrogate's",
            ],
        )
    doc = NebDoc(
        path=path,
        label=label,
        backend=backend,
        image_energies=outcome.energies,
        reaction_coordinate=[float(s) for s in coords],
        tangential_forces=outcome.tangential_forces,
        barrier=barrier.as_dict(),
        Ea_eV=barrier.forward,
        Ea_reverse_eV=barrier.reverse,
        Ea_spline_eV=barrier.forward_spline,
        Ea_reverse_spline_eV=barrier.reverse_spline,
        n_images=len(outcome.images) - 2,
        climbing_index=outcome.climbing_index,
        fmax=outcome.fmax,
        fmax_climbing=outcome.fmax_climbing,
        converged=outcome.converged,
        n_force_calls=outcome.n_force_calls,
        n_steps=outcome.n_steps,
        stage_force_calls=dict(outcome.stage_force_calls),
        start=outcome.start,
        optimizer=outcome.optimizer,
        barrier_tolerance_eV=barrier_tol,
        barrier_error_eV=outcome.barrier_error,
        barrier_confirmed=outcome.barrier_confirmed,
        n_oracle_calls=(
            outcome.n_force_calls if outcome.n_oracle_calls is None else outcome.n_oracle_calls
        ),
        stopped_early=outcome.stopped_early,
        stop_reason=outcome.stop_reason,
        barrier_check=dict(outcome.check),
        initial=initial_name,
        final=final_name,
        directory=str(directory.resolve()),
        settings=dict(settings),
        meta=dict(meta or {}),
        provenance=provenance(backend=backend),
    )
    doc.write(directory / RESULT_FILE)
    return doc

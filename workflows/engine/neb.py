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

The barrier is reported from the highest image and from a Hermite spline through image
energies and tangential forces, forward and reverse
(:func:`pqdflow.analysis.barriers.neb_barrier`). Every interior-image force evaluation is
counted, the saddle-first stage's included.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.mep.neb import NEB, BaseNEB, DyNEB, NEBOptimizer, NEBState, idpp_interpolate, interpolate
from ase.optimize import BFGS, FIRE, LBFGS, MDMin

from pqdflow.analysis.barriers import neb_barrier, path_coordinates
from pqdflow.documents.results import NebDoc
from pqdflow.errors import EndpointError, InputError
from pqdflow.provenance import provenance
from pqdflow.structures.ligands import MOLECULAR_ELEMENTS
from pqdflow.workflows.engine.band_optimizer import BandLBFGS
from pqdflow.workflows.engine.calculators import CountingCalculator
from pqdflow.workflows.engine.relax import RESULT_FILE, write_frame

__all__ = [
    "COVALENT_ELEMENTS",
    "BandOutcome",
    "NebSettings",
    "TieredNEB",
    "interpolate_images",
    "optimize_band",
    "resolve_optimizer",
    "run_band",
]

BandOptimizer = Literal["auto", "qn", "fire", "lbfgs", "bfgs", "mdmin", "ode"]
_BAND_OPTIMIZERS = ("auto", "qn", "fire", "lbfgs", "bfgs", "mdmin", "ode")

#: Elements of covalently bonded molecules (ligands): their stiff bonds next to the soft
#: Pb-X tilts defeat a quasi-Newton model with one scalar initial Hessian.
COVALENT_ELEMENTS = MOLECULAR_ELEMENTS


@dataclass(frozen=True)
class NebSettings:
    """How a band is built and converged (forces in eV/Å, spring constant in eV/Å²).

    Attributes
    ----------
    fmax
        Per-atom NEB force norm every image must reach (0.05).
    climb_fmax
        Tighter criterion for the climbing image (0.02, the paper's EDIFFG); the barrier
        depends on it. On the V_Br benchmark 0.02 left the barrier 2-6 meV above a fully
        converged (0.01) band; 0.01 costs ~20 % more force calls for ~1 meV.
    loose_fmax
        Criterion of an optional first, fast stage with ``loose_optimizer`` (for ``"ode"``
        the largest force component, ASE's convention); 0 (default) skips the stage.
    climb
        Use a climbing image.
    k
        Spring constant.
    optimizer
        Optimiser of the band: ``"auto"`` (default: ``"qn"``, unless a free atom belongs
        to a molecule, see :data:`COVALENT_ELEMENTS`, then ``"fire"``), ``"qn"``
        (pqdflow's safeguarded L-BFGS; FIRE finishes the band if it stalls), or ASE's
        ``"fire"``, ``"lbfgs"``, ``"bfgs"``, ``"mdmin"``. Measured with CHGNet: the bulk
        V_Br band takes 39 force calls with ``"qn"``; the ligand-covered control surface
        567 with ``"fire"`` and 1071 with ``"qn"`` (stiff C-H/C-N bonds next to soft tilts).
    loose_optimizer
        Optimiser of the loose stage (``"ode"``: ASE's adaptive ODE ``NEBOptimizer``, or
        any of the above).
    dynamic
        Do not move (hence not recompute) images already below their criterion.
    interpolation
        ``"idpp"`` (tight IDPP after a minimum-image linear start) or ``"linear"``.
    idpp_fmax
        Convergence of the IDPP path (in the IDPP's own units, Å-like).
    saddle_first
        Converge a one-image climbing band first and build the band through it (needs
        ``climb``).
    saddle_fmax
        Criterion of that one-image band (0.05). Converging it harder let it slide to
        other, tilt-relaxed saddles on CHGNet; the full band refines it anyway.
    qn_alpha
        Initial Hessian guess of ``"qn"`` (eV/Å²); 3 measured best on CsPbBr3.
    qn_maxstep
        Largest atomic displacement of one ``"qn"`` step (Å).
    qn_memory
        Curvature pairs kept by ``"qn"``.
    max_steps
        Step limit of each stage.
    """

    fmax: float = 0.05
    climb_fmax: float = 0.02
    loose_fmax: float = 0.0
    climb: bool = True
    k: float = 0.1
    optimizer: BandOptimizer = "auto"
    loose_optimizer: BandOptimizer = "ode"
    dynamic: bool = True
    interpolation: Literal["idpp", "linear"] = "idpp"
    idpp_fmax: float = 0.005
    saddle_first: bool = True
    saddle_fmax: float = 0.05
    qn_alpha: float = 3.0
    qn_maxstep: float = 0.15
    qn_memory: int = 20
    max_steps: int = 1000

    def __post_init__(self) -> None:
        for name in (
            "fmax",
            "climb_fmax",
            "k",
            "idpp_fmax",
            "saddle_fmax",
            "qn_alpha",
            "qn_maxstep",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(f"NEB setting {name} must be a positive number, got {value!r}")
        if not (math.isfinite(self.loose_fmax) and self.loose_fmax >= 0):
            raise InputError(f"NEB setting loose_fmax must be >= 0, got {self.loose_fmax!r}")
        for name in ("optimizer", "loose_optimizer"):
            if getattr(self, name) not in _BAND_OPTIMIZERS:
                raise InputError(
                    f"NEB setting {name}={getattr(self, name)!r} is unknown; "
                    f"choose one of {list(_BAND_OPTIMIZERS)}"
                )
        if self.optimizer == "ode":
            raise InputError(
                "NEB optimizer 'ode' judges convergence by the largest force component, not "
                "the per-atom norm, and cannot converge a climbing image to climb_fmax; use "
                "it as loose_optimizer only"
            )
        if self.interpolation not in ("idpp", "linear"):
            raise InputError(
                f"NEB interpolation {self.interpolation!r} is unknown; choose 'idpp' or 'linear'"
            )
        if self.max_steps < 1:
            raise InputError(f"NEB max_steps must be >= 1, got {self.max_steps}")
        if self.qn_memory < 1:
            raise InputError(f"NEB qn_memory must be >= 1, got {self.qn_memory}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


class TieredNEB(DyNEB):
    """Improved-tangent NEB whose climbing image has its own, tighter criterion.

    With ``dynamic=True`` an image whose NEB force norm is below its criterion (``fmax``,
    or ``climb_fmax`` for the climbing image) is neither moved nor recomputed, and its
    force is reported as zero to the optimiser; run the optimiser to ``climb_fmax``.
    ASE's ``DyNEB`` cannot do this: it freezes the climbing image at ``fmax``.
    """

    def __init__(
        self,
        images: list[Atoms],
        *,
        k: float = 0.1,
        climb: bool = True,
        fmax: float = 0.05,
        climb_fmax: float = 0.01,
        dynamic: bool = True,
    ) -> None:
        super().__init__(
            images,
            k=k,
            climb=climb,
            fmax=fmax,
            dynamic_relaxation=dynamic,
            method="improvedtangent",
        )
        self.climb_fmax = climb_fmax

    def neb_forces(self) -> np.ndarray:
        """NEB forces of the interior images, shape ``(n_images, n_atoms, 3)``, none zeroed."""
        forces = BaseNEB.get_forces(self)
        return np.asarray(forces).reshape(self.nimages - 2, self.natoms, 3)

    def image_thresholds(self) -> np.ndarray:
        """Criterion of each interior image (eV/Å)."""
        thresholds = np.full(self.nimages - 2, float(self.fmax))
        if self.climb and self.energies is not None:
            thresholds[self.imax - 1] = self.climb_fmax
        return thresholds

    def image_fmax(self) -> np.ndarray:
        """Largest per-atom NEB force norm of each interior image (eV/Å)."""
        forces = self.neb_forces()
        if self.natoms == 0:
            return np.zeros(self.nimages - 2)
        return np.asarray(np.sqrt((forces**2).sum(axis=2)).max(axis=1))

    def get_forces(self) -> np.ndarray:
        """NEB forces, zero on images below their criterion when dynamic."""
        forces = self.neb_forces()
        if self.dynamic_relaxation:
            norms = np.sqrt((forces**2).sum(axis=2)).max(axis=1)
            forces[norms < self.image_thresholds()] = 0.0
        return forces.reshape(-1, 3)

    def set_positions(self, positions: np.ndarray, adjust_positions: bool = True) -> None:
        """Move the images that are not yet below their criterion (all when not dynamic)."""
        if not self.dynamic_relaxation:
            BaseNEB.set_positions(self, positions, adjust_positions)
            return
        active = self.image_fmax() >= self.image_thresholds()
        positions = np.asarray(positions).reshape(self.nimages - 2, self.natoms, 3)
        for i, image in enumerate(self.images[1:-1]):
            if active[i]:
                image.set_positions(positions[i])


def interpolate_images(
    initial: Atoms,
    final: Atoms,
    n_images: int,
    *,
    method: Literal["idpp", "linear"] = "idpp",
    idpp_fmax: float = 0.005,
    check: bool = True,
) -> list[Atoms]:
    """Band of ``n_images`` intermediate images between two endpoints (endpoints included).

    Uses :func:`pqdflow.structures.defects.interpolate_band` when installed; otherwise a
    minimum-image linear interpolation, followed for ``"idpp"`` by ASE's IDPP routine run
    to ``idpp_fmax`` (not ASE's loose default of 0.1).

    Raises
    ------
    EndpointError
        Endpoints with different atoms, numbers of atoms or cells.
    InputError
        ``n_images`` < 1.
    """
    if n_images < 1:
        raise InputError(f"n_images must be >= 1, got {n_images}")
    if len(initial) != len(final) or list(initial.numbers) != list(final.numbers):
        raise EndpointError(
            f"NEB endpoints differ in atoms: {initial.get_chemical_formula()} "
            f"({len(initial)} atoms) vs {final.get_chemical_formula()} ({len(final)} atoms)"
        )
    if not np.allclose(np.array(initial.cell), np.array(final.cell), atol=1e-6):
        raise EndpointError("NEB endpoints have different cells; the band needs one fixed cell")
    try:
        defects = importlib.import_module("pqdflow.structures.defects")
    except ModuleNotFoundError:
        defects = None
    if defects is not None and hasattr(defects, "interpolate_band"):
        band = defects.interpolate_band(
            initial, final, n_images, method=method, fmax=idpp_fmax, check=check
        )
        return [image.copy() for image in band]
    images = [initial.copy()] + [initial.copy() for _ in range(n_images)] + [final.copy()]
    mic = bool(initial.pbc.any())
    interpolate(images, mic=mic, apply_constraint=False)
    if method == "idpp":
        neb = NEB(images, method="improvedtangent")
        idpp_interpolate(
            neb, traj=None, log=None, fmax=idpp_fmax, optimizer=MDMin, mic=mic, steps=5000
        )
    for image in images:
        image.calc = None
    return images


@dataclass
class BandOutcome:
    """What :func:`optimize_band` reached (energies eV, forces eV/Å).

    ``images`` holds the final band (endpoints included) with single-point results.
    ``stage_force_calls`` splits ``n_force_calls`` by stage (``"saddle"``, ``"loose"``,
    ``"band"``, and ``"fire_fallback"`` when the quasi-Newton band stage stalled and FIRE
    finished it); ``start`` says how the band was started (``"saddle-first"``, or why the
    plain interpolated band was kept).
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


def resolve_optimizer(name: BandOptimizer, images: list[Atoms]) -> BandOptimizer:
    """Return the optimiser ``"auto"`` stands for on this band (others unchanged).

    ``"fire"`` when any free atom (not held by ``FixAtoms``) is one of
    :data:`COVALENT_ELEMENTS`, else ``"qn"``.
    """
    if name != "auto":
        return name
    atoms = images[0]
    fixed: set[int] = set()
    for constraint in atoms.constraints:
        if isinstance(constraint, FixAtoms):
            fixed.update(int(i) for i in constraint.get_indices())
    symbols = atoms.get_chemical_symbols()
    molecular = any(s in COVALENT_ELEMENTS for i, s in enumerate(symbols) if i not in fixed)
    return "fire" if molecular else "qn"


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


def _tangential_forces(neb: BaseNEB) -> list[float]:
    """Force along the improved tangent at each image (endpoints 0), towards the last image."""
    state = NEBState(neb, neb.images, neb.energies)
    values = [0.0]
    spring1 = state.spring(0)
    for i in range(1, neb.nimages - 1):
        spring2 = state.spring(i)
        tangent = neb.neb_method.get_tangent(state, spring1, spring2, i)
        assert neb.real_forces is not None
        values.append(float(np.vdot(neb.real_forces[i], tangent)))
        spring1 = spring2
    values.append(0.0)
    return values


def _fix_endpoint(image: Atoms, energy: float) -> None:
    image.calc = SinglePointCalculator(image, energy=energy, forces=np.zeros((len(image), 3)))


def _saddle_first(
    images: list[Atoms],
    calculator: CountingCalculator,
    settings: NebSettings,
    e_initial: float,
    e_final: float,
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
    _fix_endpoint(trio[0], e_initial)
    _fix_endpoint(trio[-1], e_final)
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
    ok = opt.run(steps=min(settings.max_steps, 100))
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


def optimize_band(
    images: list[Atoms],
    calculators: list[Calculator],
    settings: NebSettings,
    *,
    e_initial: float,
    e_final: float,
    on_stage: Callable[[str, list[Atoms]], None] | None = None,
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
    if settings.saddle_first and settings.climb and n_interior >= 1:
        middle = counted[(n_interior - 1) // 2]
        band, start, steps = _saddle_first(images, middle, settings, e_initial, e_final)
        n_steps += steps
        stage_calls["saddle"] = middle.n_calls
        if band is not None:
            for image, new in zip(images[1:-1], band[1:-1], strict=True):
                image.positions = new.positions
    _fix_endpoint(images[0], e_initial)
    _fix_endpoint(images[-1], e_final)
    for image, calc in zip(images[1:-1], counted, strict=True):
        image.calc = calc

    def calls() -> int:
        return sum(c.n_calls for c in counted)

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
        opt.run(fmax=settings.loose_fmax, steps=settings.max_steps)
        n_steps += int(opt.nsteps)
        stage_calls["loose"] = calls() - before
        if on_stage is not None:
            on_stage("loose", images)
    before = calls()
    neb.fmax = settings.fmax
    neb.climb_fmax = settings.climb_fmax
    neb.climb = settings.climb
    target = settings.climb_fmax if settings.climb else settings.fmax
    band_optimizer = resolve_optimizer(settings.optimizer, images)
    opt = _optimizer(band_optimizer, neb, settings)
    opt.run(fmax=target, steps=settings.max_steps)
    n_steps += int(opt.nsteps)
    stage_calls["band"] = calls() - before
    if getattr(opt, "stalled", False):
        # the quasi-Newton model broke down (stiff ligand bonds next to soft tilts): it
        # left its best band in place; FIRE finishes from there
        before = calls()
        fire = _optimizer("fire", neb, settings)
        fire.run(fmax=target, steps=settings.max_steps)
        n_steps += int(fire.nsteps)
        stage_calls["fire_fallback"] = calls() - before
    norms = neb.image_fmax()
    climbing = int(neb.imax) if settings.climb else None
    if climbing is not None:
        fmax_climbing = float(norms[climbing - 1])
        others = np.delete(norms, climbing - 1)
    else:
        fmax_climbing = float("nan")
        others = norms
    fmax = float(others.max()) if others.size else 0.0
    converged = fmax <= settings.fmax and (climbing is None or fmax_climbing <= settings.climb_fmax)
    assert neb.energies is not None
    energies = [float(e) for e in neb.energies]
    tangential = _tangential_forces(neb)
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
    with (directory / "neb.extxyz").open("w") as handle:

        def record(stage: str, band: list[Atoms]) -> None:
            for image in band:
                image.info["neb_stage"] = stage
                write_frame(handle, image)

        outcome = optimize_band(
            images, calculators, settings, e_initial=e_initial, e_final=e_final, on_stage=record
        )
    tmp = directory / ".band.extxyz.tmp"
    with tmp.open("w") as handle:
        for image in outcome.images:
            write_frame(handle, image)
    tmp.replace(directory / "band.extxyz")
    coords = path_coordinates([im.get_positions() for im in outcome.images], np.array(initial.cell))
    barrier = neb_barrier(
        outcome.energies,
        coords,
        outcome.tangential_forces,
        reference="initial_state",
        climbing_index=outcome.climbing_index,
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
        n_images=n_images,
        climbing_index=outcome.climbing_index,
        fmax=outcome.fmax,
        fmax_climbing=outcome.fmax_climbing,
        converged=outcome.converged,
        n_force_calls=outcome.n_force_calls,
        n_steps=outcome.n_steps,
        stage_force_calls=dict(outcome.stage_force_calls),
        start=outcome.start,
        optimizer=outcome.optimizer,
        initial=initial_name,
        final=final_name,
        directory=str(directory.resolve()),
        settings=settings.as_dict(),
        meta=dict(meta or {}),
        provenance=provenance(backend=backend),
    )
    doc.write(directory / RESULT_FILE)
    return doc

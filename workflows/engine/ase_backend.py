"""Any ASE calculator behind the backend protocol: the mock pair potential and CHGNet.

:class:`AseBackend` relaxes a planned :class:`~pqdflow.documents.plan.CalcSpec` with
:func:`~pqdflow.workflows.engine.relax.relax_structure` and converges a band with the NEB
recipe of :mod:`~pqdflow.workflows.engine.neb`, writing its files into the folder it is given.
The registry (:func:`pqdflow.workflows.backends.get_backend`) builds one by name:
``"mock"`` (:class:`~pqdflow.workflows.engine.calculators.MockPairCalculator`, plumbing, not
physics) and ``"chgnet"`` (the pretrained CHGNet universal potential, weights shipped in the
wheel, CPU, offline).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from ase import Atoms
from ase.calculators.calculator import Calculator

from pqdflow.documents.plan import CalcSpec, NebSpec
from pqdflow.documents.results import NebDoc, RelaxDoc
from pqdflow.errors import BackendError, BackendNotInstalledError, InputError
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.engine.dispersion import dispersion_record, with_dispersion
from pqdflow.workflows.engine.neb import NebSettings, run_band
from pqdflow.workflows.engine.relax import BFGS_ALPHA, OPTIMIZERS, OptimizerName, relax_structure
from pqdflow.workflows.engine.threads import apply_threads

__all__ = [
    "CHGNET_INSTALL_HINT",
    "CHGNET_TENSOR_WARNING",
    "AseBackend",
    "AseSettings",
    "CellFactory",
    "ase_settings",
    "chgnet_calculator_factory",
    "chgnet_factory",
    "load_chgnet_model",
    "mock_factory",
    "quiet_chgnet",
]

#: ``cell_factory(atoms, kind, charge) -> calculator factory`` of a cell-dependent calculator.
CellFactory = Callable[[Atoms, str, int], Callable[[], Calculator]]

#: How to install the optional ML backend (torch first: a local CPU build, no CUDA).
CHGNET_INSTALL_HINT = 'pip install torch==2.13.0 && pip install -e ".[ml]"'


@dataclass(frozen=True)
class AseSettings:
    """Settings of an ASE-calculator backend (forces in eV/Å).

    Attributes
    ----------
    fmax
        Relaxation criterion, largest per-atom force norm (0.02: the paper's EDIFFG).
    endpoint_fmax
        Tighter criterion for NEB endpoints (the tilt modes of CsPbX3 are soft; endpoints
        relaxed only to 0.02 leave the band's end images below them).
    max_steps
        Relaxation step limit.
    optimizer
        Relaxation optimiser: ``"bfgs"``, ``"lbfgs"``, ``"fire"`` or ``"precon"``
        (:data:`~pqdflow.workflows.engine.relax.OPTIMIZERS`; every backend defaults to
        ``"bfgs"``, see :data:`~pqdflow.workflows.backends.PHYSICS_OPTIMIZER`).
    bfgs_alpha
        Initial Hessian of BFGS, eV/Å² (:data:`~pqdflow.workflows.engine.relax.BFGS_ALPHA`,
        20: ASE's 70 is far stiffer than the octahedral tilts).
    neb
        Band recipe (:class:`~pqdflow.workflows.engine.neb.NebSettings`).
    calculator
        Extra keyword arguments of the calculator (``MockPairCalculator`` parameters, or
        CHGNet's ``model_name`` / ``device``).
    """

    fmax: float = 0.02
    endpoint_fmax: float = 0.005
    max_steps: int = 1000
    optimizer: OptimizerName = "bfgs"
    bfgs_alpha: float = BFGS_ALPHA
    neb: NebSettings = field(default_factory=NebSettings)
    calculator: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("fmax", "endpoint_fmax", "bfgs_alpha"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise BackendError(
                    f"backend setting {name} must be a positive number, got {value!r}"
                )
        if self.optimizer not in OPTIMIZERS:
            raise BackendError(
                f"backend setting optimizer={self.optimizer!r} is unknown; "
                f"choose one of {sorted(OPTIMIZERS)}"
            )
        if not isinstance(self.max_steps, int) or self.max_steps < 1:
            raise BackendError(
                f"backend setting max_steps must be an integer >= 1, got {self.max_steps!r}"
            )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


class AseBackend:
    """A backend that runs any ASE calculator in-process.

    Parameters
    ----------
    name
        Name recorded in documents.
    calculator_factory
        Returns a new calculator per call (each NEB image needs its own).
    settings
        Relaxation and NEB settings.
    cell_factory
        For calculators that depend on the cell (a DFT code: charge, k-points from the cell,
        Gamma only for molecules): ``cell_factory(atoms, kind, charge)`` returns the
        calculator factory for that calculation; used instead of ``calculator_factory``.
    """

    def __init__(
        self,
        name: str,
        calculator_factory: Callable[[], Calculator],
        settings: AseSettings | None = None,
        *,
        cell_factory: CellFactory | None = None,
    ) -> None:
        self.name = name
        self.calculator_factory = calculator_factory
        self.settings = settings or AseSettings()
        self.cell_factory = cell_factory

    def factory_for(self, atoms: Atoms, kind: str, charge: int) -> Callable[[], Calculator]:
        """Return the calculator factory for a calculation on ``atoms`` of ``kind``."""
        if self.cell_factory is not None:
            return self.cell_factory(atoms, kind, charge)
        return self.calculator_factory

    def __repr__(self) -> str:
        return f"AseBackend(name={self.name!r})"

    def describe(self) -> dict[str, Any]:
        """Backend name and settings (JSON-ready)."""
        return {"backend": self.name, **self.settings.as_dict()}

    def relax(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        """Relax ``spec.atoms`` (NEB endpoints to ``endpoint_fmax``) in ``directory``.

        See :func:`~pqdflow.workflows.engine.relax.relax_structure`. An ML potential has no
        notion of charge, so there a charged cell (``spec.charge``) is relaxed neutral; a
        ``cell_factory`` (GPAW) gets the charge.
        """
        s = self.settings
        tight = spec.is_endpoint
        mode = str(spec.meta.get("dispersion", "none"))
        factory = with_dispersion(self.factory_for(spec.atoms, spec.kind, spec.charge), mode)
        return relax_structure(
            spec.atoms,
            factory(),
            directory,
            name=spec.name,
            backend=self.name,
            kind=spec.kind,
            role=spec.role,
            formula_units=spec.formula_units,
            fmax=s.endpoint_fmax if tight else s.fmax,
            relax_cell=spec.relax_cell,
            max_steps=s.max_steps,
            optimizer=s.optimizer,
            bfgs_alpha=s.bfgs_alpha,
            settings={
                "tight": tight,
                "charge": spec.charge,
                "calculator": dict(s.calculator),
                **dispersion_record(mode),
            },
            meta=spec.meta,
        )

    def single_point(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        """Energy and forces of ``spec.atoms`` as given (no relaxation) in ``directory``.

        See :func:`~pqdflow.workflows.engine.single_point.single_point_structure`; a
        ``cell_factory`` (GPAW) gets the cell's charge.
        """
        from pqdflow.workflows.engine.single_point import single_point_structure

        mode = str(spec.meta.get("dispersion", "none"))  # the same Hamiltonian as the ML term
        factory = with_dispersion(self.factory_for(spec.atoms, spec.kind, spec.charge), mode)
        return single_point_structure(
            spec.atoms,
            factory(),
            directory,
            name=spec.name,
            backend=self.name,
            kind=spec.kind,
            role=spec.role,
            formula_units=spec.formula_units,
            settings={
                "charge": spec.charge,
                "calculator": dict(self.settings.calculator),
                **dispersion_record(mode),
            },
            meta=spec.meta,
        )

    def neb(
        self,
        spec: NebSpec,
        initial: RelaxDoc,
        final: RelaxDoc,
        directory: Path,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> NebDoc:
        """Converge the band of ``spec`` between relaxed endpoints (energies kept fixed).

        See :func:`~pqdflow.workflows.engine.neb.run_band`.
        """
        start = initial.read_structure()
        return run_band(
            start,
            final.read_structure(),
            with_dispersion(
                self.factory_for(start, initial.kind, spec.charge),
                str(spec.meta.get("dispersion", "none")),
            ),
            directory,
            path=spec.name,
            backend=self.name,
            label=spec.label,
            n_images=spec.n_images,
            e_initial=initial.energy,
            e_final=final.energy,
            settings=self.settings.neb,
            initial_name=initial.name,
            final_name=final.name,
            meta=meta,
        )


_CHGNET_MODELS: dict[tuple[str, str], Any] = {}


def load_chgnet_model(model_name: str = "0.3.0", device: str = "cpu") -> Any:
    """Load the pretrained CHGNet model shipped in the chgnet wheel (cached per process).

    Nothing is downloaded: ``CHGNet.load`` reads the checkpoint packaged with chgnet.

    Raises
    ------
    BackendNotInstalledError
        If chgnet or torch cannot be imported (the message says how to install them).
    """
    try:
        model_module = importlib.import_module("chgnet.model")
        importlib.import_module("chgnet.model.dynamics")
    except ImportError as exc:
        raise BackendNotInstalledError(
            f"the 'chgnet' backend needs chgnet and torch, which are not importable ({exc}); "
            f"install them with: {CHGNET_INSTALL_HINT}"
        ) from exc
    apply_threads()  # torch threads: not one per core on a shared machine (threads.py)
    key = (model_name, device)
    if key in _CHGNET_MODELS:
        return _CHGNET_MODELS[key]
    with contextlib.redirect_stdout(io.StringIO()):
        model = model_module.CHGNet.load(model_name=model_name, use_device=device, verbose=False)
    _CHGNET_MODELS[key] = model
    return model


#: The one CHGNet warning pqdflow silences: torch's note on every force call that CHGNet
#: turns a tensor that requires grad into a number (harmless: no gradient flows through it).
CHGNET_TENSOR_WARNING = r"Converting a tensor with requires_grad=True to a scalar"


def quiet_chgnet(calc: Calculator) -> Calculator:
    """Silence :data:`CHGNET_TENSOR_WARNING` (only it, only from chgnet) in ``calc``'s calls.

    The filter is set around each ``calculate`` call, not process-wide, so every other
    warning (and this one from anywhere else) still shows.
    """
    inner = calc.calculate

    @functools.wraps(inner)
    def calculate(*args: Any, **kwargs: Any) -> Any:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message=CHGNET_TENSOR_WARNING, category=UserWarning, module="chgnet"
            )
            return inner(*args, **kwargs)

    calc.calculate = calculate  # type: ignore[method-assign]
    return calc


def chgnet_calculator_factory(
    model_name: str = "0.3.0", device: str = "cpu"
) -> Callable[[], Calculator]:
    """Return a factory of CHGNet ASE calculators sharing one cached model.

    Each calculator is an
    :class:`~pqdflow.workflows.engine.chgnet_calc.InferenceCHGNetCalculator`: the same
    model and numbers as chgnet's ``CHGNetCalculator``, computing only the requested
    properties (no stress in a fixed-cell relaxation or a band), about half the cost per
    force call on the ligand-covered slabs.

    Raises
    ------
    BackendNotInstalledError
        If chgnet or torch is missing.
    """
    model = load_chgnet_model(model_name, device)
    chgnet_calc = importlib.import_module("pqdflow.workflows.engine.chgnet_calc")
    model.graph_converter.set_isolated_atom_response("ignore")

    def factory() -> Calculator:
        calc: Calculator = chgnet_calc.InferenceCHGNetCalculator(model)
        return quiet_chgnet(calc)

    return factory


def mock_factory(calculator: Mapping[str, Any]) -> Callable[[], Calculator]:
    """Return a factory of :class:`MockPairCalculator` (``calculator`` parameters, checked now)."""
    MockPairCalculator(**calculator)  # validate parameters now, not at the first image

    def factory() -> Calculator:
        return MockPairCalculator(**calculator)

    return factory


def chgnet_factory(calculator: Mapping[str, Any]) -> Callable[[], Calculator]:
    """Return a factory of CHGNet calculators (``calculator``: ``model_name``, ``device``).

    Raises
    ------
    BackendError
        An unknown setting.
    BackendNotInstalledError
        chgnet or torch missing.
    """
    allowed = {"model_name", "device"}
    unknown = sorted(set(calculator) - allowed)
    if unknown:
        raise BackendError(
            f"unknown chgnet calculator setting(s) {unknown}; allowed: {sorted(allowed)}"
        )
    return chgnet_calculator_factory(**calculator)


def ase_settings(overrides: Mapping[str, Any]) -> AseSettings:
    """Build :class:`AseSettings` from flat keywords; ``neb_<field>`` sets a NEB field.

    Raises
    ------
    BackendError
        An unknown or invalid setting (the message lists the allowed ones).
    """
    top = {f.name for f in fields(AseSettings)} - {"neb"}
    neb_fields = {f.name for f in fields(NebSettings)}
    plain: dict[str, Any] = {}
    neb: dict[str, Any] = {}
    unknown: list[str] = []
    for key, value in overrides.items():
        if key in top:
            plain[key] = value
        elif key.startswith("neb_") and key[4:] in neb_fields:
            neb[key[4:]] = value
        elif key == "neb" and isinstance(value, NebSettings):
            plain["neb"] = value
        else:
            unknown.append(key)
    if unknown:
        allowed = sorted(top) + sorted(f"neb_{n}" for n in neb_fields)
        raise BackendError(f"unknown backend setting(s) {sorted(unknown)}; allowed: {allowed}")
    settings = AseSettings(**plain)
    if neb:
        try:
            settings = replace(settings, neb=replace(settings.neb, **neb))
        except InputError as exc:
            raise BackendError(str(exc)) from exc
    return settings


def gpaw_cell_factory(calculator: Mapping[str, Any]) -> CellFactory:
    """Return the cell factory of GPAW calculators (``calculator``: :class:`GpawSettings` fields).

    Raises
    ------
    BackendError
        An unknown or invalid GPAW setting.
    BackendNotInstalledError
        GPAW or its PAW setups are missing (the message names ``make setup-gpaw``).
    """
    from pqdflow.workflows.engine import gpaw_calc

    gpaw_calc.import_gpaw()
    gpaw_calc.gpaw_setup_path()
    try:
        settings = gpaw_calc.GpawSettings(**dict(calculator))
    except TypeError as exc:
        raise BackendError(f"unknown gpaw calculator setting: {exc}") from exc

    def cell(atoms: Atoms, kind: str, charge: int) -> Callable[[], Calculator]:
        return gpaw_calc.gpaw_calculator_factory(
            atoms,
            kind=kind,  # type: ignore[arg-type]  # a CalcKind, checked by gpaw_parameters
            charge=charge,
            settings=settings,
        )

    return cell

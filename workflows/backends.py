"""The one backend registry: every way of computing energies, resolved by name.

A backend relaxes a planned :class:`~pqdflow.documents.plan.CalcSpec` into a
:class:`~pqdflow.documents.results.RelaxDoc` and converges the band of a
:class:`~pqdflow.documents.plan.NebSpec` between two relaxed endpoints into a
:class:`~pqdflow.documents.results.NebDoc`, writing its files into the folder it is given
(:class:`Backend`). :func:`get_backend` builds any registered backend from its name and
settings; the local engine, the FireWorks tasks, the ML pre-relaxation and the command line
all resolve names here, so adding a backend is one :func:`register_backend` call.

Built in:

``mock``
    A fast pair potential (:class:`~pqdflow.workflows.engine.calculators.MockPairCalculator`)
    for plumbing tests: its numbers are not physics.
``chgnet``
    The pretrained CHGNet universal potential (weights in the wheel; CPU; offline).
``gpaw``
    GPAW, real PBE/PAW plane-wave DFT at the paper's settings (400 eV, 1e-5 eV), in this
    process; the cell's charge and k-points from the calculation (``make setup-gpaw``).
``vasp``
    VASP under custodian (:class:`~pqdflow.workflows.vasp.backend.VaspBackend`); commands from
    the settings, else from the FireWorks worker's ``my_fworker.yaml`` env, else
    ``vasp_std`` / ``vasp_gam``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from pqdflow.documents.plan import CalcSpec, NebSpec
from pqdflow.documents.results import NebDoc, RelaxDoc
from pqdflow.errors import BackendError

__all__ = [
    "Backend",
    "BackendEntry",
    "backend_entry",
    "backend_names",
    "check_plan_support",
    "get_backend",
    "register_backend",
    "resolve_env",
]


@runtime_checkable
class Backend(Protocol):
    """What the study steps need from a way of computing energies.

    Attributes
    ----------
    name
        Registry name recorded in every document (``"mock"``, ``"chgnet"``, ``"vasp"``).
    """

    name: str

    def describe(self) -> dict[str, Any]:
        """Return the settings recorded in provenance (JSON-ready)."""
        ...

    def relax(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        """Relax ``spec.atoms`` in ``directory`` (NEB endpoints more tightly)."""
        ...

    def neb(
        self,
        spec: NebSpec,
        initial: RelaxDoc,
        final: RelaxDoc,
        directory: Path,
        *,
        meta: Mapping[str, Any] | None = None,
    ) -> NebDoc:
        """Converge the band of ``spec`` between relaxed endpoints in ``directory``."""
        ...


#: ``factory(settings, env) -> Backend``: ``settings`` are the keyword arguments given to
#: :func:`get_backend`, ``env`` the FireWorks worker's env (empty outside FireWorks).
BackendFactory = Callable[[Mapping[str, Any], Mapping[str, Any]], Backend]


@dataclass(frozen=True)
class BackendEntry:
    """One registered backend.

    Attributes
    ----------
    name
        Registry name.
    factory
        Builds the backend from its settings and the worker env.
    summary
        One line for ``--help`` and error messages.
    in_process
        Computes inside this Python process (an ASE calculator): usable for the ML
        pre-relaxation and the local runner without any external program.
    physics
        False for plumbing-only backends (``mock``): their numbers are never results.
    solvent
        Computes calculations in an implicit solvent (``meta["solvent"]``; VASP with
        VASPsol); a plan that needs one is refused by the others (:func:`check_plan_support`).
    """

    name: str
    factory: BackendFactory
    summary: str
    in_process: bool = True
    physics: bool = True
    solvent: bool = False


_REGISTRY: dict[str, BackendEntry] = {}


def register_backend(entry: BackendEntry, *, replace: bool = False) -> None:
    """Add ``entry`` to the registry.

    Raises
    ------
    BackendError
        If the name is taken and ``replace`` is False.
    """
    if entry.name in _REGISTRY and not replace:
        raise BackendError(
            f"backend {entry.name!r} is already registered; pass replace=True to replace it"
        )
    _REGISTRY[entry.name] = entry


def backend_names(*, in_process: bool | None = None) -> list[str]:
    """Return the registered backend names (only in-process ones with ``in_process=True``)."""
    return sorted(n for n, e in _REGISTRY.items() if in_process in (None, e.in_process))


def backend_entry(name: str) -> BackendEntry:
    """Return the entry of ``name``.

    Raises
    ------
    BackendError
        An unknown name; the message lists the known ones.
    """
    if name not in _REGISTRY:
        known = ", ".join(f"{n} ({_REGISTRY[n].summary})" for n in backend_names())
        raise BackendError(f"unknown backend {name!r}; known backends: {known}")
    return _REGISTRY[name]


def get_backend(name: str, *, env: Mapping[str, Any] | None = None, **settings: Any) -> Backend:
    """Return the backend called ``name`` with ``settings`` applied.

    Parameters
    ----------
    name
        A registered name (:func:`backend_names`): ``"mock"``, ``"chgnet"``, ``"vasp"``, ...
    env
        The FireWorks worker's env (``fw_spec["_fw_env"]``); values of the form ``">>key<<"``
        in the settings are looked up there (:func:`resolve_env`).
    **settings
        Backend settings. ``mock`` / ``chgnet``: fields of
        :class:`~pqdflow.workflows.engine.ase_backend.AseSettings` (``fmax``,
        ``endpoint_fmax``, ``max_steps``, ``optimizer``, ``calculator``) and ``neb_<field>``
        for :class:`~pqdflow.workflows.engine.neb.NebSettings`. ``vasp``: ``vasp_cmd``,
        ``gamma_vasp_cmd``, ``custodian`` (fields of
        :class:`~pqdflow.workflows.vasp.custodian_jobs.CustodianSettings`) and ``inputs``
        (:class:`~pqdflow.workflows.vasp.calc_inputs.VaspInputOptions` as a dict).

    Raises
    ------
    BackendError
        An unknown name (the message lists the known ones) or an unknown/invalid setting.
    BackendNotInstalledError
        A backend whose packages are missing (the message says how to install them).
    """
    entry = backend_entry(name)
    return entry.factory(settings, dict(env or {}))


def check_plan_support(plan: Any, name: str) -> None:
    """Refuse a plan that needs what backend ``name`` cannot compute (before anything runs).

    Raises
    ------
    BackendError
        Calculations in an implicit solvent (``ligands.references: solvent``) on a backend
        without a solvent model, naming them and the backends that have one.
    """
    solvated = [c.name for c in plan.calculations if c.meta.get("solvent")]
    entry = _REGISTRY.get(name)
    if solvated and not (entry is not None and entry.solvent):
        able = sorted(n for n, e in _REGISTRY.items() if e.solvent)
        raise BackendError(
            f"backend {name!r} has no implicit-solvent model, but {len(solvated)} "
            f"calculation(s) of this study need one (ligands.references: solvent; e.g. "
            f"{solvated[0]}); run them with {', '.join(able)} (VASPsol), or set "
            "ligands.references: gas"
        )


def resolve_env(value: Any, env: Mapping[str, Any], *, strict: bool = True) -> Any:
    """Resolve FireWorks' ``>>key<<`` convention against a worker's env.

    ``">>vasp_cmd<<"`` becomes ``env["vasp_cmd"]`` (the ``env`` of the worker's
    my_fworker.yaml); any other value is returned unchanged.

    Raises
    ------
    BackendError
        If the key is absent from the env and ``strict`` is True.
    """
    if isinstance(value, str) and value.startswith(">>") and value.endswith("<<"):
        key = value[2:-2]
        if key in env:
            return env[key]
        if strict:
            raise BackendError(
                f"the worker's env has no {key!r}; add it to my_fworker.yaml "
                f"(env: {{{key}: 'srun vasp_std'}}); the env has {sorted(env)}"
            )
        return None
    return value


# ----------------------------------------------------------------------------- built-ins
#: Relaxation optimiser of the physics backends unless a setting says otherwise: BFGS, one
#: force call per step. The preconditioned LBFGS (``"precon"``) takes fewer *steps* (437 vs
#: 669 on the 84-atom AnHI NEB host, CHGNet, to 0.005 eV/Å) but its Armijo line search
#: needs an energy decrease that CHGNet's single-precision energies cannot resolve near a
#: tight minimum: on the 83-atom AnHI+TMSBr endpoint it spent 15707 force calls in 1000
#: steps (40 min) without converging (``make study``, 2026-12-01).
PHYSICS_OPTIMIZER = "bfgs"

#: Force-call budget of one band on the physics backends (``neb_max_force_calls``; None is
#: no budget). Converged ligand-surface bands of ``make study`` took 567 CHGNet calls (the
#: control surface, FIRE); on the AnHI-only surface the Br hop nearest to the anilinium has
#: a flat path (barrier 13 meV, no negative curvature along it) and FIRE spent 3948 calls (15
#: min) to its step limit without converging (2026-12-01). A band that runs out of budget
#: stops, says so (``stopped_early``, ``stop_reason``) and is flagged unconverged everywhere
#: its barrier is used.
PHYSICS_BAND_BUDGET = 1200


def _ase(name: str, calculators: str, **defaults: Any) -> BackendFactory:
    def factory(settings: Mapping[str, Any], env: Mapping[str, Any]) -> Backend:
        from pqdflow.workflows.engine import ase_backend

        parsed = ase_backend.ase_settings({**defaults, **settings})
        make = getattr(ase_backend, calculators)
        return ase_backend.AseBackend(name, make(parsed.calculator), parsed)

    return factory


def _gpaw(settings: Mapping[str, Any], env: Mapping[str, Any]) -> Backend:
    from pqdflow.workflows.engine import ase_backend

    parsed = ase_backend.ase_settings(
        {"optimizer": PHYSICS_OPTIMIZER, "neb_max_force_calls": PHYSICS_BAND_BUDGET, **settings}
    )
    cell = ase_backend.gpaw_cell_factory(parsed.calculator)

    def unused() -> Any:
        raise BackendError("the gpaw backend builds its calculators per cell (cell_factory)")

    return ase_backend.AseBackend("gpaw", unused, parsed, cell_factory=cell)


def _vasp(settings: Mapping[str, Any], env: Mapping[str, Any]) -> Backend:
    from pqdflow.workflows.vasp.backend import VaspBackend
    from pqdflow.workflows.vasp.custodian_jobs import CustodianSettings

    allowed = {"vasp_cmd", "gamma_vasp_cmd", "custodian", "inputs"}
    unknown = sorted(set(settings) - allowed)
    if unknown:
        raise BackendError(f"unknown vasp setting(s) {unknown}; allowed: {sorted(allowed)}")
    vasp_cmd = resolve_env(settings.get("vasp_cmd") or env.get("vasp_cmd") or "vasp_std", env)
    gamma = settings.get("gamma_vasp_cmd") or env.get("gamma_vasp_cmd")
    if gamma is None and not settings.get("vasp_cmd") and not env.get("vasp_cmd"):
        gamma = "vasp_gam"
    try:
        custodian = CustodianSettings(**dict(settings.get("custodian") or {}))
    except TypeError as exc:
        raise BackendError(f"bad custodian setting: {exc}") from exc
    return VaspBackend(
        vasp_cmd,
        resolve_env(gamma, env, strict=False),
        custodian=custodian,
        inputs=settings.get("inputs"),
    )


register_backend(
    BackendEntry(
        "mock", _ase("mock", "mock_factory"), "pair potential, plumbing only", physics=False
    )
)
register_backend(
    BackendEntry(
        "chgnet",
        _ase(
            "chgnet",
            "chgnet_factory",
            optimizer=PHYSICS_OPTIMIZER,
            neb_max_force_calls=PHYSICS_BAND_BUDGET,
        ),
        "CHGNet universal ML potential",
    )
)
register_backend(BackendEntry("gpaw", _gpaw, "GPAW PBE/PAW plane-wave DFT, in this process"))
register_backend(
    BackendEntry("vasp", _vasp, "VASP PBE/PAW under custodian", in_process=False, solvent=True)
)

"""ML pre-relaxation of a study plan before its VASP inputs are written.

Fewer DFT ionic steps is the largest saving a user can get: :func:`prerelax_plan` relaxes
every calculation of a :class:`~pqdflow.documents.plan.StudyPlan` with a cheap backend
(CHGNet; ``mock`` for plumbing tests only) and returns a *new* plan whose structures are the
relaxed ones, each carrying a ``meta["prerelax"]`` record (backend and model, criterion,
steps, converged flag, energy, date) that the dry run copies into the folder's provenance.
:func:`prerelax_hook` binds the settings into the ``prerelax=`` hook of
:func:`~pqdflow.workflows.vasp.dryrun.write_study_inputs`.

The recipe is the study's own: the relaxation steps of
:func:`~pqdflow.workflows.study.scheduler.schedule`, each run by
:func:`~pqdflow.workflows.study.steps.execute_step` (``FixAtoms`` respected, bulk cells
relaxed with the ions, every result in ``<workdir>/<name>/``: ``relax.extxyz``,
``final.extxyz``, ``result.json``). NEB final endpoints start from the *relaxed* initial
endpoint with only the hopping halide moved (so both endpoints share one octahedral-tilt
basin); the dry run then re-interpolates each band (tight IDPP) between the pre-relaxed
endpoints.

A finished folder is reused, not recomputed; it records what it was computed from
(:func:`~pqdflow.workflows.study.scheduler.step_inputs`), and a folder computed from other
inputs (the study or the settings changed) is refused before anything is relaxed
(``force`` moves it aside).

A relaxation that does not converge within the step limit is recorded
(``converged: false``), warned about (:class:`PrerelaxWarning`) and, by default, its last
geometry is still used: it is lower in energy than the start and VASP relaxes it further
anyway. ``unconverged="discard"`` keeps the starting geometry instead (an NEB final
endpoint still starts from its initial endpoint's last geometry) and ``"raise"`` stops with
:class:`~pqdflow.errors.ConvergenceError`.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Literal, get_args

from ase import Atoms
from ase.io import read

from pqdflow.documents.plan import CalcSpec, StudyPlan
from pqdflow.documents.results import RelaxDoc, read_finished
from pqdflow.errors import BackendError, ConvergenceError, InputError, OverwriteError, ParseError
from pqdflow.fileio import move_outputs_aside
from pqdflow.workflows.backends import Backend, backend_entry, backend_names, get_backend
from pqdflow.workflows.engine.ase_backend import AseBackend, load_chgnet_model
from pqdflow.workflows.study.scheduler import fingerprint, reuse_settings, schedule, step_inputs
from pqdflow.workflows.study.steps import execute_step

__all__ = [
    "DEFAULT_PRERELAX_FMAX",
    "MOCK_NOTE",
    "PRERELAX_DIR",
    "PrerelaxWarning",
    "prerelax_backend",
    "prerelax_hook",
    "prerelax_plan",
]

Unconverged = Literal["use", "discard", "raise"]
#: Default pre-relaxation criterion, largest per-atom force norm (eV/Å).
#: 0.05 eV/Å removes the large initial forces (most of the ionic steps a DFT relaxation
#: would spend) while stopping well before the ML potential's own error (tens of meV/Å for
#: CHGNet) makes further steps meaningless; the DFT run then tightens to its EDIFFG (0.02,
#: NEB endpoints 0.01 eV/Å).
DEFAULT_PRERELAX_FMAX = 0.05
#: Default work folder name, inside the dry run's output folder.
PRERELAX_DIR = ".prerelax"
#: Recorded with every mock pre-relaxation so its geometries are never taken for physics.
MOCK_NOTE = "mock pair potential: plumbing test only, these geometries are not physics"


class PrerelaxWarning(UserWarning):
    """A pre-relaxation that did not converge (its inputs are still written)."""


def prerelax_backend(
    backend: str | Backend,
    *,
    fmax: float | None = None,
    max_steps: int | None = None,
) -> Backend:
    """Return the backend a pre-relaxation runs with.

    Parameters
    ----------
    backend
        The name of an in-process backend of the registry (``"chgnet"``, ``"mock"`` for
        plumbing tests only, ...) or a ready :class:`~pqdflow.workflows.backends.Backend`
        (its own settings apply).
    fmax
        Criterion for every structure, NEB endpoints included (eV/Å); default
        :data:`DEFAULT_PRERELAX_FMAX`. Only with a backend name.
    max_steps
        Optimiser step limit; default the backend's. Only with a backend name.

    Raises
    ------
    BackendError
        Unknown backend name (lists the choices), invalid settings, or settings given with
        a backend instance.
    BackendNotInstalledError
        ``"chgnet"`` without chgnet/torch (the message says how to install them).
    """
    if isinstance(backend, str):
        allowed = backend_names(in_process=True)
        backend_entry(backend)  # unknown: BackendError listing every backend
        if backend not in allowed:
            raise BackendError(
                f"backend {backend!r} cannot pre-relax (it does not run in this process); "
                f"choose one of {allowed} (mock is for plumbing tests only)"
            )
        crit = DEFAULT_PRERELAX_FMAX if fmax is None else fmax
        settings: dict[str, Any] = {"fmax": crit, "endpoint_fmax": crit}
        if max_steps is not None:
            settings["max_steps"] = max_steps
        return get_backend(backend, **settings)
    if not isinstance(backend, Backend):
        raise BackendError(
            f"backend must be one of {backend_names(in_process=True)} or a Backend, "
            f"got {type(backend).__name__}"
        )
    if fmax is not None or max_steps is not None:
        raise BackendError(
            "fmax/max_steps apply to a backend given by name; configure the backend "
            f"instance {backend!r} itself"
        )
    return backend


def _backend_record(backend: Backend) -> dict[str, Any]:
    """Describe what ran: name, settings (no NEB recipe), model version, mock warning."""
    described = dict(backend.describe())
    described.pop("neb", None)
    record: dict[str, Any] = {"name": backend.name, "settings": described}
    if backend.name == "mock":
        record["note"] = MOCK_NOTE
    elif backend.name == "chgnet" and isinstance(backend, AseBackend):
        calculator = dict(backend.settings.calculator)
        model = load_chgnet_model(**calculator)  # cached: loaded when the backend was built
        record["model"] = {
            "package": "chgnet",
            "package_version": metadata.version("chgnet"),
            "checkpoint": getattr(model, "version", None),
            **calculator,
        }
    return record


def _stale(directory: Path, backend: str, inputs: dict[str, Any]) -> bool:
    """Whether ``directory`` holds a finished relaxation of other inputs."""
    try:
        read_finished(directory, RelaxDoc, backend, inputs=inputs)
    except OverwriteError:
        return True
    return False


def _with_geometry(template: Atoms, relaxed: Atoms) -> Atoms:
    """Copy of ``template`` (constraints, info) with the cell and positions of ``relaxed``."""
    out = template.copy()
    out.set_cell(relaxed.cell[:], scale_atoms=False)
    out.positions = relaxed.positions
    return out


def _read_final(doc: RelaxDoc) -> Atoms:
    path = doc.structure_file()
    frame = read(path, format="extxyz", index=-1)
    if not isinstance(frame, Atoms):
        raise ParseError(path, "expected one relaxed structure")
    return frame


def prerelax_plan(
    plan: StudyPlan,
    backend: str | Backend = "chgnet",
    *,
    workdir: str | Path,
    fmax: float | None = None,
    max_steps: int | None = None,
    unconverged: Unconverged = "use",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> StudyPlan:
    """Relax every structure of ``plan`` with an ML backend; return a new plan.

    Parameters
    ----------
    plan
        The study plan; not modified.
    backend
        ``"chgnet"`` (default), ``"mock"`` (plumbing tests only; recorded as such) or a
        ready :class:`~pqdflow.workflows.backends.Backend`.
    workdir
        Folder of the relaxations, one sub-folder per calculation (created when needed).
        Finished sub-folders are reused.
    fmax
        Convergence criterion, largest per-atom force norm on the free atoms (eV/Å), for
        every structure; default :data:`DEFAULT_PRERELAX_FMAX` (0.05 eV/Å, a DFT starting
        point, see there). Only with a backend name.
    max_steps
        Optimiser step limit per structure; default the backend's (1000).
    unconverged
        What to do with a relaxation that hits the step limit: ``"use"`` its last geometry
        (default), ``"discard"`` it (keep the starting geometry) or ``"raise"``. Either way
        ``converged: false`` is recorded and a :class:`PrerelaxWarning` is issued.
    force
        Move sub-folders whose recorded fingerprint no longer matches (study or settings
        changed) aside to ``<name>.bak-<timestamp>`` and relax again.
    progress
        Called with one line per calculation (e.g. ``print``); ``None`` is silent.

    Returns
    -------
    StudyPlan
        Same calculations, bindings and NEBs; each calculation's ``atoms`` replaced by the
        pre-relaxed structure (constraints and ``info`` kept) and ``meta["prerelax"]``
        added; each NEB's ``meta["prerelax"]`` says its endpoints were pre-relaxed.

    Raises
    ------
    BackendError, BackendNotInstalledError
        Unknown backend, bad settings, or CHGNet not installed; before anything is written.
    InputError
        Unknown ``unconverged`` choice; before anything is written.
    OverwriteError
        Sub-folders of ``workdir`` hold results for other starting structures or settings
        and ``force`` is False; lists them; nothing is relaxed.
    ConvergenceError
        A relaxation did not converge and ``unconverged="raise"``.
    """
    if unconverged not in get_args(Unconverged):
        raise InputError(
            f"unconverged={unconverged!r} is unknown; choose one of {list(get_args(Unconverged))}"
        )
    engine = prerelax_backend(backend, fmax=fmax, max_steps=max_steps)
    record = _backend_record(engine)
    workdir = Path(workdir)
    say = progress or (lambda _line: None)
    steps = [step for step in schedule(plan) if step.kind == "relax"]
    settings = reuse_settings(engine.describe())
    settings.pop("neb", None)
    records: dict[str, dict[str, Any]] = {}
    for step in steps:
        records[step.name] = step_inputs(step, settings, {p: records[p] for p in step.parents})
    stale = [st.name for st in steps if _stale(workdir / st.name, engine.name, records[st.name])]
    if stale and not force:
        raise OverwriteError(
            f"pre-relaxation folders under {workdir} hold results for other starting structures "
            f"or settings: {', '.join(stale)}; nothing was relaxed. Use force=True (--force) "
            "to move them aside, or another pre-relaxation folder."
        )
    for name in stale:
        move_outputs_aside(workdir / name)

    docs: dict[str, RelaxDoc] = {}
    relaxed: dict[str, CalcSpec] = {}
    total = len(steps)
    for i, step in enumerate(steps, start=1):
        spec = step.spec
        assert isinstance(spec, CalcSpec)
        origin = "plan"
        if step.start_from is not None:
            origin = (
                f"relaxed initial endpoint {step.start_from.initial!r}, hopping atom moved "
                "(same basin)"
            )
        directory = workdir / spec.name
        cached = (directory / "result.json").is_file()
        tick = time.perf_counter()
        say(f"prerelax [{i}/{total}] {spec.name} ({len(spec.atoms)} atoms, {engine.name}) ...")
        doc = execute_step(step, engine, docs, directory=directory)
        assert isinstance(doc, RelaxDoc)
        docs[spec.name] = doc
        status = "converged" if doc.converged else "NOT converged"
        how = "reused" if cached else f"{time.perf_counter() - tick:.1f} s"
        say(
            f"prerelax [{i}/{total}] {spec.name}: {status}, {doc.n_steps} steps, "
            f"fmax {doc.fmax:.3f} eV/Å, E = {doc.energy:.4f} eV ({how})"
        )
        geometry = "relaxed"
        atoms = _with_geometry(spec.atoms, _read_final(doc))
        if not doc.converged:
            message = (
                f"pre-relaxation of {spec.name!r} did not converge to "
                f"{doc.settings.get('fmax')} eV/Å in {doc.n_steps} steps "
                f"(fmax {doc.fmax:.3f} eV/Å); see {directory}"
            )
            if unconverged == "raise":
                raise ConvergenceError(message)
            if unconverged == "discard":
                atoms, geometry = spec.atoms.copy(), "start (not converged)"
            warnings.warn(
                f"{message}; using the {geometry} geometry", PrerelaxWarning, stacklevel=2
            )
        info = {
            "backend": engine.name,
            "description": record,
            "fmax": doc.settings.get("fmax"),
            "fmax_reached": doc.fmax,
            "converged": doc.converged,
            "steps": doc.n_steps,
            "force_calls": doc.n_force_calls,
            "energy_eV": doc.energy,
            "relax_cell": doc.settings.get("relax_cell"),
            "date": doc.provenance.get("created_utc"),
            "start": origin,
            "geometry": geometry,
            "directory": doc.directory,
            "fingerprint": fingerprint(records[spec.name]),
        }
        relaxed[spec.name] = dataclasses.replace(
            spec, atoms=atoms, meta={**spec.meta, "prerelax": info}
        )

    nebs = []
    for neb in plan.nebs:
        ends = (relaxed[neb.initial].meta["prerelax"], relaxed[neb.final].meta["prerelax"])
        note = {
            "backend": engine.name,
            "description": record,
            "endpoints": {"initial": neb.initial, "final": neb.final},
            "fmax": max(float(e["fmax"]) for e in ends),
            "converged": all(e["converged"] for e in ends),
            "band": "re-interpolated (tight IDPP) between the pre-relaxed endpoints",
        }
        if engine.name == "mock":
            note["note"] = MOCK_NOTE
        nebs.append(dataclasses.replace(neb, meta={**neb.meta, "prerelax": note}))
    summary = {
        "backend": record,
        "workdir": str(workdir.resolve()),
        "converged": sum(1 for c in relaxed.values() if c.meta["prerelax"]["converged"]),
        "total": total,
    }
    return dataclasses.replace(
        plan,
        calculations=[relaxed[c.name] for c in plan.calculations],
        bindings=list(plan.bindings),
        nebs=nebs,
        meta={**plan.meta, "prerelax": summary},
    )


def prerelax_hook(
    backend: str | Backend = "chgnet",
    *,
    workdir: str | Path,
    fmax: float | None = None,
    max_steps: int | None = None,
    unconverged: Unconverged = "use",
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> Callable[[StudyPlan], StudyPlan]:
    """Return the ``prerelax=`` hook of :func:`~pqdflow.workflows.vasp.dryrun.write_study_inputs`.

    The backend is resolved now, so an unknown backend or a missing CHGNet fails before the
    dry run computes or writes anything. Arguments as in :func:`prerelax_plan`.

    Raises
    ------
    BackendError, BackendNotInstalledError, InputError
        As :func:`prerelax_plan`, immediately.
    """
    engine = prerelax_backend(backend, fmax=fmax, max_steps=max_steps)
    if unconverged not in get_args(Unconverged):
        raise InputError(
            f"unconverged={unconverged!r} is unknown; choose one of {list(get_args(Unconverged))}"
        )

    def hook(plan: StudyPlan) -> StudyPlan:
        return prerelax_plan(
            plan,
            engine,
            workdir=workdir,
            unconverged=unconverged,
            force=force,
            progress=progress,
        )

    return hook

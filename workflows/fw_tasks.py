"""FireTasks of a pqdflow workflow: thin, typed wrappers around the engine's pure functions.

Each task turns its JSON parameters back into plan objects, calls one engine function
(:func:`~pqdflow.workflows.runner.relax_calculation`, ``run_neb``, ``compute_binding``) and
returns a ``FWAction`` whose ``stored_data`` holds the resulting document (kept in the
launchpad's ``launches`` collection, readable after the launcher exits) and whose
``mod_spec`` hands the document to the child Fireworks.

Backends are resolved inside the job from a name: ``"vasp"`` builds a
:class:`~pqdflow.workflows.vasp_backend.VaspBackend` from the worker's ``my_fworker.yaml``
env (``vasp_cmd``, ``gamma_vasp_cmd``; FireWorks' ``>>key<<`` convention); other names go to
the engine's ``get_backend``. :func:`register_backend` adds a name (a seam for tests and
plug-ins).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar

from ase import Atoms
from ase.io.jsonio import decode, encode
from fireworks import FiretaskBase, FWAction, explicit_serialize

from pqdflow.errors import BackendError, CalculationFailed, InputError
from pqdflow.workflows.plan import BindingSpec, CalcSpec, NebSpec

__all__ = [
    "NEB_DOCS_KEY",
    "RELAX_DOCS_KEY",
    "BindingTask",
    "NebAnalysisTask",
    "NebTask",
    "RelaxTask",
    "analyse_neb",
    "atoms_from_dict",
    "atoms_to_dict",
    "binding_from_dict",
    "binding_to_dict",
    "calc_from_dict",
    "calc_to_dict",
    "doc_name",
    "doc_to_dict",
    "env_chk",
    "neb_from_dict",
    "neb_to_dict",
    "register_backend",
    "registered_backends",
    "resolve_backend",
    "task_directory",
]

#: Spec key under which relaxation documents reach child Fireworks.
RELAX_DOCS_KEY = "_pqdflow_relax_docs"
#: Spec key under which NEB documents reach the NEB analysis.
NEB_DOCS_KEY = "_pqdflow_neb_docs"

BackendFactory = Callable[[Mapping[str, Any]], Any]
_REGISTRY: dict[str, BackendFactory] = {}


# ----------------------------------------------------------------------------- serialisation
def atoms_to_dict(atoms: Atoms) -> dict[str, Any]:
    """ASE's JSON form of ``atoms`` as a dict (cell, pbc, constraints and ``info`` kept)."""
    return dict(json.loads(encode(atoms)))


def atoms_from_dict(data: Mapping[str, Any]) -> Atoms:
    """Inverse of :func:`atoms_to_dict`."""
    atoms = decode(json.dumps(data))
    if not isinstance(atoms, Atoms):
        raise InputError(f"not a serialised ASE Atoms object (got {type(atoms).__name__})")
    return atoms


def calc_to_dict(calc: CalcSpec) -> dict[str, Any]:
    """Return a :class:`CalcSpec` as JSON-ready data."""
    return {
        "name": calc.name,
        "kind": calc.kind,
        "atoms": atoms_to_dict(calc.atoms),
        "relax_cell": calc.relax_cell,
        "formula_units": calc.formula_units,
        "role": calc.role,
        "meta": json.loads(json.dumps(calc.meta, default=str)),
    }


def calc_from_dict(data: Mapping[str, Any]) -> CalcSpec:
    """Inverse of :func:`calc_to_dict`."""
    fields = dict(data)
    fields["atoms"] = atoms_from_dict(fields["atoms"])
    return CalcSpec(**fields)


def binding_to_dict(binding: BindingSpec) -> dict[str, Any]:
    """Return a :class:`BindingSpec` as JSON-ready data."""
    return dict(json.loads(json.dumps(asdict(binding), default=str)))


def binding_from_dict(data: Mapping[str, Any]) -> BindingSpec:
    """Inverse of :func:`binding_to_dict`."""
    return BindingSpec(**dict(data))


def neb_to_dict(neb: NebSpec) -> dict[str, Any]:
    """Return a :class:`NebSpec` as JSON-ready data."""
    return dict(json.loads(json.dumps(asdict(neb), default=str)))


def neb_from_dict(data: Mapping[str, Any]) -> NebSpec:
    """Inverse of :func:`neb_to_dict`."""
    return NebSpec(**dict(data))


def doc_to_dict(doc: Any) -> dict[str, Any]:
    """Return a result document (``as_dict``/pydantic/dataclass) as plain JSON data."""
    if hasattr(doc, "as_dict"):
        data = doc.as_dict()
    elif hasattr(doc, "model_dump"):
        data = doc.model_dump(mode="json")
    elif hasattr(doc, "to_dict"):
        data = doc.to_dict()
    else:
        data = asdict(doc)
    return dict(json.loads(json.dumps(data, default=str)))


def _doc_from_dict(cls: Any, data: Mapping[str, Any]) -> Any:
    return cls.from_dict(dict(data))


def doc_name(doc: Mapping[str, Any]) -> str:
    """Return the name a document is known by (``name``; ``path`` for an NEB document)."""
    return str(doc.get("name") or doc.get("path"))


def analyse_neb(neb: NebSpec, neb_doc: Mapping[str, Any]) -> dict[str, Any]:
    """Barrier summary of a band, recomputed from its energies independently of the backend.

    Returns the path name and label, forward/reverse barriers from the highest image and
    from the spline (eV), the highest and climbing image indices, convergence, and the
    difference between this barrier and the one the NEB run reported (eV; ~0 unless the
    run's own analysis disagrees).
    """
    from pqdflow.analysis.barriers import neb_barrier

    climbing = neb_doc.get("climbing_index")
    barrier = neb_barrier(
        neb_doc["image_energies"],
        neb_doc.get("reaction_coordinate") or None,
        neb_doc.get("tangential_forces") or None,
        climbing_index=climbing,
    )
    return {
        "name": neb.name,
        "label": neb.label,
        "backend": neb_doc.get("backend"),
        "Ea_eV": barrier.forward,
        "Ea_reverse_eV": barrier.reverse,
        "Ea_spline_eV": barrier.forward_spline,
        "Ea_reverse_spline_eV": barrier.reverse_spline,
        "highest_index": barrier.highest_index,
        "climbing_index": climbing,
        "climbing_is_highest": barrier.climbing_is_highest,
        "converged": bool(neb_doc.get("converged")),
        "reported_minus_recomputed_eV": float(neb_doc["Ea_eV"]) - barrier.forward,
        "notes": list(barrier.notes),
    }


# ----------------------------------------------------------------------------- environment
def env_chk(
    value: Any, fw_spec: Mapping[str, Any], *, strict: bool = True, default: Any = None
) -> Any:
    """Resolve FireWorks' ``>>key<<`` convention against the worker's env.

    ``">>vasp_cmd<<"`` becomes ``fw_spec["_fw_env"]["vasp_cmd"]`` (the ``env`` of the
    worker's my_fworker.yaml); any other value is returned unchanged.

    Raises
    ------
    BackendError
        If the key is absent from the worker's env and ``strict`` is True.
    """
    if isinstance(value, str) and value.startswith(">>") and value.endswith("<<"):
        key = value[2:-2]
        env = fw_spec.get("_fw_env") or {}
        if key in env:
            return env[key]
        if strict:
            raise BackendError(
                f"the worker's env has no {key!r}; add it to my_fworker.yaml "
                f"(env: {{{key}: 'srun vasp_std'}}); the env has {sorted(env)}"
            )
        return default
    return value


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``name`` resolvable in tasks: ``factory(options) -> backend``."""
    _REGISTRY[name] = factory


def registered_backends() -> list[str]:
    """Return the names added with :func:`register_backend`."""
    return sorted(_REGISTRY)


def resolve_backend(name: str, options: Mapping[str, Any], fw_spec: Mapping[str, Any]) -> Any:
    """Return the backend ``name`` for one job, configured from ``options`` and worker env."""
    if name in _REGISTRY:
        return _REGISTRY[name](options)
    if name == "vasp":
        from pqdflow.workflows.custodian_jobs import CustodianSettings
        from pqdflow.workflows.vasp_backend import VaspBackend

        return VaspBackend(
            vasp_cmd=env_chk(options.get("vasp_cmd", ">>vasp_cmd<<"), fw_spec),
            gamma_vasp_cmd=env_chk(
                options.get("gamma_vasp_cmd", ">>gamma_vasp_cmd<<"), fw_spec, strict=False
            ),
            custodian=CustodianSettings(**options.get("custodian", {})),
            incar_overrides=options.get("incar_overrides", {}),
            inputs=options.get("inputs", {}),
        )
    from pqdflow.workflows.backends import get_backend

    return get_backend(name, **options.get("settings", {}))


def task_directory(root: str | None, name: str, group: str = "calcs") -> Path:
    """Return the folder of calculation ``name``.

    ``root/<group>/name`` (the engine's run-folder layout: ``calcs`` for relaxations,
    ``neb`` for bands), or ``<launch dir>/name`` without a root.
    """
    return Path(root) / group / name if root else Path.cwd() / name


def _latest_docs(fw_spec: Mapping[str, Any], key: str) -> dict[str, dict[str, Any]]:
    """Documents pushed by parents, by name; a rerun parent's newest push wins."""
    docs: dict[str, dict[str, Any]] = {}
    for doc in fw_spec.get(key, []):
        docs[doc_name(doc)] = doc
    return docs


def _require(docs: Mapping[str, Any], names: list[str], what: str) -> None:
    missing = [n for n in names if n not in docs]
    if missing:
        raise CalculationFailed(
            f"{what}: no result from parent calculations {missing}; got {sorted(docs)}"
        )


def _action(kind: str, doc: dict[str, Any], push_key: str | None = None) -> FWAction:
    stored = {"pqdflow_kind": kind, "pqdflow_name": doc_name(doc), "pqdflow_doc": doc}
    mod_spec = [{"_push": {push_key: doc}}] if push_key else []
    return FWAction(stored_data=stored, mod_spec=mod_spec)


# ----------------------------------------------------------------------------- tasks
@explicit_serialize
class RelaxTask(FiretaskBase):
    """Relax one structure with the chosen backend; pass its RelaxDoc to the children.

    Parameters (Firetask keys): ``calc`` (:func:`calc_to_dict`), ``backend`` (name),
    ``root`` (folder or None), ``backend_options`` (dict).
    """

    required_params: ClassVar[list[str]] = ["calc", "backend"]
    optional_params: ClassVar[list[str]] = ["root", "backend_options", "start_from"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Run the relaxation and return the document as stored data and a spec push.

        ``start_from`` (NEB final endpoints): ``{"initial": name, "initial_start": atoms
        dict, "hopping_index": i}``; the relaxation then starts from the parent's relaxed
        initial endpoint with only the hopping atom moved, so both endpoints share one
        octahedral-tilt basin (:func:`~pqdflow.workflows.runner.final_endpoint_start`).
        """
        import dataclasses

        from pqdflow.workflows.documents import RelaxDoc
        from pqdflow.workflows.runner import final_endpoint_start, relax_calculation

        calc = calc_from_dict(self["calc"])
        start_from = self.get("start_from")
        if start_from:
            docs = _latest_docs(fw_spec, RELAX_DOCS_KEY)
            _require(docs, [start_from["initial"]], f"NEB final endpoint {calc.name!r}")
            initial = _doc_from_dict(RelaxDoc, docs[start_from["initial"]])
            first = final_endpoint_start(
                initial.read_structure(),
                atoms_from_dict(start_from["initial_start"]),
                calc.atoms,
                int(start_from["hopping_index"]),
            )
            calc = dataclasses.replace(calc, atoms=first)
        backend = resolve_backend(self["backend"], self.get("backend_options") or {}, fw_spec)
        doc = relax_calculation(calc, backend, task_directory(self.get("root"), calc.name))
        return _action("relax", doc_to_dict(doc), RELAX_DOCS_KEY)


@explicit_serialize
class BindingTask(FiretaskBase):
    """Binding energy of one reaction from the RelaxDocs of its parents."""

    required_params: ClassVar[list[str]] = ["binding"]
    optional_params: ClassVar[list[str]] = ["root"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Combine the parents' energies into a BindingDoc."""
        from pqdflow.workflows.documents import RelaxDoc
        from pqdflow.workflows.runner import compute_binding

        binding = binding_from_dict(self["binding"])
        docs = _latest_docs(fw_spec, RELAX_DOCS_KEY)
        _require(docs, binding.parents(), f"binding {binding.name!r}")
        relaxed = {n: _doc_from_dict(RelaxDoc, docs[n]) for n in binding.parents()}
        return _action("binding", doc_to_dict(compute_binding(binding, relaxed)))


@explicit_serialize
class NebTask(FiretaskBase):
    """Build the band from the relaxed endpoints and run the NEB."""

    required_params: ClassVar[list[str]] = ["neb", "backend"]
    optional_params: ClassVar[list[str]] = ["root", "backend_options"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Run the NEB and pass its NebDoc to the analysis."""
        from pqdflow.workflows.documents import RelaxDoc
        from pqdflow.workflows.runner import run_neb

        neb = neb_from_dict(self["neb"])
        docs = _latest_docs(fw_spec, RELAX_DOCS_KEY)
        _require(docs, [neb.initial, neb.final], f"NEB {neb.name!r}")
        backend = resolve_backend(self["backend"], self.get("backend_options") or {}, fw_spec)
        doc = run_neb(
            neb,
            _doc_from_dict(RelaxDoc, docs[neb.initial]),
            _doc_from_dict(RelaxDoc, docs[neb.final]),
            backend,
            task_directory(self.get("root"), neb.name, "neb"),
        )
        return _action("neb", doc_to_dict(doc), NEB_DOCS_KEY)


@explicit_serialize
class NebAnalysisTask(FiretaskBase):
    """Barrier summary of a finished NEB (forward/reverse barrier, highest image)."""

    required_params: ClassVar[list[str]] = ["neb"]
    optional_params: ClassVar[list[str]] = ["root"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Store the barrier document of the parent NEB."""
        neb = neb_from_dict(self["neb"])
        docs = _latest_docs(fw_spec, NEB_DOCS_KEY)
        _require(docs, [neb.name], f"NEB analysis {neb.name!r}")
        analysis = analyse_neb(neb, docs[neb.name])
        return _action("neb_analysis", {"name": neb.name, **analysis})

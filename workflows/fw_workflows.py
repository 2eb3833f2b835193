"""A study plan as one FireWorks Workflow.

One Firework per relaxation (clean slabs, molecules, adsorbed surfaces, bulk, released
reference species, NEB endpoints); one binding-energy Firework after all the relaxations its
reaction needs; one NEB Firework after its two endpoint relaxations (the band is built from
the relaxed endpoints); one NEB-analysis Firework after its NEB. Every spec is plain JSON
(structures as ASE's JSON dict), so ``Workflow.to_dict`` / ``from_dict`` round-trip and the
workflow can go to any MongoDB launchpad.

Routing: each Firework carries a ``_category`` (``relax``, ``neb``, ``analysis`` by default)
so a worker can take only the jobs it suits (``category: [neb]`` in its my_fworker.yaml);
a worker without a category takes everything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fireworks import Firework, LaunchPad, Workflow

from pqdflow.errors import BackendError, InputError
from pqdflow.workflows.fw_tasks import (
    BindingTask,
    NebAnalysisTask,
    NebTask,
    RelaxTask,
    atoms_from_dict,
    atoms_to_dict,
    binding_from_dict,
    binding_to_dict,
    calc_from_dict,
    calc_to_dict,
    neb_from_dict,
    neb_to_dict,
    registered_backends,
)
from pqdflow.workflows.plan import StudyPlan

__all__ = [
    "BACKEND_NAMES",
    "DEFAULT_CATEGORIES",
    "add_workflow_once",
    "atoms_from_dict",
    "atoms_to_dict",
    "binding_from_dict",
    "binding_to_dict",
    "build_workflow",
    "calc_from_dict",
    "calc_to_dict",
    "collect_results",
    "find_workflow",
    "firework_name",
    "neb_from_dict",
    "neb_to_dict",
    "plan_fingerprint",
    "workflow_failures",
    "workflow_states",
    "write_partial_results",
]

#: Backends a workflow can run with.
BACKEND_NAMES: tuple[str, ...] = ("vasp", "mock", "chgnet")

#: Worker categories (FireWorks ``_category``) per Firework kind.
DEFAULT_CATEGORIES: dict[str, str | None] = {"relax": "relax", "neb": "neb", "analysis": "analysis"}


def firework_name(kind: str, name: str, calc_kind: str | None = None) -> str:
    """Return a Firework name: ``relax/slab: slab-CsX-x3``, ``binding: ...``, ``neb: ...``."""
    return f"{kind}/{calc_kind}: {name}" if calc_kind else f"{kind}: {name}"


def plan_fingerprint(
    plan: StudyPlan, backend: str, backend_options: Mapping[str, Any] | None = None
) -> str:
    """SHA-256 of the plan's content, the backend and its options (same study, same value)."""
    payload = {
        "name": plan.name,
        "backend": backend,
        "backend_options": dict(backend_options or {}),
        "calculations": [calc_to_dict(c) for c in plan.calculations],
        "bindings": [binding_to_dict(b) for b in plan.bindings],
        "nebs": [neb_to_dict(n) for n in plan.nebs],
        "incar_overrides": plan.incar_overrides,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _spec(kind: str, name: str, categories: Mapping[str, str | None], study: str) -> dict[str, Any]:
    spec: dict[str, Any] = {"_pqdflow": {"study": study, "kind": kind, "name": name}}
    category = categories.get(kind)
    if category:
        spec["_category"] = category
    return spec


def build_workflow(
    plan: StudyPlan,
    backend: str = "mock",
    *,
    root: str | Path | None = None,
    categories: Mapping[str, str | None] | None = None,
    backend_options: Mapping[str, Any] | None = None,
) -> Workflow:
    """Turn a study plan into one FireWorks Workflow.

    Parameters
    ----------
    plan
        The study plan.
    backend
        ``"vasp"`` (VASP under custodian; commands from the worker's ``vasp_cmd`` /
        ``gamma_vasp_cmd`` env), ``"mock"`` (engine's mock pair potential) or ``"chgnet"``.
    root
        Folder the calculation folders go in (``root/<name>``). ``None``: the launch
        directory FireWorks gives each job (usual on a cluster).
    categories
        ``_category`` per Firework kind (``relax``, ``neb``, ``analysis``); a missing or
        ``None`` entry leaves that kind unrouted. Defaults to :data:`DEFAULT_CATEGORIES`.
    backend_options
        JSON options of the backend. ASE backends: ``{"settings": {...}}`` (keyword
        arguments of ``get_backend``, e.g. ``fmax``). ``vasp``: ``"custodian"`` (fields of
        :class:`~pqdflow.workflows.custodian_jobs.CustodianSettings`), ``"vasp_cmd"`` /
        ``"gamma_vasp_cmd"`` (default: the worker env's ``>>vasp_cmd<<`` /
        ``>>gamma_vasp_cmd<<``); the plan's INCAR overrides and input options are added.

    Raises
    ------
    BackendError
        If ``backend`` is not one of :data:`BACKEND_NAMES`.
    """
    if backend not in BACKEND_NAMES and backend not in registered_backends():
        raise BackendError(f"unknown backend {backend!r}; choose one of {list(BACKEND_NAMES)}")
    cats = dict(DEFAULT_CATEGORIES if categories is None else categories)
    unknown = sorted(set(cats) - set(DEFAULT_CATEGORIES))
    if unknown:
        raise InputError(
            f"unknown Firework kinds in categories: {unknown}; "
            f"allowed: {sorted(DEFAULT_CATEGORIES)}"
        )
    root_str = str(Path(root).resolve()) if root is not None else None
    options = dict(json.loads(json.dumps(dict(backend_options or {}))))
    if backend == "vasp":
        options.setdefault("incar_overrides", json.loads(json.dumps(plan.incar_overrides)))
        options.setdefault(
            "inputs", json.loads(json.dumps(plan.meta.get("inputs", {}), default=str))
        )
    common: dict[str, Any] = {"backend": backend, "root": root_str, "backend_options": options}

    relax_fws: dict[str, Firework] = {}
    finals = {neb.final: neb for neb in plan.nebs}
    # NEB final endpoints after their initial endpoint: they start from its relaxed structure
    ordered = [c for c in plan.calculations if c.name not in finals]
    ordered += [c for c in plan.calculations if c.name in finals]
    for calc in ordered:
        extra: dict[str, Any] = {}
        parents: list[Firework] = []
        if calc.name in finals:
            neb = finals[calc.name]
            extra["start_from"] = {
                "initial": neb.initial,
                "initial_start": atoms_to_dict(plan.get(neb.initial).atoms),
                "hopping_index": neb.hopping_index,
            }
            parents = [relax_fws[neb.initial]]
        relax_fws[calc.name] = Firework(
            [RelaxTask(calc=calc_to_dict(calc), **common, **extra)],
            spec=_spec("relax", calc.name, cats, plan.name),
            name=firework_name("relax", calc.name, calc.kind),
            parents=parents or None,
        )
    analysis_fws: list[Firework] = []
    for binding in plan.bindings:
        parents = [relax_fws[n] for n in dict.fromkeys(binding.parents())]
        analysis_fws.append(
            Firework(
                [BindingTask(binding=binding_to_dict(binding), root=root_str)],
                spec=_spec("analysis", binding.name, cats, plan.name),
                name=firework_name("binding", binding.name),
                parents=parents,
            )
        )
    neb_fws: list[Firework] = []
    for neb in plan.nebs:
        neb_fw = Firework(
            [NebTask(neb=neb_to_dict(neb), **common)],
            spec=_spec("neb", neb.name, cats, plan.name),
            name=firework_name("neb", neb.name),
            parents=[relax_fws[neb.initial], relax_fws[neb.final]],
        )
        neb_fws.append(neb_fw)
        analysis_fws.append(
            Firework(
                [NebAnalysisTask(neb=neb_to_dict(neb), root=root_str)],
                spec=_spec("analysis", f"{neb.name}-analysis", cats, plan.name),
                name=firework_name("neb-analysis", neb.name),
                parents=[neb_fw],
            )
        )
    metadata = {
        "pqdflow_study": plan.name,
        "pqdflow_backend": backend,
        "pqdflow_fingerprint": plan_fingerprint(plan, backend, backend_options),
        "pqdflow_root": root_str,
    }
    return Workflow(
        [*relax_fws.values(), *neb_fws, *analysis_fws],
        name=f"pqdflow: {plan.name} ({backend})",
        metadata=metadata,
    )


def find_workflow(lp: LaunchPad, fingerprint: str) -> int | None:
    """Return the fw_id of a Firework of the workflow with this plan fingerprint, if any."""
    doc = lp.workflows.find_one({"metadata.pqdflow_fingerprint": fingerprint}, {"nodes": 1})
    return int(doc["nodes"][0]) if doc and doc.get("nodes") else None


def add_workflow_once(lp: LaunchPad, wf: Workflow) -> tuple[int, bool]:
    """Add ``wf`` unless a workflow of the same plan is already on ``lp``.

    Returns
    -------
    tuple
        (an fw_id of the workflow on the launchpad, whether it was added now).
    """
    fingerprint = wf.metadata.get("pqdflow_fingerprint")
    existing = find_workflow(lp, fingerprint) if fingerprint else None
    if existing is not None:
        return existing, False
    root = wf.metadata.get("pqdflow_root")
    if root is not None:
        clash = lp.workflows.find_one(
            {
                "metadata.pqdflow_root": root,
                "metadata.pqdflow_study": wf.metadata.get("pqdflow_study"),
                "metadata.pqdflow_backend": wf.metadata.get("pqdflow_backend"),
            },
            {"name": 1},
        )
        if clash is not None:
            raise InputError(
                f"{root} already holds workflow {clash['name']!r} of the same study and backend "
                "built from a different plan or backend options; its calculation folders would "
                "be mixed. Use a new run folder (or restore the original study file/options)."
            )
    id_map = lp.add_wf(wf)
    return int(min(id_map.values())), True


def workflow_states(lp: LaunchPad, fw_id: int) -> list[dict[str, Any]]:
    """Return ``{fw_id, name, state}`` of every Firework of the workflow holding ``fw_id``."""
    wf = lp.workflows.find_one({"nodes": fw_id}, {"nodes": 1})
    if wf is None:
        raise InputError(f"no workflow holds Firework {fw_id}")
    rows = lp.fireworks.find({"fw_id": {"$in": wf["nodes"]}}, {"fw_id": 1, "name": 1, "state": 1})
    return sorted(
        ({"fw_id": r["fw_id"], "name": r["name"], "state": r["state"]} for r in rows),
        key=lambda r: r["fw_id"],
    )


def collect_results(lp: LaunchPad, fw_id: int) -> dict[str, list[dict[str, Any]]]:
    """Read the documents the completed Fireworks of a workflow stored in the launchpad.

    Returns ``{"relax": [...], "binding": [...], "neb": [...], "neb_analysis": [...]}``,
    each in fw_id order; only the newest COMPLETED launch of each Firework counts.
    """
    out: dict[str, list[dict[str, Any]]] = {
        "relax": [],
        "binding": [],
        "neb": [],
        "neb_analysis": [],
    }
    for row in workflow_states(lp, fw_id):
        if row["state"] != "COMPLETED":
            continue
        launches = list(
            lp.launches.find(
                {"fw_id": row["fw_id"], "state": "COMPLETED"}, {"action": 1, "launch_id": 1}
            )
        )
        if not launches:
            continue
        launch = max(launches, key=lambda d: d["launch_id"])
        stored = (launch.get("action") or {}).get("stored_data") or {}
        kind = stored.get("pqdflow_kind")
        if kind in out:
            out[kind].append(stored["pqdflow_doc"])
    return out


def workflow_failures(lp: LaunchPad, states: list[dict[str, Any]]) -> list[str]:
    """Return ``"<name> (<last line of its error>)"`` for every FIZZLED Firework in ``states``."""
    failures: list[str] = []
    for row in states:
        if row["state"] != "FIZZLED":
            continue
        launch = lp.launches.find_one(
            {"fw_id": row["fw_id"], "state": "FIZZLED"}, sort=[("launch_id", -1)]
        )
        stored = ((launch or {}).get("action") or {}).get("stored_data") or {}
        trace = str((stored.get("_exception") or {}).get("_stacktrace", "")).strip().splitlines()
        failures.append(f"{row['name']} ({trace[-1] if trace else 'no error recorded'})")
    return failures


def write_partial_results(
    plan: StudyPlan,
    backend_name: str,
    out: Path,
    docs: Mapping[str, list[dict[str, Any]]],
    wall: float,
) -> Path:
    """Write ``out/results.json`` from the documents of the Fireworks that completed.

    Used when some Fireworks failed; a complete run writes its results through the
    engine's ``run_study`` instead.
    """
    from pqdflow.provenance import provenance
    from pqdflow.workflows.documents import StudyResults

    order = {c.name: i for i, c in enumerate(plan.calculations)}
    order |= {b.name: i for i, b in enumerate(plan.bindings)}
    results = StudyResults(
        study=plan.name,
        backend=backend_name,
        binding=sorted(docs["binding"], key=lambda d: order.get(d["name"], 0)),
        neb=docs["neb"],
        calculations=sorted(docs["relax"], key=lambda d: order.get(d["name"], 0)),
        wall_time_s=wall,
        provenance=provenance(launcher="fireworks", neb_analysis=docs["neb_analysis"]),
    )
    return results.write(out / "results.json")

"""A study plan as one FireWorks Workflow: one Firework per scheduled step.

The Fireworks and their links come from the study's schedule
(:func:`~pqdflow.workflows.study.scheduler.schedule`), the same order the local engine and
the pre-relaxation follow: one Firework per relaxation (an NEB final endpoint after its
initial endpoint, starting from its relaxed structure), one per band after its two
endpoints, one binding-energy Firework after the relaxations its reaction needs and one
NEB-analysis Firework after its band. Every spec is plain JSON (structures as ASE's JSON
dict), so ``Workflow.to_dict`` / ``from_dict`` round-trip and the workflow can go to any
MongoDB launchpad.

Routing: each Firework carries a ``_category`` (``relax``, ``neb``, ``analysis`` by default)
so a worker can take only the jobs it suits (``category: [neb]`` in its my_fworker.yaml);
a worker without a category takes everything.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fireworks import Firework, LaunchPad, Workflow

from pqdflow.documents.plan import CalcSpec, NebSpec, StudyPlan
from pqdflow.errors import InputError
from pqdflow.workflows.backends import backend_entry, check_plan_support
from pqdflow.workflows.fireworks.tasks import StepTask
from pqdflow.workflows.study.scheduler import Step, schedule

__all__ = [
    "DEFAULT_CATEGORIES",
    "add_workflow_once",
    "build_workflow",
    "collect_docs",
    "find_workflow",
    "firework_name",
    "workflow_failures",
    "workflow_states",
]

#: Worker categories (FireWorks ``_category``) per Firework kind.
DEFAULT_CATEGORIES: dict[str, str | None] = {"relax": "relax", "neb": "neb", "analysis": "analysis"}
_CATEGORY_OF = {"relax": "relax", "neb": "neb", "binding": "analysis", "neb_analysis": "analysis"}
_FW_KIND = {"relax": "relax", "neb": "neb", "binding": "binding", "neb_analysis": "neb-analysis"}


def firework_name(kind: str, name: str, calc_kind: str | None = None) -> str:
    """Return a Firework name: ``relax/slab: slab-CsX-x3``, ``binding: ...``, ``neb: ...``."""
    return f"{kind}/{calc_kind}: {name}" if calc_kind else f"{kind}: {name}"


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
        A registered backend (:func:`~pqdflow.workflows.backends.backend_names`): ``"vasp"``
        (VASP under custodian; commands from the options, else the worker's ``vasp_cmd`` /
        ``gamma_vasp_cmd`` env), ``"mock"`` or ``"chgnet"``, ...
    root
        Folder the calculation folders go in (``root/calcs/<name>``, ``root/neb/<name>``).
        ``None``: the launch directory FireWorks gives each job (usual on a cluster).
    categories
        ``_category`` per Firework kind (``relax``, ``neb``, ``analysis``); a missing or
        ``None`` entry leaves that kind unrouted. Defaults to :data:`DEFAULT_CATEGORIES`.
    backend_options
        Settings of the backend (keyword arguments of
        :func:`~pqdflow.workflows.backends.get_backend`). For ``vasp`` the plan's input
        options (k-points, dispersion, INCAR overrides, ...) are added as ``inputs``, so
        every job writes the inputs the dry run writes.

    Raises
    ------
    BackendError
        An unknown backend (the message lists the registered ones).
    InputError
        Unknown Firework kinds in ``categories``.
    """
    backend_entry(backend)  # unknown name: BackendError listing the known ones
    check_plan_support(plan, backend)  # e.g. an implicit solvent the backend lacks
    cats = dict(DEFAULT_CATEGORIES if categories is None else categories)
    unknown = sorted(set(cats) - set(DEFAULT_CATEGORIES))
    if unknown:
        raise InputError(
            f"unknown Firework kinds in categories: {unknown}; "
            f"allowed: {sorted(DEFAULT_CATEGORIES)}"
        )
    root_str = str(Path(root).resolve()) if root is not None else None
    options = dict(json.loads(json.dumps(dict(backend_options or {}))))
    if backend == "vasp" and "inputs" not in options:
        from pqdflow.workflows.vasp.calc_inputs import VaspInputOptions

        options["inputs"] = VaspInputOptions.from_plan(plan).as_dict()
    fws: dict[str, Firework] = {}
    steps = schedule(plan)
    priority = _chain_costs(steps)
    for step in steps:
        task: dict[str, Any] = {"step": step.as_dict(), "root": root_str}
        if step.kind in ("relax", "neb"):
            task |= {"backend": backend, "backend_options": options}
        spec: dict[str, Any] = {
            "_pqdflow": {"study": plan.name, "kind": step.kind, "name": step.name},
            # expensive chains first (NEB host -> endpoints -> band): they set the wall time
            "_priority": priority[step.name],
        }
        category = cats.get(_CATEGORY_OF[step.kind])
        if category:
            spec["_category"] = category
        calc_kind = getattr(step.spec, "kind", None) if step.kind == "relax" else None
        fws[step.name] = Firework(
            [StepTask(**task)],
            spec=spec,
            name=firework_name(_FW_KIND[step.kind], step.name, calc_kind),
            parents=[fws[p] for p in step.parents] or None,
        )
    metadata = {
        "pqdflow_study": plan.name,
        "pqdflow_backend": backend,
        "pqdflow_fingerprint": plan.fingerprint(backend, backend_options),
        "pqdflow_root": root_str,
    }
    return Workflow(list(fws.values()), name=f"pqdflow: {plan.name} ({backend})", metadata=metadata)


#: Rough force calls of one step, for the Firework priority (:func:`_chain_costs`), measured
#: with CHGNet in ``make study`` (2026-12-01): relaxations took 20-80 BFGS steps on bulk cells
#: and molecules and 100-560 on slabs with ligands; bands 35-40 image calls on bulk hosts and
#: 160-1200 on ligand-covered hosts.
STEP_CALLS: dict[tuple[str, bool], int] = {
    ("relax", False): 60,
    ("relax", True): 300,
    ("neb", False): 40,
    ("neb", True): 700,
    ("single_point", False): 1,
    ("single_point", True): 1,
}


def _step_cost(step: Step, plan_atoms: dict[str, int], organic: set[str]) -> int:
    """Estimated cost of one step: force calls times atoms per call (0 for analyses)."""
    if step.kind not in ("relax", "neb", "single_point"):
        return 0
    name = step.spec.initial if isinstance(step.spec, NebSpec) else step.name
    atoms = plan_atoms.get(name, 1)
    return STEP_CALLS[(step.kind, name in organic)] * atoms


def _chain_costs(steps: list[Step]) -> dict[str, int]:
    """Estimated cost of the most expensive chain from each step to an end of the graph.

    The Firework priority: a launcher takes READY Fireworks with the highest first, so the
    expensive chains (ligand-covered NEB host -> initial endpoint -> final endpoint -> band)
    start before cheap one-step relaxations, and a long band starts as soon as its endpoints
    are done (critical-path order). A step's cost is its rough number of force calls
    (:data:`STEP_CALLS`, organic or not) times its atoms, in thousands (at least 1 for a
    calculation, so the order of equal chains is by length).
    """
    from pqdflow.structures.ligands import MOLECULAR_ELEMENTS

    plan_atoms: dict[str, int] = {}
    organic: set[str] = set()
    for s in steps:
        if s.kind == "relax" and isinstance(s.spec, CalcSpec):
            plan_atoms[s.name] = len(s.spec.atoms)
            symbols = set(s.spec.atoms.get_chemical_symbols())
            if symbols & MOLECULAR_ELEMENTS and symbols & {"Pb"}:
                organic.add(s.name)  # a ligand-covered slab: soft and slow
    children: dict[str, list[str]] = {s.name: [] for s in steps}
    for s in steps:
        for parent in s.parents:
            children[parent].append(s.name)
    cost: dict[str, int] = {}
    for s in reversed(steps):  # schedule() lists parents before children
        own = _step_cost(s, plan_atoms, organic)
        own = max(1, round(own / 1000)) if own else 0
        cost[s.name] = own + max((cost[c] for c in children[s.name]), default=0)
    return cost


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


def collect_docs(lp: LaunchPad, fw_id: int) -> dict[str, Any]:
    """Documents stored by the completed Fireworks of a workflow, by step name.

    Only the newest COMPLETED launch of each Firework counts. Relax and NEB documents come
    back typed (:func:`~pqdflow.workflows.fireworks.tasks.docs_from_spec`).
    """
    from pqdflow.workflows.fireworks.tasks import DOCS_KEY, docs_from_spec

    stored_docs: list[dict[str, Any]] = []
    names: list[str] = []
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
        if "pqdflow_doc" in stored:
            stored_docs.append(stored["pqdflow_doc"])
            names.append(str(stored["pqdflow_name"]))
    typed = [docs_from_spec({DOCS_KEY: [d]}) for d in stored_docs]
    return {name: next(iter(t.values())) for name, t in zip(names, typed, strict=True)}


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

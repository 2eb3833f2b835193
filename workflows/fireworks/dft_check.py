"""The DFT check of an ML run as a FireWorks workflow: one Firework per single point.

:func:`build_dft_check_workflow` turns a
:class:`~pqdflow.workflows.engine.dft_check_run.DftCheckPlan` into a Workflow of the same
:class:`~pqdflow.workflows.fireworks.tasks.StepTask` the study workflows use: one
``single_point`` Firework per structure (routed to ``_category`` ``dft`` by default, for
workers with GPAW under MPI) and one ``binding`` Firework per reaction after its single
points. Every single point writes ``root/single_points/<name>/result.json``; with ``root``
on the cluster's shared file system, ``pqdflow dft-check`` run afterwards reads them back
(nothing recomputed) and writes the ML vs DFT tables.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fireworks import Firework, Workflow

from pqdflow.workflows.backends import backend_entry
from pqdflow.workflows.engine.dft_check_run import DftCheckPlan
from pqdflow.workflows.fireworks.builder import firework_name
from pqdflow.workflows.fireworks.tasks import StepTask
from pqdflow.workflows.study.scheduler import fingerprint

__all__ = ["DFT_CATEGORY", "build_dft_check_workflow"]

#: Default worker category of the single-point Fireworks.
DFT_CATEGORY = "dft"


def build_dft_check_workflow(
    plan: DftCheckPlan,
    backend: str,
    root: str | Path,
    *,
    backend_options: Mapping[str, Any] | None = None,
    category: str | None = DFT_CATEGORY,
) -> Workflow:
    """Return the Workflow of a DFT check: single points, then binding energies.

    Parameters
    ----------
    plan
        From :func:`~pqdflow.workflows.engine.dft_check_run.plan_dft_check`.
    backend
        A registered backend that runs single points (``gpaw``; ``mock`` for plumbing).
    root
        Check folder on the workers' shared file system (``single_points/<name>``).
    backend_options
        Settings of :func:`~pqdflow.workflows.backends.get_backend` (``calculator``:
        :class:`~pqdflow.workflows.engine.gpaw_calc.GpawSettings` fields, ...).
    category
        ``_category`` of the single-point Fireworks (None: any worker).

    Raises
    ------
    BackendError
        An unknown backend (the message lists the registered ones).
    """
    backend_entry(backend)
    root_str = str(Path(root).resolve())
    options = dict(json.loads(json.dumps(dict(backend_options or {}))))
    fws: dict[str, Firework] = {}
    for step in plan.steps:
        task: dict[str, Any] = {"step": step.as_dict(), "root": root_str}
        spec: dict[str, Any] = {"_pqdflow": {"check": str(plan.run), "kind": step.kind}}
        if step.kind == "single_point":
            task |= {"backend": backend, "backend_options": options}
            if category:
                spec["_category"] = category
        fws[step.name] = Firework(
            [StepTask(**task)],
            spec=spec,
            name=firework_name(step.kind.replace("_", "-"), step.name),
            parents=[fws[p] for p in step.parents] or None,
        )
    record = {
        "run": str(plan.run),
        "steps": [s.as_dict() for s in plan.steps],
        "backend": backend,
        "options": options,
        "root": root_str,
    }
    metadata = {
        "pqdflow_study": f"dft-check of {plan.run.name}",
        "pqdflow_backend": backend,
        "pqdflow_fingerprint": fingerprint(record),
        "pqdflow_root": root_str,
    }
    name = f"pqdflow: DFT check of {plan.run.name} ({backend})"
    return Workflow(list(fws.values()), name=name, metadata=metadata)

"""The FireTask of a pqdflow workflow: a thin, typed wrapper around ``execute_step``.

:class:`StepTask` turns its JSON parameters back into a
:class:`~pqdflow.workflows.study.scheduler.Step`, resolves the backend by name in the registry
(:func:`~pqdflow.workflows.backends.get_backend`, with the worker's ``my_fworker.yaml`` env
for FireWorks' ``>>vasp_cmd<<`` convention), runs
:func:`~pqdflow.workflows.study.steps.execute_step` with the documents its parents pushed,
and returns a ``FWAction`` whose ``stored_data`` holds the step's document (kept in the
launchpad's ``launches`` collection, readable after the launcher exits) and whose
``mod_spec`` pushes it to the child Fireworks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from typing import Any, ClassVar

from fireworks import FiretaskBase, FWAction, explicit_serialize

from pqdflow.documents.results import BindingDoc, NebDoc, RelaxDoc
from pqdflow.workflows.study.scheduler import Step

__all__ = ["DOCS_KEY", "StepTask", "doc_name", "doc_to_dict", "docs_from_spec"]

#: Spec key under which step documents reach the child Fireworks.
DOCS_KEY = "_pqdflow_docs"

_DOC_TYPES: dict[str, type[RelaxDoc] | type[NebDoc] | type[BindingDoc]] = {
    "RelaxDoc": RelaxDoc,
    "NebDoc": NebDoc,
    "BindingDoc": BindingDoc,
}


def doc_to_dict(doc: Any) -> dict[str, Any]:
    """Return a step document (``as_dict``, dataclass or dict) as plain JSON data."""
    if hasattr(doc, "as_dict"):
        data = doc.as_dict()
    elif is_dataclass(doc) and not isinstance(doc, type):
        data = asdict(doc)
    else:
        data = dict(doc)
    return dict(json.loads(json.dumps(data, default=str)))


def doc_name(doc: Mapping[str, Any]) -> str:
    """Return the step name of a document (``name``; ``path`` for an NEB document)."""
    return str(doc.get("name") or doc.get("path"))


def docs_from_spec(fw_spec: Mapping[str, Any]) -> dict[str, Any]:
    """Documents pushed by parent Fireworks, by step name (a rerun parent's newest wins).

    Relax, NEB and binding documents come back typed (:class:`RelaxDoc`, :class:`NebDoc`,
    :class:`BindingDoc`); anything else (an NEB analysis) stays a dict.
    """
    docs: dict[str, Any] = {}
    for data in fw_spec.get(DOCS_KEY, []):
        cls = _DOC_TYPES.get(str(data.get("doc_type")))
        docs[doc_name(data)] = cls.from_dict(dict(data)) if cls else dict(data)
    return docs


@explicit_serialize
class StepTask(FiretaskBase):
    """Run one scheduled step of a study and hand its document to the children.

    Parameters (Firetask keys): ``step`` (:meth:`Step.as_dict`), ``backend`` (registry
    name; not needed by binding and analysis steps), ``root`` (run folder, or None for the
    launch folder), ``backend_options`` (settings of :func:`get_backend`).
    """

    required_params: ClassVar[list[str]] = ["step"]
    optional_params: ClassVar[list[str]] = ["backend", "root", "backend_options"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        """Run the step; store its document and push it to the child Fireworks."""
        from pqdflow.workflows.backends import get_backend
        from pqdflow.workflows.study.steps import execute_step

        step = Step.from_dict(self["step"])
        backend = None
        if step.kind in ("relax", "neb"):
            backend = get_backend(
                self["backend"],
                env=fw_spec.get("_fw_env") or {},
                **(self.get("backend_options") or {}),
            )
        doc = doc_to_dict(execute_step(step, backend, docs_from_spec(fw_spec), self.get("root")))
        stored = {"pqdflow_kind": step.kind, "pqdflow_name": step.name, "pqdflow_doc": doc}
        return FWAction(stored_data=stored, mod_spec=[{"_push": {DOCS_KEY: doc}}])

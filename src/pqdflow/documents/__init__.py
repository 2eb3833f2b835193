"""Typed documents shared by every layer: the study plan, folder manifests and results.

This package sits below :mod:`pqdflow.analysis` and :mod:`pqdflow.workflows`: both read
and write these types, so a report combines exactly what the plan asked for, whichever
route (dry run + VASP, local engine, FireWorks) produced the numbers.
"""

from __future__ import annotations

from pqdflow.documents.manifest import MANIFEST_FILE, Manifest, ManifestEntry, read_manifest
from pqdflow.documents.plan import (
    ENDPOINT_ROLES,
    BindingSpec,
    CalcKind,
    CalcSpec,
    NebSpec,
    StudyPlan,
    atoms_from_dict,
    atoms_to_dict,
    jsonable,
)
from pqdflow.documents.results import (
    RESULT_FILE,
    BindingDoc,
    NebDoc,
    RelaxDoc,
    StudyResults,
    load_doc,
    read_finished,
)

__all__ = [
    "ENDPOINT_ROLES",
    "MANIFEST_FILE",
    "RESULT_FILE",
    "BindingDoc",
    "BindingSpec",
    "CalcKind",
    "CalcSpec",
    "Manifest",
    "ManifestEntry",
    "NebDoc",
    "NebSpec",
    "RelaxDoc",
    "StudyPlan",
    "StudyResults",
    "atoms_from_dict",
    "atoms_to_dict",
    "jsonable",
    "load_doc",
    "read_finished",
    "read_manifest",
]

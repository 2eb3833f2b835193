"""What a study computes and in which order.

* :mod:`~pqdflow.workflows.study.schema`: the study file (YAML, validated, unknown keys are
  errors): :class:`Study`, :func:`load_study`, :func:`example_study`.
* :mod:`~pqdflow.workflows.study.planner`: :func:`plan_study`, the study expanded into a
  :class:`~pqdflow.documents.plan.StudyPlan` (structures, reactions, NEB paths).
* :mod:`~pqdflow.workflows.study.scheduler`: :func:`schedule`, the plan's steps in
  dependency order, shared by the local engine, FireWorks and the pre-relaxation.
* :mod:`~pqdflow.workflows.study.steps`: :func:`execute_step`, one step with a backend.
"""

from __future__ import annotations

from pqdflow.workflows.study.planner import balance_released, plan_study
from pqdflow.workflows.study.schema import (
    CALC_KINDS,
    IncarOverrides,
    InputOptions,
    LigandOptions,
    NebOptions,
    NebPath,
    SlabOptions,
    Study,
    example_study,
    example_study_yaml,
    load_study,
    study_from_dict,
)

__all__ = [
    "CALC_KINDS",
    "IncarOverrides",
    "InputOptions",
    "LigandOptions",
    "NebOptions",
    "NebPath",
    "SlabOptions",
    "Study",
    "balance_released",
    "example_study",
    "example_study_yaml",
    "load_study",
    "plan_study",
    "study_from_dict",
]

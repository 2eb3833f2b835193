"""Run a whole study on one machine with any backend, restartably.

:func:`run_study` walks the study's schedule (:func:`~pqdflow.workflows.study.scheduler.schedule`)
in order and runs each step with :func:`~pqdflow.workflows.study.steps.execute_step`, the
same function a FireWorks task calls, then writes the results with
:func:`~pqdflow.analysis.report.write_results`.

Layout of ``OUT``: ``calcs/<name>/`` and ``neb/<name>/`` (each finished when its
``result.json`` exists: a rerun reads it instead of recomputing), ``results.json``,
``results.csv``, ``binding_energies.png`` and ``neb_profiles.png``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from pqdflow.analysis.report import write_results
from pqdflow.documents.plan import StudyPlan
from pqdflow.documents.results import StudyResults
from pqdflow.errors import CalculationFailed, InputError, StudyError
from pqdflow.workflows.backends import Backend
from pqdflow.workflows.study.scheduler import schedule
from pqdflow.workflows.study.steps import assemble_results, execute_step, prepare_run_folder

__all__ = ["run_study"]


def run_study(
    plan: StudyPlan,
    backend: Backend,
    out: str | Path,
    *,
    progress: bool = True,
    definition: Literal["exchange", "interaction"] = "exchange",
    plots: bool = True,
    echo: bool = True,
) -> StudyResults:
    """Run every relaxation, NEB and binding reaction of ``plan`` into ``out``.

    Finished calculations (a ``result.json`` in their folder) are read, not recomputed, so
    an interrupted run continues where it stopped. A relaxation or band that fails is
    recorded in ``results.failed`` (with every step that needed it) and retried by the next
    run; the other steps go on.

    Parameters
    ----------
    plan
        The study plan.
    backend
        Any registered backend (:func:`~pqdflow.workflows.backends.get_backend`).
    out
        Output folder.
    progress
        Show a tqdm progress bar on stderr.
    definition
        Binding-energy definition (``"exchange"`` or ``"interaction"``).
    plots
        Write ``binding_energies.png`` and ``neb_profiles.png``.
    echo
        Print the result tables to stdout.

    Raises
    ------
    StudyError
        An empty plan (nothing to run), or ``out`` holding another study or run
        (:func:`~pqdflow.workflows.study.steps.prepare_run_folder`); before anything is
        written.
    InputError
        An unknown binding-energy definition, before anything is written.
    """
    if not plan.calculations and not plan.nebs:
        raise StudyError(f"study {plan.name!r} has no calculations to run")
    if definition not in ("exchange", "interaction"):
        raise InputError(
            f"unknown binding-energy definition {definition!r}; choose 'exchange' or 'interaction'"
        )
    steps = schedule(plan)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"output path {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    prepare_run_folder(plan, out, backend.name, backend.describe())
    start = time.perf_counter()
    docs: dict[str, Any] = {}
    failed: list[dict[str, str]] = []
    heavy = [s for s in steps if s.kind in ("relax", "neb")]
    with tqdm(
        total=len(heavy), file=sys.stderr, disable=not progress, unit="calc", desc=plan.name
    ) as bar:
        for step in steps:
            lost = [p for p in step.parents if p not in docs]
            if lost:
                failed.append(
                    {"name": step.name, "kind": step.kind, "error": f"skipped: {lost} failed"}
                )
                continue
            if step.kind in ("relax", "neb"):
                bar.set_postfix_str(step.name)
            try:
                docs[step.name] = execute_step(step, backend, docs, out, definition=definition)
            except (CalculationFailed, InputError) as exc:
                if step.kind == "binding" or (step.kind == "relax" and isinstance(exc, InputError)):
                    raise
                # one bad calculation (e.g. endpoints that relaxed apart) must not sink the
                # study; it is reported, and retried by the next run
                failed.append({"name": step.name, "kind": step.kind, "error": str(exc)})
            if step.kind in ("relax", "neb"):
                bar.update()
    results = assemble_results(
        plan,
        docs,
        backend.name,
        failed=failed,
        wall_time_s=time.perf_counter() - start,
        backend_settings=backend.describe(),
    )
    write_results(results, out, plots=plots, echo=echo)
    return results

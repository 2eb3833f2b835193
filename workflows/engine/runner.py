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

import signal
import sys
from pathlib import Path
from typing import Any, Literal

from tqdm import tqdm

from pqdflow.analysis.report import write_results
from pqdflow.documents.plan import StudyPlan
from pqdflow.documents.results import StudyResults
from pqdflow.errors import CalculationFailed, InputError, RunInterrupted, StudyError
from pqdflow.interrupt import INTERRUPT_MESSAGE, interruptible
from pqdflow.workflows.backends import Backend, check_plan_support
from pqdflow.workflows.engine.threads import thread_record
from pqdflow.workflows.study.scheduler import schedule
from pqdflow.workflows.study.session import run_session
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

    SIGINT (Ctrl-C) or SIGTERM stops the run cleanly: no new step starts, the step being
    computed is dropped (rerun next time), ``results.json`` is written with ``partial`` and
    ``interrupted`` true, and :class:`~pqdflow.errors.RunInterrupted` is raised.

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
    RunInterrupted
        The run was stopped by SIGINT / SIGTERM (after the partial results were written).
    """
    if not plan.calculations and not plan.nebs:
        raise StudyError(f"study {plan.name!r} has no calculations to run")
    if definition not in ("exchange", "interaction"):
        raise InputError(
            f"unknown binding-energy definition {definition!r}; choose 'exchange' or 'interaction'"
        )
    check_plan_support(plan, backend.name)
    steps = schedule(plan)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"output path {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    prepare_run_folder(plan, out, backend.name, backend.describe())
    docs: dict[str, Any] = {}
    failed: list[dict[str, str]] = []
    heavy = [s for s in steps if s.kind in ("relax", "neb")]
    interrupted = False
    with (
        run_session(out, launcher="direct", **thread_record()) as session,
        tqdm(
            total=len(heavy), file=sys.stderr, disable=not progress, unit="calc", desc=plan.name
        ) as bar,
    ):
        for step in steps:
            if session.interrupts.requested:
                interrupted = True
                break
            lost = [p for p in step.parents if p not in docs]
            if lost:
                failed.append(
                    {"name": step.name, "kind": step.kind, "error": f"skipped: {lost} failed"}
                )
                continue
            if step.kind in ("relax", "neb"):
                bar.set_postfix_str(step.name)
            try:
                with interruptible():
                    doc = execute_step(step, backend, docs, out, definition=definition)
                docs[step.name] = doc
            except KeyboardInterrupt:
                # Ctrl-C / SIGTERM inside the step: it has no result.json, so the next run
                # redoes it; every finished step is kept
                interrupted = True
                break
            except (CalculationFailed, InputError) as exc:
                if step.kind == "binding" or (step.kind == "relax" and isinstance(exc, InputError)):
                    raise
                # one bad calculation (e.g. endpoints that relaxed apart) must not sink the
                # study; it is reported, and retried by the next run
                failed.append({"name": step.name, "kind": step.kind, "error": str(exc)})
            if step.kind in ("relax", "neb"):
                bar.update()
        outcome = "interrupted" if interrupted else ("partial" if failed else "completed")
        session.finish(outcome)
        results = assemble_results(
            plan,
            docs,
            backend.name,
            failed=failed,
            wall_time_s=session.wall_time_s,
            interrupted=interrupted,
            sessions=session.records,
            backend_settings=backend.describe(),
        )
        write_results(results, out, plots=plots, echo=echo and not interrupted)
    if interrupted:
        raise RunInterrupted(
            f"{INTERRUPT_MESSAGE} ({len(docs)} finished step(s) kept; partial results in "
            f"{out / 'results.json'})",
            session.interrupts.signum or signal.SIGINT,
        )
    return results

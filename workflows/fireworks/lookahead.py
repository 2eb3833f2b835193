"""Lookahead workers: more cores for one local FireWorks run without a second launcher.

The embedded store lives in the memory of one launcher process (see
:mod:`~pqdflow.workflows.fireworks.launchpad`), so a local run launches one Firework at a time.
A lookahead worker is a separate process that uses another core for the same run without
touching the store's state: it reads a snapshot of the store (the file, saved atomically
after every change; or its own connection to MongoDB), picks a READY Firework whose step
needs a backend (a relaxation, a band, a single point) and whose parents' folders hold
finished results — the one the launcher would reach *last* — and runs that Firework's own task
(:class:`~pqdflow.workflows.fireworks.tasks.StepTask`) into the run folder. When the
launcher reaches that Firework, its task finds the finished result and reuses it (same
inputs record) in a second. FireWorks' states, launch
records and documents are written by the launcher alone, as in a one-process run.

Each calculation folder is computed by one process: :func:`~pqdflow.fileio.folder_lock`
makes the launcher wait for a folder a worker is computing (then read it), and a worker skip a
folder the launcher holds. A step that fails in a worker is left to the launcher, which runs it
again and records the failure as usual. SIGINT / SIGTERM stop a worker within its current
step (the step's folder is left as an interrupted launcher would leave it).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pqdflow.errors import InputError
from pqdflow.fileio import folder_lock, folder_locking

__all__ = [
    "BACKEND_KINDS",
    "LookaheadPool",
    "default_workers",
    "lookahead_candidates",
    "lookahead_worker",
]

_LOG = logging.getLogger(__name__)

#: Step kinds a worker computes ahead (the others take milliseconds).
BACKEND_KINDS: frozenset[str] = frozenset({"relax", "neb", "single_point"})
#: Seconds between two snapshots of the store when nothing is ready.
POLL_S = 2.0


def default_workers(backend: str, threads: int | None) -> int:
    """Return the processes for a local run of ``backend`` with ``threads`` threads each.

    One per ``threads`` usable cores for the in-process ML/DFT backends (CHGNet, GPAW), at
    most 4; 1 for the mock (milliseconds per step: a worker would cost more than it saves)
    and for VASP (its MPI command takes the cores).
    """
    if backend not in ("chgnet", "gpaw"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(4, (cores or 1) // max(1, threads or 1)))


def lookahead_candidates(lp: Any, nodes: list[int], skip: set[int]) -> list[dict[str, Any]]:
    """Backend steps of ``nodes`` a worker can compute now, in the launcher's order reversed.

    A step can be computed once every parent calculation has a finished result in its
    folder, whether the launcher has already marked that parent COMPLETED or not: READY
    Fireworks, and WAITING ones whose parents a worker finished (the launcher is busy on a
    long band, the chain goes on). Each row gains ``docs``: the parents' documents read from
    their folders (what the launcher will push when it reuses them). The launcher checks out
    by ``spec._priority`` (highest first) and then in the store's order; a worker starts
    from the other end so that the two rarely meet. Fireworks in ``skip`` (failed in a
    worker) and steps whose folder already holds a result are left out.
    """
    from pqdflow.documents.results import RESULT_FILE, NebDoc, RelaxDoc
    from pqdflow.workflows.fireworks.tasks import doc_to_dict
    from pqdflow.workflows.study.scheduler import Step
    from pqdflow.workflows.study.steps import step_directory

    rows = list(
        lp.fireworks.find(
            {"fw_id": {"$in": nodes}},
            {"fw_id": 1, "name": 1, "spec": 1, "state": 1},
            sort=[("spec._priority", -1)],
        )
    )
    steps: dict[str, tuple[Step, Path | None]] = {}
    for row in rows:
        task = _task(row)
        if task.get("step"):
            step = Step.from_dict(task["step"])
            root = task.get("root")
            steps[step.name] = (step, step_directory(step, root) if root else None)

    def finished(name: str) -> Path | None:
        step, directory = steps.get(name, (None, None))
        if step is None or directory is None:
            return None
        path = directory / RESULT_FILE
        return path if path.is_file() else None

    out = []
    for row in reversed(rows):
        task = _task(row)
        if row["state"] not in ("READY", "WAITING") or row["fw_id"] in skip:
            continue
        kind = (task.get("step") or {}).get("kind")
        if kind not in BACKEND_KINDS or not task.get("root"):
            continue
        step, directory = steps[Step.from_dict(task["step"]).name]
        if directory is None or finished(step.name) is not None:
            continue
        paths = [finished(p) for p in step.parents]
        if any(path is None for path in paths):
            continue
        docs = []
        for parent, path in zip(step.parents, paths, strict=True):
            cls = NebDoc if steps[parent][0].kind == "neb" else RelaxDoc
            assert path is not None
            docs.append(doc_to_dict(cls.read(path)))
        out.append({**row, "docs": docs})
    return out


def _task(row: Mapping[str, Any]) -> dict[str, Any]:
    tasks = row.get("spec", {}).get("_tasks") or []
    return dict(tasks[0]) if tasks else {}


def _open_snapshot(store_file: Path | None, launchpad_file: Path | None) -> Any:
    from pqdflow.workflows.fireworks.launchpad import EmbeddedLaunchPad

    if store_file is not None:
        return EmbeddedLaunchPad(store_file, readonly=True, strm_lvl="CRITICAL")
    from pqdflow.workflows.fireworks.mongo_launchpad import connect_launchpad_file

    assert launchpad_file is not None
    return connect_launchpad_file(launchpad_file)


def lookahead_worker(
    nodes: list[int],
    *,
    store_file: str | None,
    launchpad_file: str | None,
    threads: int | None,
    stop: Any,
    worker: int = 1,
) -> None:
    """Compute backend steps of a run ahead of its launcher until ``stop`` is set.

    Takes the steps :func:`lookahead_candidates` offers (READY, or WAITING on parents whose
    folders hold results), one at a time, each under its folder lock.

    The target of each :class:`LookaheadPool` process (see the module docstring). Never
    changes the launchpad.
    """
    from pqdflow.documents.results import RESULT_FILE
    from pqdflow.interrupt import catch_interrupts, interrupt_requested
    from pqdflow.workflows.engine.threads import request_threads
    from pqdflow.workflows.fireworks.tasks import DOCS_KEY, StepTask
    from pqdflow.workflows.study.scheduler import Step
    from pqdflow.workflows.study.steps import step_directory

    request_threads(threads)
    parent = os.getppid()
    skip: set[int] = set()
    store = Path(store_file) if store_file else None
    mongo = Path(launchpad_file) if launchpad_file else None
    lp = None if store is not None else _open_snapshot(None, mongo)
    with catch_interrupts(), folder_locking():
        while not stop.is_set() and not interrupt_requested() and os.getppid() == parent:
            snapshot = lp if lp is not None else _open_snapshot(store, None)
            started = False
            for row in lookahead_candidates(snapshot, nodes, skip):
                task = _task(row)
                step = Step.from_dict(task["step"])
                directory = step_directory(step, task["root"])
                if directory is None or (directory / RESULT_FILE).is_file():
                    continue
                with folder_lock(directory, wait=False) as held:
                    if not held:
                        continue  # the launcher (or another worker) is on it
                    started = True
                    _LOG.info("lookahead worker %d: %s", worker, step.name)
                    spec = {**row["spec"], DOCS_KEY: row["docs"]}
                    try:
                        StepTask.from_dict(task).run_task(spec)
                    except KeyboardInterrupt:
                        return
                    except Exception as exc:  # the launcher reruns it and records the error
                        _LOG.info("lookahead worker %d: %s failed: %s", worker, step.name, exc)
                        skip.add(int(row["fw_id"]))
                break
            if not started:
                stop.wait(POLL_S)


class LookaheadPool:
    """``workers - 1`` lookahead processes beside the launcher, for the duration of a block.

    Parameters
    ----------
    workers
        Processes computing the run, the launcher included (1: no lookahead process).
    nodes
        fw_ids of the run's workflow.
    store_file, launchpad_file
        The embedded store file, or a my_launchpad.yaml (MongoDB); one of them.
    threads
        torch threads per process.
    """

    def __init__(
        self,
        workers: int,
        nodes: list[int],
        *,
        store_file: str | Path | None = None,
        launchpad_file: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        if not isinstance(workers, int) or workers < 1:
            raise InputError(f"workers must be a whole number >= 1, got {workers!r}")
        if (store_file is None) == (launchpad_file is None):
            raise InputError("lookahead workers need either the store file or a launchpad file")
        self.workers = workers
        self.nodes = list(nodes)
        self.store_file = str(store_file) if store_file is not None else None
        self.launchpad_file = str(launchpad_file) if launchpad_file is not None else None
        self.threads = threads
        self._processes: list[Any] = []

    @contextlib.contextmanager
    def running(self) -> Iterator[LookaheadPool]:
        """Start the processes; stop them (after their current step) when the block ends."""
        if self.workers == 1:
            yield self
            return
        # spawn, not fork: the launcher may already run torch threads
        ctx = mp.get_context("spawn")
        stop = ctx.Event()
        for k in range(1, self.workers):
            proc = ctx.Process(
                target=lookahead_worker,
                args=(self.nodes,),
                kwargs={
                    "store_file": self.store_file,
                    "launchpad_file": self.launchpad_file,
                    "threads": self.threads,
                    "stop": stop,
                    "worker": k,
                },
                name=f"pqdflow-lookahead-{k}",
                daemon=True,
            )
            proc.start()
            self._processes.append(proc)
        try:
            with folder_locking():  # the launcher waits for a folder a worker computes
                yield self
        finally:
            stop.set()
            for proc in self._processes:
                # a worker mid-step: SIGTERM stops it inside the step (its folder stays
                # unfinished, the next run computes it)
                proc.join(timeout=1.0)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=30.0)
                if proc.is_alive():  # pragma: no cover - a step that ignores SIGTERM
                    proc.kill()
                    proc.join()


def describe_workers(workers: int, threads: Mapping[str, Any]) -> str:
    """One progress line: processes and threads of a run."""
    n = threads.get("threads")
    each = f", {n} torch thread(s) each" if n else ""
    if workers == 1:
        return f"pqdflow: 1 process{each}"
    return f"pqdflow: {workers} processes (launcher + {workers - 1} lookahead){each}"

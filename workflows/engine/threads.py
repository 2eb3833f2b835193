"""CPU threads of the in-process ML potential (torch), chosen not to oversubscribe.

torch starts one intra-op thread per core. On a machine whose cores are busy (other users,
other jobs, or pqdflow's own launcher threads) those threads wait on each other: a CHGNet
force call that takes under a second on one free thread can take many seconds. pqdflow
therefore runs torch on :data:`DEFAULT_THREADS` thread(s) unless told otherwise:

1. an explicit ``threads`` (``pqdflow run --threads N``);
2. else the ``PQDFLOW_THREADS`` environment variable;
3. else ``OMP_NUM_THREADS`` when the caller set it (torch reads it itself);
4. else :data:`DEFAULT_THREADS`.

The same count caps the BLAS libraries loaded in the process (numpy's and scipy's OpenBLAS,
through ``threadpoolctl``). Their own default is one thread per core, and the optimiser's
linear algebra between force calls (BFGS's 250 x 250 eigendecomposition on an 82-atom slab)
then competes with the torch thread of the other process: measured on 2 cores, two processes
relaxing the 82-atom NEB host with CHGNet took 0.36 s per BFGS step each with BLAS left alone
and 0.24 s with one BLAS thread (README "Threads").

The choice is recorded in every run session (``run_sessions.json``, ``results.json``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pqdflow.errors import InputError

__all__ = [
    "DEFAULT_THREADS",
    "THREADS_ENV",
    "apply_threads",
    "limit_blas_threads",
    "request_threads",
    "resolve_threads",
    "thread_record",
]

#: Environment variable naming the torch thread count.
THREADS_ENV = "PQDFLOW_THREADS"
#: Threads when neither ``--threads``, ``PQDFLOW_THREADS`` nor ``OMP_NUM_THREADS`` is set
#: (measured: ``benchmarks/chgnet_threads.py``, README "Threads").
DEFAULT_THREADS = 1

_CHOSEN: dict[str, Any] = {}
_REQUESTED: dict[str, int | None] = {}


def resolve_threads(
    threads: int | None = None, env: Mapping[str, str] | None = None
) -> tuple[int | None, str]:
    """Return (thread count or None to leave torch alone, where the choice came from).

    Raises
    ------
    InputError
        A thread count (argument or ``PQDFLOW_THREADS``) that is not a positive whole number.
    """
    env = os.environ if env is None else env
    if threads is not None:
        source, raw = "--threads", str(threads)
    elif env.get(THREADS_ENV):
        source, raw = THREADS_ENV, env[THREADS_ENV]
    elif env.get("OMP_NUM_THREADS"):
        return None, "OMP_NUM_THREADS"
    else:
        return DEFAULT_THREADS, "default"
    if not raw.strip().isdigit() or int(raw) < 1:
        raise InputError(f"{source}: threads must be a whole number >= 1, got {raw!r}")
    return int(raw), source


def request_threads(threads: int | None) -> None:
    """Ask for ``threads`` torch threads in this process (``pqdflow run --threads``).

    Checked now; applied when the ML potential is loaded (:func:`apply_threads`), so a run
    on the mock backend never imports torch.

    Raises
    ------
    InputError
        Not a positive whole number.
    """
    resolve_threads(threads)
    _REQUESTED["threads"] = threads


def apply_threads() -> dict[str, Any]:
    """Set torch's intra-op and the BLAS thread counts from :func:`resolve_threads`.

    Called where the ML potential is loaded. The record (``{"threads": n,
    "threads_source": ..., "blas_threads": m}``) is also what :func:`thread_record` returns
    afterwards.
    """
    count, source = resolve_threads(_REQUESTED.get("threads"))
    import torch

    if count is not None:
        torch.set_num_threads(count)
    blas = limit_blas_threads(count)
    _CHOSEN.clear()
    _CHOSEN.update(
        {"threads": int(torch.get_num_threads()), "threads_source": source, "blas_threads": blas}
    )
    return dict(_CHOSEN)


def limit_blas_threads(count: int | None) -> int | None:
    """Cap every BLAS library loaded in this process at ``count`` threads; return the cap.

    ``None`` (the caller set ``OMP_NUM_THREADS``, which OpenBLAS reads itself) leaves them
    alone and returns the largest thread count they report.
    """
    from threadpoolctl import threadpool_info, threadpool_limits

    if count is not None:
        threadpool_limits(limits=count, user_api="blas")
    counts = [int(lib["num_threads"]) for lib in threadpool_info() if lib["user_api"] == "blas"]
    return max(counts) if counts else None


def thread_record() -> dict[str, Any]:
    """Return the thread setting of this process, for session records.

    What :func:`apply_threads` set, or (no ML potential loaded yet) what it would set.
    """
    if _CHOSEN:
        return dict(_CHOSEN)
    count, source = resolve_threads(_REQUESTED.get("threads"))
    return {"threads": count, "threads_source": source}

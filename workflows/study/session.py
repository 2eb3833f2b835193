"""One launcher session of a run folder: its wall time, its outcome, and Ctrl-C handling.

A study may take several sessions (interrupted, killed, resumed). Each session appends one
record to ``OUT/run_sessions.json`` when it starts and completes it when it ends, so
``results.json`` can report the wall time of the whole run, not only of the last session.
A session killed with SIGKILL cannot record its end: its record stays ``"outcome":
"running"`` without a wall time, is listed as such, and does not count in the total.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pqdflow.fileio import atomic_write_json
from pqdflow.interrupt import InterruptState, catch_interrupts

__all__ = ["SESSIONS_FILE", "RunSession", "read_sessions", "run_session"]

#: Session records of a run folder.
SESSIONS_FILE = "run_sessions.json"


def read_sessions(out: str | Path) -> list[dict[str, Any]]:
    """Return the session records of run folder ``out`` (empty when none or unreadable)."""
    path = Path(out) / SESSIONS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return []
    return [dict(r) for r in data] if isinstance(data, list) else []


class RunSession:
    """The current session of a run folder (see :func:`run_session`).

    Attributes
    ----------
    out
        Run folder.
    interrupts
        SIGINT / SIGTERM state of this session.
    records
        Every session record of the folder, this one last.
    """

    def __init__(
        self, out: Path, interrupts: InterruptState, since: float | None = None, **info: Any
    ) -> None:
        self.out = out
        self.interrupts = interrupts
        self._start = time.perf_counter() if since is None else since
        started = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        record = {"started_utc": started, "wall_time_s": None, "outcome": "running", **info}
        self.records = [*read_sessions(out), record]
        self._save()

    def _save(self) -> None:
        atomic_write_json(self.out / SESSIONS_FILE, self.records)

    def finish(self, outcome: str) -> None:
        """Record this session's end: its wall time and ``outcome``."""
        self.records[-1]["wall_time_s"] = round(time.perf_counter() - self._start, 3)
        self.records[-1]["outcome"] = outcome
        self._save()

    @property
    def wall_time_s(self) -> float:
        """Wall time of every recorded session of the folder, this one up to now (s)."""
        done = sum(float(r["wall_time_s"]) for r in self.records[:-1] if r.get("wall_time_s"))
        mine = self.records[-1].get("wall_time_s")
        return done + (float(mine) if mine is not None else time.perf_counter() - self._start)


@contextlib.contextmanager
def run_session(
    out: str | Path, *, since: float | None = None, **info: Any
) -> Iterator[RunSession]:
    """Start a session of run folder ``out``; SIGINT / SIGTERM are caught for its duration.

    ``since`` (a :func:`time.perf_counter` value) is when the command started, so loading
    the backend counts in the wall time; default now. ``info`` (launcher, threads, ...) is
    stored in the session record. A session left by an
    exception is recorded as ``"interrupted"`` (KeyboardInterrupt) or ``"error: ..."``
    unless :meth:`RunSession.finish` was called.
    """
    with catch_interrupts() as interrupts:
        session = RunSession(Path(out), interrupts, since, **info)
        try:
            yield session
        except BaseException as exc:
            if session.records[-1]["outcome"] == "running":
                interrupted = isinstance(exc, KeyboardInterrupt) or interrupts.requested
                session.finish("interrupted" if interrupted else f"error: {type(exc).__name__}")
            raise
        if session.records[-1]["outcome"] == "running":
            session.finish("interrupted" if interrupts.requested else "completed")

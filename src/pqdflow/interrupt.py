"""Ctrl-C and SIGTERM during a study run: stop cleanly, never in the middle of bookkeeping.

A run installs :func:`catch_interrupts` for its whole duration. A SIGINT or SIGTERM then only
*records* the request, except inside an :func:`interruptible` block (the computation of one
step), where it raises :class:`KeyboardInterrupt` at once so the step stops. The launcher
checks :func:`interrupt_requested` between steps, starts nothing new, puts the interrupted
step back to be rerun and exits. A second signal while the run is stopping is ignored, so
the bookkeeping (launchpad store, ``results.json``) is always finished.

Outside :func:`catch_interrupts` (library use, no run active) nothing changes: Python's own
handlers apply and :func:`interruptible` is a no-op.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

__all__ = [
    "INTERRUPT_MESSAGE",
    "InterruptState",
    "catch_interrupts",
    "interrupt_requested",
    "interruptible",
    "is_interrupt_trace",
]

#: The one line printed when a run stops on a signal.
INTERRUPT_MESSAGE = "interrupted; run the same command again to resume"

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class InterruptState:
    """What :func:`catch_interrupts` records for one run.

    Attributes
    ----------
    signum
        The first signal received (None: none yet).
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._depth = 0
        self._raised = False

    @property
    def requested(self) -> bool:
        """Whether a stop was requested."""
        return self.signum is not None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
        if self._depth > 0 and not self._raised:
            self._raised = True
            raise KeyboardInterrupt(f"pqdflow run stopped by {signal.Signals(signum).name}")


_ACTIVE: InterruptState | None = None


@contextlib.contextmanager
def catch_interrupts() -> Iterator[InterruptState]:
    """Record SIGINT / SIGTERM for the duration of a run (main thread only).

    Nested use shares the outer state. A signal the process ignores (``SIG_IGN``) stays
    ignored. In a thread other than the main one (where Python cannot install handlers) the
    state is returned but never set.
    """
    global _ACTIVE
    if _ACTIVE is not None:
        yield _ACTIVE
        return
    state = InterruptState()
    if threading.current_thread() is not threading.main_thread():
        yield state
        return
    # a signal the process ignores stays ignored (a background job started by a
    # non-interactive shell ignores SIGINT)
    previous = {s: signal.getsignal(s) for s in _SIGNALS}
    previous = {s: h for s, h in previous.items() if h is not signal.SIG_IGN}
    for s in previous:
        signal.signal(s, state._handle)
    _ACTIVE = state
    try:
        yield state
    finally:
        _ACTIVE = None
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """Mark the computation of one step: a signal here raises :class:`KeyboardInterrupt`.

    A stop requested before the block starts raises at once, so no new step begins.
    """
    state = _ACTIVE
    if state is None:
        yield
        return
    if state.requested:
        raise KeyboardInterrupt("pqdflow run stopping: a stop was requested before this step")
    state._depth += 1
    try:
        yield
    finally:
        state._depth -= 1


def interrupt_requested() -> bool:
    """Whether the active run (if any) was asked to stop."""
    return _ACTIVE is not None and _ACTIVE.requested


def is_interrupt_trace(trace: str) -> bool:
    """Whether a stored traceback ends in a :class:`KeyboardInterrupt` (an interrupted step)."""
    lines = trace.strip().splitlines()
    return bool(lines) and lines[-1].startswith("KeyboardInterrupt")

"""FireWorks launchpads: the embedded single-file store and real MongoDB from a YAML file.

The embedded launchpad is FireWorks' own mongomock-persistence store (the file format of
``MONGOMOCK_SERVERSTORE_FILE``), kept as one JSON file under the run folder. Two things
FireWorks does not do for it are done here:

* **Durability.** mongomock-persistence writes its file only when the store object is
  garbage-collected (a ``weakref.finalize`` at interpreter exit), non-atomically; a
  ``kill -9`` loses every update of the session. :class:`EmbeddedLaunchPad` saves the whole
  store atomically (temporary sibling + rename) after every public method that changes the
  database returns (checkout, checkpoint ping, completion, rerun, ...; not heartbeat pings),
  so the file always holds the state after the last finished launchpad operation.
* **Exclusion.** The store lives in the memory of one process; two processes writing the
  same file would silently overwrite each other's updates. A launcher holds an exclusive
  ``fcntl`` lock on ``<store>.lock`` for as long as it has the store open; a second one gets
  :class:`~pqdflow.errors.LaunchpadLockedError` (or waits up to ``wait`` seconds).

Environment: FireWorks switches to mongomock only through the process-wide
``MONGOMOCK_SERVERSTORE_FILE`` variable, read when ``fireworks`` is first imported. pqdflow
never sets it: the store is built directly from the file and handed to a mongomock client,
so several embedded stores can be open in one process and the environment is untouched.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import functools
import json
import logging
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import bson.json_util
import yaml
from fireworks import FWorker, LaunchPad

from pqdflow.documents.plan import StudyPlan
from pqdflow.errors import CalculationFailed, InputError, LaunchpadLockedError, RunInterrupted
from pqdflow.fileio import atomic_write_text
from pqdflow.interrupt import INTERRUPT_MESSAGE, interrupt_requested, is_interrupt_trace

__all__ = [
    "EMBEDDED_DB_NAME",
    "EMBEDDED_STORE_NAME",
    "LAUNCHES_DIRNAME",
    "ROCKET_ERRORS",
    "EmbeddedLaunchPad",
    "LaunchpadFileLock",
    "embedded_store_path",
    "launch_rapidfire",
    "load_launchpad_file",
    "open_embedded_launchpad",
    "recover_lost_runs",
    "rerun_fireworks",
    "run_plan_on_launchpad",
]

#: File name of the embedded store inside a run folder.
EMBEDDED_STORE_NAME = "fw_launchpad.json"
#: Folder (inside a run folder) that holds FireWorks' ``launcher_*`` directories.
LAUNCHES_DIRNAME = "fw_launches"
#: File in a ``launcher_*`` folder holding the traceback of a task that raised.
ROCKET_ERRORS = "rocket_errors.txt"
#: Database name inside the embedded store.
EMBEDDED_DB_NAME = "pqdflow"

_F = TypeVar("_F", bound=Callable[..., Any])

# Public LaunchPad methods that write to the database; the embedded store is saved to disk
# when the outermost of them returns.
_MUTATING_METHODS: tuple[str, ...] = (
    "add_wf",
    "append_wf",
    "archive_wf",
    "bulk_add_wfs",
    "cancel_reservation",
    "cancel_reservation_by_reservation_id",
    "change_launch_dir",
    "checkout_fw",
    "complete_launch",
    "defuse_fw",
    "defuse_wf",
    "delete_fws",
    "delete_wf",
    "detect_lostruns",
    "detect_unreserved",
    "forget_offline",
    "mark_fizzled",
    "pause_fw",
    "pause_wf",
    "recover_offline",
    "reignite_fw",
    "reignite_wf",
    "rerun_fw",
    "reserve_fw",
    "reset",
    "restore_backup_data",
    "resume_fw",
    "set_priority",
    "set_reservation_id",
    "tuneup",
    "update_spec",
)

_ENV_PLACEHOLDER = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def embedded_store_path(out: str | Path) -> Path:
    """Return the path of the embedded store file of the run folder ``out``."""
    return Path(out) / EMBEDDED_STORE_NAME


class LaunchpadFileLock:
    """Exclusive, process-wide lock on an embedded store (``fcntl.flock`` on ``<store>.lock``).

    The lock file records who holds the lock (host, pid, time) so that a refused launcher
    can say which process to wait for. The kernel drops the lock when the holder exits, even
    on ``kill -9``, so a stale lock file never blocks anyone.

    Parameters
    ----------
    store
        The store file the lock protects.
    """

    def __init__(self, store: str | Path) -> None:
        self.store = Path(store)
        self.path = self.store.with_name(self.store.name + ".lock")
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """Whether this object currently holds the lock."""
        return self._fd is not None

    def acquire(self, wait: float = 0.0, poll: float = 0.1) -> None:
        """Take the lock, waiting up to ``wait`` seconds.

        Raises
        ------
        LaunchpadLockedError
            If another process still holds the lock after ``wait`` seconds.
        """
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + max(wait, 0.0)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = self._read_holder(fd)
                    os.close(fd)
                    raise LaunchpadLockedError(
                        f"embedded launchpad {self.store} is in use by another launcher "
                        f"({holder}); waited {wait:g} s. Only one launcher may use an "
                        "embedded store at a time: wait for it to finish (or pass a longer "
                        "wait), or use a MongoDB launchpad for parallel workers."
                    ) from None
                time.sleep(poll)
        stamp = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"host={socket.gethostname()} pid={os.getpid()} since={stamp}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Release the lock (no-op when not held)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    @staticmethod
    def _read_holder(fd: int) -> str:
        text = os.pread(fd, 256, 0).decode(errors="replace").strip()
        return text or "holder unknown"

    def __enter__(self) -> LaunchpadFileLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _durable(method: _F) -> _F:
    """Wrap a mutating LaunchPad method so the store is saved when the outermost call returns."""

    @functools.wraps(method)
    def wrapper(self: EmbeddedLaunchPad, *args: Any, **kwargs: Any) -> Any:
        with self._op_lock:
            self._depth += 1
            try:
                return method(self, *args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.save()

    return wrapper  # type: ignore[return-value]


class EmbeddedLaunchPad(LaunchPad):
    """A FireWorks LaunchPad on a single-file mongomock store, saved after every change.

    Use :func:`open_embedded_launchpad` rather than this constructor: it takes the file lock
    first. A store opened with ``readonly=True`` refuses to save.

    Parameters
    ----------
    store_file
        The JSON store (mongomock-persistence format). Created (empty, reset) if absent.
    readonly
        Open for reading only (no lock needed, :meth:`save` raises).
    strm_lvl
        FireWorks logging level for this launchpad.
    """

    def __init__(
        self, store_file: str | Path, *, readonly: bool = False, strm_lvl: str = "WARNING"
    ) -> None:
        import mongomock_persistence  # patches mongomock's stores to be (de)serialisable
        from fireworks.utilities.fw_utilities import get_fw_logger
        from mongomock.store import DatabaseStore, ServerStore

        self.store_file = Path(store_file).resolve()
        self.readonly = readonly
        self._op_lock = threading.RLock()
        self._depth = 0
        self.n_saves = 0
        fresh = not self.store_file.exists()
        if fresh and readonly:
            raise InputError(
                f"no embedded launchpad at {self.store_file}; nothing was launched there"
            )
        # Build the store directly: the patched ServerStore.__init__ would read the
        # process-wide MONGOMOCK_SERVERSTORE_FILE and register a save-at-exit finalizer.
        store = ServerStore.__new__(ServerStore)
        store._filename = None  # type: ignore[attr-defined]  # set by mongomock_persistence
        databases: dict[str, Any] = {}
        if not fresh:
            raw = bson.json_util.loads(self.store_file.read_text(encoding="utf-8"))
            from_dict = DatabaseStore.from_dict  # type: ignore[attr-defined]
            databases = {k: from_dict(v) for k, v in raw.items()}
        store._databases = databases

        # The attributes LaunchPad.__init__ sets, with a mongomock connection instead of pymongo.
        self.host = "mongomock://localhost"
        self.port = 27017
        self.name = EMBEDDED_DB_NAME
        self.username = None
        self.password = None
        self.authsource = self.name
        self.mongoclient_kwargs: dict[str, Any] = {}
        self.uri_mode = False
        self.logdir = None
        self.strm_lvl = strm_lvl
        self.m_logger = get_fw_logger("launchpad", l_dir=None, stream_level=strm_lvl)
        self.user_indices: list[Any] = []
        self.wf_user_indices: list[Any] = []
        self.connection = mongomock_persistence.MongoClient("localhost", _store=store)
        self.db = self.connection[self.name]
        self.fireworks = self.db.fireworks
        self.launches = self.db.launches
        self.offline_runs = self.db.offline_runs
        self.fw_id_assigner = self.db.fw_id_assigner
        self.workflows = self.db.workflows
        self.gridfs_fallback = None  # documents here are far below MongoDB's 16 MB limit
        self.backup_launch_data: dict[Any, Any] = {}
        self.backup_fw_data: dict[Any, Any] = {}
        if fresh:
            self.reset("", require_password=False)

    def save(self) -> None:
        """Write the whole store to its file atomically (temporary sibling + rename)."""
        if self.readonly:
            raise InputError(f"embedded launchpad {self.store_file} was opened read-only")
        with self._op_lock:
            # json's C encoder, with bson's extended-JSON hook for dates/ObjectIds only: the
            # same file as bson.json_util.dumps (FireWorks' format), several times faster
            text = json.dumps(self.connection._store.to_dict(), default=bson.json_util.default)
            atomic_write_text(self.store_file, text)
            self.n_saves += 1

    def ping_launch(self, launch_id: int, ptime: Any = None, checkpoint: Any = None) -> None:
        """Ping a launch; saved to disk only when it records a checkpoint.

        A plain heartbeat only moves a timestamp: losing it costs nothing, since a launcher
        holding the lock treats every RUNNING launch it finds at start as lost anyway.
        """
        with self._op_lock:
            self._depth += 1
            try:
                LaunchPad.ping_launch(self, launch_id, ptime=ptime, checkpoint=checkpoint)
            finally:
                self._depth -= 1
                if self._depth == 0 and checkpoint is not None:
                    self.save()

    def to_dict(self) -> dict[str, Any]:
        """Serialise as FireWorks does; ``store_file`` lets :meth:`from_dict` reopen it."""
        d: dict[str, Any] = dict(super().to_dict())
        d["store_file"] = str(self.store_file)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbeddedLaunchPad:
        """Reopen ``d["store_file"]`` read-only (the lock stays with its holder)."""
        return cls(d["store_file"], readonly=True)


for _name in _MUTATING_METHODS:
    setattr(EmbeddedLaunchPad, _name, _durable(getattr(LaunchPad, _name)))
del _name


def recover_lost_runs(lp: LaunchPad) -> list[int]:
    """Rerun Fireworks left RUNNING by a launcher that died; return their fw_ids.

    Only valid while holding the embedded store's exclusive lock: then no other launcher can
    be running, so every RUNNING launch in the store is lost. Stale workflow locks left by
    the dead process are cleared too.
    """
    lp.workflows.update_many({"locked": {"$exists": True}}, {"$unset": {"locked": ""}})
    _, lost_fw_ids, _ = lp.detect_lostruns(expiration_secs=0, rerun=True, refresh=True)
    return sorted(int(i) for i in lost_fw_ids)


@contextlib.contextmanager
def open_embedded_launchpad(
    store_file: str | Path,
    *,
    readonly: bool = False,
    wait: float = 0.0,
    recover: bool = True,
    strm_lvl: str = "WARNING",
) -> Iterator[EmbeddedLaunchPad]:
    """Open an embedded store, holding its exclusive lock until the block ends.

    Parameters
    ----------
    store_file
        The store file; created (with its folder) when absent.
    readonly
        Read without locking; changes are refused.
    wait
        Seconds to wait for another launcher to release the store (0: refuse at once).
    recover
        On opening, rerun Fireworks that a killed launcher left RUNNING
        (:func:`recover_lost_runs`); the ids end up in ``lp.recovered_fw_ids``.
    strm_lvl
        FireWorks logging level.

    Raises
    ------
    LaunchpadLockedError
        If another launcher holds the store for longer than ``wait`` seconds.
    """
    if readonly:
        yield EmbeddedLaunchPad(store_file, readonly=True, strm_lvl=strm_lvl)
        return
    lock = LaunchpadFileLock(store_file)
    lock.acquire(wait=wait)
    try:
        lp = EmbeddedLaunchPad(store_file, strm_lvl=strm_lvl)
        lp.recovered_fw_ids = recover_lost_runs(lp) if recover else []
        yield lp
        lp.save()
    finally:
        lock.release()


def launch_rapidfire(
    lp: LaunchPad,
    launch_root: str | Path,
    *,
    fworker: FWorker | None = None,
    progress: bool = False,
    max_launches: int = 0,
) -> int:
    """Run Fireworks from ``lp`` until none is ready; return how many were launched.

    Like FireWorks' ``rapidfire``: one ``launcher_*`` folder per Firework under
    ``launch_root``, the working directory changed into it while the job runs and restored
    afterwards. Unlike it, the loop stops before the next Firework once a stop was requested
    (SIGINT / SIGTERM under :func:`~pqdflow.interrupt.catch_interrupts`). With ``progress``
    False FireWorks' per-rocket log lines are suppressed for the duration of the call.
    """
    from fireworks.core.rocket_launcher import launch_rocket
    from fireworks.utilities.fw_utilities import create_datestamp_dir, get_fw_logger

    launch_root = Path(launch_root).resolve()
    launch_root.mkdir(parents=True, exist_ok=True)
    fworker = fworker or FWorker()
    strm_lvl = "INFO" if progress else "CRITICAL"
    loggers = [logging.getLogger(n) for n in ("rocket.launcher", "launchpad")]
    disabled = [lg.disabled for lg in loggers]
    cwd = Path.cwd()
    launched = 0
    try:
        if not progress:
            for lg in loggers:
                lg.disabled = True
        logger = get_fw_logger("rocket.launcher", l_dir=None, stream_level=strm_lvl)
        while not interrupt_requested() and lp.run_exists(fworker):
            if max_launches and launched >= max_launches:
                break
            folder = Path(create_datestamp_dir(str(launch_root), logger, prefix="launcher_"))
            os.chdir(folder)
            # a task's traceback goes to the launcher folder, not the terminal; the error's
            # last line is in the launchpad and in the failure message
            ran = launch_rocket(
                lp, fworker, strm_lvl=strm_lvl, err_file=_LazyFile(folder / ROCKET_ERRORS)
            )
            os.chdir(cwd)
            if ran:
                launched += 1
            elif not any(folder.iterdir()):
                folder.rmdir()
    finally:
        os.chdir(cwd)
        for lg, was in zip(loggers, disabled, strict=True):
            lg.disabled = was
    return launched


class _LazyFile:
    """A text sink that creates its file on the first write (no empty files)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, text: str) -> int:
        with self.path.open("a", encoding="utf-8") as handle:
            return handle.write(text)

    def flush(self) -> None:
        """Nothing buffered."""


def _last_error(lp: LaunchPad, fw_id: int) -> str:
    """Return the stack trace stored by the newest FIZZLED launch of ``fw_id`` ('' if none)."""
    launch = lp.launches.find_one({"fw_id": fw_id, "state": "FIZZLED"}, sort=[("launch_id", -1)])
    stored = ((launch or {}).get("action") or {}).get("stored_data") or {}
    return str((stored.get("_exception") or {}).get("_stacktrace", ""))


def rerun_fireworks(
    lp: LaunchPad,
    fw_ids: list[int],
    *,
    which: str = "interrupted",
) -> list[dict[str, Any]]:
    """Put Fireworks of ``fw_ids`` back to READY/WAITING; return ``{fw_id, name, state}`` of each.

    Parameters
    ----------
    lp
        The launchpad; for RESERVED/RUNNING Fireworks the caller must hold the embedded
        store's lock (then no live launcher can own them).
    fw_ids
        Candidate Fireworks (e.g. all of one workflow).
    which
        ``"interrupted"``: FIZZLED by a KeyboardInterrupt (Ctrl-C, SIGTERM), what a run does
        by itself; ``"failed"``: every FIZZLED one; ``"all"``: FIZZLED, RESERVED and RUNNING
        (left by a launcher that is gone); ``"any"``: every one of ``fw_ids`` whatever its
        state (a COMPLETED step reruns cheaply: its finished result is reused when its
        inputs match).

    Raises
    ------
    InputError
        An unknown ``which``.
    """
    if which not in ("interrupted", "failed", "all", "any"):
        raise InputError(f"unknown rerun selection {which!r}; use interrupted, failed, all or any")
    rows = lp.fireworks.find({"fw_id": {"$in": list(fw_ids)}}, {"fw_id": 1, "name": 1, "state": 1})
    chosen = []
    for row in sorted(rows, key=lambda r: r["fw_id"]):
        state = row["state"]
        if which == "any" and state not in ("READY", "WAITING"):
            pick = True
        elif state == "FIZZLED":
            pick = which != "interrupted" or is_interrupt_trace(_last_error(lp, row["fw_id"]))
        else:
            pick = which == "all" and state in ("RESERVED", "RUNNING")
        if pick:
            chosen.append({"fw_id": int(row["fw_id"]), "name": row["name"], "state": state})
    for row in chosen:
        lp.rerun_fw(row["fw_id"])
    return chosen


def _expand_env(value: Any, source: Path) -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of ``value`` from the env."""
    if isinstance(value, dict):
        return {k: _expand_env(v, source) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v, source) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        var, default = match.group(1), match.group(2)
        if var in os.environ:
            return os.environ[var]
        if default is not None:
            return default
        raise InputError(
            f"{source}: environment variable {var} is not set; export it (credentials come "
            "from the environment, never from the file) or give a default as ${VAR:-default}"
        )

    expanded = _ENV_PLACEHOLDER.sub(substitute, value)
    return None if expanded == "" and value != "" else expanded


_LAUNCHPAD_KEYS = frozenset(
    {
        "host",
        "port",
        "name",
        "username",
        "password",
        "logdir",
        "strm_lvl",
        "user_indices",
        "wf_user_indices",
        "authsource",
        "uri_mode",
        "mongoclient_kwargs",
    }
)


def load_launchpad_file(path: str | Path) -> LaunchPad:
    """Build a FireWorks LaunchPad from a ``my_launchpad.yaml`` (safe YAML, env placeholders).

    ``${VAR}`` and ``${VAR:-default}`` in any string value are replaced from the environment,
    so credentials never sit in the file. A ``mongomock://`` host opens the embedded store
    named by ``store_file`` (read-only; launching takes its lock).

    Raises
    ------
    InputError
        If the file is missing, not a mapping, has unknown keys, or names an unset variable.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"launchpad file {path} does not exist")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise InputError(
            f"launchpad file {path} must hold a YAML mapping, not {type(raw).__name__}"
        )
    unknown = sorted(set(raw) - _LAUNCHPAD_KEYS - {"store_file"})
    if unknown:
        raise InputError(
            f"launchpad file {path}: unknown keys {unknown}; allowed: {sorted(_LAUNCHPAD_KEYS)}"
        )
    config = _expand_env(raw, path)
    if isinstance(config.get("port"), str):
        if not config["port"].isdigit():
            raise InputError(
                f"launchpad file {path}: port {config['port']!r} is not a whole number"
            )
        config["port"] = int(config["port"])
    if isinstance(config.get("uri_mode"), str):
        config["uri_mode"] = config["uri_mode"].strip().lower() in {"1", "true", "yes"}
    if str(config.get("host") or "").startswith("mongomock://"):
        if not config.get("store_file"):
            raise InputError(f"launchpad file {path}: a mongomock:// host needs store_file")
        return EmbeddedLaunchPad(Path(path.parent, config["store_file"]), readonly=True)
    config.pop("store_file", None)
    if not config.get("host"):
        raise InputError(f"launchpad file {path}: 'host' is empty; set it (or its env variable)")
    return LaunchPad.from_dict(config)


def _launchpad_for_run(
    out: Path, launchpad_file: str | Path | None, wait: float
) -> contextlib.AbstractContextManager[LaunchPad]:
    if launchpad_file is None:
        return open_embedded_launchpad(embedded_store_path(out), wait=wait)
    from pqdflow.workflows.fireworks.mongo_launchpad import (
        closing_launchpad,
        connect_launchpad_file,
    )

    lp = connect_launchpad_file(launchpad_file, initialise=True)
    if isinstance(lp, EmbeddedLaunchPad):
        return open_embedded_launchpad(lp.store_file, wait=wait)
    return closing_launchpad(lp)


def run_plan_on_launchpad(
    plan: StudyPlan,
    backend_name: str,
    out: str | Path,
    *,
    launchpad_file: str | Path | None = None,
    progress: bool = True,
    wait: float = 0.0,
    backend_options: Mapping[str, Any] | None = None,
    plots: bool = True,
    workers: int = 1,
) -> Path:
    """Run a study through FireWorks and write ``out/results.json``; return its path.

    The workflow (:func:`~pqdflow.workflows.fireworks.builder.build_workflow`, folders under
    ``out``) is added to the launchpad unless the same plan is already there, Fireworks
    that a killed launcher left RUNNING are rerun, and ``rapidfire`` launches everything
    that is ready. Rerunning the command resumes: completed Fireworks are not run again.

    Parameters
    ----------
    plan
        The study plan.
    backend_name
        A registered backend: ``"mock"``, ``"chgnet"``, ``"vasp"`` (commands from
        ``backend_options``' ``vasp_cmd`` / ``gamma_vasp_cmd``, else ``vasp_std``), ...
    out
        Run folder: calculation folders, ``fw_launches/``, ``results.json`` and (by
        default) the embedded store ``fw_launchpad.json``.
    launchpad_file
        A my_launchpad.yaml to use instead of the embedded store.
    progress
        Print FireWorks' progress lines.
    wait
        Seconds to wait for another launcher holding the embedded store.
    backend_options
        Settings of the backend (see ``build_workflow``).
    plots
        Write the PNG plots next to ``results.json``.
    workers
        Processes computing the run: the launcher and ``workers - 1`` lookahead workers
        (:class:`~pqdflow.workflows.fireworks.lookahead.LookaheadPool`), each with the
        thread count of :func:`~pqdflow.workflows.engine.threads.resolve_threads`.

    Raises
    ------
    LaunchpadLockedError
        Another launcher holds the embedded store.
    CalculationFailed
        Some Fireworks failed (FIZZLED); the message names them and their errors.
    RunInterrupted
        SIGINT / SIGTERM stopped the run: no further Firework was started, the interrupted
        one is READY again, the store is saved and the partial results are written; the
        same call resumes.
    """
    from pqdflow.analysis.report import write_results
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.engine.threads import thread_record
    from pqdflow.workflows.fireworks.builder import (
        add_workflow_once,
        build_workflow,
        collect_docs,
        workflow_failures,
        workflow_states,
    )
    from pqdflow.workflows.fireworks.lookahead import LookaheadPool, describe_workers
    from pqdflow.workflows.study.session import run_session
    from pqdflow.workflows.study.steps import assemble_results, prepare_run_folder

    if not isinstance(workers, int) or workers < 1:
        raise InputError(f"workers must be a whole number >= 1, got {workers!r}")
    start = time.perf_counter()
    out = Path(out).resolve()
    wf = build_workflow(plan, backend_name, root=out, backend_options=backend_options)
    described = get_backend(backend_name, **dict(backend_options or {})).describe()
    with _launchpad_for_run(out, launchpad_file, wait) as lp:
        # holding the store: a folder of another study is refused before anything runs
        out.mkdir(parents=True, exist_ok=True)
        prepare_run_folder(plan, out, backend_name, described)
        threads = thread_record()
        info = {"launcher": "fireworks", "workers": workers, **threads}
        with run_session(out, since=start, **info) as session:
            recovered = getattr(lp, "recovered_fw_ids", [])
            if recovered and progress:
                print(f"pqdflow: reran lost Firework(s) of a killed launcher: {recovered}")
            fw_id, added = add_workflow_once(lp, wf)
            nodes = [int(r["fw_id"]) for r in workflow_states(lp, fw_id)]
            # a Firework stopped by Ctrl-C (this version or an older one) is rerun, not failed
            resumed = rerun_fireworks(lp, nodes, which="interrupted")
            if progress:
                verb = "added" if added else "resuming"
                print(f"pqdflow: {verb} workflow {wf.name!r} ({len(wf.fws)} Fireworks) in {out}")
                if resumed:
                    print(f"pqdflow: rerunning interrupted: {[r['name'] for r in resumed]}")
            pool = LookaheadPool(
                workers,
                nodes,
                store_file=getattr(lp, "store_file", None),
                launchpad_file=None if isinstance(lp, EmbeddedLaunchPad) else launchpad_file,
                threads=threads.get("threads"),
            )
            if progress:
                print(describe_workers(workers, threads))
            with pool.running():
                launch_rapidfire(lp, out / LAUNCHES_DIRNAME, progress=progress)
            interrupted = session.interrupts.requested
            if interrupted:  # the Firework the signal stopped goes back to READY
                rerun_fireworks(lp, nodes, which="interrupted")
            states = workflow_states(lp, fw_id)
            docs = collect_docs(lp, fw_id)
            failures = workflow_failures(lp, states)
            session.finish(
                "interrupted" if interrupted else ("partial" if failures else "completed")
            )
            failed = [{"name": f, "kind": "firework", "error": "FIZZLED"} for f in failures]
            results = assemble_results(
                plan,
                docs,
                backend_name,
                failed=failed,
                wall_time_s=session.wall_time_s,
                interrupted=interrupted,
                sessions=session.records,
                launcher="fireworks",
                backend_options=dict(backend_options or {}),
            )
            path = write_results(
                results, out, plots=plots, echo=progress and not failures and not interrupted
            )
    if interrupted:
        raise RunInterrupted(
            f"{INTERRUPT_MESSAGE} ({len(docs)} finished step(s) kept; partial results in {path})",
            session.interrupts.signum or signal.SIGINT,
        )
    unfinished = [r["name"] for r in states if r["state"] not in ("COMPLETED", "FIZZLED")]
    if failures:
        raise CalculationFailed(
            f"{len(failures)} Firework(s) failed in {out}: "
            + "; ".join(failures)
            + f". Completed results are in {path}; fix the cause, then `pqdflow rerun --out "
            f"{out} --failed` and run the same command again to resume."
        )
    if unfinished:
        raise CalculationFailed(
            f"{len(unfinished)} Firework(s) of {wf.name!r} did not run ({unfinished[:5]}...): "
            "they wait on Fireworks another worker holds; rerun when those are done"
        )
    return path

"""Safe file writing shared by every layer: atomic writes and never clobbering outputs.

Nothing pqdflow writes is ever half-written: files are written to a temporary sibling and
renamed into place, and whole calculation folders are assembled in a temporary sibling
folder and renamed in one step. A folder that already holds calculation outputs is never
overwritten silently (:func:`guard_outputs`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pqdflow.errors import OverwriteError

__all__ = [
    "OUTPUT_FILES",
    "atomic_directory",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "find_outputs",
    "folder_lock",
    "folder_locking",
    "guard_outputs",
    "move_outputs_aside",
    "sha256_of_files",
]

#: File names whose presence means a calculation has (at least partly) run.
OUTPUT_FILES: tuple[str, ...] = (
    "OUTCAR",
    "OUTCAR.gz",
    "vasprun.xml",
    "vasprun.xml.gz",
    "OSZICAR",
    "CONTCAR",
    "result.json",
)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary sibling + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, data: Any, *, indent: int = 2) -> None:
    """Write ``data`` as sorted, indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent, sort_keys=True, default=str) + "\n")


def find_outputs(directory: str | Path) -> list[Path]:
    """Return every calculation output file in ``directory`` and all its sub-folders.

    Sub-folders are searched at any depth (NEB images ``00 .. NN``, phonopy displacement
    folders, engine calculation folders), so a forced rewrite never deletes outputs that sit
    below the folder it replaces.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    names = set(OUTPUT_FILES)
    return sorted(p for p in directory.rglob("*") if p.name in names and p.is_file())


def guard_outputs(directory: str | Path, *, force: bool = False) -> None:
    """Refuse to touch ``directory`` if it holds outputs, unless ``force``.

    Raises
    ------
    OverwriteError
        If outputs are present and ``force`` is False.
    """
    outputs = find_outputs(directory)
    if outputs and not force:
        names = ", ".join(str(p.relative_to(directory)) for p in outputs[:5])
        raise OverwriteError(
            f"{directory} already holds calculation outputs ({names}); refusing to overwrite. "
            "Use force=True (--force on the command line) to move them aside and rewrite."
        )


def move_outputs_aside(directory: str | Path) -> Path | None:
    """Move a folder that holds outputs to ``<name>.bak-<timestamp>``; return the new path."""
    directory = Path(directory)
    if not directory.exists():
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = directory.with_name(f"{directory.name}.bak-{stamp}")
    n = 1
    while target.exists():
        target = directory.with_name(f"{directory.name}.bak-{stamp}-{n}")
        n += 1
    directory.rename(target)
    return target


@contextlib.contextmanager
def atomic_directory(directory: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Assemble a folder in a temporary sibling and move it into place on success.

    Yields the temporary folder to write into. On an exception nothing is left behind.
    If ``directory`` exists it is replaced only after the new content is complete; if it
    holds outputs, :class:`~pqdflow.errors.OverwriteError` is raised unless ``force``,
    in which case the old folder is moved aside (never deleted).
    """
    directory = Path(directory)
    guard_outputs(directory, force=force)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        yield tmp
        if directory.exists():
            if find_outputs(directory):
                move_outputs_aside(directory)
            else:
                old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
                directory.rename(old)
                shutil.rmtree(old)
        tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def sha256_of_files(directory: str | Path, names: list[str] | None = None) -> str:
    """SHA-256 over the named files (or every file, recursively) of ``directory``.

    File names are included in the hash so that renames change it; order is sorted.
    """
    directory = Path(directory)
    if names is None:
        paths = sorted(p for p in directory.rglob("*") if p.is_file())
    else:
        paths = sorted(directory / n for n in names if (directory / n).is_file())
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(directory)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
    return digest.hexdigest()


@contextlib.contextmanager
def folder_lock(directory: str | Path, *, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on a calculation folder for the duration of the block.

    Two processes computing the same calculation (the launcher and a lookahead worker of
    one run) would write one folder twice; this lock makes one of them wait or skip. The
    lock is ``fcntl.flock`` on ``.<name>.lock`` beside the folder (the folder itself is not
    created); the kernel drops it when its holder exits, even on ``kill -9``. Locks are only
    taken while :func:`folder_locking` is on (a run with lookahead workers); otherwise the
    block runs at once and no lock file is written.

    Yields
    ------
    bool
        Whether the lock is held: always True with ``wait`` (the block starts once the other
        holder is done), False without ``wait`` when another process holds it.
    """
    if not _LOCKING:  # one process computes the run: no lock files in the user's tree
        yield True
        return
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    path = directory.with_name(f".{directory.name}.lock").resolve()
    if path in _HELD:  # re-entered by the holder (a worker running the step it locked)
        yield True
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        _HELD.add(path)
        try:
            yield True
        finally:
            _HELD.discard(path)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


#: Folder locks this process holds (flock is per open file: a second flock would block).
_HELD: set[Path] = set()
_LOCKING = False


@contextlib.contextmanager
def folder_locking() -> Iterator[None]:
    """Turn :func:`folder_lock` on in this process for the duration of the block."""
    global _LOCKING
    before, _LOCKING = _LOCKING, True
    try:
        yield
    finally:
        _LOCKING = before

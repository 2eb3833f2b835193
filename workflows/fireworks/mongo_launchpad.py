"""A launchpad on a MongoDB server, opened from a my_launchpad.yaml and checked before use.

:func:`~pqdflow.workflows.fireworks.launchpad.load_launchpad_file` builds FireWorks' ``LaunchPad``
lazily: pymongo contacts the server on first use. Over a real socket that turned a wrong
password or an unreachable server into a pymongo traceback in the middle of
``pqdflow submit``, and a database FireWorks had never used into FireWorks' "Could not get
next FW id" ``ValueError``. :func:`connect_launchpad_file` contacts the server once, before
anything is planned or written, and raises
:class:`~pqdflow.errors.LaunchpadConnectionError` naming the launchpad file instead;
:func:`initialise_launchpad` prepares a database that holds no FireWorks data yet (the
id counters and indices FireWorks' ``lpad reset`` creates), deleting nothing.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path

from fireworks import LaunchPad
from pymongo.errors import ConfigurationError, OperationFailure, PyMongoError

from pqdflow.errors import InputError, LaunchpadConnectionError
from pqdflow.workflows.fireworks.launchpad import EmbeddedLaunchPad, load_launchpad_file

__all__ = [
    "check_launchpad_server",
    "close_launchpad",
    "closing_launchpad",
    "connect_launchpad_file",
    "describe_launchpad",
    "initialise_launchpad",
]

# MongoDB server error codes (src/mongo/base/error_codes.yml of the MongoDB server)
_AUTHENTICATION_FAILED = 18
_UNAUTHORIZED = 13

_URI_CREDENTIALS = re.compile(r"(//[^:/@]*):[^@]*@")


def describe_launchpad(lp: LaunchPad) -> str:
    """Where ``lp`` points, for messages: ``host:port (database NAME)``, never a password.

    In ``uri_mode`` the host is a connection string that may hold the password; it is
    shown with the password replaced by ``***``.
    """
    store = getattr(lp, "store_file", None)
    if store is not None:
        return str(store)
    if lp.uri_mode:
        uri = _URI_CREDENTIALS.sub(r"\1:***@", str(lp.host))
        return f"{uri} (database {lp.name})"
    return f"{lp.host}:{lp.port} (database {lp.name})"


def check_launchpad_server(lp: LaunchPad, source: str | Path) -> None:
    """Contact the server of ``lp`` once: reachable, credentials accepted, database readable.

    Parameters
    ----------
    lp
        A LaunchPad on a MongoDB server (built from ``source``).
    source
        The launchpad file ``lp`` came from; every message names it.

    Raises
    ------
    LaunchpadConnectionError
        If the server cannot be reached, refuses the credentials, or does not let the user
        read the database.
    """
    where = describe_launchpad(lp)
    try:
        lp.fw_id_assigner.find_one({}, {"_id": 1})  # authenticates, then needs read access
    except OperationFailure as exc:
        if exc.code == _AUTHENTICATION_FAILED:
            raise LaunchpadConnectionError(
                f"launchpad file {source}: {where} refused the credentials of user "
                f"{lp.username!r} (authsource {lp.authsource!r}). Check the username, password "
                "and authsource the file gives (the template reads PQDFLOW_MONGO_USER, "
                "PQDFLOW_MONGO_PASSWORD and PQDFLOW_MONGO_AUTHSOURCE from the environment)."
            ) from None
        if exc.code == _UNAUTHORIZED:
            raise LaunchpadConnectionError(
                f"launchpad file {source}: user {lp.username!r} may not read database "
                f"{lp.name!r} on {where} ({exc.details and exc.details.get('errmsg')}); "
                "grant the user readWrite on it or name a database it owns"
            ) from None
        raise LaunchpadConnectionError(
            f"launchpad file {source}: {where} answered with an error: {exc}"
        ) from None
    except ConfigurationError as exc:
        raise LaunchpadConnectionError(
            f"launchpad file {source}: invalid MongoDB connection settings: {exc}"
        ) from None
    except PyMongoError as exc:
        first = re.split(r", Timeout:| \(configured timeouts", str(exc))[0].split("\n")[0]
        raise LaunchpadConnectionError(
            f"launchpad file {source}: cannot reach the MongoDB server {where}: {first}. "
            "Check host and port (PQDFLOW_MONGO_HOST / PQDFLOW_MONGO_PORT in the template), "
            "and that the server runs and is reachable from this machine."
        ) from None


def initialise_launchpad(lp: LaunchPad, source: str | Path) -> bool:
    """Prepare a database FireWorks has never used; return whether anything was done.

    FireWorks needs an id counter (and wants its indices) before the first ``add_wf``;
    ``lpad reset`` creates them but also deletes every workflow. Here the counter is only
    inserted when absent and the database holds no Fireworks, launches or workflows, so
    nothing can be lost.

    Raises
    ------
    InputError
        If the database holds FireWorks data but no id counter (not made by FireWorks, or
        damaged): a new id counter could reuse ids.
    """
    if lp.fw_id_assigner.find_one({}, {"_id": 1}) is not None:
        return False
    held = {
        name: coll.count_documents({}, limit=1)
        for name, coll in (
            ("fireworks", lp.fireworks),
            ("launches", lp.launches),
            ("workflows", lp.workflows),
        )
    }
    if any(held.values()):
        raise InputError(
            f"launchpad file {source}: database {describe_launchpad(lp)} holds "
            f"{', '.join(n for n, v in held.items() if v)} but no FireWorks id counter; it "
            "was not made by FireWorks or is damaged. Name another database, or reset this "
            "one with `lpad reset` if its contents may be deleted."
        )
    lp.fw_id_assigner.update_one(
        {"_id": -1},
        {"$setOnInsert": {"next_fw_id": 1, "next_launch_id": 1}},
        upsert=True,
    )
    lp.tuneup(bkground=True)  # creates FireWorks' indices; idempotent
    return True


def connect_launchpad_file(path: str | Path, *, initialise: bool = False) -> LaunchPad:
    """Open the launchpad of a my_launchpad.yaml and make sure it can be used.

    Parameters
    ----------
    path
        The launchpad file (``${VAR}`` placeholders expanded from the environment).
    initialise
        Prepare the database when FireWorks has never used it (:func:`initialise_launchpad`).

    Returns
    -------
    LaunchPad
        A checked LaunchPad; an embedded store (``mongomock://`` host) is returned unchecked
        and read-only, as
        :func:`~pqdflow.workflows.fireworks.launchpad.load_launchpad_file` gives it.

    Raises
    ------
    InputError
        If the file is invalid (see ``load_launchpad_file``).
    LaunchpadConnectionError
        If the server cannot be reached or refuses the credentials.
    """
    lp = load_launchpad_file(path)
    if isinstance(lp, EmbeddedLaunchPad):
        return lp
    try:
        check_launchpad_server(lp, path)
        if initialise:
            initialise_launchpad(lp, path)
    except Exception:
        close_launchpad(lp)
        raise
    return lp


def close_launchpad(lp: LaunchPad) -> None:
    """Close the MongoDB client of a server launchpad (an embedded store is left open).

    pymongo warns (``ResourceWarning``) about a client that is garbage-collected open.
    """
    if not isinstance(lp, EmbeddedLaunchPad):
        lp.connection.close()


@contextlib.contextmanager
def closing_launchpad(lp: LaunchPad) -> Iterator[LaunchPad]:
    """Yield ``lp`` and close its MongoDB client when the block ends."""
    try:
        yield lp
    finally:
        close_launchpad(lp)

"""Provenance records attached to everything pqdflow writes."""

from __future__ import annotations

import datetime as _dt
import platform
from typing import Any

from pqdflow import __version__

__all__ = ["provenance"]


def provenance(**extra: Any) -> dict[str, Any]:
    """Return a small provenance dict: pqdflow version, Python, UTC time, plus ``extra``."""
    record: dict[str, Any] = {
        "pqdflow_version": __version__,
        "python": platform.python_version(),
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record

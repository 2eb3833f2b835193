"""``pqdflow status``: state of the pqdflow workflows on a launchpad.

Examples
--------
``pqdflow status --out runs/paper`` reads the embedded launchpad of a run folder (no lock is
taken, so it works while ``pqdflow run`` is launching). ``pqdflow status --launchpad
~/.fireworks/my_launchpad.yaml`` reads a MongoDB launchpad. Prints the number of Fireworks
per state and one line per Firework.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]

_STATE_ORDER = (
    "COMPLETED",
    "RUNNING",
    "READY",
    "WAITING",
    "RESERVED",
    "FIZZLED",
    "DEFUSED",
    "PAUSED",
    "ARCHIVED",
)


def register(subparsers: Any) -> None:
    """Add the ``status`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "status",
        help="Firework counts per state and a per-Firework table",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n  pqdflow status --out runs/paper\n"
            "  pqdflow status --launchpad my_launchpad.yaml"
        ),
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--launchpad", type=Path, help="my_launchpad.yaml")
    where.add_argument("--out", type=Path, help="run folder with an embedded launchpad")
    parser.add_argument("--study", help="only the workflow of this study name")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pqdflow status``; return the exit status."""
    from pqdflow.workflows.fireworks.launchpad import EmbeddedLaunchPad, embedded_store_path
    from pqdflow.workflows.fireworks.mongo_launchpad import (
        closing_launchpad,
        connect_launchpad_file,
        describe_launchpad,
    )

    if args.out is not None:
        lp = EmbeddedLaunchPad(embedded_store_path(args.out), readonly=True)
        _print_status(lp, str(lp.store_file), args.study)
        return 0
    with closing_launchpad(connect_launchpad_file(args.launchpad)) as lp:
        _print_status(lp, describe_launchpad(lp), args.study)
    return 0


def _print_status(lp: Any, where: str, study: str | None) -> None:
    from pqdflow.workflows.fireworks.builder import workflow_states

    query: dict[str, Any] = {"metadata.pqdflow_study": {"$exists": True}}
    if study:
        query["metadata.pqdflow_study"] = study
    workflows = list(lp.workflows.find(query, {"nodes": 1, "name": 1}))
    print(f"launchpad: {where}; {len(workflows)} pqdflow workflow(s)")
    for wf in workflows:
        rows = workflow_states(lp, int(wf["nodes"][0]))
        counts = Counter(r["state"] for r in rows)
        ordered = [s for s in _STATE_ORDER if s in counts] + sorted(set(counts) - set(_STATE_ORDER))
        print(
            f"\n{wf['name']}: "
            + ", ".join(f"{s} {counts[s]}" for s in ordered)
            + f" (of {len(rows)})"
        )
        print(f"  {'fw_id':>5}  {'state':<9}  name")
        for r in rows:
            print(f"  {r['fw_id']:>5}  {r['state']:<9}  {r['name']}")

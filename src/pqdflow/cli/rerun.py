"""``pqdflow rerun``: put Fireworks of a run folder's embedded launchpad back in the queue.

Examples
--------
``pqdflow rerun --out runs/paper`` requeues every Firework that did not finish: FIZZLED
(failed, or stopped by Ctrl-C in an older pqdflow) and RESERVED/RUNNING ones that a launcher
which is gone left behind. ``--failed`` requeues only FIZZLED ones; ``--fw-id N`` one
Firework, whatever its state. Nothing is computed here: run the same ``pqdflow run`` command
again to continue. Finished calculations are not recomputed (their results are reused when
their inputs match).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pqdflow.errors import StudyError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``rerun`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "rerun",
        help="requeue failed or interrupted Fireworks of a run folder (then run again)",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n  pqdflow rerun --out runs/paper\n"
            "  pqdflow rerun --out runs/paper --failed\n"
            "  pqdflow rerun --out runs/paper --fw-id 12\n"
            "then run the same `pqdflow run ... --out runs/paper` command again"
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder (embedded launchpad)")
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--failed", action="store_true", help="only FIZZLED Fireworks")
    which.add_argument("--fw-id", type=int, default=None, help="only this Firework")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pqdflow rerun``; return the exit status."""
    from pqdflow.workflows.fireworks.builder import workflow_states
    from pqdflow.workflows.fireworks.launchpad import (
        embedded_store_path,
        open_embedded_launchpad,
        rerun_fireworks,
    )

    store = embedded_store_path(args.out)
    if not store.is_file():
        raise StudyError(
            f"{args.out} has no embedded launchpad ({store.name}); give the --out folder of a "
            "`pqdflow run` or `pqdflow submit --out`"
        )
    # the lock: refused while a launcher runs there, so no RUNNING Firework is live
    with open_embedded_launchpad(store, recover=False) as lp:
        nodes = [
            int(r["fw_id"])
            for wf in lp.workflows.find({"metadata.pqdflow_study": {"$exists": True}})
            for r in workflow_states(lp, int(wf["nodes"][0]))
        ]
        if args.fw_id is not None:
            if args.fw_id not in nodes:
                raise StudyError(
                    f"no Firework {args.fw_id} in {store}; `pqdflow status --out {args.out}` "
                    "lists them"
                )
            chosen = rerun_fireworks(lp, [args.fw_id], which="any")
        else:
            chosen = rerun_fireworks(lp, nodes, which="failed" if args.failed else "all")
    for row in chosen:
        print(f"requeued {row['fw_id']:>4} (was {row['state']}): {row['name']}")
    if not chosen:
        print(f"nothing to requeue in {args.out}")
        return 0
    print(f"{len(chosen)} Firework(s) requeued; run the same `pqdflow run` command to continue")
    return 0

"""``pqdflow submit``: put a study on a FireWorks launchpad as one workflow.

Examples
--------
``pqdflow submit study.yaml --launchpad ~/.fireworks/my_launchpad.yaml --backend vasp`` adds
the workflow to a MongoDB launchpad (credentials from the environment, see
``fw_configs/README.md``); workers then run it with ``qlaunch``/``rlaunch``, each job in its
own launch folder. Without ``--launchpad`` the workflow goes to the embedded single-file
launchpad of ``--out`` (``OUT/fw_launchpad.json``); ``pqdflow run`` launches it there.
Submitting the same study twice adds nothing the second time.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from pqdflow.cli.run import add_backend_arguments, backend_settings

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``submit`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "submit",
        help="add a study to a FireWorks launchpad (MongoDB, or the embedded one of --out)",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pqdflow submit study.yaml --backend vasp \\\n"
            "      --launchpad ~/.fireworks/my_launchpad.yaml\n"
            "  pqdflow submit study.yaml --out runs/paper --backend mock"
        ),
    )
    parser.add_argument("study", type=Path, help="study YAML file")
    parser.add_argument(
        "--launchpad", type=Path, help="my_launchpad.yaml (default: embedded store of --out)"
    )
    add_backend_arguments(parser, default="vasp")
    parser.add_argument(
        "--out", type=Path, help="run folder (embedded store and calculation folders)"
    )
    parser.add_argument(
        "--root",
        type=Path,
        help="folder for the calculation folders on the workers (default: each job's launch "
        "folder, or --out with the embedded store)",
    )
    parser.add_argument(
        "--wait", type=float, default=0.0, help="seconds to wait for a busy embedded store"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pqdflow submit``; return the exit status."""
    from pqdflow.errors import InputError
    from pqdflow.workflows.fireworks.builder import add_workflow_once, build_workflow
    from pqdflow.workflows.fireworks.launchpad import (
        EmbeddedLaunchPad,
        embedded_store_path,
        open_embedded_launchpad,
    )
    from pqdflow.workflows.fireworks.mongo_launchpad import (
        close_launchpad,
        connect_launchpad_file,
        describe_launchpad,
    )
    from pqdflow.workflows.study import load_study, plan_study

    if args.launchpad is None and args.out is None:
        raise InputError("give --launchpad FILE (MongoDB) or --out DIR (embedded launchpad)")
    study = load_study(args.study)  # a bad study file fails before any launchpad is touched
    options = backend_settings(args)
    root = args.root if args.root is not None else (args.out if args.launchpad is None else None)
    store: Path | None
    if args.launchpad is None:
        store = embedded_store_path(args.out)
        target = str(store)
    else:
        # a server that is unreachable or refuses the credentials fails here, naming the file
        lp = connect_launchpad_file(args.launchpad, initialise=True)
        store = lp.store_file if isinstance(lp, EmbeddedLaunchPad) else None
        target = describe_launchpad(lp)
    if store is not None:
        # lock first: a busy store is refused before the study is planned
        with open_embedded_launchpad(store, wait=args.wait) as elp:
            wf = build_workflow(plan_study(study), args.backend, root=root, backend_options=options)
            fw_id, added = add_workflow_once(elp, wf)
    else:
        try:
            wf = build_workflow(plan_study(study), args.backend, root=root, backend_options=options)
            fw_id, added = add_workflow_once(lp, wf)
        finally:
            close_launchpad(lp)
    if added:
        print(
            f"added workflow {wf.name!r}: {len(wf.fws)} Fireworks (first fw_id {fw_id}) to {target}"
        )
    else:
        print(f"workflow {wf.name!r} is already on {target} (fw_id {fw_id}); nothing added")
    return 0

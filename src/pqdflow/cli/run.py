"""``pqdflow run``: run a whole study on this machine with an ML or mock backend.

Examples
--------
``pqdflow run --example --backend chgnet --out runs/chgnet`` runs the paper's default study
(clean slabs, ligands, control and treated surfaces, binding energies, V_X migration NEBs)
with the pretrained CHGNet potential, on CPU, offline. ``--backend mock`` is a quick check
of the plumbing whose numbers are not physics. By default the study runs as a FireWorks
workflow on an embedded, file-backed launchpad in ``--out`` (``--launchpad`` names a real
one, ``--launcher direct`` skips FireWorks). Interrupted and rerun with the same ``--out``,
it continues without recomputing finished calculations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pqdflow.errors import StudyError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "run",
        help="run a study locally with an ML (chgnet) or mock backend",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pqdflow run --example --backend mock --out runs/mock\n"
            "  pqdflow run study.yaml --backend chgnet --out runs/chgnet"
        ),
    )
    parser.add_argument("study", nargs="?", type=Path, help="study YAML file")
    parser.add_argument("--example", action="store_true", help="run the default (paper) study")
    parser.add_argument(
        "--backend",
        default="chgnet",
        help="mock (plumbing, not physics) or chgnet (default; needs the 'ml' extra)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--definition",
        choices=["exchange", "interaction"],
        default="exchange",
        help="binding-energy definition (default: atom-balanced exchange)",
    )
    parser.add_argument(
        "--launcher",
        choices=["fireworks", "direct"],
        default="fireworks",
        help="fireworks (default: a workflow on the embedded launchpad in --out) or direct",
    )
    parser.add_argument(
        "--launchpad",
        type=Path,
        default=None,
        help="my_launchpad.yaml of a real MongoDB launchpad (default: embedded store in --out)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pqdflow run``; return the exit status."""
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.runner import run_study
    from pqdflow.workflows.study import example_study, load_study, plan_study

    if args.example == (args.study is not None):
        raise StudyError("give either a study file or --example (not both, not neither)")
    backend = get_backend(args.backend)  # unknown / not installed: clear error, nothing written
    study = example_study() if args.example else load_study(args.study)
    plan = plan_study(study)
    if args.launcher == "fireworks":
        if args.definition != "exchange":
            raise StudyError("--definition other than exchange needs --launcher direct")
        from pqdflow.workflows.launchpad import run_plan_on_launchpad

        path = run_plan_on_launchpad(
            plan,
            args.backend,
            args.out,
            launchpad_file=args.launchpad,
            progress=not args.no_progress,
        )
        print(f"results: {path}")
        return 0
    if args.launchpad is not None:
        raise StudyError("--launchpad needs --launcher fireworks")
    results = run_study(
        plan,
        backend,
        args.out,
        progress=not args.no_progress,
        definition=args.definition,
        plots=not args.no_plots,
    )
    print(f"results: {Path(args.out) / 'results.json'} ({results.wall_time_s:.1f} s)")
    if results.failed:
        names = ", ".join(f["name"] for f in results.failed)
        print(f"pqdflow run: {len(results.failed)} calculation(s) failed: {names}", file=sys.stderr)
        return 1
    return 0

"""``pqdflow inputs``: print the example study, or write a study's VASP input tree (dry run).

Examples
--------
``pqdflow inputs --example > study.yaml`` prints the paper's default study (commented YAML).
``pqdflow inputs study.yaml --out runs/dry`` writes one folder per calculation and NEB plus
``runs/dry/manifest.json``; no POTCAR licence needed (POTCAR.spec unless PMG_VASP_PSP_DIR is
set). Re-running changes nothing; folders holding outputs are never overwritten (``--force``
moves them aside).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pqdflow.errors import StudyError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``inputs`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "inputs",
        help="write the VASP input tree of a study (dry run), or print the example study",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pqdflow inputs --example > study.yaml\n"
            "  pqdflow inputs study.yaml --out runs/dry\n"
            "  pqdflow inputs study.yaml --out runs/dry --force"
        ),
    )
    parser.add_argument("study", nargs="?", type=Path, help="study YAML file")
    parser.add_argument("--example", action="store_true", help="print the default study YAML")
    parser.add_argument("--out", type=Path, help="output folder of the input tree")
    parser.add_argument(
        "--force",
        action="store_true",
        help="rewrite folders that hold outputs (old folders are moved aside, never deleted)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pqdflow inputs``; return the exit status."""
    from pqdflow.workflows.study import example_study_yaml, load_study, plan_study

    if args.example:
        if args.study is not None or args.out is not None:
            raise StudyError("--example prints the default study; give no STUDY or --out with it")
        sys.stdout.write(example_study_yaml())
        return 0
    if args.study is None or args.out is None:
        raise StudyError(
            "give a study file and --out DIR (or --example to print the default study)"
        )
    from pqdflow.workflows.dryrun import write_study_inputs

    study = load_study(args.study)
    plan = plan_study(study)
    manifest = write_study_inputs(plan, args.out, force=args.force)
    total = len(manifest.calculations)
    nebs = sum(1 for c in manifest.calculations if c.kind == "neb")
    unchanged = total - len(manifest.written)
    print(
        f"study {manifest.study!r}: {total} folders ({total - nebs} calculations, {nebs} NEB) "
        f"in {args.out}; {len(manifest.written)} written, {unchanged} unchanged; "
        f"manifest: {manifest.path}"
    )
    return 0

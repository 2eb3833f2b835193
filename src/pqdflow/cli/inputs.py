"""``pqdflow inputs``: print the example study, or write a study's VASP input tree (dry run).

Examples
--------
``pqdflow inputs --example > study.yaml`` prints the paper's default study (commented YAML).
``pqdflow inputs study.yaml --out runs/dry`` writes one folder per calculation and NEB plus
``runs/dry/manifest.json``; no POTCAR licence needed (POTCAR.spec unless PMG_VASP_PSP_DIR is
set). Re-running changes nothing; folders holding outputs are never overwritten (``--force``
moves them aside).
``pqdflow inputs study.yaml --prerelax chgnet --out runs/dry`` first relaxes every structure
with CHGNet (NEB endpoints too, then re-interpolates the bands) in ``runs/dry/.prerelax/``
and writes the pre-relaxed structures, recording it in each folder's provenance.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pqdflow.cli.run import add_example_argument
from pqdflow.errors import StudyError

if TYPE_CHECKING:
    from pqdflow.documents.plan import StudyPlan

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
            "  pqdflow inputs --example quick > quick.yaml\n"
            "  pqdflow inputs study.yaml --out runs/dry\n"
            "  pqdflow inputs study.yaml --out runs/dry --force\n"
            "  pqdflow inputs study.yaml --out runs/dry --prerelax chgnet"
        ),
    )
    parser.add_argument("study", nargs="?", type=Path, help="study YAML file")
    add_example_argument(parser)
    parser.add_argument("--out", type=Path, help="output folder of the input tree")
    parser.add_argument(
        "--force",
        action="store_true",
        help="rewrite folders that hold outputs (old folders are moved aside, never deleted); "
        "with --prerelax also redo pre-relaxations whose study or settings changed",
    )
    from pqdflow.workflows.backends import backend_names

    parser.add_argument(
        "--prerelax",
        metavar="BACKEND",
        help="relax every structure with this in-process backend "
        f"({', '.join(backend_names(in_process=True))}) before writing the inputs (fewer DFT "
        "ionic steps); NEB endpoints too, then the bands are re-interpolated. 'mock' is a pair "
        "potential for plumbing tests only: its geometries are not physics (and are recorded "
        "as such)",
    )
    parser.add_argument(
        "--prerelax-fmax",
        type=float,
        metavar="EV_PER_A",
        help="pre-relaxation criterion, largest per-atom force in eV/Å (default 0.05: removes "
        "the large initial forces; DFT then tightens to its EDIFFG)",
    )
    parser.add_argument(
        "--prerelax-dir",
        type=Path,
        metavar="DIR",
        help="folder of the pre-relaxations (default OUT/.prerelax); finished ones are reused",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Execute ``pqdflow inputs``; return the exit status."""
    from pqdflow.workflows.study import example_study_yaml, load_study, plan_study

    if args.example:
        if args.study is not None or args.out is not None:
            raise StudyError("--example prints the default study; give no STUDY or --out with it")
        sys.stdout.write(example_study_yaml(args.example))
        return 0
    if args.study is None or args.out is None:
        raise StudyError(
            "give a study file and --out DIR (or --example to print the default study)"
        )
    from pqdflow.workflows.vasp.dryrun import write_study_inputs

    study = load_study(args.study)
    plan = plan_study(study)
    hook = _prerelax_hook(args)
    manifest = write_study_inputs(plan, args.out, force=args.force, prerelax=hook)
    total = len(manifest.calculations)
    nebs = sum(1 for c in manifest.calculations if c.kind == "neb")
    unchanged = total - len(manifest.written)
    print(
        f"study {manifest.study!r}: {total} folders ({total - nebs} calculations, {nebs} NEB) "
        f"in {args.out}; {len(manifest.written)} written, {unchanged} unchanged; "
        f"manifest: {manifest.path}"
    )
    if hook is not None:
        calcs = [c for c in manifest.calculations if c.kind != "neb"]
        bad = [c.name for c in calcs if not c.meta.get("prerelax", {}).get("converged")]
        print(
            f"pre-relaxed with {args.prerelax}: {len(calcs) - len(bad)}/{len(calcs)} converged"
            + (f"; NOT converged (inputs still written): {', '.join(bad)}" if bad else "")
            + ("; mock geometries are plumbing, not physics" if args.prerelax == "mock" else "")
        )
    return 0


def _prerelax_hook(args: argparse.Namespace) -> Callable[[StudyPlan], StudyPlan] | None:
    """Build the pre-relaxation hook of ``--prerelax`` (backend resolved now), or None."""
    if args.prerelax is None:
        if args.prerelax_fmax is not None or args.prerelax_dir is not None:
            raise StudyError("--prerelax-fmax / --prerelax-dir need --prerelax BACKEND")
        return None
    from pqdflow.workflows.engine.prerelax import PRERELAX_DIR, prerelax_hook

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return prerelax_hook(
        args.prerelax,
        workdir=args.prerelax_dir or args.out / PRERELAX_DIR,
        fmax=args.prerelax_fmax,
        force=args.force,
        progress=progress,
    )

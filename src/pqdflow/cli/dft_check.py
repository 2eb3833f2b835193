"""``pqdflow dft-check``: DFT single points on the ML geometries of a finished run.

Examples
--------
``pqdflow dft-check --out runs/paper --neb neb-bulk-x2 --backend gpaw`` computes GPAW PBE
single points (400 eV) on the initial, climbing and final images of the ML band and prints
the ML and DFT barriers with ML - DFT; ``--binding NAME`` does the same for a binding
reaction (every calculation of it). Results go to ``RUN/dft_check`` (``dft_check.json``,
``dft_check.md``); rerun, finished single points are read back. Cells over ``--max-atoms``
are refused here: ``--launchpad FILE`` adds the check to a FireWorks launchpad instead
(GPAW under MPI on the workers), and ``--backend vasp-dry`` writes VASP single-point inputs;
rerunning the command afterwards reads their results back.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pqdflow.errors import InputError

__all__ = ["register", "run_dft_check_command"]

VASP_DRY = "vasp-dry"


def register(subparsers: Any) -> None:
    """Add the ``dft-check`` subcommand to ``subparsers``."""
    from pqdflow.workflows.backends import backend_names
    from pqdflow.workflows.engine.dft_check_run import DEFAULT_MAX_ATOMS

    parser = subparsers.add_parser(
        "dft-check",
        help="DFT single points on the ML geometries of a finished run: ML vs DFT numbers",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pqdflow dft-check --out runs/paper --neb neb-bulk-x2 --backend gpaw\n"
            "  pqdflow dft-check --out runs/paper --binding binding-TMSBr-PbX2-x3 "
            "--launchpad my_launchpad.yaml\n"
            "  pqdflow dft-check --out runs/paper --neb neb-control-x2 --backend vasp-dry"
        ),
    )
    parser.add_argument("--out", type=Path, required=True, help="the ML run folder")
    parser.add_argument("--neb", nargs="+", default=[], metavar="NAME", help="NEB paths")
    parser.add_argument(
        "--binding", nargs="+", default=[], metavar="NAME", help="binding reactions"
    )
    choices = [*backend_names(in_process=True), VASP_DRY]
    parser.add_argument(
        "--backend",
        default="gpaw",
        choices=choices,
        help="DFT backend: gpaw (default), vasp-dry (write VASP single points, read them "
        "back once run), or an in-process backend (mock: plumbing only)",
    )
    parser.add_argument(
        "--encut", type=float, default=None, help="plane-wave cutoff in eV (default 400)"
    )
    parser.add_argument(
        "--kpts",
        type=int,
        nargs=3,
        default=None,
        metavar="N",
        help="gpaw: explicit Gamma-centred k-point grid (default: the VASP density rule)",
    )
    parser.add_argument(
        "--max-atoms",
        type=int,
        default=DEFAULT_MAX_ATOMS,
        help=f"largest cell computed on this machine (default {DEFAULT_MAX_ATOMS})",
    )
    parser.add_argument(
        "--check-dir", type=Path, default=None, help="check folder (default: OUT/dft_check)"
    )
    parser.add_argument(
        "--launchpad",
        type=Path,
        default=None,
        help="my_launchpad.yaml: add the single points to this FireWorks launchpad instead "
        "of computing them here",
    )
    parser.set_defaults(func=run_dft_check_command)


def _backend(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """Return the DFT backend and its registry settings from the command line."""
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.engine.dft_check_run import VaspSinglePoints

    if args.encut is not None and not args.encut > 0:
        raise InputError(f"--encut {args.encut}: must be a positive number of eV")
    if args.backend == VASP_DRY:
        if args.kpts is not None:
            raise InputError("--kpts is for --backend gpaw; VASP uses the study's k-points")
        if args.launchpad is not None:
            raise InputError("--launchpad needs --backend gpaw (VASP: run the written folders)")
        from pqdflow.workflows.vasp.calc_inputs import VaspInputOptions

        inputs = _study_inputs(args.out)
        options = VaspInputOptions.from_dict(inputs).as_dict() if inputs is not None else {}
        return VaspSinglePoints(options, encut=args.encut), {}
    calculator: dict[str, Any] = {}
    if args.backend == "gpaw":
        if args.encut is not None:
            calculator["ecut"] = args.encut
        if args.kpts is not None:
            calculator["kpts"] = tuple(args.kpts)
    elif args.encut is not None or args.kpts is not None:
        raise InputError(f"--encut and --kpts are for --backend gpaw, not {args.backend!r}")
    settings = {"calculator": calculator} if calculator else {}
    return get_backend(args.backend, **settings), settings


def _study_inputs(run: Path) -> dict[str, Any] | None:
    """Return the VASP input options of the study of a run folder (results.json), if any."""
    from pqdflow.documents.results import StudyResults

    path = run / "results.json"
    if not path.is_file():
        return None
    meta = StudyResults.read(path).provenance.get("study_meta") or {}
    inputs = (meta.get("study") or {}).get("inputs") if isinstance(meta, dict) else None
    return dict(inputs) if isinstance(inputs, dict) else None


def run_dft_check_command(args: argparse.Namespace) -> int:
    """Execute ``pqdflow dft-check``; return the exit status (1 while results are pending)."""
    from pqdflow.workflows.engine.dft_check_run import (
        CHECK_DIR,
        plan_dft_check,
        run_dft_check,
    )

    # bad names or a run folder without results: an error before any backend starts
    plan = plan_dft_check(args.out, nebs=args.neb, bindings=args.binding)
    backend, settings = _backend(args)
    root = args.check_dir if args.check_dir is not None else args.out / CHECK_DIR
    if args.launchpad is not None:
        return _submit(plan, args.backend, root, settings, args.launchpad)
    report = run_dft_check(
        args.out,
        backend,
        nebs=args.neb,
        bindings=args.binding,
        check_dir=root,
        max_atoms=args.max_atoms,
        echo=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(report.table(), end="")
    print(f"wrote {root / 'dft_check.json'} and {root / 'dft_check.md'}")
    if report.pending:
        print(
            f"pqdflow dft-check: {len(report.pending)} single point(s) pending in "
            f"{root / 'single_points'}: run them, then rerun this command",
            file=sys.stderr,
        )
        return 1
    return 0


def _submit(plan: Any, backend: str, root: Path, settings: dict[str, Any], path: Path) -> int:
    """Add the check to the launchpad of ``path``; print what was added."""
    from pqdflow.workflows.fireworks.builder import add_workflow_once
    from pqdflow.workflows.fireworks.dft_check import build_dft_check_workflow
    from pqdflow.workflows.fireworks.launchpad import EmbeddedLaunchPad, open_embedded_launchpad
    from pqdflow.workflows.fireworks.mongo_launchpad import (
        close_launchpad,
        connect_launchpad_file,
        describe_launchpad,
    )

    wf = build_dft_check_workflow(plan, backend, root, backend_options=settings)
    lp = connect_launchpad_file(path, initialise=True)
    target = describe_launchpad(lp)
    if isinstance(lp, EmbeddedLaunchPad):
        with open_embedded_launchpad(lp.store_file) as elp:
            fw_id, added = add_workflow_once(elp, wf)
    else:
        try:
            fw_id, added = add_workflow_once(lp, wf)
        finally:
            close_launchpad(lp)
    state = "added" if added else "already there, nothing added"
    print(f"{wf.name!r}: {len(wf.fws)} Fireworks (fw_id {fw_id}) on {target}: {state}")
    print(f"when they have run, rerun without --launchpad to read {root} back")
    return 0

"""``pqdflow run``: run a whole study on this machine with any backend.

Examples
--------
``pqdflow run --example --backend chgnet --out runs/chgnet`` runs the paper's default study
(clean slabs, ligands, control and treated surfaces, binding energies, V_X migration NEBs)
with the pretrained CHGNet potential, on CPU, offline. ``--backend mock`` is a quick check
of the plumbing whose numbers are not physics. ``--backend vasp --vasp-cmd "mpirun -n 16
vasp_std"`` runs the VASP study on this workstation, under custodian, with the inputs the
dry run writes. By default the study runs as a FireWorks workflow on an embedded,
file-backed launchpad in ``--out`` (``--launchpad`` names a real one, ``--launcher direct``
skips FireWorks). Interrupted and rerun with the same ``--out``, it continues without
recomputing finished calculations.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pqdflow.errors import StudyError
from pqdflow.workflows.study.schema import PRESETS

__all__ = ["add_backend_arguments", "backend_settings", "custodian_options", "register", "run"]


def add_example_argument(parser: argparse.ArgumentParser) -> None:
    """Add ``--example [PRESET]`` (an example study: paper, the default; full; quick)."""
    parser.add_argument(
        "--example",
        nargs="?",
        const="paper",
        default=None,
        choices=PRESETS,
        metavar="PRESET",
        help="the example study: paper (default), full or quick",
    )


def add_backend_arguments(parser: argparse.ArgumentParser, *, default: str | None) -> None:
    """Add ``--backend`` (choices from the registry) and the VASP command options."""
    from pqdflow.workflows.backends import backend_entry, backend_names

    names = backend_names()
    parser.add_argument(
        "--backend",
        default=default,
        metavar="NAME",
        help="; ".join(f"{n}: {backend_entry(n).summary}" for n in names)
        + (f" (default {default})" if default else ""),
    )
    parser.add_argument(
        "--vasp-cmd",
        metavar="CMD",
        help="vasp backend: command of periodic runs (default: the worker's vasp_cmd, else "
        "'vasp_std')",
    )
    parser.add_argument(
        "--gamma-vasp-cmd",
        metavar="CMD",
        help="vasp backend: command of the Gamma-only build for molecules (default: --vasp-cmd)",
    )
    parser.add_argument(
        "--custodian",
        metavar="KEY=VALUE",
        action="append",
        default=None,
        help="vasp backend: a custodian setting, repeatable (polling_time_step, monitor_freq, "
        "max_errors, wall_time, frozen_timeout, neb_max_restarts; e.g. polling_time_step=1)",
    )


def backend_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Return the settings of ``--backend`` from the command line (VASP commands, custodian).

    Raises
    ------
    StudyError
        VASP options given with another backend.
    """
    settings: dict[str, Any] = {}
    for option, key in (("vasp_cmd", "vasp_cmd"), ("gamma_vasp_cmd", "gamma_vasp_cmd")):
        value = getattr(args, option, None)
        if value is not None:
            if args.backend != "vasp":
                raise StudyError(f"--{option.replace('_', '-')} needs --backend vasp")
            settings[key] = value
    pairs = getattr(args, "custodian", None)
    if pairs:
        if args.backend != "vasp":
            raise StudyError("--custodian needs --backend vasp")
        settings["custodian"] = custodian_options(pairs)
    return settings


def custodian_options(pairs: list[str]) -> dict[str, Any]:
    """``["polling_time_step=0.5", ...]`` as checked custodian settings (numbers typed).

    Raises
    ------
    StudyError
        A pair without ``=``, an unknown key (the message lists the known ones) or a value
        that is not a number (``none`` is allowed for ``wall_time``).
    InputError
        A value out of range (from :class:`CustodianSettings`).
    """
    from dataclasses import fields

    from pqdflow.workflows.vasp.custodian_jobs import CustodianSettings

    types = {f.name: str(f.type) for f in fields(CustodianSettings)}
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = (part.strip() for part in pair.partition("="))
        if not sep or key not in types:
            raise StudyError(f"--custodian {pair!r}: give KEY=VALUE with KEY one of {list(types)}")
        if text.lower() == "none" and "None" in types[key]:
            options[key] = None
            continue
        try:
            number = float(text)
        except ValueError:
            raise StudyError(f"--custodian {pair!r}: {text!r} is not a number") from None
        if types[key] == "int" and not number.is_integer():
            raise StudyError(f"--custodian {pair!r}: {key} must be a whole number")
        options[key] = int(number) if types[key] == "int" else number
    CustodianSettings(**options)  # range checks: InputError naming the bad value
    return options


def register(subparsers: Any) -> None:
    """Add the ``run`` subcommand to ``subparsers``."""
    parser = subparsers.add_parser(
        "run",
        help="run a study on this machine (ML potential, mock, or VASP under custodian)",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=(
            "examples:\n"
            "  pqdflow run --example --backend mock --out runs/mock\n"
            "  pqdflow run study.yaml --backend chgnet --out runs/chgnet\n"
            '  pqdflow run study.yaml --backend vasp --vasp-cmd "mpirun -n 16 vasp_std" '
            "--out runs/vasp"
        ),
    )
    parser.add_argument("study", nargs="?", type=Path, help="study YAML file")
    add_example_argument(parser)
    add_backend_arguments(parser, default="chgnet")
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
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads of the ML potential (default: $PQDFLOW_THREADS, else "
        "$OMP_NUM_THREADS, else 1: more threads than free cores slow CHGNet down)",
    )
    parser.add_argument(
        "--workers",
        type=_workers,
        default="auto",
        metavar="N",
        help="processes computing the run, with --launcher fireworks: the launcher plus N-1 "
        "lookahead workers (default auto: one per --threads usable cores, at most 4, for "
        "chgnet/gpaw; 1 for mock and vasp)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.set_defaults(func=run)


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"give a whole number >= 1 or auto, got {text!r}")
    return int(text)


def run(args: argparse.Namespace) -> int:
    """Execute ``pqdflow run``; return the exit status."""
    from pqdflow.documents.results import StudyResults
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.engine.runner import run_study
    from pqdflow.workflows.engine.threads import request_threads
    from pqdflow.workflows.study import example_study, load_study, plan_study

    if (args.example is not None) == (args.study is not None):
        raise StudyError("give either a study file or --example (not both, not neither)")
    settings = backend_settings(args)
    request_threads(args.threads)
    study = example_study(args.example) if args.example else load_study(args.study)
    plan = plan_study(study)
    if args.backend == "vasp":
        from pqdflow.workflows.vasp.calc_inputs import VaspInputOptions

        settings["inputs"] = VaspInputOptions.from_plan(plan).as_dict()
    # unknown backend, bad settings or missing packages: a clear error, nothing written
    backend = get_backend(args.backend, **settings)
    if args.launcher == "fireworks":
        if args.definition != "exchange":
            raise StudyError("--definition other than exchange needs --launcher direct")
        from pqdflow.workflows.engine.threads import resolve_threads
        from pqdflow.workflows.fireworks.launchpad import run_plan_on_launchpad
        from pqdflow.workflows.fireworks.lookahead import default_workers

        workers = args.workers
        if workers == "auto":
            workers = default_workers(args.backend, resolve_threads(args.threads)[0])
        path = run_plan_on_launchpad(
            plan,
            args.backend,
            args.out,
            launchpad_file=args.launchpad,
            progress=not args.no_progress,
            backend_options=settings,
            plots=not args.no_plots,
            workers=int(workers),
        )
        print(f"results: {path}")
        _warn_unconverged(StudyResults.read(path).unconverged)
        return 0
    if args.launchpad is not None:
        raise StudyError("--launchpad needs --launcher fireworks")
    if args.workers not in ("auto", 1):
        raise StudyError("--workers needs --launcher fireworks (the direct launcher is serial)")
    results = run_study(
        plan,
        backend,
        args.out,
        progress=not args.no_progress,
        definition=args.definition,
        plots=not args.no_plots,
    )
    print(f"results: {Path(args.out) / 'results.json'} ({results.wall_time_s:.1f} s)")
    _warn_unconverged(results.unconverged)
    if results.failed:
        names = ", ".join(f["name"] for f in results.failed)
        print(f"pqdflow run: {len(results.failed)} calculation(s) failed: {names}", file=sys.stderr)
        return 1
    return 0


def _warn_unconverged(names: list[str]) -> None:
    """One stderr line naming the relaxations and bands that did not converge."""
    if names:
        print(
            f"pqdflow run: not converged (flagged * in the tables): {', '.join(names)}",
            file=sys.stderr,
        )

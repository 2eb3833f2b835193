"""``pqdflow report DIR``: parse a dry-run / run tree into tables and plots."""

from __future__ import annotations

import argparse
from pathlib import Path

from pqdflow.analysis.report import build_report, write_report

__all__ = ["register", "run_report"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``report`` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="parse a dry-run/run tree into report.csv/json/md and plots",
        description=(
            "Read DIR/manifest.json, parse every calculation and NEB folder, compute binding "
            "energies and NEB barriers (checking functional, ENCUT and POTCARs agree) and write "
            "report.csv, report.json, report.md, binding_energies.png and neb_profiles.png. "
            "Missing or unfinished folders appear as rows with their status."
        ),
    )
    parser.add_argument("directory", type=Path, help="folder holding manifest.json")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: DIR)")
    parser.add_argument(
        "--energy",
        default="energy_sigma0",
        choices=("energy_sigma0", "energy_without_entropy", "free_energy"),
        help="VASP energy to use (default energy_sigma0)",
    )
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    parser.add_argument(
        "--allow-inconsistent",
        action="store_true",
        help="mark inconsistent reactions in the table instead of stopping with an error",
    )
    parser.set_defaults(func=run_report)


def run_report(args: argparse.Namespace) -> int:
    """Build and write the report; print where it went and a one-line summary per quantity."""
    report = build_report(
        args.directory, energy_key=args.energy, strict=not args.allow_inconsistent
    )
    written = write_report(report, args.out or args.directory, plots=not args.no_plots)
    for row in report.bindings:
        value = "n/a" if row["E_b_eV"] is None else f"{row['E_b_eV']:.4f} eV"
        print(f"binding {row['name']}: E_b = {value} [{row['status']}]")
    for row in report.nebs:
        value = (
            "n/a" if row["forward_barrier_eV"] is None else f"{row['forward_barrier_eV']:.4f} eV"
        )
        print(
            f"NEB {row['name']}: forward barrier = {value} [{row['status']}] {row['note']}".rstrip()
        )
    for kind, path in written.items():
        print(f"wrote {kind}: {path}")
    return 0

"""``pqdflow parse PATH``: parse one VASP calculation (folder or file) or an NEB folder.

Whatever the file holds (cut, corrupted, converted line endings), the command prints a
document or one error line; it never shows a traceback.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pqdflow.analysis.neb_parse import parse_neb
from pqdflow.analysis.vasp import parse_calculation
from pqdflow.errors import ParseError, PqdflowError

__all__ = ["register", "run_parse"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``parse`` subcommand."""
    parser = subparsers.add_parser(
        "parse",
        help="parse a finished (or dead) VASP calculation or NEB folder",
        description=(
            "Parse a VASP calculation folder, a single OUTCAR / vasprun.xml (gzip, bzip2 or xz; "
            "any line endings) or an NEB folder (numbered image folders 00..NN): energies of the "
            "last complete ionic step (DFT or ML force field), forces on free atoms, convergence "
            "flags, status (ok, unconverged, truncated, crashed, corrupt, no_output) and VASP's "
            "error message."
        ),
    )
    parser.add_argument(
        "path", type=Path, help="calculation folder, OUTCAR, vasprun.xml or NEB folder"
    )
    parser.add_argument("--json", action="store_true", help="print the whole document as JSON")
    parser.add_argument(
        "--energy",
        default="energy_sigma0",
        choices=("energy_sigma0", "energy_without_entropy", "free_energy"),
        help="NEB only: which image energy to use (default energy_sigma0)",
    )
    parser.add_argument(
        "--endpoint-energies",
        nargs=2,
        type=float,
        metavar=("E_INITIAL", "E_FINAL"),
        help="NEB only: relaxed endpoint energies (eV) when 00/NN have no outputs",
    )
    parser.set_defaults(func=run_parse)


def _is_neb(path: Path) -> bool:
    return path.is_dir() and (path / "00").is_dir() and (path / "01").is_dir()


def run_parse(args: argparse.Namespace) -> int:
    """Parse ``args.path`` and print the document (JSON) or a short summary.

    Raises
    ------
    ParseError
        The path cannot be parsed; also for any unexpected failure inside the parser, so the
        command reports one line instead of a traceback.
    """
    try:
        return _run_parse(args)
    except PqdflowError:
        raise
    except Exception as exc:  # the last line of defence for arbitrary damaged input
        raise ParseError(
            args.path, f"unexpected parser failure ({type(exc).__name__}: {exc}); please report it"
        ) from exc


def _run_parse(args: argparse.Namespace) -> int:
    path: Path = args.path
    if _is_neb(path):
        ends = tuple(args.endpoint_energies) if args.endpoint_energies else None
        neb = parse_neb(path, endpoint_energies=ends, energy_key=args.energy)
        if args.json:
            print(json.dumps(neb.as_dict(), indent=2, allow_nan=False))
            return 0
        print(f"NEB {path}: status {neb.status}, reference {neb.reference}")
        for d, e, f in zip(neb.image_dirs, neb.energies, neb.max_forces, strict=True):
            print(f"  image {Path(d).name}: E = {e} eV, max F = {f} eV/Å")
        if neb.barrier:
            b = neb.barrier
            print(f"  forward barrier {b['forward']:.6f} eV, reverse {b['reverse']:.6f} eV")
        for note in neb.notes:
            print("  note: " + " ".join(note.split()))
        return 0
    doc = parse_calculation(path)
    if args.json:
        print(json.dumps(doc.as_dict(), indent=2, allow_nan=False))
        return 0
    print(f"{path}: status {doc.status} ({doc.calc_type}, {doc.n_ionic_steps} ionic steps)")
    if doc.n_ml_steps:
        print(f"  steps: {doc.n_dft_steps} DFT, {doc.n_ml_steps} ML force field")
    kind = f" ({doc.energy_kind} step)" if doc.energy_kind else ""
    print(f"  energy(sigma->0) {doc.energy_sigma0} eV, free energy {doc.free_energy} eV{kind}")
    print(f"  max force on free atoms {doc.max_force} eV/Å")
    print(f"  finished {doc.finished}, converged: electronic {doc.converged_electronic},", end="")
    print(f" ionic {doc.converged_ionic}")
    if doc.error_message:
        print(f"  error: {doc.error_message}")
    for w in doc.warnings:
        print("  warning: " + " ".join(w.split()))
    return 0

"""Command-line interface: ``pqdflow <command> --help``.

Each subcommand lives in its own module ``pqdflow.cli.<name>`` exposing
``register(subparsers) -> None``; the parser it adds sets ``func`` (``args -> int``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pqdflow import __version__
from pqdflow.errors import PqdflowError

__all__ = ["COMMANDS", "build_parser", "main"]

#: Subcommand modules, in the order ``--help`` lists them.
COMMANDS: tuple[str, ...] = (
    "build",
    "inputs",
    "run",
    "submit",
    "status",
    "parse",
    "report",
    "vib",
    "dft_check",
)


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="pqdflow",
        description=(
            "DFT workflows for perovskite quantum-dot surfaces: ligand binding energies and "
            "halide-migration barriers on CsPbBr(x)I(3-x)."
        ),
    )
    parser.add_argument("--version", action="version", version=f"pqdflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"pqdflow.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"pqdflow.cli.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pqdflow`` command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except PqdflowError as exc:
        print(f"pqdflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

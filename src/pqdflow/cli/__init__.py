"""Command-line interface: ``pqdflow <command> --help``.

Each subcommand lives in its own module ``pqdflow.cli.<name>`` exposing
``register(subparsers) -> None``; the parser it adds sets ``func`` (``args -> int``).
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from pqdflow import __version__
from pqdflow.errors import PqdflowError, RunInterrupted

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
    "rerun",
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
    """Run the ``pqdflow`` command line; return the exit status.

    A typed pqdflow error prints one line and exits 2; a run stopped by Ctrl-C / SIGTERM
    prints one line and exits 128 + the signal (130 for Ctrl-C); output into a closed pipe
    (``pqdflow status | head``) ends quietly with 141, as for ``cat``.
    """
    try:
        code = _main(argv)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:
        # the reader went away: stop quietly
        _silence_stdout()
        return 128 + signal.SIGPIPE


def _main(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except RunInterrupted as exc:
        print(f"pqdflow {args.command}: {exc}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print(f"pqdflow {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except PqdflowError as exc:
        print(f"pqdflow {args.command}: error: {exc}", file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (captured): nothing left to flush
        pass
    finally:
        os.close(devnull)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""A fake VASP executable for tests: checks the inputs, then copies real VASP outputs.

Run as ``python -m pqdflow.workflows.testing.mock_vasp SCRIPT.json`` in place of ``vasp_std`` (for
example as the ``vasp_cmd`` of a test worker); custodian starts it in the run folder like
the real program. ``SCRIPT.json`` (see :func:`write_mock_script`) lists one entry per
expected VASP invocation in that folder; the n-th call uses entry n (the last one repeats):

``reference``
    A folder of **real** VASP outputs (``../shared/vasp_reference/<case>``). Its outputs are
    copied into the run folder (``*.gz`` decompressed there); input files (INCAR, KPOINTS,
    POSCAR, POTCAR) are never copied, so what pqdflow wrote stays in place. NEB image
    folders (``00`` ..) are handled the same way. A top-level ``stdout`` / ``vasp.out`` /
    ``vasp_output`` is replayed on standard output, where VASP would have written it.
``expect_incar`` / ``absent_incar``
    INCAR tags that must have these values / must not be set.
``expect_natoms`` / ``expect_images``
    Atom count of POSCAR (of ``00/POSCAR`` for a band) / number of intermediate images.
``expect_files``
    Files that must exist in the run folder before the run.
``delay``
    Seconds to sleep before writing outputs (a run that takes time).

A failed expectation writes the reason to standard error and exits with status 3 without
writing any output, so custodian reports a failed run. Calls are recorded in
``mock_vasp_calls.json`` in the run folder.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pqdflow.errors import InputError
from pqdflow.fileio import atomic_write_json

__all__ = [
    "CALLS_FILE",
    "EXIT_BAD_INPUT",
    "check_inputs",
    "copy_reference_outputs",
    "main",
    "write_mock_script",
]

#: Record of the calls made in a run folder.
CALLS_FILE = "mock_vasp_calls.json"
#: Exit status for inputs that do not match the expectations.
EXIT_BAD_INPUT = 3

_INPUT_NAMES = frozenset({"INCAR", "KPOINTS", "POSCAR", "POTCAR", "POTCAR.spec", "POTCAR_spec"})
_STDOUT_NAMES = ("stdout", "vasp.out", "vasp_output")


def write_mock_script(path: str | Path, runs: Sequence[Mapping[str, Any]]) -> Path:
    """Write a mock script (one mapping per expected VASP call) and return its path."""
    path = Path(path)
    entries: list[dict[str, Any]] = [dict(r) for r in runs]
    for i, run in enumerate(entries):
        if "reference" not in run:
            raise InputError(
                f"mock run {i} has no 'reference' folder; give the real outputs to copy"
            )
        run["reference"] = str(Path(run["reference"]).resolve())
    atomic_write_json(path, {"runs": entries})
    return path


def _same(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return bool(actual) == bool(expected) and type(actual) is type(expected)
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return abs(float(actual) - float(expected)) <= 1e-8 * max(1.0, abs(float(expected)))
    if isinstance(expected, str) and isinstance(actual, str):
        return actual.strip().lower() == expected.strip().lower()
    if isinstance(expected, list) and isinstance(actual, list):
        return len(actual) == len(expected) and all(
            _same(a, e) for a, e in zip(actual, expected, strict=True)
        )
    return bool(actual == expected)


def _natoms(poscar: Path) -> int:
    """Atom count of a VASP 5 POSCAR (the first line of whole numbers after the cell)."""
    lines = poscar.read_text(encoding="utf-8").splitlines()
    for line in lines[5:7]:
        tokens = line.split()
        if tokens and all(t.isdigit() for t in tokens):
            return sum(int(t) for t in tokens)
    raise InputError(f"{poscar}: no atom counts found on lines 6-7")


def _incar_value(text: str) -> Any:
    value = text.strip()
    upper = value.upper()
    if upper in {".TRUE.", "T", "TRUE", ".T."}:
        return True
    if upper in {".FALSE.", "F", "FALSE", ".F."}:
        return False
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def read_incar(path: Path) -> dict[str, Any]:
    """Read an INCAR into ``{TAG: value}`` (numbers and booleans typed; lists stay text)."""
    tags: dict[str, Any] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("!")[0].split("#")[0]
        for statement in line.split(";"):
            if "=" in statement:
                key, value = statement.split("=", 1)
                tags[key.strip().upper()] = _incar_value(value)
    return tags


def check_inputs(directory: Path, run: Mapping[str, Any]) -> list[str]:
    """Return the list of unmet expectations of ``run`` for the inputs in ``directory``."""
    problems: list[str] = []
    for name in run.get("expect_files", []):
        if not (directory / name).exists():
            problems.append(f"expected input {name} is missing")
    incar_path = directory / "INCAR"
    if not incar_path.is_file():
        return [*problems, "INCAR is missing"]
    incar = read_incar(incar_path)
    for key, value in run.get("expect_incar", {}).items():
        if key not in incar:
            problems.append(f"INCAR {key} is not set (expected {value!r})")
        elif not _same(incar[key], value):
            problems.append(f"INCAR {key} = {incar[key]!r}, expected {value!r}")
    for key in run.get("absent_incar", []):
        if key in incar:
            problems.append(f"INCAR {key} = {incar[key]!r} is set but must not be")
    images = sorted(p for p in directory.iterdir() if p.is_dir() and p.name.isdigit())
    if "expect_images" in run:
        n = max(len(images) - 2, 0)
        if n != run["expect_images"]:
            problems.append(f"{n} intermediate image folders, expected {run['expect_images']}")
    if "expect_natoms" in run:
        poscar = images[0] / "POSCAR" if images else directory / "POSCAR"
        if not poscar.is_file():
            problems.append(f"{poscar.relative_to(directory)} is missing")
        elif (n_atoms := _natoms(poscar)) != run["expect_natoms"]:
            problems.append(f"POSCAR has {n_atoms} atoms, expected {run['expect_natoms']}")
    return problems


def _copy_output(src: Path, dest_dir: Path) -> Path:
    if src.suffix == ".gz":
        dest = dest_dir / src.name[: -len(".gz")]
        with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout)
    else:
        dest = dest_dir / src.name
        shutil.copyfile(src, dest)  # contents only: the reference files are read-only
    return dest


def copy_reference_outputs(reference: Path, directory: Path) -> list[str]:
    """Copy the outputs of ``reference`` into ``directory``; return the names written.

    Inputs are skipped; top-level stdout files are returned for replay, not copied.
    """
    written: list[str] = []
    for src in sorted(reference.iterdir()):
        base = src.name[: -len(".gz")] if src.name.endswith(".gz") else src.name
        if src.is_dir() and src.name.isdigit():
            sub = directory / src.name
            sub.mkdir(exist_ok=True)
            for inner in sorted(p for p in src.iterdir() if p.is_file()):
                inner_base = inner.name.removesuffix(".gz")
                if inner_base not in _INPUT_NAMES:
                    written.append(str(_copy_output(inner, sub).relative_to(directory)))
        elif src.is_file() and base not in _INPUT_NAMES and base not in _STDOUT_NAMES:
            written.append(_copy_output(src, directory).name)
    return written


def _truncate_previous_outputs(reference: Path, directory: Path) -> None:
    """Remove the outputs of an earlier attempt, as VASP does when it starts.

    Custodian's monitors then never read a previous attempt's OSZICAR as the current one.
    """
    for src in reference.rglob("*"):
        rel = src.relative_to(reference)
        name = rel.name.removesuffix(".gz")
        if src.is_file() and name not in _INPUT_NAMES and name not in _STDOUT_NAMES:
            (directory / rel.parent / name).unlink(missing_ok=True)


def _replay_stdout(reference: Path) -> None:
    for name in _STDOUT_NAMES:
        for candidate in (reference / name, reference / f"{name}.gz"):
            if candidate.is_file():
                opener = gzip.open if candidate.suffix == ".gz" else open
                with opener(candidate, "rt", encoding="utf-8", errors="replace") as handle:
                    sys.stdout.write(handle.read())
                return
    sys.stdout.write(f" mock VASP: outputs of {reference.name}\n")


def main(argv: Sequence[str] | None = None) -> int:
    """Run as ``python -m pqdflow.workflows.testing.mock_vasp SCRIPT.json [--directory DIR]``."""
    parser = argparse.ArgumentParser(prog="mock_vasp", description=__doc__.splitlines()[0])
    parser.add_argument("script", type=Path, help="JSON script written by write_mock_script")
    parser.add_argument(
        "--directory", type=Path, default=Path.cwd(), help="run folder (default: cwd)"
    )
    args = parser.parse_args(argv)
    directory: Path = args.directory.resolve()
    runs = json.loads(args.script.read_text(encoding="utf-8"))["runs"]
    calls_path = directory / CALLS_FILE
    calls = json.loads(calls_path.read_text(encoding="utf-8")) if calls_path.is_file() else []
    run = runs[min(len(calls), len(runs) - 1)]
    reference = Path(run["reference"])
    _truncate_previous_outputs(reference, directory)
    record: dict[str, Any] = {
        "call": len(calls) + 1,
        "script": str(args.script.resolve()),
        "reference": str(reference),
    }
    problems = check_inputs(directory, run)
    if problems:
        record["problems"] = problems
        atomic_write_json(calls_path, [*calls, record])
        sys.stderr.write(
            "mock VASP: inputs do not match expectations:\n  " + "\n  ".join(problems) + "\n"
        )
        return EXIT_BAD_INPUT
    time.sleep(float(run.get("delay", 0.0)))
    record["written"] = copy_reference_outputs(reference, directory)
    _replay_stdout(reference)
    sys.stdout.flush()
    atomic_write_json(calls_path, [*calls, record])
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

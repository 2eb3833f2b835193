"""Benchmark: pqdflow's VASP parser vs pymatgen on the whole public reference set.

Every OUTCAR* and vasprun.xml* under ``../shared/vasp_reference`` (gzipped ones included) is
parsed file by file: pqdflow with :func:`pqdflow.analysis.vasp.parse_calculation`, pymatgen
with ``Outcar(path)`` for OUTCARs and ``Vasprun(path, parse_dos=False, parse_eigen=False,
parse_potcar_file=False)`` for vasprun files (a pymatgen exception counts its time and is
reported). The median over ``--repeat`` runs of the total time is compared.

Energies are compared where pymatgen is right, i.e. on files of runs that finished (on cut
files pymatgen's ``Outcar.final_energy`` picks up an unconverged SCF energy, see the
reference README); they must agree to 1e-6 eV: sigma->0 and TOTEN for OUTCARs, sigma->0
(``final_energy``) and ``e_fr_energy`` of the last step for vasprun files.

Usage: ``python benchmarks/parse.py [--repeat 5] [--reference DIR]``. The last line printed
is one JSON object: ``{"pqdflow_s": ..., "pymatgen_s": ..., "speedup": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pymatgen.io.vasp.outputs import Outcar, Vasprun

from pqdflow.analysis.vasp import VaspCalcDoc, parse_calculation

TARGET_SPEEDUP = 5.0
TOL = 1e-6
DEFAULT_REF = (
    Path(os.environ.get("PQDFLOW_SHARED_DIR", Path(__file__).resolve().parents[2] / "shared"))
    / "vasp_reference"
)


def reference_files(root: Path) -> list[Path]:
    files = [*root.rglob("OUTCAR*"), *root.rglob("vasprun.xml*")]
    return sorted(f for f in files if f.is_file())


def pymatgen_parse(path: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if "OUTCAR" in path.name:
                return Outcar(str(path))
            return Vasprun(str(path), parse_dos=False, parse_eigen=False, parse_potcar_file=False)
        except Exception as exc:
            return exc


def total_time(
    fn: Callable[[Path], Any], files: list[Path], repeat: int
) -> tuple[float, list[Any]]:
    totals, results = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        results = [fn(f) for f in files]
        totals.append(time.perf_counter() - start)
    return statistics.median(totals), results


def compare(path: Path, ours: VaspCalcDoc, theirs: Any) -> tuple[str, list[str]]:
    """Return (verdict, differences) for one file."""
    if isinstance(theirs, Exception):
        return f"pymatgen failed: {type(theirs).__name__}", []
    if not ours.finished:
        return "cut file: not compared (pymatgen not reliable)", []
    pairs: list[tuple[str, float | None, float | None]]
    if isinstance(theirs, Outcar):
        pairs = [
            ("sigma0", ours.energy_sigma0, theirs.final_energy),
            ("TOTEN", ours.free_energy, theirs.final_fr_energy),
        ]
    else:
        pairs = [
            ("sigma0", ours.energy_sigma0, theirs.final_energy),
            ("e_fr", ours.free_energy, theirs.ionic_steps[-1]["e_fr_energy"]),
        ]
    diffs = [
        f"{name}: {a} vs {b}"
        for name, a, b in pairs
        if a is None or b is None or abs(float(a) - float(b)) > TOL
    ]
    return ("identical" if not diffs else "DIFFERENT"), diffs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--reference", type=Path, default=DEFAULT_REF)
    args = parser.parse_args()
    files = reference_files(args.reference)
    if not files:
        raise SystemExit(f"no OUTCAR/vasprun.xml files under {args.reference}")
    ours_s, ours = total_time(parse_calculation, files, args.repeat)
    theirs_s, theirs = total_time(pymatgen_parse, files, args.repeat)
    identical = compared = failures = 0
    for path, doc, pmg in zip(files, ours, theirs, strict=True):
        verdict, diffs = compare(path, doc, pmg)
        compared += verdict in ("identical", "DIFFERENT")
        identical += verdict == "identical"
        failures += verdict.startswith("pymatgen failed")
        rel = path.relative_to(args.reference)
        print(f"{rel!s:60s} {doc.status:12s} {verdict} {'; '.join(diffs)}")
    speedup = theirs_s / ours_s
    print(
        f"{len(files)} files, median of {args.repeat}: pqdflow {ours_s:.3f} s, "
        f"pymatgen {theirs_s:.3f} s, speedup {speedup:.1f} (target >= {TARGET_SPEEDUP})"
    )
    summary = {
        "pqdflow_s": round(ours_s, 4),
        "pymatgen_s": round(theirs_s, 4),
        "speedup": round(speedup, 2),
        "files": len(files),
        "energies_compared": compared,
        "energies_identical": identical,
        "pymatgen_failures": failures,
        "repeat": args.repeat,
    }
    print(json.dumps(summary))
    return 0 if identical == compared else 1


if __name__ == "__main__":
    raise SystemExit(main())

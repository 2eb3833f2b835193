"""Benchmark: pqdflow's dry run of the default study vs a bare pymatgen loop.

Both sides get the same structures: every calculation of the default study plan and every
image of its NEB bands (bands built once, up front, with the tight IDPP of
``interpolate_band``). pqdflow writes them with ``write_study_inputs`` (validation, hashing,
atomic folders, provenance JSON, manifest); the baseline is a bare loop of pymatgen
``MPRelaxSet(structure, user_incar_settings=...).write_input(potcar_spec=True)``, one
folder per structure and per NEB image. Each side writes into a fresh folder every run;
the median of ``--repeat`` runs is compared. Also reported: the unchanged re-run, the time
to build the plan, and the IDPP band interpolation that a dry run from scratch adds.

Usage: ``python benchmarks/dry_run.py [--repeat 5]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from pymatgen.io.ase import AseAtomsAdaptor

from pqdflow.workflows.study import example_study, plan_study
from pqdflow.workflows.vasp.dryrun import build_bands, write_study_inputs

TARGET_RATIO = 1.5
# The same physics on the pymatgen side (the paper's ENCUT / EDIFF / EDIFFG, no MAGMOM).
PMG_INCAR = {"ENCUT": 400, "EDIFF": 1e-5, "EDIFFG": -0.02, "ISPIN": 1, "MAGMOM": None}
PMG_POTCAR = {"Cs": "Cs_sv", "Pb": "Pb_d", "Br": "Br", "I": "I", "Si": "Si"}


def timed(fn: Callable[[Path], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        root = Path(tempfile.mkdtemp(prefix="pqdflow-bench-"))
        try:
            start = time.perf_counter()
            fn(root / "out")
            times.append(time.perf_counter() - start)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per side (median)")
    args = parser.parse_args()

    start = time.perf_counter()
    plan = plan_study(example_study())
    t_plan = time.perf_counter() - start
    start = time.perf_counter()
    bands = build_bands(plan)
    t_bands = time.perf_counter() - start

    structures = [(c.name, AseAtomsAdaptor.get_structure(c.atoms)) for c in plan.calculations]
    for name, images in bands.items():
        structures += [
            (f"{name}/{i:02d}", AseAtomsAdaptor.get_structure(image))
            for i, image in enumerate(images)
        ]

    def pymatgen_loop(out: Path) -> None:
        from pymatgen.io.vasp.sets import MPRelaxSet

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pymatgen's POTCAR/MAGMOM advisories
            for name, structure in structures:
                MPRelaxSet(
                    structure, user_incar_settings=PMG_INCAR, user_potcar_settings=PMG_POTCAR
                ).write_input(out / name, potcar_spec=True)

    def pqdflow_dry_run(out: Path) -> None:
        write_study_inputs(plan, out, bands=bands)

    # warm both code paths once (imports, preset cache) before timing
    timed(pymatgen_loop, 1)
    timed(pqdflow_dry_run, 1)
    t_pmg = timed(pymatgen_loop, args.repeat)
    t_pqd = timed(pqdflow_dry_run, args.repeat)

    root = Path(tempfile.mkdtemp(prefix="pqdflow-bench-"))
    try:
        manifest = write_study_inputs(plan, root / "out", bands=bands)
        start = time.perf_counter()
        again = write_study_inputs(plan, root / "out", bands=bands)
        t_rerun = time.perf_counter() - start
        assert again.written == [], "re-run rewrote folders"
    finally:
        shutil.rmtree(root, ignore_errors=True)

    med_pmg, med_pqd = statistics.median(t_pmg), statistics.median(t_pqd)
    ratio = med_pqd / med_pmg
    result = {
        "benchmark": "dry_run",
        "folders": len(manifest.calculations),
        "calculations": len(plan.calculations),
        "nebs": len(plan.nebs),
        "structures_written": len(structures),
        "repeat": args.repeat,
        "pqdflow_median_s": round(med_pqd, 4),
        "pymatgen_median_s": round(med_pmg, 4),
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "rerun_unchanged_s": round(t_rerun, 4),
        "plan_study_s": round(t_plan, 4),
        "idpp_bands_s": round(t_bands, 4),
    }
    print(
        f"pqdflow dry run {med_pqd:.3f} s vs pymatgen loop {med_pmg:.3f} s over "
        f"{len(structures)} structures: ratio {ratio:.2f} (target <= {TARGET_RATIO})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""Benchmark: one CHGNet force call through pqdflow's calculator vs chgnet's own.

Baseline: ``chgnet.model.dynamics.CHGNetCalculator`` (every call computes energy, forces,
stress and magnetic moments, derivatives with a second-order graph). pqdflow:
:class:`~pqdflow.workflows.engine.chgnet_calc.InferenceCHGNetCalculator` (energy and forces
only, one backward pass), as every fixed-cell relaxation and NEB band of a study calls it.

Cells from the default study's plan: the bulk NEB host (2x2x2 CsPbBr2I), the largest
ligand-covered NEB initial endpoint, and the largest adsorbed cell (a vacancy fill with an
oleate). Same model object, one torch thread, positions rattled by 0.01 Å before every call
(nothing cached), the two calculators interleaved call by call; one warm-up call each is
discarded. Reported per cell: the median seconds per call of each and their ratio, and the
largest energy and force differences between the two on the same geometries.

Usage: ``python benchmarks/chgnet_calculator.py [--repeat 7]``. The last line printed is one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings
from typing import Any

import numpy as np


def _cells() -> dict[str, Any]:
    from pqdflow.workflows.study import example_study, plan_study

    plan = plan_study(example_study())
    calcs = plan.calculations
    host = next(c.atoms for c in calcs if c.role == "vacancy_host" and c.kind == "bulk")
    endpoint = max((c.atoms for c in calcs if c.role == "neb_initial"), key=len)
    adsorbed = max((c.atoms for c in calcs if c.kind == "adsorbed"), key=len)
    return {"bulk_host": host, "covered_endpoint": endpoint, "largest_adsorbed": adsorbed}


def main() -> None:
    """Time both calculators on each cell and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per calculator")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="Converting a tensor")
    import torch
    from chgnet.model.dynamics import CHGNetCalculator

    from pqdflow.workflows.engine.ase_backend import load_chgnet_model
    from pqdflow.workflows.engine.chgnet_calc import InferenceCHGNetCalculator

    torch.set_num_threads(1)
    model = load_chgnet_model()
    calculators = {
        "chgnet": CHGNetCalculator(model=model, use_device="cpu"),
        "pqdflow": InferenceCHGNetCalculator(model),
    }
    records = []
    for label, cell in _cells().items():
        times: dict[str, list[float]] = {name: [] for name in calculators}
        d_energy = d_force = 0.0
        for i in range(args.repeat + 1):
            atoms = cell.copy()
            atoms.rattle(0.01, seed=i)
            results = {}
            for name, calc in calculators.items():
                work = atoms.copy()
                work.calc = calc
                start = time.perf_counter()
                forces = work.get_forces()
                elapsed = time.perf_counter() - start
                results[name] = (work.get_potential_energy(), forces)
                if i > 0:
                    times[name].append(elapsed)
            (e0, f0), (e1, f1) = results["chgnet"], results["pqdflow"]
            d_energy = max(d_energy, abs(e0 - e1))
            d_force = max(d_force, float(np.abs(f0 - f1).max()))
        medians = {name: statistics.median(t) for name, t in times.items()}
        record = {
            "cell": label,
            "n_atoms": len(cell),
            "chgnet_s": round(medians["chgnet"], 4),
            "pqdflow_s": round(medians["pqdflow"], 4),
            "speedup": round(medians["chgnet"] / medians["pqdflow"], 2),
            "max_energy_diff_eV": d_energy,
            "max_force_diff_eV_A": d_force,
        }
        print(
            f"{label:18s} {len(cell):3d} atoms: chgnet {medians['chgnet']:.3f} s, "
            f"pqdflow {medians['pqdflow']:.3f} s per force call (x{record['speedup']}); "
            f"|dE| {d_energy:.1e} eV, |dF| {d_force:.1e} eV/Å"
        )
        records.append(record)
    print(json.dumps({"repeat": args.repeat, "torch_threads": 1, "records": records}))


if __name__ == "__main__":
    main()

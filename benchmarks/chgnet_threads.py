"""Benchmark: wall time of one CHGNet force call per torch thread setting.

The cell is the largest ligand-covered NEB initial endpoint of the paper study (83 atoms),
the kind of call that dominates ``make study``. Each setting runs in its own Python
process: ``1`` and ``2`` export ``OMP_NUM_THREADS`` (and the process calls
``torch.set_num_threads``), ``default`` leaves both unset, as torch starts with one thread per
core. One warm-up call is discarded; the median of ``--repeat`` calls (positions rattled by
0.01 Å each time, so no result is cached) is reported with the spread and the load average
of the machine at the start, since on shared cores the answer depends on the load.

Usage: ``python benchmarks/chgnet_threads.py [--repeat 5] [--rounds 3] [--settings 1 2
default]``; the settings run interleaved, round by round. The
last line printed is one JSON object (``median_s`` per setting, ``load_avg``, ``cores``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WORKER = """
import json, sys, time, warnings
import torch
threads = sys.argv[1]
torch_default = torch.get_num_threads()  # before pqdflow picks its own
from pqdflow.workflows.engine.ase_backend import chgnet_calculator_factory
from pqdflow.workflows.study import example_study, plan_study
plan = plan_study(example_study())
atoms = max((c.atoms for c in plan.calculations if c.role == "neb_initial"), key=len).copy()
atoms.calc = chgnet_calculator_factory()()
torch.set_num_threads(torch_default if threads == "default" else int(threads))
times = []
for i in range(int(sys.argv[2]) + 1):
    atoms.rattle(0.01, seed=i)
    start = time.perf_counter()
    atoms.get_forces()
    times.append(time.perf_counter() - start)
print(json.dumps({"n_atoms": len(atoms), "torch_threads": torch.get_num_threads(),
                  "times_s": times[1:]}))
"""


def run_setting(threads: str, repeat: int) -> dict[str, object]:
    """Time ``repeat`` force calls in a fresh process with ``threads`` torch threads."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PQDFLOW_THREADS")}
    if threads != "default":
        env["OMP_NUM_THREADS"] = threads
    done = subprocess.run(
        [sys.executable, "-c", WORKER, threads, str(repeat)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    data = json.loads(done.stdout.strip().splitlines()[-1])
    times = [float(t) for t in data["times_s"]]
    return {
        "n_atoms": data["n_atoms"],
        "torch_threads": data["torch_threads"],
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
    }


def main() -> None:
    """Run every setting and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="force calls per process")
    parser.add_argument("--rounds", type=int, default=3, help="processes per setting")
    parser.add_argument("--settings", nargs="+", default=["1", "2", "default"])
    args = parser.parse_args()
    load = os.getloadavg()
    rounds: dict[str, list[dict[str, object]]] = {s: [] for s in args.settings}
    for _ in range(args.rounds):  # interleaved, so a change of load hits every setting
        for setting in args.settings:
            rounds[setting].append(run_setting(setting, args.repeat))
            print(setting, rounds[setting][-1], flush=True)
    results = {
        s: {
            "torch_threads": r[0]["torch_threads"],
            "median_s": round(statistics.median(float(x["median_s"]) for x in r), 3),  # type: ignore[arg-type]
            "round_medians_s": [x["median_s"] for x in r],
        }
        for s, r in rounds.items()
    }
    print(
        json.dumps(
            {"cores": os.cpu_count(), "load_avg": [round(x, 2) for x in load], "settings": results}
        )
    )


if __name__ == "__main__":
    main()

"""Benchmark: per-Firework overhead of a pqdflow mock study on the embedded launchpad.

A 100-Firework study (75 small relaxations with the mock backend, 25 binding energies each
after its 3 relaxations) is launched with ``rapidfire`` on a fresh embedded launchpad. Its overhead
per Firework is the launch wall time minus the time the same engine calls take without
FireWorks (measured in the same process, same order), divided by the number of Fireworks.
The baseline is FireWorks' own trivial workflow of the same size and the same links, one
``ScriptTask`` (``true``) per Firework, on the same kind of launchpad: its whole wall time
per Firework is overhead. Both pay pqdflow's save-after-every-change of the store.

Usage: ``python benchmarks/launchpad_overhead.py [--repeat 5] [--n-bindings 25]``. One warm-up
round is discarded; the median over ``--repeat`` rounds is reported. The last line printed
is one JSON object (``ratio`` = pqdflow overhead / ScriptTask overhead, target <= 2).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from ase import Atoms
from fireworks import Firework, ScriptTask, Workflow

from pqdflow.documents.plan import BindingSpec, CalcSpec, StudyPlan
from pqdflow.workflows.fireworks.builder import build_workflow
from pqdflow.workflows.fireworks.launchpad import launch_rapidfire, open_embedded_launchpad

TARGET_RATIO = 2.0


def _water(shift: float) -> Atoms:
    atoms = Atoms("OH2", positions=[[0.0, 0.0, 0.0], [0.0, 0.76, 0.59 + shift], [0.0, -0.76, 0.59]])
    atoms.center(vacuum=4.0)
    return atoms


def benchmark_plan(n_bindings: int = 25) -> StudyPlan:
    """``n_bindings`` balanced reactions, each after 3 small relaxations (4 Fireworks each).

    ``slab`` (a water molecule) + ``ligand`` (another) -> ``adsorbed`` (the dimer): 3-9 atom
    cells with the mock pair potential, so the engine's own work per Firework is small.
    """
    calcs: list[CalcSpec] = []
    bindings: list[BindingSpec] = []
    for j in range(n_bindings):
        shift = 0.002 * j
        dimer = _water(shift)
        second = _water(0.0)
        second.positions += [2.9, 0.0, 0.0]
        dimer += second
        dimer.center(vacuum=4.0)
        names = [f"slab-{j:02d}", f"ligand-{j:02d}", f"dimer-{j:02d}"]
        calcs += [
            CalcSpec(names[0], "molecule", _water(shift)),
            CalcSpec(names[1], "molecule", _water(-shift), role="ligand_reference"),
            CalcSpec(names[2], "molecule", dimer),
        ]
        bindings.append(
            BindingSpec(f"binding-{j:02d}", "H2O", "top", names[2], names[0], {names[1]: 1.0})
        )
    return StudyPlan(name="overhead", calculations=calcs, bindings=bindings)


def direct_time(plan: StudyPlan, root: Path) -> float:
    """Seconds the engine calls of ``plan`` take without FireWorks (same order)."""
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.study.scheduler import schedule
    from pqdflow.workflows.study.steps import execute_step

    backend = get_backend("mock")
    start = time.perf_counter()
    docs: dict[str, Any] = {}
    for step in schedule(plan):
        docs[step.name] = execute_step(step, backend, docs, root)
    return time.perf_counter() - start


def launch_time(wf: Workflow, root: Path) -> float:
    """Seconds ``rapidfire`` takes to run ``wf`` on a fresh embedded store under ``root``."""
    with open_embedded_launchpad(root / "fw_launchpad.json") as lp:
        lp.add_wf(wf)
        start = time.perf_counter()
        n = launch_rapidfire(lp, root / "launches")
        elapsed = time.perf_counter() - start
        done = lp.fireworks.count_documents({"state": "COMPLETED"})
    if n != len(wf.fws) or done != len(wf.fws):
        raise RuntimeError(f"launched {n}, completed {done} of {len(wf.fws)} Fireworks")
    return elapsed


def scripttask_twin(wf: Workflow) -> Workflow:
    """FireWorks' trivial workflow with the same Fireworks count and links as ``wf``."""
    twins = {
        fw.fw_id: Firework(ScriptTask.from_str("true"), name=f"script-{fw.fw_id}") for fw in wf.fws
    }
    links = {twins[p]: [twins[c] for c in children] for p, children in wf.links.items() if children}
    return Workflow(list(twins.values()), links_dict=links, name="scripttask twin")


def one_round(plan: StudyPlan, scratch: Path) -> dict[str, float]:
    """Time one round of the three measurements in fresh folders under ``scratch``."""
    wf = build_workflow(plan, "mock", root=scratch / "fw")
    n = len(wf.fws)
    t_fw = launch_time(wf, scratch / "fw")
    t_direct = direct_time(plan, scratch / "direct")
    t_script = launch_time(scripttask_twin(wf), scratch / "script")
    return {
        "pqdflow_ms_per_fw": 1e3 * t_fw / n,
        "engine_ms_per_fw": 1e3 * t_direct / n,
        "pqdflow_overhead_ms_per_fw": 1e3 * (t_fw - t_direct) / n,
        "scripttask_ms_per_fw": 1e3 * t_script / n,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--n-bindings", type=int, default=25, help="4 Fireworks each")
    args = parser.parse_args(argv)
    plan = benchmark_plan(args.n_bindings)
    rounds = []
    with tempfile.TemporaryDirectory(prefix="pqdflow-lp-bench-") as tmp:
        for i in range(args.repeat + 1):
            result = one_round(plan, Path(tmp) / f"round{i}")
            if i > 0:  # round 0 warms imports and FireWorks' class lookup
                rounds.append(result)
                print(f"round {i}: " + ", ".join(f"{k} {v:.2f}" for k, v in result.items()))
    median = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    ratio = median["pqdflow_overhead_ms_per_fw"] / median["scripttask_ms_per_fw"]
    summary: dict[str, Any] = {
        "n_fireworks": len(plan.calculations) + len(plan.bindings),
        "repeats": args.repeat,
        **{k: round(v, 3) for k, v in median.items()},
        "ratio": round(ratio, 3),
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()

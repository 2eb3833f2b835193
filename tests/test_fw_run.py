"""Running a study through FireWorks on the embedded launchpad: completion, results read by a
fresh process, SIGKILL of a launcher and recovery, two launchers at once, the vasp backend."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from ase import Atoms
from ase.build import bulk, molecule

from pqdflow.documents.plan import BindingSpec, CalcSpec, NebSpec, StudyPlan
from pqdflow.documents.results import StudyResults
from pqdflow.errors import InputError, LaunchpadLockedError
from pqdflow.workflows.backends import BackendEntry
from pqdflow.workflows.fireworks.builder import collect_docs, find_workflow, workflow_states
from pqdflow.workflows.fireworks.launchpad import (
    EmbeddedLaunchPad,
    embedded_store_path,
    open_embedded_launchpad,
    run_plan_on_launchpad,
)


def small_plan(n_extra: int = 0) -> StudyPlan:
    """Slab + adsorbate + molecule + a 3-image NEB on a small Cu cell: 9 Fireworks (+ extra)."""
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.center(vacuum=5.0, axis=2)
    h2 = molecule("H2")
    h2.center(vacuum=4.0)
    ads = slab.copy()
    ads += Atoms("H2", positions=[[0.0, 0.0, 9.0], [0.0, 0.0, 9.74]])
    vac = slab.copy()
    del vac[3]
    hop = vac.copy()
    hop.positions[2] = slab.positions[3]  # the neighbour hops into the vacancy
    calcs = [
        CalcSpec("slab", "slab", slab),
        CalcSpec("ads", "adsorbed", ads),
        CalcSpec("h2", "molecule", h2, role="ligand_reference"),
        CalcSpec("neb-a", "slab", vac, role="neb_initial"),
        CalcSpec("neb-b", "slab", hop, role="neb_final"),
    ]
    for i in range(n_extra):
        extra = h2.copy()
        extra.positions[1, 2] += 0.01 * (i + 1)
        calcs.append(CalcSpec(f"h2-{i}", "molecule", extra))
    return StudyPlan(
        name="small",
        calculations=calcs,
        bindings=[BindingSpec("binding-H2", "H2", "top", "ads", "slab", {"h2": 1.0})],
        nebs=[NebSpec("neb-Cu", "clean", "neb-a", "neb-b", n_images=3, hopping_index=2)],
    )


#: Linear band start: plumbing tests need no IDPP path
FAST_NEB = {"neb_interpolation": "linear"}

LAUNCHER = textwrap.dedent(
    """
    import pickle, sys, time
    from pqdflow.workflows.backends import BackendEntry, get_backend, register_backend
    from pqdflow.workflows.fireworks.launchpad import run_plan_on_launchpad

    class SlowMock:
        name = "slowmock"
        def __init__(self, delay):
            self.inner, self.delay = get_backend("mock", neb_interpolation="linear"), delay
            self.inner.name = self.name
        def describe(self):
            return self.inner.describe()
        def relax(self, *args, **kwargs):
            time.sleep(self.delay)
            return self.inner.relax(*args, **kwargs)
        def neb(self, *args, **kwargs):
            return self.inner.neb(*args, **kwargs)

    plan_file, out, delay, wait = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    register_backend(BackendEntry("slowmock", lambda settings, env: SlowMock(delay), "slow"))
    with open(plan_file, "rb") as fh:
        plan = pickle.load(fh)
    print(run_plan_on_launchpad(plan, "slowmock", out, progress=True, wait=wait), flush=True)
    """
)


def _launcher(
    tmp_path: Path, plan: StudyPlan, out: Path, delay: float, wait: float = 0.0
) -> subprocess.Popen[str]:
    script, plan_file = tmp_path / "launcher.py", tmp_path / "plan.pkl"
    script.write_text(LAUNCHER)
    plan_file.write_bytes(pickle.dumps(plan))
    return subprocess.Popen(
        [sys.executable, str(script), str(plan_file), str(out), str(delay), str(wait)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _states(out: Path) -> dict[str, str]:
    lp = EmbeddedLaunchPad(embedded_store_path(out), readonly=True)
    return {d["name"]: d["state"] for d in lp.fireworks.find({}, {"name": 1, "state": 1})}


def _launches(out: Path) -> list[dict[str, Any]]:
    lp = EmbeddedLaunchPad(embedded_store_path(out), readonly=True)
    return list(lp.launches.find({}, {"fw_id": 1, "state": 1, "launch_id": 1, "action": 1}))


def _wait_for(predicate: Any, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"launcher exited early ({proc.returncode}): {proc.communicate()}")
        assert time.monotonic() < deadline, "timed out waiting for the launcher"
        time.sleep(0.02)


def test_mock_study_completes_and_a_fresh_process_reads_the_results(tmp_path: Path) -> None:
    plan = small_plan()
    out = tmp_path / "run"
    results_path = run_plan_on_launchpad(
        plan, "mock", out, progress=False, backend_options=FAST_NEB
    )
    assert results_path == out.resolve() / "results.json"
    states = _states(out)
    assert len(states) == 5 + 1 + 2
    assert set(states.values()) == {"COMPLETED"}
    results = StudyResults.read(results_path)
    assert [c["name"] for c in results.calculations] == [c.name for c in plan.calculations]
    assert [b["name"] for b in results.binding] == ["binding-H2"]
    assert [n["path"] for n in results.neb] == ["neb-Cu"]
    assert (out / "calcs" / "slab" / "result.json").is_file()  # calculation folders live under OUT
    # binding energy consistent with the relaxations it was computed from
    energy = {c["name"]: c["energy_per_formula_unit"] for c in results.calculations}
    assert results.binding[0]["E_b_eV"] == pytest.approx(
        energy["ads"] - energy["slab"] - energy["h2"]
    )
    # a fresh process reads the same documents from the store file alone
    reader = textwrap.dedent(
        f"""
        import json
        from pqdflow.workflows.fireworks.builder import collect_docs, find_workflow
        from pqdflow.workflows.fireworks.launchpad import EmbeddedLaunchPad
        lp = EmbeddedLaunchPad({str(embedded_store_path(out))!r}, readonly=True)
        docs = collect_docs(lp, find_workflow(lp, {plan.fingerprint("mock", FAST_NEB)!r}))
        print(json.dumps(sorted(docs)))
        print(json.dumps(docs["binding-H2"].E_b_eV))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", reader], capture_output=True, text=True, check=True, timeout=120
    )
    names_line, eb_line = done.stdout.strip().splitlines()[-2:]
    names = json.loads(names_line)
    expected = [c.name for c in plan.calculations] + ["binding-H2", "neb-Cu", "neb-Cu-analysis"]
    assert names == sorted(expected)
    assert json.loads(eb_line) == pytest.approx(results.binding[0]["E_b_eV"], abs=1e-12)
    # running again resumes: nothing is launched twice
    n_launches = len(_launches(out))
    run_plan_on_launchpad(plan, "mock", out, progress=False, backend_options=FAST_NEB)
    assert len(_launches(out)) == n_launches
    # other backend options would mix folders computed two ways: refused, nothing launched
    with pytest.raises(InputError, match="already holds a run of the same study name with other"):
        run_plan_on_launchpad(plan, "mock", out, progress=False, backend_options={"fmax": 0.1})
    assert len(_launches(out)) == n_launches


def test_sigkill_mid_run_then_relaunch_recovers_without_duplicates(tmp_path: Path) -> None:
    plan = small_plan(n_extra=4)
    out = tmp_path / "run"
    proc = _launcher(tmp_path, plan, out, delay=0.6)
    try:
        store = embedded_store_path(out)

        def two_done_one_running() -> bool:
            if not store.exists():
                return False
            values = list(_states(out).values())
            return values.count("COMPLETED") >= 2 and "RUNNING" in values

        _wait_for(two_done_one_running, proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    before = _states(out)
    running = [n for n, s in before.items() if s == "RUNNING"]
    completed = {n for n, s in before.items() if s == "COMPLETED"}
    assert len(running) == 1, before  # the store on disk holds the state at the kill
    launches_before = {
        d["fw_id"]: (d["launch_id"], d["action"]["stored_data"]["pqdflow_doc"])
        for d in _launches(out)
        if d["state"] == "COMPLETED"
    }
    # relaunch: the lost run is detected and rerun, the rest completes
    again = _launcher(tmp_path, plan, out, delay=0.0)
    stdout, stderr = again.communicate(timeout=300)
    assert again.returncode == 0, stderr
    assert "reran lost Firework(s) of a killed launcher" in stdout
    after = _states(out)
    assert set(after.values()) == {"COMPLETED"}
    launches = _launches(out)
    # finished results intact: same launch, same document
    for fw_id, (launch_id, doc) in launches_before.items():
        mine = [d for d in launches if d["fw_id"] == fw_id]
        assert [d["launch_id"] for d in mine] == [launch_id]
        assert mine[0]["action"]["stored_data"]["pqdflow_doc"] == doc
    # nothing duplicated: one COMPLETED launch per Firework; the lost one has a FIZZLED one too
    completed_per_fw: dict[int, int] = {}
    for d in launches:
        if d["state"] == "COMPLETED":
            completed_per_fw[d["fw_id"]] = completed_per_fw.get(d["fw_id"], 0) + 1
    assert sorted(completed_per_fw.values()) == [1] * len(after)
    assert [d["state"] for d in launches].count("FIZZLED") == 1
    results = StudyResults.read(out / "results.json")
    names = [c["name"] for c in results.calculations]
    assert sorted(names) == sorted(c.name for c in plan.calculations)
    assert completed <= set(after)


def test_two_launchers_at_once_the_second_is_refused_or_queued(tmp_path: Path) -> None:
    plan = small_plan()
    out = tmp_path / "run"
    first = _launcher(tmp_path, plan, out, delay=0.3)
    try:
        _wait_for(
            lambda: embedded_store_path(out).exists() and "RUNNING" in _states(out).values(), first
        )
        with pytest.raises(LaunchpadLockedError, match=rf"pid={first.pid}"):
            run_plan_on_launchpad(plan, "mock", out, progress=False)
        # a second launcher that waits gets the store after the first finishes: nothing to redo
        queued = _launcher(tmp_path, plan, out, delay=0.0, wait=120.0)
        assert first.wait(timeout=300) == 0
        stdout, stderr = queued.communicate(timeout=300)
        assert queued.returncode == 0, stderr
        assert "resuming workflow" in stdout
    finally:
        first.kill()
        first.communicate(timeout=30)
    launches = _launches(out)
    assert all(d["state"] == "COMPLETED" for d in launches)
    assert len(launches) == len(_states(out)) == 8


def test_vasp_backend_through_fireworks_with_worker_env(
    vasp_reference: Path, tmp_path: Path
) -> None:
    """Relaxations with backend "vasp": the commands come from the worker's env (>>vasp_cmd<<),
    molecules use gamma_vasp_cmd; mock VASP copies the real Si outputs."""
    from ase.io import read
    from fireworks import FWorker

    from pqdflow.workflows.fireworks.builder import add_workflow_once, build_workflow
    from pqdflow.workflows.fireworks.launchpad import launch_rapidfire
    from pqdflow.workflows.testing.mock_vasp import CALLS_FILE, write_mock_script

    si = read(vasp_reference / "si_relax_plain_small" / "POSCAR", format="vasp")
    mol = si.copy()
    mol.pbc = True
    mol.info["kind"] = "molecule"
    plan = StudyPlan(
        name="si",
        calculations=[
            CalcSpec("si-bulk", "bulk", si, relax_cell=True),
            CalcSpec("si2", "molecule", mol),
        ],
    )
    ref = vasp_reference / "si_relax_plain_small"
    std = write_mock_script(
        tmp_path / "std.json", [{"reference": ref, "expect_incar": {"ISIF": 3}}]
    )
    gam = write_mock_script(tmp_path / "gam.json", [{"reference": ref, "expect_natoms": 2}])
    mock = [sys.executable, "-m", "pqdflow.workflows.testing.mock_vasp"]
    worker = FWorker(env={"vasp_cmd": [*mock, str(std)], "gamma_vasp_cmd": [*mock, str(gam)]})
    out = tmp_path / "run"
    options = {"custodian": {"polling_time_step": 0.05, "monitor_freq": 10_000, "max_errors": 2}}
    wf = build_workflow(plan, "vasp", root=out, backend_options=options)
    with open_embedded_launchpad(embedded_store_path(out)) as lp:
        fw_id, _ = add_workflow_once(lp, wf)
        assert launch_rapidfire(lp, out / "fw_launches", fworker=worker) == 2
        assert {r["state"] for r in workflow_states(lp, fw_id)} == {"COMPLETED"}
        docs = [d for d in collect_docs(lp, fw_id).values()]
    assert {d.name: d.energy for d in docs} == pytest.approx(
        {"si-bulk": -10.84671647, "si2": -10.84671647}
    )
    assert all(d.backend == "vasp" for d in docs)
    scripts = {
        name: json.loads((out / "calcs" / name / CALLS_FILE).read_text())[0]["script"]
        for name in ("si-bulk", "si2")
    }
    assert scripts == {"si-bulk": str(std.resolve()), "si2": str(gam.resolve())}
    assert find_workflow(
        EmbeddedLaunchPad(embedded_store_path(out), readonly=True),
        plan.fingerprint("vasp", options),
    )


@pytest.mark.mlip
def test_chgnet_backend_inside_a_firework(tmp_path: Path) -> None:
    pytest.importorskip("chgnet")
    cell = bulk("Cu", "fcc", a=3.6)
    plan = StudyPlan(name="chgnet", calculations=[CalcSpec("cu", "bulk", cell)])
    out = tmp_path / "run"
    options = {"max_steps": 5}
    results = StudyResults.read(
        run_plan_on_launchpad(plan, "chgnet", out, progress=False, backend_options=options)
    )
    (doc,) = results.calculations
    assert doc["backend"] == "chgnet"
    assert -5.0 < doc["energy"] < -2.0  # eV per Cu atom, CHGNet (PBE-like) territory
    assert set(_states(out).values()) == {"COMPLETED"}


def test_a_failing_firework_is_reported_and_completed_results_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pqdflow.errors import CalculationFailed
    from pqdflow.workflows import backends
    from pqdflow.workflows.backends import get_backend

    class FailsOnH2:
        name = "fails-on-h2"

        def __init__(self) -> None:
            self.inner = get_backend("mock", neb_interpolation="linear")
            self.inner.name = self.name

        def describe(self) -> dict[str, Any]:
            return self.inner.describe()

        def relax(self, spec: CalcSpec, directory: Path) -> Any:
            if spec.name == "h2":
                raise CalculationFailed("SCF exploded in h2")
            return self.inner.relax(spec, directory)

        def neb(self, *args: Any, **kwargs: Any) -> Any:
            return self.inner.neb(*args, **kwargs)

    entry = BackendEntry("fails-on-h2", lambda settings, env: FailsOnH2(), "test double")
    monkeypatch.setitem(backends._REGISTRY, "fails-on-h2", entry)
    plan = small_plan()
    out = tmp_path / "run"
    with pytest.raises(
        CalculationFailed,
        match=r"1 Firework\(s\) failed .*relax/molecule: h2 \(.*SCF exploded in h2",
    ):
        run_plan_on_launchpad(plan, "fails-on-h2", out, progress=False)
    states = _states(out)
    assert states["relax/molecule: h2"] == "FIZZLED"
    assert states["binding: binding-H2"] == "WAITING"  # never runs on a failed parent
    assert states["neb-analysis: neb-Cu-analysis"] == "COMPLETED"  # independent branch finished
    partial = StudyResults.read(out / "results.json")
    assert sorted(c["name"] for c in partial.calculations) == ["ads", "neb-a", "neb-b", "slab"]
    assert partial.binding == []


# ----------------------------------------------------------------- lookahead workers
from pqdflow.documents.results import RESULT_FILE  # noqa: E402
from pqdflow.fileio import folder_lock, folder_locking  # noqa: E402
from pqdflow.workflows.fireworks.builder import add_workflow_once, build_workflow  # noqa: E402
from pqdflow.workflows.fireworks.lookahead import (  # noqa: E402
    LookaheadPool,
    default_workers,
    lookahead_candidates,
    lookahead_worker,
)


def test_folder_lock_is_exclusive_between_processes_and_reentrant_within_one(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "calcs" / "relax-a"
    holder = textwrap.dedent(
        f"""
        import sys, time
        from pqdflow.fileio import folder_lock, folder_locking
        with folder_locking(), folder_lock({str(folder)!r}):
            print("held", flush=True)
            sys.stdin.readline()
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdin is not None
        assert proc.stdout.readline().strip() == "held"
        with folder_locking(), folder_lock(folder, wait=False) as held:
            assert held is False  # the other process computes it
        proc.communicate("\n", timeout=30)
    with folder_locking(), folder_lock(folder, wait=False) as held:
        assert held is True
        with folder_lock(folder, wait=False) as again:  # the holder re-enters (execute_step)
            assert again is True
    assert not folder.exists()  # the lock never creates the calculation folder
    # a one-process run takes no locks and leaves no lock files in the user's folders
    other = tmp_path / "single" / "relax-b"
    with folder_lock(other, wait=False) as held:
        assert held is True
    assert not other.parent.exists()


class _StopAfter:
    """A stop event that is set after ``n`` checks (the worker loop runs in this process)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def is_set(self) -> bool:
        self.n -= 1
        return self.n < 0

    def wait(self, timeout: float) -> bool:
        return self.is_set()


def test_worker_computes_ready_steps_ahead_and_the_launcher_reuses_them(tmp_path: Path) -> None:
    out = tmp_path / "run"
    plan = small_plan(n_extra=2)
    wf = build_workflow(plan, "mock", root=out, backend_options=FAST_NEB)
    store = embedded_store_path(out)
    out.mkdir()
    with open_embedded_launchpad(store) as lp:
        fw_id, _ = add_workflow_once(lp, wf)
        nodes = [int(r["fw_id"]) for r in workflow_states(lp, fw_id)]
        ready = lookahead_candidates(lp, nodes, set())
    names = [r["name"] for r in ready]
    # relaxations with no parents are READY; the binding and the band wait on them
    assert names
    assert all(n.startswith("relax/") for n in names)
    # the worker starts from the end of the launcher's queue
    with open_embedded_launchpad(store, readonly=True) as lp:
        queue = lp.fireworks.find(
            {"fw_id": {"$in": nodes}, "state": "READY"}, sort=[("spec._priority", -1)]
        )
        assert [r["fw_id"] for r in ready] == [r["fw_id"] for r in reversed(list(queue))]

    lookahead_worker(
        nodes, store_file=str(store), launchpad_file=None, threads=1, stop=_StopAfter(2)
    )
    done = sorted(p.parent.name for p in (out / "calcs").glob(f"*/{RESULT_FILE}"))
    assert len(done) == 2  # one step per loop pass
    with open_embedded_launchpad(store, readonly=True) as lp:  # the store is untouched
        states = {r["name"]: r["state"] for r in workflow_states(lp, nodes[0])}
    assert set(states.values()) <= {"READY", "WAITING"}
    # a second pass goes down the chains: the final endpoint once the initial's folder holds
    # a result, the band once both do, although the store still has them WAITING
    lookahead_worker(
        nodes, store_file=str(store), launchpad_file=None, threads=1, stop=_StopAfter(40)
    )
    band = out / "neb" / "neb-Cu" / RESULT_FILE
    assert band.is_file()
    done = sorted(p.parent.name for p in (out / "calcs").glob(f"*/{RESULT_FILE}"))
    assert len(done) == len(plan.calculations)
    with open_embedded_launchpad(store, readonly=True) as lp:
        assert {r["state"] for r in workflow_states(lp, nodes[0])} <= {"READY", "WAITING"}
    stamps = {n: (out / "calcs" / n / RESULT_FILE).stat().st_mtime_ns for n in done}
    stamps["band"] = band.stat().st_mtime_ns

    path = run_plan_on_launchpad(
        plan, "mock", out, progress=False, backend_options=FAST_NEB, plots=False
    )
    results = StudyResults.read(path)
    assert not results.failed
    # the launcher read the worker's results instead of recomputing them
    after = {n: (out / "calcs" / n / RESULT_FILE).stat().st_mtime_ns for n in done}
    assert {**after, "band": band.stat().st_mtime_ns} == stamps


def test_run_with_two_processes_completes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    path = run_plan_on_launchpad(
        small_plan(n_extra=3),
        "mock",
        out,
        progress=False,
        backend_options=FAST_NEB,
        plots=False,
        workers=2,
    )
    results = StudyResults.read(path)
    assert not results.failed
    assert results.sessions[-1]["workers"] == 2
    assert results.sessions[-1]["outcome"] == "completed"


def test_worker_counts() -> None:
    assert default_workers("mock", 1) == 1
    assert default_workers("vasp", 1) == 1
    n = default_workers("chgnet", 1)
    assert 1 <= n <= 4
    assert default_workers("chgnet", 64) == 1
    with pytest.raises(InputError, match="workers"):
        LookaheadPool(0, [1], store_file="x")
    with pytest.raises(InputError, match="either"):
        LookaheadPool(2, [1])

"""A run folder is safe: Ctrl-C / SIGTERM and the resume, `pqdflow rerun`, closed pipes,
results never reused across changed inputs, one study per folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from ase import Atoms
from ase.build import bulk, molecule

from pqdflow.cli import main
from pqdflow.documents.plan import BindingSpec, CalcSpec, StudyPlan
from pqdflow.documents.results import StudyResults
from pqdflow.errors import CalculationFailed, RunInterrupted
from pqdflow.workflows import backends
from pqdflow.workflows.backends import BackendEntry, get_backend
from pqdflow.workflows.fireworks.launchpad import (
    EmbeddedLaunchPad,
    embedded_store_path,
    open_embedded_launchpad,
    run_plan_on_launchpad,
)


def binding_plan() -> StudyPlan:
    """Slab, adsorbate, H2 and two spare molecules (5 relaxations) and one binding energy."""
    slab = bulk("Cu", "fcc", a=3.6, cubic=True)
    slab.center(vacuum=5.0, axis=2)
    h2 = molecule("H2")
    h2.center(vacuum=4.0)
    ads = slab.copy()
    ads += Atoms("H2", positions=[[0.0, 0.0, 9.0], [0.0, 0.0, 9.74]])
    spares = []
    for i in range(2):
        extra = h2.copy()
        extra.positions[1, 2] += 0.02 * (i + 1)
        spares.append(CalcSpec(f"h2-{i}", "molecule", extra))
    return StudyPlan(
        name="tiny",
        calculations=[
            CalcSpec("slab", "slab", slab),
            CalcSpec("ads", "adsorbed", ads),
            CalcSpec("h2", "molecule", h2, role="ligand_reference"),
            *spares,
        ],
        bindings=[BindingSpec("binding-H2", "H2", "top", "ads", "slab", {"h2": 1.0})],
        nebs=[],
    )


class Recording:
    """The mock backend, recording every relaxation it computes; one call may signal."""

    relaxed: ClassVar[list[str]] = []
    signal_on: ClassVar[str | None] = None
    signum: ClassVar[int] = signal.SIGINT
    name = "recording"

    def __init__(self) -> None:
        self.inner = get_backend("mock")
        self.inner.name = self.name

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def relax(self, spec: CalcSpec, directory: Path) -> Any:
        if spec.name == Recording.signal_on:
            Recording.signal_on = None
            os.kill(os.getpid(), Recording.signum)  # as Ctrl-C / kill would, mid-step
            raise AssertionError("the signal did not stop the step")
        Recording.relaxed.append(spec.name)
        return self.inner.relax(spec, directory)

    def neb(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.neb(*args, **kwargs)


@pytest.fixture(autouse=True)
def _sigint_as_in_a_terminal() -> Iterator[None]:
    """Python's own SIGINT handler, even when pytest runs as a background job (SIG_IGN)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> type[Recording]:
    entry = BackendEntry("recording", lambda settings, env: Recording(), "test double")
    monkeypatch.setitem(backends._REGISTRY, "recording", entry)
    monkeypatch.setattr(Recording, "relaxed", [])
    return Recording


def _states(out: Path) -> dict[str, str]:
    lp = EmbeddedLaunchPad(embedded_store_path(out), readonly=True)
    return {d["name"]: d["state"] for d in lp.fireworks.find({}, {"name": 1, "state": 1})}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_run_and_the_rerun_completes_without_recomputing(
    tmp_path: Path, recording: type[Recording], signum: int
) -> None:
    out = tmp_path / "run"
    recording.signal_on, recording.signum = "h2", signum
    with pytest.raises(RunInterrupted, match="run the same command again") as info:
        run_plan_on_launchpad(binding_plan(), "recording", out, progress=False)
    assert info.value.signum == signum
    first = list(recording.relaxed)
    assert "h2" not in first
    assert len(first) < 5
    states = _states(out)
    assert "FIZZLED" not in states.values()  # the interrupted one is queued again
    assert states["relax/molecule: h2"] == "READY"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    partial = StudyResults.read(out / "results.json")
    assert partial.partial
    assert partial.interrupted
    assert "h2" in partial.missing
    assert "binding-H2" in partial.missing
    assert sorted(c["name"] for c in partial.calculations) == sorted(first)

    recording.relaxed.clear()
    run_plan_on_launchpad(binding_plan(), "recording", out, progress=False)
    assert "h2" in recording.relaxed
    assert not set(recording.relaxed) & set(first)  # nothing finished was recomputed
    assert sorted(first + recording.relaxed) == ["ads", "h2", "h2-0", "h2-1", "slab"]
    assert set(_states(out).values()) == {"COMPLETED"}
    done = StudyResults.read(out / "results.json")
    assert not done.partial
    assert done.failed == []
    assert done.missing == []
    assert [s["outcome"] for s in done.sessions] == ["interrupted", "completed"]
    assert done.wall_time_s == pytest.approx(sum(s["wall_time_s"] for s in done.sessions))


def test_cli_run_interrupted_exits_130_with_one_line(
    tmp_path: Path, recording: type[Recording], capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(
        "name: small\ncompositions: [3.0]\nterminations: [PbX2]\n"
        "ligands: {names: [TMSBr], surfaces: []}\nneb: {paths: []}\n"
    )
    recording.signal_on = None
    original = Recording.relax

    def first_call_signals(self: Recording, spec: CalcSpec, directory: Path) -> Any:
        os.kill(os.getpid(), signal.SIGINT)
        return original(self, spec, directory)

    Recording.relax = first_call_signals  # type: ignore[method-assign]
    try:
        code = main(
            [
                "run",
                str(study),
                "--backend",
                "recording",
                "--out",
                str(tmp_path / "o"),
                "--no-progress",
                "--no-plots",
            ]
        )
    finally:
        Recording.relax = original  # type: ignore[method-assign]
    err = capsys.readouterr().err
    assert code == 130
    assert "interrupted; run the same command again to resume" in err
    assert "Traceback" not in err


def test_rerun_requeues_failed_fireworks_and_the_run_continues(
    tmp_path: Path, recording: type[Recording], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    original = Recording.relax

    def h2_fails(self: Recording, spec: CalcSpec, directory: Path) -> Any:
        if spec.name == "h2":
            raise CalculationFailed("SCF exploded in h2")
        return original(self, spec, directory)

    Recording.relax = h2_fails  # type: ignore[method-assign]
    try:
        with pytest.raises(CalculationFailed, match="pqdflow rerun --out"):
            run_plan_on_launchpad(binding_plan(), "recording", out, progress=False)
    finally:
        Recording.relax = original  # type: ignore[method-assign]
    assert _states(out)["relax/molecule: h2"] == "FIZZLED"
    failed = StudyResults.read(out / "results.json")
    assert failed.partial
    assert [f["name"] for f in failed.failed] == [
        "relax/molecule: h2 (pqdflow.errors.CalculationFailed: SCF exploded in h2)"
    ]
    capsys.readouterr()
    assert main(["rerun", "--out", str(out), "--failed"]) == 0
    printed = capsys.readouterr().out
    assert "(was FIZZLED): relax/molecule: h2" in printed
    assert "1 Firework(s) requeued" in printed
    assert _states(out)["relax/molecule: h2"] == "READY"
    recording.relaxed.clear()
    run_plan_on_launchpad(binding_plan(), "recording", out, progress=False)
    assert recording.relaxed == ["h2"]
    assert set(_states(out).values()) == {"COMPLETED"}
    assert main(["rerun", "--out", str(out)]) == 0
    assert "nothing to requeue" in capsys.readouterr().out
    assert main(["rerun", "--out", str(out), "--fw-id", "999"]) == 2


def test_a_firework_fizzled_by_an_old_keyboard_interrupt_is_rerun(
    tmp_path: Path, recording: type[Recording]
) -> None:
    """A store from before this release: Ctrl-C left the Firework FIZZLED (KeyboardInterrupt)."""
    out = tmp_path / "run"
    original = Recording.relax

    def old_style(self: Recording, spec: CalcSpec, directory: Path) -> Any:
        if spec.name == "h2":
            raise KeyboardInterrupt  # no signal: what FireWorks recorded before
        return original(self, spec, directory)

    Recording.relax = old_style  # type: ignore[method-assign]
    try:
        with pytest.raises(CalculationFailed, match="KeyboardInterrupt"):
            run_plan_on_launchpad(binding_plan(), "recording", out, progress=False)
    finally:
        Recording.relax = original  # type: ignore[method-assign]
    recording.relaxed.clear()
    run_plan_on_launchpad(binding_plan(), "recording", out, progress=False)
    assert recording.relaxed == ["h2"]
    assert set(_states(out).values()) == {"COMPLETED"}


def test_output_into_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``pqdflow ... | head``: the reader closes the pipe; no BrokenPipeError traceback."""
    with open_embedded_launchpad(embedded_store_path(tmp_path)):
        pass  # an empty store: `pqdflow status` prints a line
    script = "import sys; from pqdflow.cli import main; sys.exit(main(sys.argv[1:]))"
    for argv in (["status", "--out", str(tmp_path)], ["rerun", "--out", str(tmp_path)]):
        proc = subprocess.Popen(
            [sys.executable, "-c", script, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()  # like `head` exiting before the command writes
        with proc.stderr:
            err = proc.stderr.read().decode()
        proc.wait(timeout=60)
        assert "Traceback" not in err, err
        assert "BrokenPipeError" not in err, err
        assert proc.returncode == 141  # as `cat` ends on SIGPIPE


def _vacuum_plan(vacuum: float) -> StudyPlan:
    plan = binding_plan()
    slab = plan.calculations[0].atoms.copy()
    slab.center(vacuum=vacuum, axis=2)
    plan.calculations[0] = CalcSpec("slab", "slab", slab)
    return plan


def test_a_changed_setting_is_never_answered_from_an_old_result(tmp_path: Path) -> None:
    from pqdflow.errors import OverwriteError, StudyError
    from pqdflow.workflows.engine.runner import run_study
    from pqdflow.workflows.study.scheduler import schedule
    from pqdflow.workflows.study.steps import execute_step

    out = tmp_path / "run"
    mock = get_backend("mock")
    first = run_study(_vacuum_plan(5.0), mock, out, progress=False, echo=False, plots=False)
    before = (out / "results.json").read_bytes()
    # the whole run: refused up front, naming the folder; results.json untouched
    with pytest.raises(StudyError, match=rf"{out}.*other structures or settings"):
        run_study(_vacuum_plan(8.0), mock, out, progress=False, echo=False, plots=False)
    assert (out / "results.json").read_bytes() == before
    # one step: the finished slab of 5 Å vacuum is not reused for 8 Å, naming what differs
    (step,) = [s for s in schedule(_vacuum_plan(8.0)) if s.name == "slab"]
    lengths = r"structure.cell_lengths_A: \[3.6, 3.6, 11.8\] -> \[3.6, 3.6, 17.8\]"
    with pytest.raises(OverwriteError, match=rf"calcs/slab .*other inputs \({lengths}"):
        execute_step(step, mock, {}, out)
    # other relaxation settings too (fmax), even with the same structures
    strict = get_backend("mock", fmax=0.01)
    (step,) = [s for s in schedule(_vacuum_plan(5.0)) if s.name == "slab"]
    with pytest.raises(OverwriteError, match=r"backend\.fmax: 0\.02 -> 0\.01"):
        execute_step(step, strict, {}, out)
    assert first.binding
    assert not first.partial


def test_a_second_study_or_backend_in_a_run_folder_is_refused(
    tmp_path: Path, recording: type[Recording]
) -> None:
    from dataclasses import replace

    from pqdflow.errors import StudyError

    out = tmp_path / "run"
    run_plan_on_launchpad(binding_plan(), "mock", out, progress=False)
    before = (out / "results.json").read_bytes()
    other = replace(binding_plan(), name="other")
    with pytest.raises(StudyError, match=r"study 'tiny', not 'other'"):
        run_plan_on_launchpad(other, "mock", out, progress=False)
    with pytest.raises(StudyError, match=r"backend 'mock', not 'recording'"):
        run_plan_on_launchpad(binding_plan(), "recording", out, progress=False)
    assert (out / "results.json").read_bytes() == before
    lp = EmbeddedLaunchPad(embedded_store_path(out), readonly=True)
    assert lp.workflows.count_documents({}) == 1  # nothing added, nothing run


def test_an_ignored_sigint_stays_ignored() -> None:
    """A background job (``cmd &`` in a script) ignores SIGINT; a run must not undo that."""
    from pqdflow.interrupt import catch_interrupts

    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with catch_interrupts() as state:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL  # caught
            os.kill(os.getpid(), signal.SIGINT)
            assert not state.requested
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGINT, previous)

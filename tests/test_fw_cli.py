"""``pqdflow submit`` / ``pqdflow status`` against the embedded launchpad."""

from __future__ import annotations

from pathlib import Path

import pytest

from pqdflow.cli import main
from pqdflow.workflows.fireworks.launchpad import (
    EmbeddedLaunchPad,
    embedded_store_path,
    open_embedded_launchpad,
)
from pqdflow.workflows.study import load_study, plan_study
from pqdflow.workflows.study.scheduler import schedule


@pytest.fixture(scope="module")
def study_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pqdflow.workflows.study import example_study_yaml

    path = tmp_path_factory.mktemp("study") / "study.yaml"
    path.write_text(example_study_yaml())
    return path


def test_submit_is_idempotent_and_status_counts(
    study_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    assert main(["submit", str(study_yaml), "--out", str(out), "--backend", "mock"]) == 0
    first = capsys.readouterr().out
    lp = EmbeddedLaunchPad(embedded_store_path(out), readonly=True)
    names = [d["name"] for d in lp.fireworks.find({}, {"name": 1})]
    n_fws = len(names)
    # ready: the steps without parents (NEB finals wait for their initial, structures on a
    # relaxed bulk lattice for that bulk)
    n_relax = sum(not step.parents for step in schedule(plan_study(load_study(study_yaml))))
    assert f"added workflow 'pqdflow: paper (mock)': {n_fws} Fireworks" in first
    n_hops = len(plan_study(load_study(study_yaml)).nebs)
    assert n_hops >= 3  # the sampled hops of the 3 hosts
    assert sum(n.startswith(("neb: ", "neb-analysis: ")) for n in names) == 2 * n_hops
    assert main(["submit", str(study_yaml), "--out", str(out), "--backend", "mock"]) == 0
    assert "already on" in capsys.readouterr().out
    lp = EmbeddedLaunchPad(embedded_store_path(out), readonly=True)
    assert lp.workflows.count_documents({}) == 1
    assert lp.fireworks.count_documents({}) == n_fws
    # the relaxations are ready, everything that depends on them waits
    assert main(["status", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"pqdflow: paper (mock): READY {n_relax}, WAITING {n_fws - n_relax} (of {n_fws})" in text
    assert "WAITING    neb: neb-bulk-x2-VBr-Br-bulk-a" in text
    assert "READY      relax/bulk: bulk-x3" in text


def test_submit_refuses_while_a_launcher_holds_the_store(
    study_yaml: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    with open_embedded_launchpad(embedded_store_path(out)):
        # the lock is per open file description: a second open, even in this process, is refused
        assert main(["submit", str(study_yaml), "--out", str(out), "--backend", "mock"]) == 2
    err = capsys.readouterr().err
    assert "pqdflow submit: error: embedded launchpad" in err
    assert "in use by another launcher" in err


def test_submit_and_status_need_a_target(
    study_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["submit", str(study_yaml)]) == 2
    assert "give --launchpad FILE (MongoDB) or --out DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["status"])


def test_status_of_a_run_folder_without_launchpad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "--out", str(tmp_path)]) == 2
    assert "nothing was launched there" in capsys.readouterr().err

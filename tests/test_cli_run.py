"""``pqdflow run``: a small study end to end with the mock backend, and clear errors."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import pytest

from pqdflow.cli import main
from pqdflow.cli import run as run_command

# the direct engine (``--launcher direct`` once the FireWorks launcher is the default)
DIRECT = ["--launcher", "direct"] if "--launcher" in inspect.getsource(run_command) else []

SMALL_STUDY = """\
name: small
compositions: [3.0]
terminations: [PbX2]
ligands:
  names: [TMSBr]
  surfaces: []
neb:
  x: 3.0
  paths:
    - {host: bulk}
"""


def test_run_small_study_with_mock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(SMALL_STUDY)
    out = tmp_path / "out"
    assert main(["run", str(study), "--backend", "mock", "--out", str(out), *DIRECT]) == 0
    captured = capsys.readouterr()
    assert "TMSBr" in captured.out
    assert "neb-bulk" in captured.out
    assert "not physics" in captured.out
    assert "%|" in captured.err  # tqdm progress bar on stderr
    results = json.loads((out / "results.json").read_text())
    assert results["backend"] == "mock"
    assert [b["ligand"] for b in results["binding"]] == ["TMSBr"]
    assert all(isinstance(b["E_b_eV"], float) for b in results["binding"])
    assert [n["label"] for n in results["neb"]] == ["bulk:VBr-Br-bulk"]  # host:hop name
    assert results["neb"][0]["Ea_eV"] > 0
    assert (out / "results.csv").is_file()
    assert (out / "binding_energies.png").is_file()
    assert (out / "neb_profiles.png").is_file()
    # a rerun reads every finished calculation instead of recomputing it
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    rerun = ["run", str(study), "--backend", "mock", "--out", str(out), "--no-progress", *DIRECT]
    assert main(rerun) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == stamps


def test_unknown_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--example", "--backend", "gaussian", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'gaussian'" in err
    assert "mock" in err
    assert not (tmp_path / "o").exists()


def test_chgnet_not_installed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "chgnet.model", None)  # injected import failure
    assert main(["run", "--example", "--backend", "chgnet", "--out", str(tmp_path / "o")]) == 2
    assert 'pip install -e ".[ml]"' in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_study_and_example_are_exclusive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", "--backend", "mock", "--out", str(tmp_path / "o")]) == 2
    assert "--example" in capsys.readouterr().err


def test_empty_study_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "empty.yaml"
    study.write_text(
        "name: empty\ncompositions: []\nligands: {names: [], surfaces: []}\nneb: {paths: []}\n"
    )
    code = main(["run", str(study), "--backend", "mock", "--out", str(tmp_path / "o")])
    assert code == 2
    assert "compositions" in capsys.readouterr().err  # nothing to compute: refused up front
    assert not (tmp_path / "o").exists()

"""``pqdflow inputs``: --example, writing a study, typed errors with nothing written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pqdflow.cli import main
from pqdflow.workflows.study import example_study, load_study

TINY = {
    "name": "tiny",
    "terminations": ["CsX"],
    "ligands": {"names": ["OAc"], "surfaces": []},
    "neb": {"paths": []},
}


def test_example_prints_the_default_study(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inputs", "--example"]) == 0
    text = capsys.readouterr().out
    path = tmp_path / "study.yaml"
    path.write_text(text)
    assert load_study(path) == example_study()
    for preset in ("full", "quick"):  # --example PRESET prints that preset
        assert main(["inputs", "--example", preset]) == 0
        path.write_text(capsys.readouterr().out)
        assert load_study(path) == example_study(preset)
        assert load_study(path).name == preset
    assert example_study("full").neb.max_depth == 1
    assert example_study("paper").neb.max_depth == 0


def test_writes_a_study_and_reruns_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "dry"
    assert main(["inputs", str(study), "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert "5 folders" in first
    assert "5 written" in first
    manifest = json.loads((out / "manifest.json").read_text())
    assert {c["name"] for c in manifest["calculations"]} == {
        "bulk-x3",
        "slab-CsX-x3",
        "ads-OAc-CsX-x3",
        "ligand-OAc",
        "ref-HBr",
    }
    assert main(["inputs", str(study), "--out", str(out)]) == 0
    assert "0 written, 5 unchanged" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({**TINY, "ligandz": {}}, ["unknown key 'ligandz'"]),
        ({**TINY, "ligands": {"names": ["Nope"]}}, ["ligands.names", "Nope"]),
        ({**TINY, "compositions": [2.95]}, ["compositions[0]", "not realisable"]),
        ({**TINY, "inputs": {"incar": {"slab": {"ENCUT": "abc"}}}}, ["ENCUT", "inputs.incar"]),
    ],
)
def test_bad_study_is_a_one_line_error_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], data: dict[str, object], words: list[str]
) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(data))
    out = tmp_path / "dry"
    assert main(["inputs", str(study), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("pqdflow inputs: error:")
    for word in words:
        assert word in err
    assert not out.exists()


def test_missing_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inputs", str(tmp_path / "study.yaml")]) == 2
    assert "--out" in capsys.readouterr().err
    assert main(["inputs", "--example", "--out", str(tmp_path)]) == 2
    assert main(["inputs", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_force_flag_moves_outputs_aside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "dry"
    assert main(["inputs", str(study), "--out", str(out)]) == 0
    (out / "slab-CsX-x3" / "vasprun.xml").write_text("<done/>")
    changed = {**TINY, "inputs": {"incar": {"slab": {"ENCUT": 450}}}}
    study.write_text(yaml.safe_dump(changed))
    assert main(["inputs", str(study), "--out", str(out)]) == 2
    assert "slab-CsX-x3" in capsys.readouterr().err
    assert (out / "slab-CsX-x3" / "vasprun.xml").exists()
    assert main(["inputs", str(study), "--out", str(out), "--force"]) == 0
    assert "1 written" in capsys.readouterr().out
    assert not (out / "slab-CsX-x3" / "vasprun.xml").exists()
    assert len(list(out.glob("slab-CsX-x3.bak-*/vasprun.xml"))) == 1

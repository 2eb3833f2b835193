from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pqdflow.cli import main
from pqdflow.structures.defects import check_endpoints
from pqdflow.structures.io import read_structure

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
KINDS = {"bulk", "slab", "molecule", "adsorbed", "neb_initial", "neb_final"}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("build") / "model_set"
    assert main(["build", "--out", str(out)]) == 0
    return out


def test_build_writes_manifest_structures_and_pictures(built: Path) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    assert isinstance(manifest, list)
    assert len(manifest) >= 20
    for row in manifest:
        assert {"name", "file", "kind", "formula", "ligands", "termination", "x"} <= set(row)
        assert row["kind"] in KINDS
        atoms = read_structure(built / row["file"])
        assert row["file"].endswith(".extxyz")
        assert atoms.get_chemical_formula(mode="hill") == row["formula"]
        png = (built / row["png"]).read_bytes()
        assert png.startswith(PNG_SIGNATURE)
        assert len(png) > 5000
    assert {row["kind"] for row in manifest} == KINDS
    by_name = {row["name"]: row for row in manifest}
    assert by_name["surf-control-CsX-x3"]["ligands"] == ["OAc", "OAm"]
    assert by_name["slab-PbX2-x3"]["termination"] == "PbX2"
    assert by_name["slab-CsX-x3"]["x"] == 3.0
    # an NEB pair read back from disk still corresponds atom by atom
    first = next(n for n in by_name if n.startswith("neb-treated-x3-V") and "initial" in n)
    initial = read_structure(built / by_name[first]["file"])
    final = read_structure(built / by_name[first.replace("-initial", "-final")]["file"])
    k = check_endpoints(initial, final)
    assert k == by_name[first]["meta"]["hopping_index"]
    assert first == f"neb-treated-x3-{by_name[first]['meta']['hop']['name']}-initial"
    fixed = [i for c in initial.constraints for i in c.get_indices()]
    assert len(fixed) == by_name[first]["n_fixed"] > 0
    assert np.isclose(np.linalg.norm(final.positions[k] - initial.positions[k]), 4.15, atol=0.3)


def test_refuses_to_overwrite_without_force(
    built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stamp = (built / "manifest.json").stat().st_mtime_ns
    assert main(["build", "--out", str(built), "--no-png"]) == 2
    assert "--force" in capsys.readouterr().err
    assert (built / "manifest.json").stat().st_mtime_ns == stamp


def test_bad_x_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bad"
    assert main(["build", "--out", str(out), "--x", "3", "0.3", "--no-png"]) == 2
    err = capsys.readouterr().err
    assert "x=0.3" in err
    assert "allowed x" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []


def test_foreign_folder_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["build", "--out", str(out), "--no-png", "--force"]) == 2
    assert (out / "notes.txt").read_text() == "keep me"


def test_mixed_composition_and_chain_length(tmp_path: Path) -> None:
    out = tmp_path / "mixed"
    args = ["build", "--out", str(out), "--x", "1.5", "--chain-length", "6", "--no-png"]
    assert main(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert {row["x"] for row in manifest if row["x"] is not None} == {1.5}
    oam = read_structure(out / "mol-OAm.extxyz")
    assert oam.get_chemical_symbols().count("C") == 6
    assert all(row["png"] is None for row in manifest)


def test_help_runs(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["build", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--out" in out
    assert "--chain-length" in out
    assert "--x" in out

import json

import pytest

from pqdflow.errors import OverwriteError
from pqdflow.fileio import (
    atomic_directory,
    atomic_write_json,
    find_outputs,
    guard_outputs,
    sha256_of_files,
)


def test_find_outputs_searches_every_depth(tmp_path):
    (tmp_path / "02").mkdir()
    (tmp_path / "02" / "OUTCAR").write_text("x")
    (tmp_path / "disp-003" / "run").mkdir(parents=True)
    (tmp_path / "disp-003" / "run" / "vasprun.xml").write_text("<x/>")
    (tmp_path / "INCAR").write_text("ENCUT = 400\n")
    found = [p.relative_to(tmp_path).as_posix() for p in find_outputs(tmp_path)]
    assert found == ["02/OUTCAR", "disp-003/run/vasprun.xml"]


def test_guard_refuses_then_force_moves_nested_outputs_aside(tmp_path):
    calc = tmp_path / "calc"
    (calc / "disp-001").mkdir(parents=True)
    (calc / "disp-001" / "OUTCAR").write_text("finished")
    with pytest.raises(OverwriteError, match="disp-001/OUTCAR"):
        guard_outputs(calc)
    with atomic_directory(calc, force=True) as tmp:
        (tmp / "INCAR").write_text("new\n")
    assert (calc / "INCAR").read_text() == "new\n"
    backups = list(tmp_path.glob("calc.bak-*/disp-001/OUTCAR"))
    assert len(backups) == 1
    assert backups[0].read_text() == "finished"


def test_atomic_directory_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "calc"

    def killed_mid_write() -> None:
        with atomic_directory(target) as tmp:
            (tmp / "INCAR").write_text("half")
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        killed_mid_write()
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_json_and_hash_are_stable(tmp_path):
    atomic_write_json(tmp_path / "a.json", {"b": 1, "a": [1.5]})
    assert json.loads((tmp_path / "a.json").read_text()) == {"a": [1.5], "b": 1}
    h1 = sha256_of_files(tmp_path)
    (tmp_path / "a.json").rename(tmp_path / "c.json")
    assert sha256_of_files(tmp_path) != h1  # names are part of the hash

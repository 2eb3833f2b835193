"""The mock VASP executable: input checks and copies of real reference outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pqdflow.errors import InputError
from pqdflow.workflows.testing.mock_vasp import CALLS_FILE, EXIT_BAD_INPUT, main, write_mock_script

FES2 = "fes2_slab_relax_truncated_diverging"
SI = "si_relax_plain_small"


def _inputs(case: Path, run: Path, incar: str | None = None) -> Path:
    run.mkdir(parents=True, exist_ok=True)
    for name in ("POSCAR", "KPOINTS"):
        shutil.copyfile(case / name, run / name)
    (run / "INCAR").write_text(incar if incar is not None else (case / "INCAR").read_text())
    return run


def test_copies_outputs_keeps_inputs_and_records_calls(
    vasp_reference: Path, tmp_path: Path
) -> None:
    run = _inputs(vasp_reference / FES2, tmp_path / "run", "IBRION = 2\nPOTIM = 0.5\nISPIN = 2\n")
    script = write_mock_script(
        tmp_path / "mock.json",
        [
            {
                "reference": vasp_reference / FES2,
                "expect_incar": {"POTIM": 0.5, "ISPIN": 2},
                "expect_natoms": 48,
            },
            {"reference": vasp_reference / SI},
        ],
    )
    assert main([str(script), "--directory", str(run)]) == 0
    # outputs are byte copies of the real run; our INCAR is untouched
    assert (run / "OUTCAR").read_bytes() == (vasp_reference / FES2 / "OUTCAR").read_bytes()
    assert (run / "OSZICAR").read_bytes() == (vasp_reference / FES2 / "OSZICAR").read_bytes()
    assert (run / "INCAR").read_text() == "IBRION = 2\nPOTIM = 0.5\nISPIN = 2\n"
    assert not (run / "vasprun.xml").exists()
    # the second call uses the second reference, and removes the first call's outputs
    assert main([str(script), "--directory", str(run)]) == 0
    assert (run / "OUTCAR").read_bytes() == (vasp_reference / SI / "OUTCAR").read_bytes()
    calls = json.loads((run / CALLS_FILE).read_text())
    assert [Path(c["reference"]).name for c in calls] == [FES2, SI]
    assert sorted(calls[1]["written"]) == ["CONTCAR", "OSZICAR", "OUTCAR", "vasprun.xml"]


def test_unmet_expectations_exit_without_outputs(
    vasp_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _inputs(vasp_reference / FES2, tmp_path / "run", "POTIM = 0.5\nNPAR = 4\n")
    script = write_mock_script(
        tmp_path / "mock.json",
        [
            {
                "reference": vasp_reference / FES2,
                "expect_incar": {"POTIM": 0.25, "ENCUT": 400},
                "absent_incar": ["NPAR"],
                "expect_natoms": 5,
            }
        ],
    )
    assert main([str(script), "--directory", str(run)]) == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "INCAR POTIM = 0.5, expected 0.25" in err
    assert "INCAR ENCUT is not set" in err
    assert "INCAR NPAR = 4 is set but must not be" in err
    assert "POSCAR has 48 atoms, expected 5" in err
    assert not (run / "OUTCAR").exists()


def test_gzipped_reference_is_decompressed_in_the_run_folder_only(
    vasp_reference: Path, tmp_path: Path
) -> None:
    import gzip

    case = vasp_reference / "h_on_ir16_slab_relax_smearing"
    run = _inputs(case, tmp_path / "run")
    script = write_mock_script(tmp_path / "mock.json", [{"reference": case}])
    assert main([str(script), "--directory", str(run)]) == 0
    with gzip.open(case / "OUTCAR.gz", "rb") as fh:
        assert (run / "OUTCAR").read_bytes() == fh.read()
    assert (run / "vasprun.xml").is_file()
    assert not (run / "OUTCAR.gz").exists()
    assert (case / "OUTCAR.gz").is_file()  # the reference is never modified


def test_neb_outputs_go_to_image_folders_and_stdout_is_replayed(
    vasp_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = vasp_reference / "nh3_inversion_cineb_vtst"
    run = tmp_path / "neb"
    run.mkdir()
    for name in ("INCAR", "KPOINTS"):
        shutil.copyfile(case / name, run / name)
    for i in range(5):
        (run / f"{i:02d}").mkdir()
        shutil.copyfile(case / f"{i:02d}" / "POSCAR", run / f"{i:02d}" / "POSCAR")
    script = write_mock_script(
        tmp_path / "mock.json",
        [
            {
                "reference": case,
                "expect_incar": {"IMAGES": 3},
                "expect_images": 3,
                "expect_natoms": 4,
            }
        ],
    )
    assert main([str(script), "--directory", str(run)]) == 0
    for i in (1, 2, 3):
        assert (run / f"{i:02d}" / "OUTCAR").read_bytes() == (
            case / f"{i:02d}" / "OUTCAR"
        ).read_bytes()
    assert not (run / "00" / "OUTCAR").exists()
    out = capsys.readouterr().out
    assert out == (case / "stdout").read_text()


def test_script_needs_a_reference(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no 'reference'"):
        write_mock_script(tmp_path / "m.json", [{"expect_incar": {}}])

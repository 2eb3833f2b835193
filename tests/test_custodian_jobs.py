"""VASP under custodian, end to end with the mock VASP on real outputs."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
from custodian.vasp.handlers import (
    FrozenJobErrorHandler,
    NonConvergingErrorHandler,
    PositiveEnergyErrorHandler,
    PotimErrorHandler,
    UnconvergedErrorHandler,
    VaspErrorHandler,
    WalltimeHandler,
)
from custodian.vasp.validators import VaspFilesValidator, VasprunXMLValidator
from pymatgen.io.vasp import Incar

from pqdflow.errors import BackendError, CalculationFailed
from pqdflow.workflows.testing.mock_vasp import CALLS_FILE, write_mock_script
from pqdflow.workflows.vasp.custodian_jobs import (
    STDOUT_FILE,
    CustodianSettings,
    NebImagesUnconvergedHandler,
    NebImagesValidator,
    neb_handlers,
    neb_validators,
    parse_command,
    relax_handlers,
    relax_validators,
    run_vasp_custodian,
    vasp_job,
    vasp_neb_job,
)

FES2 = "fes2_slab_relax_truncated_diverging"
SI = "si_relax_plain_small"
NH3 = "nh3_inversion_cineb_vtst"
FAST = CustodianSettings(polling_time_step=0.05, monitor_freq=10_000, max_errors=3)


def _mock_cmd(script: Path) -> list[str]:
    return [sys.executable, "-m", "pqdflow.workflows.testing.mock_vasp", str(script)]


@pytest.fixture
def no_walltime_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # custodian's WalltimeHandler writes CUSTODIAN_WALLTIME_START into os.environ; keep it
    # scoped to the test
    for var in ("PBS_WALLTIME", "SBATCH_TIMELIMIT", "CUSTODIAN_WALLTIME_START"):
        monkeypatch.delenv(var, raising=False)


def test_relax_handler_set_and_validators(no_walltime_env: None) -> None:
    kinds = [type(h) for h in relax_handlers()]
    assert kinds == [
        VaspErrorHandler,
        UnconvergedErrorHandler,
        NonConvergingErrorHandler,
        PotimErrorHandler,
        PositiveEnergyErrorHandler,
        FrozenJobErrorHandler,
    ]  # no WalltimeHandler without a known wall time: it would do nothing
    with_wall = relax_handlers(CustodianSettings(wall_time=3600))
    assert type(with_wall[-1]) is WalltimeHandler
    assert with_wall[-1].wall_time == 3600
    assert [type(v) for v in relax_validators()] == [VasprunXMLValidator, VaspFilesValidator]


def test_neb_job_writes_stdout_where_the_error_handler_reads_and_keeps_npar(
    no_walltime_env: None,
) -> None:
    job = vasp_neb_job("srun -n 64 vasp_std")
    assert job.vasp_cmd == ("srun", "-n", "64", "vasp_std")
    assert job.output_file == STDOUT_FILE
    assert job.auto_npar is False
    error_handler = neb_handlers()[0]
    assert isinstance(error_handler, VaspErrorHandler)
    assert error_handler.output_filename == job.output_file
    assert any(isinstance(h, NebImagesUnconvergedHandler) for h in neb_handlers())
    assert [type(v) for v in neb_validators()] == [NebImagesValidator]
    single = vasp_job(["mpirun", "vasp_gam"])
    assert (single.output_file, single.auto_npar, single.auto_gamma) == (STDOUT_FILE, False, False)


def test_commands_are_argument_lists_never_shell_strings() -> None:
    assert parse_command("srun --mpi=pmix 'vasp std'") == ["srun", "--mpi=pmix", "vasp std"]
    # a shell metacharacter stays a literal argument: nothing is run through a shell
    assert parse_command("vasp_std; rm -rf ~") == ["vasp_std;", "rm", "-rf", "~"]
    assert parse_command(("mpirun", "vasp_std")) == ["mpirun", "vasp_std"]
    for bad in (None, "", "   ", []):
        with pytest.raises(BackendError, match="vasp_cmd"):
            parse_command(bad)


def _relax_folder(vasp_reference: Path, run: Path, incar: dict[str, object]) -> Path:
    run.mkdir(parents=True)
    for name in ("POSCAR", "KPOINTS"):
        shutil.copyfile(vasp_reference / FES2 / name, run / name)
    Incar(incar).write_file(run / "INCAR")
    return run


def test_potim_handler_corrects_a_real_diverging_run(
    vasp_reference: Path, tmp_path: Path, no_walltime_env: None
) -> None:
    """The real FeS2 run blew up (E from -284 to +84 eV in one ionic step): custodian's
    POTIM handler must halve POTIM in the INCAR and rerun; the rerun sees the corrected INCAR
    (the mock refuses any other) and gets good outputs, which pass the validators."""
    run = _relax_folder(
        vasp_reference,
        tmp_path / "fes2",
        {"IBRION": 2, "POTIM": 0.5, "ISPIN": 2, "ALGO": "Fast", "NSW": 100},
    )
    script = write_mock_script(
        tmp_path / "mock.json",
        [
            {
                "reference": vasp_reference / FES2,
                "expect_incar": {"POTIM": 0.5},
                "expect_natoms": 48,
            },
            {"reference": vasp_reference / SI, "expect_incar": {"POTIM": 0.25}},
        ],
    )
    log = run_vasp_custodian(run, vasp_cmd=_mock_cmd(script), settings=FAST)
    corrections = log[0]["corrections"]
    potim = [c for c in corrections if "POTIM" in c["errors"]]
    assert potim
    assert potim[0]["actions"] == [{"dict": "INCAR", "action": {"_set": {"POTIM": 0.25}}}]
    assert Incar.from_file(run / "INCAR")["POTIM"] == pytest.approx(0.25)
    assert Incar.from_file(run / "INCAR.orig")["POTIM"] == pytest.approx(0.5)
    assert (run / "error.1.tar.gz").is_file()  # custodian backed up the failed attempt
    calls = json.loads((run / CALLS_FILE).read_text())
    assert [Path(c["reference"]).name for c in calls] == [FES2, SI]
    assert all("problems" not in c for c in calls)
    on_disk = json.loads((run / "custodian.json").read_text())
    assert on_disk[0]["corrections"][0]["errors"] == ["POTIM"]

    from pqdflow.analysis.vasp import parse_calculation

    doc = parse_calculation(run)
    assert doc.status == "ok"
    assert doc.energy_without_entropy == pytest.approx(-10.84671647, abs=1e-6)  # reference README


def test_uncorrectable_failure_raises_calculation_failed(
    vasp_reference: Path, tmp_path: Path, no_walltime_env: None
) -> None:
    run = _relax_folder(
        vasp_reference, tmp_path / "fes2", {"IBRION": 2, "POTIM": 0.5, "ALGO": "Fast"}
    )
    script = write_mock_script(tmp_path / "mock.json", [{"reference": vasp_reference / FES2}])
    settings = CustodianSettings(polling_time_step=0.05, monitor_freq=10_000, max_errors=1)
    with pytest.raises(CalculationFailed, match="Max errors"):
        run_vasp_custodian(run, vasp_cmd=_mock_cmd(script), settings=settings)
    assert len(json.loads((run / CALLS_FILE).read_text())) == 1


def _neb_folder(case: Path, run: Path) -> Path:
    run.mkdir(parents=True)
    for name in ("INCAR", "KPOINTS"):
        shutil.copyfile(case / name, run / name)
    for i in range(5):
        (run / f"{i:02d}").mkdir()
        shutil.copyfile(case / f"{i:02d}" / "POSCAR", run / f"{i:02d}" / "POSCAR")
    return run


def test_vtst_neb_end_to_end_with_per_image_validation(
    vasp_reference: Path, tmp_path: Path, no_walltime_env: None
) -> None:
    case = vasp_reference / NH3
    run = _neb_folder(case, tmp_path / "neb")
    script = write_mock_script(
        tmp_path / "mock.json",
        [
            {
                "reference": case,
                "expect_incar": {"IMAGES": 3},
                "absent_incar": ["NPAR"],
                "expect_images": 3,
            }
        ],
    )
    log = run_vasp_custodian(run, vasp_cmd=_mock_cmd(script), neb=True, settings=FAST)
    assert log[0]["corrections"] == []
    assert "NPAR" not in Incar.from_file(run / "INCAR")  # auto_npar stayed off
    assert (run / STDOUT_FILE).read_text() == (case / "stdout").read_text()
    assert NebImagesValidator().check(str(run)) is False

    from pqdflow.analysis.vasp import parse_calculation

    energies = [parse_calculation(run / f"{i:02d}").energy_without_entropy for i in (1, 2, 3)]
    assert max(energies) - energies[0] == pytest.approx(0.21572132, abs=1e-6)  # reference README


def test_per_image_checks_on_real_bad_images(vasp_reference: Path, tmp_path: Path) -> None:
    case = vasp_reference / NH3
    run = _neb_folder(case, tmp_path / "neb")
    for i in (1, 3):
        shutil.copyfile(case / f"{i:02d}" / "OUTCAR", run / f"{i:02d}" / "OUTCAR")
    # image 02: a real run that finished without reaching the force criterion
    unconverged = vasp_reference / "si_relax_ionic_unconverged_nsw5"
    for name in ("OUTCAR", "CONTCAR"):
        shutil.copyfile(unconverged / name, run / "02" / name)
    for i in (1, 3):
        shutil.copyfile(case / f"{i:02d}" / "CONTCAR", run / f"{i:02d}" / "CONTCAR")
    assert NebImagesValidator().check(str(run)) is False  # every image finished with an energy
    handler = NebImagesUnconvergedHandler(max_restarts=2)
    assert handler.check(str(run)) is True
    result = handler.correct(str(run))
    assert result["errors"] == ["neb_unconverged"]
    assert (run / "02" / "POSCAR").read_bytes() == (unconverged / "CONTCAR").read_bytes()
    assert (run / "02" / "POSCAR.restart1").read_bytes() == (case / "02" / "POSCAR").read_bytes()
    # image 02 cut off mid-run (the real truncated FeS2 OUTCAR): invalid, and no restart
    shutil.copyfile(vasp_reference / FES2 / "OUTCAR", run / "02" / "OUTCAR")
    assert NebImagesValidator().check(str(run)) is True
    assert handler.check(str(run)) is False
    # a missing image OUTCAR is invalid too
    (run / "03" / "OUTCAR").unlink()
    assert NebImagesValidator().check(str(run)) is True

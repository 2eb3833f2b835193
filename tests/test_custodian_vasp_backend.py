"""The vasp backend (inputs -> custodian -> parse) with the mock VASP on real outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ase.io import read
from pymatgen.io.vasp import Incar

from pqdflow.workflows.vasp.custodian_jobs import CustodianSettings
from pqdflow.documents.results import NebDoc, RelaxDoc
from pqdflow.workflows.testing.mock_vasp import CALLS_FILE, write_mock_script
from pqdflow.workflows.vasp.backend import RESULT_FILE, VaspBackend

SI = "si_relax_plain_small"
NH3 = "nh3_inversion_cineb_vtst"
FAST = {"polling_time_step": 0.05, "monitor_freq": 10_000, "max_errors": 2}


def _cmd(script: Path) -> list[str]:
    return [sys.executable, "-m", "pqdflow.workflows.testing.mock_vasp", str(script)]


@pytest.fixture(autouse=True)
def _no_walltime(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PBS_WALLTIME", "SBATCH_TIMELIMIT", "CUSTODIAN_WALLTIME_START"):
        monkeypatch.delenv(var, raising=False)


def _calls(directory: Path) -> list[dict[str, object]]:
    return list(json.loads((directory / CALLS_FILE).read_text()))


def test_relax_writes_pqdflow_inputs_runs_custodian_and_parses(
    vasp_reference: Path, tmp_path: Path
) -> None:
    si = read(vasp_reference / SI / "POSCAR", format="vasp")
    # the mock accepts only pqdflow's own bulk-relaxation INCAR (paper values, ISIF 3)
    script = write_mock_script(
        tmp_path / "std.json",
        [
            {
                "reference": vasp_reference / SI,
                "expect_incar": {"ENCUT": 400, "EDIFF": 1e-5, "EDIFFG": -0.02, "ISIF": 3},
                "expect_natoms": 2,
                "expect_files": ["POTCAR.spec", "KPOINTS"],
            }
        ],
    )
    backend = VaspBackend(_cmd(script), custodian=CustodianSettings(**FAST))
    run = tmp_path / "bulk-Si"
    doc = backend.relax(si, run, name="bulk-Si", kind="bulk", relax_cell=True, formula_units=2)
    assert isinstance(doc, RelaxDoc)
    assert doc.energy == pytest.approx(-10.84671647, abs=1e-6)  # reference README (E_sigma0)
    assert doc.energy_per_formula_unit == pytest.approx(-10.84671647 / 2, abs=1e-6)
    assert doc.converged is True
    assert doc.n_steps == 3
    assert doc.backend == "vasp"
    assert RelaxDoc.read(run / RESULT_FILE) == doc
    assert len(read(run / "final.extxyz")) == 2
    assert len(_calls(run)) == 1
    # a relaunch finds the finished, converged run and does not run VASP again
    again = backend.relax(si, run, name="bulk-Si", kind="bulk", relax_cell=True, formula_units=2)
    assert again.energy == doc.energy
    assert len(_calls(run)) == 1


def test_molecules_use_the_gamma_only_command(vasp_reference: Path, tmp_path: Path) -> None:
    nh3 = read(vasp_reference / NH3 / "00" / "POSCAR", format="vasp")
    std = write_mock_script(tmp_path / "std.json", [{"reference": vasp_reference / SI}])
    gam = write_mock_script(
        tmp_path / "gam.json", [{"reference": vasp_reference / SI, "expect_natoms": 4}]
    )
    backend = VaspBackend(_cmd(std), _cmd(gam), custodian=CustodianSettings(**FAST))
    run = tmp_path / "mol"
    backend.relax(nh3, run, name="mol", kind="molecule")
    assert [c["script"] for c in _calls(run)] == [str(gam.resolve())]
    kpoints = (run / "KPOINTS").read_text().splitlines()
    assert kpoints[2:4] == ["Gamma", "1 1 1"]


def test_neb_from_relaxed_endpoints_on_the_real_vtst_band(
    vasp_reference: Path, tmp_path: Path
) -> None:
    case = vasp_reference / NH3
    initial = read(case / "00" / "POSCAR", format="vasp")
    final = read(case / "04" / "POSCAR", format="vasp")
    script = write_mock_script(
        tmp_path / "neb.json",
        [
            {
                "reference": case,
                "expect_incar": {"IMAGES": 3, "IBRION": 3, "LCLIMB": True, "ENCUT": 400},
                "absent_incar": ["NPAR"],
                "expect_images": 3,
                "expect_natoms": 4,
            }
        ],
    )
    backend = VaspBackend(_cmd(script), custodian=CustodianSettings(**FAST))
    # The reference band has no endpoint outputs; for this test the endpoint energies are
    # taken equal to image 01's energy(sigma->0), so the barrier is max - E(01).
    e_end = -19.49550593
    run = tmp_path / "neb"
    doc = backend.neb(
        initial,
        final,
        run,
        path="neb-nh3",
        label="bulk",
        n_images=3,
        e_initial=e_end,
        e_final=e_end,
        initial_name="a",
        final_name="b",
        meta={"host": "bulk"},
    )
    assert isinstance(doc, NebDoc)
    assert doc.image_energies[1:4] == pytest.approx(
        [-19.49550593, -19.27978461, -19.49550730], abs=1e-6
    )
    assert doc.Ea_eV == pytest.approx(0.21572132, abs=1e-6)  # reference README
    assert doc.climbing_index == 2
    assert doc.converged is True
    assert doc.n_steps == 23
    assert NebDoc.read(run / RESULT_FILE) == doc
    assert "NPAR" not in Incar.from_file(run / "INCAR")
    assert len(read(run / "band.extxyz", index=":")) == 5

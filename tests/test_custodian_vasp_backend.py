"""The vasp backend (inputs -> custodian -> parse) with the mock VASP on real outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from ase import Atoms
from ase.io import read, write
from pymatgen.io.vasp import Incar

from pqdflow.documents.plan import CalcSpec, NebSpec
from pqdflow.documents.results import NebDoc, RelaxDoc
from pqdflow.workflows.testing.mock_vasp import CALLS_FILE, write_mock_script
from pqdflow.workflows.vasp.backend import RESULT_FILE, VaspBackend
from pqdflow.workflows.vasp.custodian_jobs import CustodianSettings

SI = "si_relax_plain_small"
NH3 = "nh3_inversion_cineb_vtst"
FAST = {"polling_time_step": 0.05, "monitor_freq": 10_000, "max_errors": 2}


def _cmd(script: Path) -> list[str]:
    return [sys.executable, "-m", "pqdflow.workflows.testing.mock_vasp", str(script)]


@pytest.fixture(autouse=True)
def _no_walltime(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PBS_WALLTIME", "SBATCH_TIMELIMIT", "CUSTODIAN_WALLTIME_START"):
        monkeypatch.delenv(var, raising=False)


def endpoint_doc(name: str, atoms: Atoms, energy: float, folder: Path) -> RelaxDoc:
    """A finished "relaxation" of an NEB endpoint: its structure file and energy."""
    folder.mkdir()
    write(folder / "final.extxyz", atoms, format="extxyz")
    return RelaxDoc(
        name=name,
        backend="vasp",
        kind="bulk",
        energy=energy,
        formula_units=1,
        energy_per_formula_unit=energy,
        fmax=0.0,
        converged=True,
        n_steps=1,
        n_force_calls=1,
        formula=atoms.get_chemical_formula(),
        cell=atoms.cell[:].tolist(),
        directory=str(folder),
        role="neb_initial",
    )


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
    spec = CalcSpec("bulk-Si", "bulk", si, relax_cell=True, formula_units=2)
    doc = backend.relax(spec, run)
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
    again = backend.relax(spec, run)
    assert again.energy == doc.energy
    assert len(_calls(run)) == 1


def test_molecules_use_the_gamma_only_command(vasp_reference: Path, tmp_path: Path) -> None:
    # a Si2 "molecule": the real Si outputs then hold the same atoms as the inputs
    si2 = read(vasp_reference / SI / "POSCAR", format="vasp")
    std = write_mock_script(tmp_path / "std.json", [{"reference": vasp_reference / SI}])
    gam = write_mock_script(
        tmp_path / "gam.json", [{"reference": vasp_reference / SI, "expect_natoms": 2}]
    )
    backend = VaspBackend(_cmd(std), _cmd(gam), custodian=CustodianSettings(**FAST))
    run = tmp_path / "mol"
    backend.relax(CalcSpec("mol", "molecule", si2), run)
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
    ends = [endpoint_doc(n, a, e_end, tmp_path / n) for n, a in (("a", initial), ("b", final))]
    spec = NebSpec("neb-nh3", "bulk", "a", "b", n_images=3, hopping_index=0, meta={"charge": 0})
    doc = backend.neb(spec, *ends, run)
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


def test_outputs_of_other_atoms_are_refused(vasp_reference: Path, tmp_path: Path) -> None:
    """Outputs that do not hold the input atoms (here: Si outputs for NH3) never become a
    relaxed structure of the plan."""
    from pqdflow.errors import CalculationFailed

    nh3 = read(vasp_reference / NH3 / "00" / "POSCAR", format="vasp")
    gam = write_mock_script(tmp_path / "gam.json", [{"reference": vasp_reference / SI}])
    backend = VaspBackend(_cmd(gam), custodian=CustodianSettings(**FAST))
    with pytest.raises(CalculationFailed, match=r"hold Si2 \(2 atoms\) but the inputs were H3N"):
        backend.relax(CalcSpec("mol", "molecule", nh3), tmp_path / "mol")
    assert not (tmp_path / "mol" / RESULT_FILE).exists()


def test_relaxed_structure_comes_back_in_the_plan_order() -> None:
    """POSCAR groups atoms by element; the plan's indices (a hopping halide) must survive."""
    import numpy as np
    from ase.constraints import FixAtoms

    from pqdflow.workflows.vasp.backend import in_plan_order
    from pqdflow.workflows.vasp.kpoints import poscar_order

    planned = Atoms(
        "CsBrPbBrCsBr",
        positions=np.arange(18, dtype=float).reshape(6, 3),
        cell=np.eye(3) * 10,
        pbc=True,
    )
    planned.set_constraint(FixAtoms(indices=[2]))
    written = planned[poscar_order(planned)]
    assert written.get_chemical_symbols() == ["Cs", "Cs", "Br", "Br", "Br", "Pb"]
    written.positions += 0.5  # "relaxed"
    back = in_plan_order(written, planned)
    assert back.get_chemical_symbols() == planned.get_chemical_symbols()
    np.testing.assert_allclose(back.positions, planned.positions + 0.5)
    assert back.constraints[0].index.tolist() == [2]

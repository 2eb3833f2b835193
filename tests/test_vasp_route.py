"""The VASP route end to end with a fake VASP that computes (issue 11).

* The fake's outputs (mock pair potential: plumbing, not physics) parse with pqdflow's,
  pymatgen's and custodian's readers, and custodian runs it like VASP.
* ``pqdflow run STUDY --backend vasp --vasp-cmd FAKE`` (FireWorks on the embedded launchpad,
  custodian included) runs every calculation of the dry run with the dry run's INCAR and
  KPOINTS, NELECT of the charged V_Br+ cells included.
* Dry run -> real reference outputs in some folders -> ``pqdflow report``.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase.io import read
from pymatgen.io.vasp import Oszicar, Outcar, Vasprun
from pymatgen.io.vasp.outputs import UnconvergedVASPWarning

from pqdflow.analysis.neb_parse import parse_neb
from pqdflow.analysis.report import build_report
from pqdflow.analysis.vasp import parse_calculation
from pqdflow.cli import main
from pqdflow.documents.manifest import read_manifest
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.testing.fake_vasp import main as fake_main
from pqdflow.workflows.testing.fake_vasp import read_calls
from pqdflow.workflows.testing.mock_vasp import (
    EXIT_BAD_INPUT,
    copy_reference_outputs,
    read_incar,
)
from pqdflow.workflows.vasp.custodian_jobs import (
    CustodianSettings,
    NebImagesUnconvergedHandler,
    NebImagesValidator,
    run_vasp_custodian,
)

# One composition, one termination, one ligand, V_Br+ hops in bulk and at the clean surface:
# 8 relaxations and 2 three-image bands, small cells (a 1x1, 3-layer slab).
STUDY = """\
name: fakevasp
compositions: [3.0]
terminations: [PbX2]
slab: {size: [1, 1], layers: 3, vacuum: 10.0, fixed_layers: 1}
ligands: {names: [TMSBr], surfaces: []}
neb:
  x: 3.0
  bulk_supercell: [1, 1, 2]
  vacancy_charge: 1
  max_depth: 0        # top-layer in-plane hops only: one per host
  formation: false
  paths:
    - {host: bulk, n_images: 3}
    - {host: clean, n_images: 3}
"""
FAKE = [sys.executable, "-m", "pqdflow.workflows.testing.fake_vasp"]
FAST = {"polling_time_step": 0.05, "monitor_freq": 10_000, "max_errors": 2}
CHARGED_ROLES = ("neb_initial", "neb_final", "neb")
SI = "si_relax_plain_small"
SI_ENERGY = -10.84671647  # reference README: E_sigma0 of si_relax_plain_small
_ENV = ("PMG_VASP_PSP_DIR", "PBS_WALLTIME", "SBATCH_TIMELIMIT", "CUSTODIAN_WALLTIME_START")


@pytest.fixture(scope="module")
def clean_env() -> Iterator[None]:
    """No POTCAR library and no queue wall time for the module-scoped runs."""
    with pytest.MonkeyPatch.context() as mp:
        for var in _ENV:
            mp.delenv(var, raising=False)
        yield


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("study") / "study.yaml"
    path.write_text(STUDY)
    return path


@pytest.fixture(scope="module")
def dry(study: Path, clean_env: None) -> Path:
    """``pqdflow inputs STUDY --out DRY``: the dry run."""
    out = study.parent / "dry"
    assert main(["inputs", str(study), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def vasp_run(study: Path, clean_env: None) -> tuple[Path, Path]:
    """``pqdflow run STUDY --backend vasp`` with the fake: (run folder, record file)."""
    out, record = study.parent / "run", study.parent / "calls.json"
    cmd = shlex.join([*FAKE, "--record", str(record)])
    custodian = [f"--custodian={k}={v}" for k, v in FAST.items()]
    argv = ["run", str(study), "--backend", "vasp", "--vasp-cmd", cmd, *custodian]
    assert main([*argv, "--out", str(out), "--no-progress", "--no-plots"]) == 0
    return out, record


@pytest.fixture(autouse=True)
def _no_walltime(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _ENV[1:]:
        monkeypatch.delenv(var, raising=False)


def _copy(dry: Path, name: str, dest: Path) -> Path:
    return Path(shutil.copytree(dry / name, dest / name))


def _set_incar(folder: Path, **tags: Any) -> None:
    """Set INCAR tags (``None`` removes one)."""
    text = (folder / "INCAR").read_text().splitlines()
    lines = [ln for ln in text if ln.split("=")[0].strip() not in tags]
    lines += [f"{k} = {v}" for k, v in tags.items() if v is not None]
    (folder / "INCAR").write_text("\n".join(lines) + "\n")


def _outcar_nelect(outcar: Path) -> float:
    found = re.findall(r"NELECT = +(\S+) +total number of electrons", outcar.read_text())
    assert len(found) == 1
    return float(found[0])


def _free(folder: Path) -> np.ndarray:
    lines = (folder / "POSCAR").read_text().splitlines()
    body = lines[9 : 9 + sum(int(t) for t in lines[6].split())]
    return np.array([any(t == "T" for t in r.split()[3:6]) for r in body])


def _mock(atoms: Any) -> tuple[float, np.ndarray]:
    atoms.calc = MockPairCalculator()
    return float(atoms.get_potential_energy()), atoms.get_forces(apply_constraint=False)


# ------------------------------------------------------------------ the fake's outputs
def test_relaxation_outputs_parse_with_pqdflow_pymatgen(dry: Path, tmp_path: Path) -> None:
    # a charged V_Br+ slab endpoint: selective dynamics, NELECT, EDIFFG -0.01
    run = _copy(dry, "neb-clean-x3-VBr0-Br0-inplane-initial", tmp_path)
    record = tmp_path / "calls.json"
    assert fake_main(["--directory", str(run), "--record", str(record)]) == 0
    incar = read_incar(run / "INCAR")
    doc = parse_calculation(run)
    assert doc.status == "ok"
    assert doc.finished
    assert doc.converged_ionic
    assert doc.converged_electronic
    assert doc.parameters.functional == "PBE"
    assert doc.parameters.encut == incar["ENCUT"]
    assert doc.parameters.ediffg == incar["EDIFFG"] == -0.01
    # the energy and forces are the mock's on the final structure (CONTCAR)
    final = read(run / "CONTCAR", format="vasp")
    energy, forces = _mock(final)
    assert doc.energy_sigma0 == pytest.approx(energy, abs=1e-6)
    assert doc.energy_sigma0 == doc.energy_without_entropy == doc.free_energy
    assert np.allclose(doc.forces, forces, atol=1e-5)
    free = _free(run)
    assert 0 < free.sum() < len(free)
    norms = np.linalg.norm(forces, axis=1)
    assert doc.max_force == pytest.approx(norms[free].max(), abs=1e-5)
    assert doc.max_force <= 0.01
    assert doc.max_force_all_atoms == pytest.approx(norms.max(), abs=1e-5)
    # the record says what ran and what it gave
    (call,) = read_calls(record)
    assert call["directory"] == str(run.resolve())
    assert call["incar"] == incar
    assert call["natoms"] == len(final)
    assert call["kpoints"] == (run / "KPOINTS").read_text()
    assert call["n_ionic_steps"] == doc.n_ionic_steps > 1
    assert call["energies"][-1] == pytest.approx(doc.energy_sigma0, abs=1e-6)
    assert call["energies"][-1] < call["energies"][0]  # BFGS went downhill
    # NELECT where VASP prints it
    assert "NELECT" in incar
    assert _outcar_nelect(run / "OUTCAR") == incar["NELECT"]
    vasprun = Vasprun(str(run / "vasprun.xml"))
    assert vasprun.converged
    assert vasprun.parameters["NELECT"] == incar["NELECT"]
    assert len(vasprun.ionic_steps) == doc.n_ionic_steps
    assert vasprun.final_energy == pytest.approx(doc.energy_sigma0, abs=1e-6)
    assert vasprun.final_structure.lattice.matrix == pytest.approx(final.cell[:], abs=1e-6)
    outcar = Outcar(str(run / "OUTCAR"))
    assert outcar.final_energy == pytest.approx(doc.energy_sigma0, abs=1e-6)
    assert outcar.nelect == incar["NELECT"]
    assert Oszicar(str(run / "OSZICAR")).final_energy == pytest.approx(energy, abs=1e-6)


def test_cell_relaxation_isif3_relaxes_a_strained_cell(dry: Path, tmp_path: Path) -> None:
    run = _copy(dry, "bulk-x3", tmp_path)
    lines = (run / "POSCAR").read_text().splitlines()
    lines[1] = "1.04"  # stretch the cell by 4 %
    (run / "POSCAR").write_text("\n".join(lines) + "\n")
    assert read_incar(run / "INCAR")["ISIF"] == 3
    assert fake_main(["--directory", str(run)]) == 0
    vasprun = Vasprun(str(run / "vasprun.xml"))
    first, last = vasprun.ionic_steps[0], vasprun.ionic_steps[-1]
    assert last["structure"].volume < 0.95 * first["structure"].volume
    pressure = [abs(np.trace(s["stress"])) / 3 for s in (first, last)]
    assert pressure[1] < 0.05 * pressure[0]
    contcar = read(run / "CONTCAR", format="vasp")
    assert contcar.get_volume() == pytest.approx(last["structure"].volume, rel=1e-6)
    assert parse_calculation(run).status == "ok"


def test_nsw_reached_is_an_unconverged_run(dry: Path, tmp_path: Path) -> None:
    run = _copy(dry, "slab-PbX2-x3", tmp_path)
    _set_incar(run, NSW=2, EDIFFG=-0.0001)
    assert fake_main(["--directory", str(run)]) == 0
    doc = parse_calculation(run)
    assert doc.status == "unconverged"
    assert doc.n_ionic_steps == 2
    assert doc.converged_ionic is False
    assert "reached required accuracy" not in (run / "OUTCAR").read_text()
    with pytest.warns(UnconvergedVASPWarning):
        vasprun = Vasprun(str(run / "vasprun.xml"), parse_potcar_file=False)
    assert vasprun.converged_ionic is False
    # a neutral cell: no NELECT tag, the neutral count from the POTCAR valences
    assert "NELECT" not in read_incar(run / "INCAR")
    assert _outcar_nelect(run / "OUTCAR") == 2 * 14 + 5 * 7 + 9  # Pb_d, Br, Cs_sv


def _tangent(outcar: str, n_atoms: int) -> np.ndarray:
    rows = outcar.split(" NEB: Tangent\n")[1].splitlines()[1 : 1 + n_atoms]
    return np.array([[float(x) for x in r.split()] for r in rows])


def test_neb_single_points_in_vtst_format(dry: Path, tmp_path: Path) -> None:
    run = _copy(dry, "neb-clean-x3-VBr0-Br0-inplane", tmp_path)
    assert fake_main(["--directory", str(run)]) == 0
    band = [read(run / f"{k:02d}" / "POSCAR", format="vasp") for k in range(5)]
    energies = [_mock(a)[0] for a in band]
    free = _free(run / "01")
    for k in (1, 2, 3):
        image = run / f"{k:02d}"
        doc = parse_calculation(image)
        assert doc.status == "ok"
        assert doc.n_ionic_steps == 1
        assert doc.energy_sigma0 == pytest.approx(energies[k], abs=1e-6)
        assert doc.neb is not None
        assert doc.neb["lclimb"] is True
        assert doc.neb["previous_higher"] == (energies[k - 1] > energies[k])
        assert doc.neb["next_higher"] == (energies[k + 1] > energies[k])
        text = (image / "OUTCAR").read_text()
        tangent = _tangent(text, len(band[k]))
        assert np.linalg.norm(tangent) == pytest.approx(1.0, abs=1e-4)
        forces = np.array(doc.forces) * free[:, None]
        assert doc.neb["tangential_force"] == pytest.approx(np.sum(forces * tangent), abs=1e-4)
        if energies[k - 1] < energies[k] < energies[k + 1]:  # uphill: the tangent points ahead
            step = band[k + 1].positions - band[k].positions
            assert tangent == pytest.approx(step / np.linalg.norm(step), abs=1e-4)
        assert "single points on the input band" in text
    for endpoint in ("00", "04"):
        assert not (run / endpoint / "OUTCAR").exists()
    neb = parse_neb(run, endpoint_energies=(energies[0], energies[4]))
    assert neb.status == "ok"
    assert neb.climbing_image == 1 + int(np.argmax(energies[1:4]))
    assert neb.barrier is not None
    assert neb.barrier["forward"] == pytest.approx(max(energies[1:4]) - energies[0], abs=1e-6)
    assert NebImagesValidator().check(str(run)) is False
    assert NebImagesUnconvergedHandler().check(str(run)) is False


def test_custodian_runs_the_fake_like_vasp(dry: Path, tmp_path: Path) -> None:
    record = tmp_path / "calls.json"
    cmd = [*FAKE, "--record", str(record)]
    settings = CustodianSettings(**FAST)
    relax = _copy(dry, "slab-PbX2-x3", tmp_path)
    band = _copy(dry, "neb-bulk-x3-VBr-Br-bulk-a", tmp_path)
    log = run_vasp_custodian(relax, vasp_cmd=cmd, settings=settings)
    log += run_vasp_custodian(band, vasp_cmd=cmd, neb=True, settings=settings)
    assert [entry["corrections"] for entry in log] == [[], []]
    stdout = (relax / "vasp.out").read_text()
    assert re.search(r"^ +\d+ F= ", stdout, re.M)
    assert "reached required accuracy" in stdout
    assert parse_calculation(relax).status == "ok"
    assert parse_neb(band, endpoint_energies=(0.0, 0.0)).status == "ok"
    assert [(Path(c["directory"]).name, c["kind"]) for c in read_calls(record)] == [
        ("slab-PbX2-x3", "relax"),
        ("neb-bulk-x3-VBr-Br-bulk-a", "neb"),
    ]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda run: (run / "KPOINTS").unlink(), "KPOINTS"),
        (lambda run: (run / "POTCAR.spec").write_text("Pb_d\nBr\n"), "2 POTCAR(s)"),
        (lambda run: _set_incar(run, ISIF=4), "ISIF = 4"),
        (lambda run: _set_incar(run, ENCUT=None), "ENCUT"),
    ],
)
def test_bad_inputs_are_refused_before_any_output(
    dry: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], damage: Any, message: str
) -> None:
    run = _copy(dry, "slab-PbX2-x3", tmp_path)
    damage(run)
    record = tmp_path / "calls.json"
    assert fake_main(["--directory", str(run), "--record", str(record)]) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
    assert not any((run / n).exists() for n in ("OUTCAR", "CONTCAR", "vasprun.xml", "OSZICAR"))
    assert message in read_calls(record)[0]["error"]


# ------------------------------------------------------------------ issue 11
def _dipol(value: str) -> list[float]:
    return [float(x) for x in value.split()]


def test_pqdflow_run_vasp_writes_the_dry_run_inputs(dry: Path, vasp_run: tuple[Path, Path]) -> None:
    out, record = vasp_run
    manifest = read_manifest(dry)
    calls = read_calls(record)
    ran = Counter(Path(c["directory"]).name for c in calls)
    assert set(ran) == {e.name for e in manifest.calculations}  # every calculation and NEB ...
    assert set(ran.values()) == {1}  # ... ran once
    for call in calls:
        entry = manifest.entry(Path(call["directory"]).name)
        assert entry is not None
        expected = read_incar(dry / entry.path / "INCAR")
        got = dict(call["incar"])
        assert sorted(got) == sorted(expected), entry.name
        # DIPOL is the centre of the structure VASP starts from: the run's NEB final endpoint
        # starts from the relaxed initial one and its band from relaxed endpoints
        if "DIPOL" in expected:
            assert _dipol(got.pop("DIPOL")) == pytest.approx(
                _dipol(expected.pop("DIPOL")), abs=0.02
            )
        assert got == expected, entry.name
        assert call["kpoints"] == (dry / entry.path / "KPOINTS").read_text(), entry.name
        folder = Path(call["directory"])
        outcars = (
            [folder / "OUTCAR"] if entry.kind != "neb" else sorted(folder.glob("0[1-3]/OUTCAR"))
        )
        if entry.role in CHARGED_ROLES:  # V_Br+ cells: NELECT = neutral - 1, also in the outputs
            assert isinstance(expected["NELECT"], float), entry.name
            assert [_outcar_nelect(o) for o in outcars] == [expected["NELECT"]] * len(outcars)
        else:
            assert "NELECT" not in expected, entry.name
    results = json.loads((out / "results.json").read_text())
    assert results["failed"] == []
    calcs = {c["name"]: c for c in results["calculations"]}
    assert set(calcs) == {e.name for e in manifest.calculations if e.kind != "neb"}
    assert all(c["converged"] and c["backend"] == "vasp" for c in calcs.values())
    for c in calcs.values():
        assert c["energy"] == pytest.approx(parse_calculation(c["directory"]).energy_sigma0)
    assert sorted(n["path"] for n in results["neb"]) == sorted(n.name for n in manifest.nebs)
    assert all(n["converged"] and n["climbing_index"] for n in results["neb"])
    (binding,) = results["binding"]
    (spec,) = manifest.bindings
    per_fu = {n: c["energy"] / c["formula_units"] for n, c in calcs.items()}
    expected_eb = (
        per_fu[spec.adsorbed]
        - per_fu[spec.slab]
        - sum(m * per_fu[n] for n, m in spec.ligands.items())
    )
    assert binding["E_b_eV"] == pytest.approx(expected_eb, abs=1e-8)


# ------------------------------------------------------------------ reports
def test_report_of_a_dry_run_with_real_reference_outputs(
    dry: Path, vasp_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = Path(shutil.copytree(dry, tmp_path / "tree"))
    done = ["slab-PbX2-x3", "ligand-TMSBr"]
    for name in done:
        assert "OUTCAR" in copy_reference_outputs(vasp_reference / SI, tree / name)
    assert main(["report", str(tree), "--no-plots"]) == 0
    assert "binding-TMSBr-PbX2-x3" in capsys.readouterr().out
    report = json.loads((tree / "report.json").read_text())
    rows = {r["name"]: r for r in report["calculations"]}
    assert set(rows) == {e.name for e in read_manifest(tree).calculations if e.kind != "neb"}
    for name, row in rows.items():
        if name in done:
            assert (row["status"], row["energy_eV"]) == ("ok", pytest.approx(SI_ENERGY, abs=1e-6))
            assert row["encut_eV"] == 520.0  # what the reference run used, not our INCAR
        else:  # folders that hold only inputs
            assert (row["status"], row["energy_eV"]) == ("no_output", None)
    (binding,) = report["bindings"]
    assert (binding["status"], binding["E_b_eV"]) == ("missing", None)
    assert "ads-TMSBr-PbX2-x3" in binding["note"]
    assert {n["status"] for n in report["nebs"]} <= {"missing", "incomplete"}
    assert all(n["forward_barrier_eV"] is None for n in report["nebs"])


def test_report_of_a_pqdflow_run_folder(vasp_run: tuple[Path, Path]) -> None:
    """``pqdflow report`` reads a run folder through the manifest the run wrote."""
    out, _ = vasp_run
    report = build_report(out)
    results = json.loads((out / "results.json").read_text())
    energies = {c["name"]: c["energy"] for c in results["calculations"]}
    assert {r["name"]: r["energy_eV"] for r in report.calculations} == energies
    assert all(r["status"] == "ok" for r in report.calculations + report.nebs)
    # the same binding energy as the run, recomputed with the same atom-balanced reaction
    (binding,) = report.bindings
    assert binding["E_b_eV"] == pytest.approx(results["binding"][0]["E_b_eV"], abs=1e-9)
    assert binding["balanced"] is True


# ------------------------------------------------------------------ pqdflow run --custodian
@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "mock", "--custodian", "max_errors=2"], "--custodian needs --backend vasp"),
        (["--backend", "vasp", "--custodian", "polling=1"], "polling_time_step"),
        (["--backend", "vasp", "--custodian", "max_errors=1.5"], "whole number"),
        (["--backend", "vasp", "--custodian", "polling_time_step=0"], "polling_time_step must be"),
    ],
)
def test_bad_custodian_options_are_refused(
    study: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(study), *extra, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()

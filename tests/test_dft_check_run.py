"""DFT check of a finished ML run folder: CLI, binding reactions, FireWorks and VASP routes.

The "ML" run is the mock backend on a small hand-made plan (an NH3 + HBr -> NH3.HBr reaction
of molecules and a V_Br+ hop in bulk CsPbBr3); the "DFT" stand-in is the mock pair
potential with other parameters (plumbing: two energy surfaces, not physics), or the same
mock (then DFT must reproduce the ML energies at the ML geometries). One GPAW test runs the
molecule reaction at a reduced cutoff.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import Calculator
from ase.io import read
from pymatgen.io.vasp.inputs import Incar

from pqdflow.cli import main
from pqdflow.documents.plan import BindingSpec, CalcSpec, NebSpec, StudyPlan
from pqdflow.documents.results import RelaxDoc
from pqdflow.errors import BackendError, InputError, OverwriteError
from pqdflow.structures.bulk import build_bulk
from pqdflow.structures.defects import build_neb_endpoints
from pqdflow.workflows.backends import get_backend
from pqdflow.workflows.engine.ase_backend import AseBackend
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.engine.dft_check_run import (
    REPORT_FILE,
    VaspSinglePoints,
    image_step_name,
    plan_dft_check,
    run_dft_check,
)
from pqdflow.workflows.engine.runner import run_study
from pqdflow.workflows.engine.single_point import single_point_calculation

HAVE_GPAW = importlib.util.find_spec("gpaw") is not None
NEB = "neb-bulk"
BINDING = "binding-HBr-NH3"


def boxed(atoms: Atoms, edge: float = 8.0) -> Atoms:
    out = atoms.copy()
    out.set_cell([edge] * 3)
    out.set_pbc(True)
    out.center()
    return out


def check_plan() -> StudyPlan:
    nh3 = molecule("NH3")
    hbr = Atoms("HBr", positions=[(0, 0, 0), (0, 0, 1.42)])
    pair = nh3.copy()
    pair += Atoms("HBr", positions=[(0, 0, 2.6), (0, 0, 4.0)])  # N...H-Br
    host = build_bulk("Br", a=5.945).repeat(2)
    host.rattle(0.03, seed=0)
    br = [i for i, s in enumerate(host.get_chemical_symbols()) if s == "Br"]
    d = host.get_distances(br[0], br, mic=True)
    hop = br[int(np.argmin(np.where(d > 0.1, d, np.inf)))]
    initial, final = build_neb_endpoints(host, vacancy_index=br[0], hop_index=hop)
    meta = {"charge": 1}
    return StudyPlan(
        name="check",
        calculations=[
            CalcSpec("mol-NH3", "molecule", boxed(nh3)),
            CalcSpec("ligand-HBr", "molecule", boxed(hbr), role="ligand_reference"),
            CalcSpec("ads-NH3HBr", "molecule", boxed(pair)),
            CalcSpec("neb-i", "bulk", initial, role="neb_initial", meta=meta),
            CalcSpec("neb-f", "bulk", final, role="neb_final", meta=meta),
        ],
        bindings=[BindingSpec(BINDING, "HBr", "N", "ads-NH3HBr", "mol-NH3", {"ligand-HBr": 1.0})],
        nebs=[
            NebSpec(NEB, "bulk", "neb-i", "neb-f", 3, initial.info["neb"]["hopping_index"], meta)
        ],
    )


@pytest.fixture(scope="module")
def ml_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ml-run")
    run_study(check_plan(), get_backend("mock"), out, progress=False, plots=False, echo=False)
    return out


def other_surface() -> Calculator:
    return MockPairCalculator(ionic_depth=0.5, repulsion=0.06, contact_depth=0.3)


def stand_in(seen: list[tuple[int, str, int]] | None = None) -> AseBackend:
    """A "DFT" backend: the mock pair potential with other parameters, built per cell as
    GPAW's calculators are (``seen`` records each cell's atom count, kind and charge)."""

    def cell(atoms: Atoms, kind: str, charge: int) -> Callable[[], Calculator]:
        if seen is not None:
            seen.append((len(atoms), kind, charge))
        return other_surface

    return AseBackend("mock-dft", other_surface, cell_factory=cell)


class Refusing(AseBackend):
    """A backend that fails if asked to compute anything."""

    def __init__(self, name: str = "mock-dft") -> None:
        super().__init__(name, other_surface)

    def single_point(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        raise AssertionError(f"finished single point {spec.name} was recomputed")


def energy_of(atoms: Atoms) -> float:
    work = atoms.copy()
    work.calc = other_surface()
    return float(work.get_potential_energy())


def test_check_of_a_band_and_a_reaction(ml_run: Path, tmp_path: Path) -> None:
    plan = plan_dft_check(ml_run, nebs=[NEB], bindings=[BINDING])
    structures = {s.name: s.spec.atoms for s in plan.steps if s.kind == "single_point"}
    seen: list[tuple[int, str, int]] = []
    report = run_dft_check(
        ml_run, stand_in(seen), nebs=[NEB], bindings=[BINDING], check_dir=tmp_path, max_atoms=None
    )
    # every V_Br+ image reaches the calculator with its charge; the molecules neutral
    assert (
        sorted(seen)
        == [(2, "molecule", 0), (4, "molecule", 0), (6, "molecule", 0)] + [(39, "bulk", 1)] * 3
    )
    ml = json.loads((ml_run / "results.json").read_text())
    # binding: the same atom-balanced reaction, with the stand-in's energies on ML geometries
    (row,) = report.bindings
    e = {n: energy_of(structures[n]) for n in ("ads-NH3HBr", "mol-NH3", "ligand-HBr")}
    expected = e["ads-NH3HBr"] - e["mol-NH3"] - e["ligand-HBr"]
    assert row["dft_E_b_eV"] == pytest.approx(expected, abs=1e-9)
    assert row["ml_E_b_eV"] == pytest.approx(ml["binding"][0]["E_b_eV"])
    assert row["difference_eV"] == pytest.approx(row["ml_E_b_eV"] - row["dft_E_b_eV"])
    assert row["balanced"] is True
    ads = row["terms"]["ads-NH3HBr"]
    assert ads["dft_eV"] == pytest.approx(e["ads-NH3HBr"])
    assert abs(ads["dft_eV"] - ads["ml_eV"]) > 1e-3  # computed on the other surface
    # band: initial, highest and final image of the ML band
    (neb,) = report.nebs
    band = next(n for n in ml["neb"] if n["path"] == NEB)
    assert neb["labels"] == ["initial", "saddle", "final"]
    assert neb["ml_barrier"] == pytest.approx(band["Ea_eV"])
    images = [structures[image_step_name(NEB, x)] for x in ("initial", "saddle", "final")]
    dft = [energy_of(a) for a in images]
    assert neb["dft_barrier"] == pytest.approx(max(dft) - dft[0], abs=1e-9)
    assert neb["difference"] == pytest.approx(neb["ml_barrier"] - neb["dft_barrier"])
    assert abs(neb["difference"]) > 1e-3  # two different surfaces, two barriers
    # the vacancy cells' charge reaches every image's single point
    saddle = RelaxDoc.read(
        tmp_path / "single_points" / image_step_name(NEB, "saddle") / "result.json"
    )
    assert saddle.settings["charge"] == 1
    assert saddle.settings["single_point"] is True
    assert saddle.n_steps == 0
    summary = json.loads((tmp_path / REPORT_FILE).read_text())
    assert summary["bindings"][0]["dft_E_b_eV"] == pytest.approx(expected)
    table = (tmp_path / "dft_check.md").read_text()
    assert BINDING in table
    assert NEB in table
    # restart: everything is read back, nothing recomputed, same numbers
    again = run_dft_check(
        ml_run, Refusing(), nebs=[NEB], bindings=[BINDING], check_dir=tmp_path, max_atoms=None
    )
    assert again.bindings[0]["dft_E_b_eV"] == row["dft_E_b_eV"]
    # another DFT backend or other settings in the same folder: refused, not mixed
    with pytest.raises(OverwriteError, match="check-dir"):
        run_dft_check(ml_run, Refusing("other"), nebs=[NEB], check_dir=tmp_path, max_atoms=None)


def test_size_guard_and_bad_choices_stop_before_anything_runs(ml_run: Path, tmp_path: Path) -> None:
    check = tmp_path / "check"
    with pytest.raises(InputError, match=r"--max-atoms.*") as info:
        run_dft_check(ml_run, Refusing(), nebs=[NEB], check_dir=check, max_atoms=20)
    assert "39 atoms" in str(info.value)
    assert "--launchpad" in str(info.value)
    assert not check.exists()
    # molecules fit: the reaction alone runs under the same limit
    run_dft_check(ml_run, stand_in(), bindings=[BINDING], check_dir=check, max_atoms=20)
    with pytest.raises(InputError, match="neb-bulk"):
        plan_dft_check(ml_run, nebs=["neb-nope"])
    with pytest.raises(InputError, match="choose what to check"):
        plan_dft_check(ml_run)
    with pytest.raises(BackendError, match="vasp-dry"):
        single_point_calculation(CalcSpec("x", "molecule", Atoms("H2")), object(), tmp_path / "x")


def test_cli_same_potential_reproduces_the_ml_numbers(
    ml_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DFT = the ML potential itself: single points at the ML geometries give the ML
    binding energy and barrier back (geometries, charge, formula units, atom balance)."""
    check = tmp_path / "same"
    argv = ["dft-check", "--out", str(ml_run), "--neb", NEB, "--binding", BINDING]
    argv += ["--backend", "mock", "--check-dir", str(check)]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert f"| {BINDING} |" in out
    assert "[1/6]" in err
    summary = json.loads((check / REPORT_FILE).read_text())
    assert summary["bindings"][0]["difference_eV"] == pytest.approx(0.0, abs=1e-5)
    assert summary["nebs"][0]["difference"] == pytest.approx(0.0, abs=1e-5)
    assert main(argv) == 0  # rerun: read back
    assert "reused" in capsys.readouterr().err
    assert main([*argv[:-2], "--check-dir", str(check), "--encut", "300"]) == 2  # gpaw only
    assert "--encut" in capsys.readouterr().err
    assert main(["dft-check", "--out", str(tmp_path), "--neb", NEB, "--backend", "mock"]) == 2
    assert "results.json" in capsys.readouterr().err


def test_fireworks_route_then_read_back(ml_run: Path, tmp_path: Path) -> None:
    from pqdflow.workflows.fireworks.builder import add_workflow_once
    from pqdflow.workflows.fireworks.dft_check import build_dft_check_workflow
    from pqdflow.workflows.fireworks.launchpad import launch_rapidfire, open_embedded_launchpad

    check = tmp_path / "check"
    plan = plan_dft_check(ml_run, nebs=[NEB], bindings=[BINDING])
    wf = build_dft_check_workflow(plan, "mock", check, category=None)
    kinds = sorted(fw.spec["_pqdflow"]["kind"] for fw in wf.fws)
    assert kinds == ["binding"] + ["single_point"] * 6
    with open_embedded_launchpad(tmp_path / "fw.json") as lp:
        fw_id, added = add_workflow_once(lp, wf)
        assert added
        assert launch_rapidfire(lp, tmp_path / "launches") == 7
        assert add_workflow_once(lp, build_dft_check_workflow(plan, "mock", check)) == (
            fw_id,
            False,
        )
        stored = lp.launches.find_one({"action.stored_data.pqdflow_kind": "binding"})
    fw_binding = stored["action"]["stored_data"]["pqdflow_doc"]["E_b_eV"]
    # the local command reads the Fireworks' single points back and computes nothing
    report = run_dft_check(
        ml_run, Refusing("mock"), nebs=[NEB], bindings=[BINDING], check_dir=check, max_atoms=10
    )
    assert report.bindings[0]["dft_E_b_eV"] == pytest.approx(fw_binding)
    assert report.nebs[0]["difference"] == pytest.approx(0.0, abs=1e-5)


def test_vasp_single_points_written_then_parsed(ml_run: Path, tmp_path: Path) -> None:
    from pqdflow.workflows.testing.fake_vasp import run_fake_vasp

    vasp = VaspSinglePoints({"kpoint_density": 25.0})
    report = run_dft_check(ml_run, vasp, nebs=[NEB], bindings=[BINDING], check_dir=tmp_path)
    assert len(report.pending) == 6
    assert report.bindings[0]["dft_E_b_eV"] is None
    saddle = tmp_path / "single_points" / image_step_name(NEB, "saddle")
    incar = Incar.from_file(saddle / "INCAR")
    assert (incar["NSW"], incar["IBRION"], incar["ENCUT"]) == (0, -1, 400.0)
    # V_Br+ (39 atoms): one electron fewer than the neutral cell's POTCAR valences
    valence = {"Cs": 9, "Pb": 14, "Br": 7}
    cell = read(saddle / "POSCAR", format="vasp")
    neutral = sum(valence[s] for s in cell.get_chemical_symbols())
    assert incar["NELECT"] == neutral - 1
    for folder in sorted((tmp_path / "single_points").iterdir()):
        run_fake_vasp(folder)  # VASP with the mock potential, in VASP's output formats
    done = run_dft_check(ml_run, vasp, nebs=[NEB], bindings=[BINDING], check_dir=tmp_path)
    assert done.pending == []
    # the fake VASP computes the ML run's own potential: ML - DFT vanishes
    assert done.bindings[0]["difference_eV"] == pytest.approx(0.0, abs=2e-3)
    assert done.nebs[0]["difference"] == pytest.approx(0.0, abs=2e-3)


@pytest.mark.gpaw
@pytest.mark.skipif(not HAVE_GPAW, reason="GPAW is not installed: run `make setup-gpaw`")
def test_gpaw_check_of_a_molecule_reaction(ml_run: Path, tmp_path: Path) -> None:
    gpaw = get_backend("gpaw", calculator={"ecut": 200.0, "energy_tol": 1e-4})
    report = run_dft_check(ml_run, gpaw, bindings=[BINDING], check_dir=tmp_path)
    (row,) = report.bindings
    docs = {
        n: RelaxDoc.read(tmp_path / "single_points" / n / "result.json")
        for n in ("ads-NH3HBr", "mol-NH3", "ligand-HBr")
    }
    assert {d.backend for d in docs.values()} == {"gpaw"}
    assert docs["mol-NH3"].provenance["calculator"] == "ASECalculator"  # GPAW's new one
    e = {n: d.energy for n, d in docs.items()}
    assert row["dft_E_b_eV"] == pytest.approx(e["ads-NH3HBr"] - e["mol-NH3"] - e["ligand-HBr"])
    # GPAW's energies are relative to spin-paired atoms: NH3 a few eV below its atoms
    assert -20.0 < e["mol-NH3"] < -2.0
    # the N...H-Br hydrogen bond (2.4 Å on the mock geometry) binds in PBE, weakly
    assert -1.0 < row["dft_E_b_eV"] < 0.0
    assert min(docs["mol-NH3"].meta["cpu_seconds"], docs["ligand-HBr"].meta["cpu_seconds"]) > 0


def test_cli_launchpad_route(
    ml_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--launchpad adds the Fireworks (once); after a worker ran them, the command reads the
    single points back, even over --max-atoms."""
    from pqdflow.workflows.fireworks.launchpad import launch_rapidfire, open_embedded_launchpad

    config = tmp_path / "my_launchpad.yaml"
    config.write_text("host: mongomock://localhost\nname: fw\nstore_file: store.json\n")
    with open_embedded_launchpad(tmp_path / "store.json"):
        pass  # an existing embedded store (as pqdflow run --out leaves one)
    check = tmp_path / "check"
    argv = ["dft-check", "--out", str(ml_run), "--neb", NEB, "--backend", "mock"]
    argv += ["--check-dir", str(check)]
    assert main([*argv, "--launchpad", str(config)]) == 0
    assert "3 Fireworks" in capsys.readouterr().out
    assert not check.exists()  # nothing computed here
    assert main([*argv, "--launchpad", str(config)]) == 0
    assert "nothing added" in capsys.readouterr().out
    with open_embedded_launchpad(tmp_path / "store.json") as lp:
        lp.fireworks.update_many({}, {"$unset": {"spec._category": ""}})  # any worker
        assert launch_rapidfire(lp, tmp_path / "launches") == 3
    assert main([*argv, "--max-atoms", "10"]) == 0
    err = capsys.readouterr().err
    assert err.count("reused") == 3

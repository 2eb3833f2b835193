"""GPAW backend: settings from the VASP presets, setups located offline, charge, spin, ESP.

Tests without the ``gpaw`` marker need no GPAW. ``gpaw`` tests run a tiny molecule (HBr) at
a reduced cutoff and skip with a reason when GPAW is not importable (``make setup-gpaw``);
once GPAW imports, missing PAW setups make them fail, not skip. The 400 eV map is ``slow``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from pqdflow.analysis.esp import esp_map, read_esp_cubes, read_vasp_esp, write_esp_cubes
from pqdflow.analysis.esp import write_vasp_esp_files as write_locpot_chgcar
from pqdflow.errors import BackendError, BackendNotInstalledError, InputError
from pqdflow.structures.bulk import build_bulk
from pqdflow.structures.ligands import build_ligand_reference
from pqdflow.structures.slabs import build_slab
from pqdflow.workflows.engine.gpaw_calc import (
    GpawSettings,
    check_setups,
    gpaw_calculator,
    gpaw_esp,
    gpaw_parameters,
    gpaw_setup_path,
    molecule_in_cubic_box,
)
from pqdflow.workflows.vasp.inputsets import get_input_set, load_preset

HAVE_GPAW = importlib.util.find_spec("gpaw") is not None
needs_gpaw = pytest.mark.skipif(
    not HAVE_GPAW, reason="GPAW is not installed: run `make setup-gpaw` (.ci/install_gpaw.sh)"
)
LOW = GpawSettings(ecut=200.0, energy_tol=1e-4)


def hbr() -> Atoms:
    return Atoms("HBr", positions=[(0, 0, 0), (0, 0, 1.42)])


def fake_setups(folder: Path, *symbols: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for symbol in symbols:
        (folder / f"{symbol}.PBE.gz").write_bytes(b"")
    return folder


# ------------------------------------------------------------------ settings (no GPAW)


def test_defaults_are_the_vasp_preset_values() -> None:
    base = load_preset("base")["INCAR"]
    settings = GpawSettings()
    assert settings.ecut == base["ENCUT"] == 400.0
    assert settings.energy_tol == base["EDIFF"] == 1e-5
    params = gpaw_parameters(build_bulk("Br"), kind="bulk")
    assert params["mode"] == {"name": "pw", "ecut": 400.0}
    assert params["xc"] == "PBE"
    assert params["convergence"]["energy"] == {"name": "energy", "tol": 1e-5, "relative": False}
    assert params["occupations"] == {"name": "methfessel-paxton", "width": 0.05, "order": 0}


def test_kpoints_follow_the_vasp_rule_per_kind() -> None:
    bulk = build_bulk("Br")
    slab = build_slab(x=3.0, termination="PbX2")
    molecule = molecule_in_cubic_box(hbr())
    for atoms, kind in ((bulk, "bulk"), (slab, "slab"), (molecule, "molecule")):
        params = gpaw_parameters(atoms, kind=kind)
        assert params["kpts"] == {
            "size": get_input_set(kind).kpoint_grid(atoms),
            "gamma": True,
        }
    assert gpaw_parameters(bulk, kind="bulk")["kpts"]["size"] == (4, 4, 4)
    assert gpaw_parameters(slab, kind="slab")["kpts"]["size"][2] == 1
    assert gpaw_parameters(molecule, kind="molecule")["kpts"]["size"] == (1, 1, 1)
    assert gpaw_parameters(molecule, kind="molecule")["occupations"]["width"] == 0.01
    dense = gpaw_parameters(bulk, kind="bulk", settings=GpawSettings(kpoint_density=50.0))
    assert dense["kpts"]["size"] == (9, 9, 9)  # int(50 / 5.874 + 0.5)
    gamma = gpaw_parameters(bulk, kind="bulk", settings=GpawSettings(kpts=(1, 1, 1)))
    assert gamma["kpts"]["size"] == (1, 1, 1)


def test_charge_and_spin_reach_the_parameters() -> None:
    vacancy = build_bulk("Br").repeat(2)
    del vacancy[vacancy.get_chemical_symbols().index("Br")]
    params = gpaw_parameters(vacancy, kind="bulk", charge=1)
    assert params["charge"] == 1
    assert params["spinpol"] is False
    with pytest.raises(InputError, match="odd number of electrons"):
        gpaw_parameters(vacancy, kind="bulk", charge=0)
    spin = gpaw_parameters(vacancy, kind="bulk", magmoms=[0.0] * 38 + [1.0])
    assert spin["spinpol"] is True
    assert spin["magmoms"][-1] == 1.0
    with pytest.raises(InputError, match="magmoms has 2"):
        gpaw_parameters(vacancy, kind="bulk", magmoms=[0.0, 1.0])
    with pytest.raises(InputError, match="kind"):
        gpaw_parameters(vacancy, kind="neb", charge=1)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="integer"):
        gpaw_parameters(vacancy, kind="bulk", charge=0.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [("ecut", 0), ("energy_tol", -1.0), ("mode", "lcao"), ("kpts", (1, 0, 1)), ("maxiter", 0)],
)
def test_bad_settings_are_backend_errors(field: str, value: object) -> None:
    with pytest.raises(BackendError, match=field):
        GpawSettings(**{field: value})


def test_setup_path_order_and_errors(tmp_path: Path) -> None:
    env_dir = fake_setups(tmp_path / "env", "H", "Br")
    debian = fake_setups(tmp_path / "debian", "H")
    pip = fake_setups(tmp_path / "pip", "H")
    empty = tmp_path / "empty"
    empty.mkdir()
    search = [debian, pip]
    assert gpaw_setup_path({"GPAW_SETUP_PATH": str(env_dir)}, search=search) == env_dir
    assert gpaw_setup_path({}, search=search) == debian
    assert gpaw_setup_path({}, search=[empty, pip]) == pip
    with pytest.raises(BackendNotInstalledError, match="GPAW_SETUP_PATH"):
        gpaw_setup_path({"GPAW_SETUP_PATH": str(empty)}, search=search)
    with pytest.raises(BackendNotInstalledError, match="make setup-gpaw"):
        gpaw_setup_path({}, search=[empty, tmp_path / "absent"])
    assert check_setups(env_dir, ["H", "Br", "H"]) == {
        "Br": env_dir / "Br.PBE.gz",
        "H": env_dir / "H.PBE.gz",
    }
    with pytest.raises(BackendNotInstalledError, match=r"\['Br'\].*make setup-gpaw"):
        check_setups(debian, ["H", "Br"])


def test_cubic_box_keeps_atoms_and_vacuum() -> None:
    molecule = build_ligand_reference("TMSBr")
    boxed = molecule_in_cubic_box(molecule, 6.0)
    assert boxed.get_chemical_symbols() == molecule.get_chemical_symbols()
    pos = boxed.get_positions()
    assert np.allclose(pos.min(axis=0) + pos.max(axis=0), boxed.cell.lengths())
    assert boxed.cell.lengths().min() - np.ptp(pos, axis=0).max() == pytest.approx(12.0)
    with pytest.raises(InputError, match="vacuum"):
        molecule_in_cubic_box(molecule, 2.0)


# ------------------------------------------------------------------ real GPAW runs


@needs_gpaw
@pytest.mark.gpaw
def test_missing_setups_stop_before_gpaw_runs(tmp_path: Path) -> None:
    only_h = fake_setups(tmp_path / "setups", "H")
    with pytest.raises(BackendNotInstalledError, match=r"\['Br'\]"):
        gpaw_calculator(
            molecule_in_cubic_box(hbr()), kind="molecule", environ={"GPAW_SETUP_PATH": str(only_h)}
        )


@pytest.fixture(scope="module")
def hbr_runs() -> dict[int, tuple[object, float]]:
    """Neutral and cationic HBr at 200 eV in a 13.4 Å box: (EspGrid, energy) per charge."""
    if not HAVE_GPAW:
        pytest.skip("GPAW is not installed: run `make setup-gpaw` (.ci/install_gpaw.sh)")
    boxed = molecule_in_cubic_box(hbr())
    return {
        0: gpaw_esp(boxed, charge=0, settings=LOW),
        1: gpaw_esp(boxed, charge=1, magmoms=[0.0, 1.0], settings=LOW),
    }


@needs_gpaw
@pytest.mark.gpaw
def test_gpaw_charge_changes_electrons_and_energy(hbr_runs) -> None:
    (neutral, e0), (cation, e1) = hbr_runs[0], hbr_runs[1]
    cell_volume = neutral.atoms.cell.volume
    electrons = [g.density.mean() * cell_volume for g in (neutral, cation)]
    # all-electron density: H 1 + Br 35 electrons, one fewer in the cation
    assert electrons[0] == pytest.approx(36.0, abs=0.01)
    assert electrons[1] == pytest.approx(35.0, abs=0.01)
    # vertical ionisation energy of HBr, about 11.7 eV (NIST); PBE at 200 eV is close
    assert 9.0 < e1 - e0 < 14.0


@needs_gpaw
@pytest.mark.gpaw
def test_gpaw_esp_sign_and_vacuum(hbr_runs) -> None:
    neutral, cation = hbr_runs[0][0], hbr_runs[1][0]
    doc = esp_map(neutral)
    assert doc.min["symbol"] == "Br"
    assert doc.min["kcal_mol"] < 0
    assert doc.max["symbol"] == "H"
    assert doc.max["kcal_mol"] > 10
    assert neutral.vacuum["shell_density_max"] < 1e-5
    assert esp_map(cation).min["kcal_mol"] > 50  # a cation is positive all around


@needs_gpaw
@pytest.mark.gpaw
def test_gpaw_map_through_vasp_files_and_cubes(hbr_runs, tmp_path: Path) -> None:
    grid = hbr_runs[0][0]
    direct = esp_map(grid)
    # LOCPOT holds an electron's potential energy: -ESP; CHGCAR rho * V
    locpot, chgcar = write_locpot_chgcar(grid.atoms, grid.density, -grid.esp, tmp_path)
    via_vasp = esp_map(read_vasp_esp(locpot, chgcar))
    cubes = write_esp_cubes(grid, tmp_path, "hbr")
    via_cube = esp_map(read_esp_cubes(*cubes))
    for doc in (via_vasp, via_cube):
        assert doc.min["kcal_mol"] == pytest.approx(direct.min["kcal_mol"], abs=0.05)
        assert doc.max["kcal_mol"] == pytest.approx(direct.max["kcal_mol"], abs=0.05)
        assert (doc.min["symbol"], doc.max["symbol"]) == ("Br", "H")


@needs_gpaw
@pytest.mark.gpaw
@pytest.mark.slow
def test_tmsbr_map_at_the_paper_settings() -> None:
    grid, _ = gpaw_esp(molecule_in_cubic_box(build_ligand_reference("TMSBr")), charge=0)
    doc = esp_map(grid)
    assert doc.min["symbol"] == "Br"
    assert doc.min["kcal_mol"] < -5
    assert doc.max["symbol"] == "H"
    assert doc.max["kcal_mol"] > 5


# ------------------------------------------------------------------ the gpaw backend


@needs_gpaw
@pytest.mark.gpaw
def test_gpaw_backend_takes_the_charge_from_the_calculation(tmp_path: Path) -> None:
    """``get_backend("gpaw")`` relaxes a planned calculation with the cell's own charge:
    HBr2+ (6 valence electrons, closed shell) lies far above HBr, one SCF each."""
    from pqdflow.documents.plan import CalcSpec
    from pqdflow.workflows.backends import get_backend

    backend = get_backend("gpaw", calculator={"ecut": 200.0, "energy_tol": 1e-4}, max_steps=1)
    boxed = molecule_in_cubic_box(hbr())
    neutral = backend.relax(CalcSpec("hbr", "molecule", boxed), tmp_path / "n")
    dication = backend.relax(
        CalcSpec("hbr2+", "molecule", boxed, meta={"charge": 2}), tmp_path / "c"
    )
    assert (neutral.backend, dication.settings["charge"]) == ("gpaw", 2)
    assert dication.energy - neutral.energy > 20.0  # two ionisations of HBr, ~12 + ~20 eV
    assert backend.describe()["calculator"] == {"ecut": 200.0, "energy_tol": 1e-4}


def test_gpaw_backend_errors_name_the_setting_or_install_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from pqdflow.workflows.backends import get_backend

    if HAVE_GPAW:
        with pytest.raises(BackendError, match="ecutt"):
            get_backend("gpaw", calculator={"ecutt": 300.0})
    monkeypatch.setitem(__import__("sys").modules, "gpaw", None)  # GPAW not importable
    with pytest.raises(BackendNotInstalledError, match="make setup-gpaw"):
        get_backend("gpaw")

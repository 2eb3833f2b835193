"""ESP maps: sign, vacuum level, readers (VASP LOCPOT/CHGCAR, cube), picture, VASP preset.

The grids here are built from physics, not from expected answers: a diatomic "HBr" made of
Gaussian nuclear and electron charges, its periodic potential solved by FFT (Poisson, zero
cell average: what a plane-wave code writes), compared with the analytic potential of the
same charges in free space.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from matplotlib.image import imread
from pymatgen.io.vasp.inputs import Incar
from scipy.special import erf

from pqdflow.analysis.esp import (
    COULOMB_EV_A,
    KCAL_MOL_PER_EV,
    EspMapDoc,
    esp_grid_from_electron_potential,
    esp_map,
    read_esp_cubes,
    read_vasp_esp,
    surface_esp,
    write_esp_cubes,
    write_vasp_esp_files,
)
from pqdflow.analysis.esp_render import plot_esp_map
from pqdflow.errors import InputError, ParseError
from pqdflow.workflows.vasp.inputsets import get_input_set, write_vasp_inputs

# (nuclear charge, nuclear width Å, electrons, electron width Å) for Br and H
BLOBS = ((7.0, 0.3, 7.4, 0.75), (1.0, 0.3, 0.6, 0.5))


def _gauss(r2: np.ndarray, s: float) -> np.ndarray:
    return np.exp(-r2 / (2 * s * s)) / (2 * np.pi * s * s) ** 1.5


def synthetic_hbr(edge: float = 16.0, spacing: float = 0.2, charge: int = 0):
    """Atoms, electron density (e/Å^3), electron potential energy (eV), exact chemist ESP."""
    atoms = Atoms("BrH", positions=[(0, 0, 0), (0, 0, 1.42)], cell=[edge] * 3, pbc=True)
    atoms.center()
    blobs = [(*BLOBS[0][:2], BLOBS[0][2] - charge, BLOBS[0][3]), BLOBS[1]]
    n = round(edge / spacing)
    frac = np.stack(np.meshgrid(*[np.arange(n) / n] * 3, indexing="ij"), -1)
    xyz = frac @ atoms.cell[:]
    total = np.zeros((n, n, n))
    electrons = np.zeros((n, n, n))
    for pos, (qn, sn, ne, se) in zip(atoms.positions, blobs, strict=True):
        d = xyz - pos
        d -= edge * np.round(d / edge)
        r2 = (d**2).sum(-1)
        total += qn * _gauss(r2, sn) - ne * _gauss(r2, se)
        electrons += ne * _gauss(r2, se)
    g = 2 * np.pi * np.fft.fftfreq(n, d=edge / n)
    gx, gy, gz = np.meshgrid(g, g, g, indexing="ij")
    g2 = gx**2 + gy**2 + gz**2
    g2[0, 0, 0] = 1.0
    vg = 4 * np.pi * np.fft.fftn(total) / g2
    vg[0, 0, 0] = 0.0  # a plane-wave code's convention: cell average zero
    phi = np.real(np.fft.ifftn(vg)) * COULOMB_EV_A

    def exact(points: np.ndarray) -> np.ndarray:
        out = np.zeros(len(points))
        for pos, (qn, sn, ne, se) in zip(atoms.positions, blobs, strict=True):
            r = np.linalg.norm(points - pos, axis=1)
            out += (qn * erf(r / (np.sqrt(2) * sn)) - ne * erf(r / (np.sqrt(2) * se))) / r
        return out * COULOMB_EV_A

    return atoms, electrons, -phi, exact


@pytest.fixture(scope="module")
def neutral():
    return synthetic_hbr()


def test_sign_halide_negative_proton_positive(neutral) -> None:
    atoms, rho, pot, _ = neutral
    doc = esp_map(esp_grid_from_electron_potential(atoms, rho, pot))
    assert doc.min["symbol"] == "Br"
    assert doc.min["kcal_mol"] < -5.0
    assert doc.max["symbol"] == "H"
    assert doc.max["kcal_mol"] > 20.0
    assert doc.max["eV"] == pytest.approx(doc.max["kcal_mol"] / KCAL_MOL_PER_EV)
    by_atom = {site["symbol"]: site for site in doc.by_atom}
    assert by_atom["Br"]["min_kcal_mol"] == pytest.approx(doc.min["kcal_mol"])


@pytest.mark.parametrize("charge", [0, 1])
def test_vacuum_level_matches_isolated_molecule(charge: int) -> None:
    atoms, rho, pot, exact = synthetic_hbr(charge=charge)
    grid = esp_grid_from_electron_potential(atoms, rho, pot, charge=charge)
    points, values = surface_esp(grid)
    error = (values - exact(points)) * KCAL_MOL_PER_EV
    assert abs(error).max() < 1.0
    assert abs(error.mean()) < 0.3
    # the raw map (cell average zero) is far off for the cation: the alignment matters
    raw = esp_grid_from_electron_potential(atoms, rho, pot, charge=0)
    raw_points, raw_values = surface_esp(raw)
    raw_error = (raw_values - exact(raw_points)) * KCAL_MOL_PER_EV
    if charge:
        assert abs(raw_error.mean()) > 10.0
        assert grid.vacuum["background_parabola"]
        assert values.min() > 0  # a cation is positive all around


def test_vasp_locpot_chgcar_round_trip(neutral, tmp_path: Path) -> None:
    atoms, rho, pot, _ = neutral
    direct = esp_map(esp_grid_from_electron_potential(atoms, rho, pot, source="memory"))
    locpot, chgcar = write_vasp_esp_files(atoms, rho, pot, tmp_path)
    grid = read_vasp_esp(locpot, chgcar)
    assert grid.source == "vasp"
    assert np.allclose(grid.density, rho, rtol=1e-6, atol=1e-12)
    doc = esp_map(grid)
    assert doc.min["symbol"] == direct.min["symbol"] == "Br"
    assert doc.min["kcal_mol"] == pytest.approx(direct.min["kcal_mol"], abs=0.01)
    assert doc.max["kcal_mol"] == pytest.approx(direct.max["kcal_mol"], abs=0.01)
    assert doc.n_points == direct.n_points


def test_vasp_reader_rejects_mismatched_files(neutral, tmp_path: Path) -> None:
    atoms, rho, pot, _ = neutral
    locpot, _ = write_vasp_esp_files(atoms, rho, pot, tmp_path / "a")
    bigger = atoms.copy()
    bigger.set_cell([17.0] * 3)
    _, chgcar = write_vasp_esp_files(bigger, rho, pot, tmp_path / "b")
    with pytest.raises(ParseError, match="differs"):
        read_vasp_esp(locpot, chgcar)
    (tmp_path / "junk").write_text("not a locpot\n")
    with pytest.raises(ParseError, match="LOCPOT"):
        read_vasp_esp(tmp_path / "junk", chgcar)


def test_cube_round_trip_and_doc_json(neutral, tmp_path: Path) -> None:
    atoms, rho, pot, _ = neutral
    grid = esp_grid_from_electron_potential(atoms, rho, pot)
    doc = esp_map(grid)
    dens_cube, esp_cube = write_esp_cubes(grid, tmp_path, "hbr")
    assert "Hartree" in esp_cube.read_text().splitlines()[0]
    back = read_esp_cubes(dens_cube, esp_cube)
    assert np.allclose(back.esp, grid.esp, atol=1e-6)
    again = esp_map(back)
    assert again.min["kcal_mol"] == pytest.approx(doc.min["kcal_mol"], abs=0.01)
    assert again.max["index"] == doc.max["index"]
    assert EspMapDoc.read(doc.write(tmp_path / "doc.json")) == doc
    (tmp_path / "bad.cube").write_text("garbage\n")
    with pytest.raises(ParseError, match="cube"):
        read_esp_cubes(tmp_path / "bad.cube", esp_cube)


def test_bad_inputs_are_typed_errors(neutral) -> None:
    atoms, rho, pot, _ = neutral
    grid = esp_grid_from_electron_potential(atoms, rho, pot)
    with pytest.raises(InputError, match="never crosses"):
        esp_map(grid, isovalue=1e6)
    with pytest.raises(InputError, match="isovalue"):
        esp_map(grid, isovalue=-0.001)
    with pytest.raises(InputError, match="3D grid"):
        esp_grid_from_electron_potential(atoms, rho[0], pot)
    small, rho_s, pot_s, _ = synthetic_hbr(edge=7.0)
    with pytest.raises(InputError, match="box is too small"):
        esp_grid_from_electron_potential(small, rho_s, pot_s)


def test_picture_has_red_halide_and_blue_proton(neutral, tmp_path: Path) -> None:
    atoms, rho, pot, _ = neutral
    grid = esp_grid_from_electron_potential(atoms, rho, pot)
    path = plot_esp_map(grid, esp_map(grid), tmp_path / "map.png", pixel=0.12, dpi=60)
    image = imread(path)[..., :3]
    red = (image[..., 0] - image[..., 2]) > 0.25
    blue = (image[..., 2] - image[..., 0]) > 0.25
    assert red.sum() > 200
    assert blue.sum() > 200
    with pytest.raises(InputError, match="vmax"):
        plot_esp_map(grid, esp_map(grid), tmp_path / "x.png", vmax=0)


def test_vasp_esp_preset_writes_lvhar_lcharg(tmp_path: Path) -> None:
    molecule = Atoms("HBr", positions=[(0, 0, 0), (0, 0, 1.42)])
    input_set = get_input_set("molecule_esp")
    write_vasp_inputs(molecule, tmp_path / "esp", input_set)
    incar = Incar.from_file(tmp_path / "esp" / "INCAR")
    assert incar["LVHAR"] is True
    assert incar["LCHARG"] is True
    assert incar["NSW"] == 0
    assert incar["ENCUT"] == 400.0
    assert input_set.kpoint_grid(input_set.prepare_atoms(molecule)) == (1, 1, 1)

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from pqdflow.errors import InputError, ParseError
from pqdflow.structures.adsorption import build_passivated_surface
from pqdflow.structures.io import from_structure, read_structure, to_structure, write_structure
from pqdflow.structures.slabs import build_slab


@pytest.fixture(scope="module")
def surface() -> Atoms:
    return build_passivated_surface(build_slab(x=1.5, seed=2), "treated")


def _fixed(atoms: Atoms) -> list[int]:
    return sorted(int(i) for c in atoms.constraints for i in c.get_indices())


def test_pymatgen_round_trip_lossless(surface: Atoms) -> None:
    structure = to_structure(surface)
    fixed_sd = [
        i for i, sd in enumerate(structure.site_properties["selective_dynamics"]) if not any(sd)
    ]
    assert fixed_sd == _fixed(surface)
    back = from_structure(structure)
    assert back.get_chemical_symbols() == surface.get_chemical_symbols()
    assert np.allclose(back.positions, surface.positions, atol=1e-10)
    assert np.allclose(back.cell.array, surface.cell.array)
    assert _fixed(back) == _fixed(surface)
    assert back.info == surface.info
    assert back.info["ligands"][1]["name"] == "TMSBr"


def test_extxyz_round_trip_lossless(surface: Atoms, tmp_path: Path) -> None:
    path = write_structure(surface, tmp_path / "treated.extxyz")
    back = read_structure(path)
    assert back.get_chemical_symbols() == surface.get_chemical_symbols()
    assert np.allclose(back.positions, surface.positions, atol=1e-7)
    assert _fixed(back) == _fixed(surface)
    assert back.info == surface.info  # ligand records, termination, x, ...
    assert not list(tmp_path.glob(".*.tmp"))  # atomic write left no temporary file


def test_poscar_selective_dynamics(surface: Atoms, tmp_path: Path) -> None:
    path = write_structure(surface, tmp_path / "POSCAR")
    text = path.read_text()
    assert "Selective dynamics" in text
    coords = [line.split() for line in text.splitlines()[9 : 9 + len(surface)]]
    flags = [row[3:6] for row in coords]
    fixed = _fixed(surface)
    assert all(flags[i] == ["F", "F", "F"] for i in fixed)
    assert all(flags[i] == ["T", "T", "T"] for i in range(len(surface)) if i not in fixed)
    back = read_structure(path)
    assert back.get_chemical_symbols() == surface.get_chemical_symbols()
    assert _fixed(back) == fixed
    assert np.allclose(back.get_scaled_positions(), surface.get_scaled_positions(), atol=1e-8)


def test_cif_round_trip(surface: Atoms, tmp_path: Path) -> None:
    back = read_structure(write_structure(surface, tmp_path / "treated.cif"))
    assert sorted(back.get_chemical_symbols()) == sorted(surface.get_chemical_symbols())
    assert np.allclose(back.cell.cellpar(), surface.cell.cellpar(), atol=1e-4)


def test_bad_names(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"cannot tell the format of 'model.pdb'"):
        write_structure(build_slab(), tmp_path / "model.pdb")
    assert not (tmp_path / "model.pdb").exists()
    with pytest.raises(ParseError, match=r"does not exist"):
        read_structure(tmp_path / "missing.extxyz")

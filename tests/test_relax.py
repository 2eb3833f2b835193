"""Relaxations: criterion, fixed atoms, trajectory, document, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.constraints import FixAtoms
from ase.io import read

from pqdflow.documents.results import RelaxDoc
from pqdflow.errors import BackendError, InputError
from pqdflow.workflows.engine.ase_backend import AseSettings
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.engine.relax import BFGS_ALPHA, make_optimizer, relax_structure


def slab() -> Atoms:
    h = 5.95 / 2
    unit = Atoms(
        "CsPbBr3",
        positions=[(h, h, h), (0, 0, 0), (h, 0, 0), (0, h, 0), (0, 0, h)],
        cell=np.eye(3) * 5.95,
        pbc=True,
    )
    atoms = unit.repeat((2, 2, 2))
    atoms.center(vacuum=8.0, axis=2)
    atoms.pbc = (True, True, True)
    atoms.rattle(0.08, seed=3)
    z = atoms.positions[:, 2]
    atoms.set_constraint(FixAtoms(mask=z < z.min() + 1.0))
    return atoms


def test_relaxes_to_criterion_and_respects_fixed_atoms(tmp_path: Path) -> None:
    atoms = slab()
    fixed = atoms.constraints[0].get_indices()
    start = atoms.positions.copy()
    doc = relax_structure(
        atoms, MockPairCalculator(), tmp_path / "s", name="s", backend="mock", fmax=0.02
    )
    assert doc.converged
    assert doc.fmax < 0.02
    assert np.array_equal(atoms.positions, start)  # input not modified
    final = read(doc.structure_file(), format="extxyz")
    np.testing.assert_allclose(final.positions[fixed], start[fixed], atol=1e-6)  # extxyz digits
    moved = np.linalg.norm(final.positions - start, axis=1)
    assert moved.max() > 0.01
    free_forces = np.linalg.norm(final.get_forces(), axis=1)
    assert free_forces[fixed].max() == 0.0  # constraint kept in the file
    trajectory = read(tmp_path / "s" / doc.trajectory_path, index=":", format="extxyz")
    assert len(trajectory) == doc.n_steps + 1
    energies = [frame.get_potential_energy() for frame in trajectory]
    assert energies[-1] < energies[0]
    assert energies[-1] == pytest.approx(doc.energy)
    assert doc.n_force_calls >= doc.n_steps


def test_document_round_trip(tmp_path: Path) -> None:
    mol = molecule("CH3OH")
    mol.center(vacuum=5.0)
    doc = relax_structure(
        mol,
        MockPairCalculator(),
        tmp_path / "m",
        name="m",
        backend="mock",
        kind="molecule",
        formula_units=2,
        meta={"note": "x"},
    )
    data = json.loads((tmp_path / "m" / "result.json").read_text())
    assert data["doc_type"] == "RelaxDoc"
    assert data["backend"] == "mock"
    again = RelaxDoc.read(tmp_path / "m" / "result.json")
    assert again == doc
    assert again.energy_per_formula_unit == pytest.approx(doc.energy / 2)
    assert again.formula == "CH4O"


def test_step_limit_gives_unconverged_document(tmp_path: Path) -> None:
    doc = relax_structure(
        slab(), MockPairCalculator(), tmp_path / "s", name="s", backend="mock", max_steps=2
    )
    assert not doc.converged
    assert doc.n_steps == 2
    assert doc.fmax > 0.02


def test_cell_relaxation(tmp_path: Path) -> None:
    h = 6.3 / 2
    atoms = Atoms(
        "CsPbBr3",
        positions=[(h, h, h), (0, 0, 0), (h, 0, 0), (0, h, 0), (0, 0, h)],
        cell=np.eye(3) * 6.3,
        pbc=True,
    )
    doc = relax_structure(
        atoms, MockPairCalculator(), tmp_path / "b", name="b", backend="mock", relax_cell=True
    )
    assert doc.converged
    assert np.linalg.norm(doc.cell[0]) < 6.1  # the mock's minimum is near 5.95 Å


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "newton"}, "newton"),
        ({"fmax": 0.0}, "fmax"),
        ({"max_steps": 0}, "max_steps"),
        ({"formula_units": 0}, "formula_units"),
    ],
)
def test_bad_input_raises_before_writing(tmp_path: Path, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        relax_structure(
            slab(), MockPairCalculator(), tmp_path / "x", name="x", backend="mock", **kwargs
        )
    assert not (tmp_path / "x").exists()


def test_cell_relaxation_needs_a_periodic_structure(tmp_path: Path) -> None:
    mol = molecule("H2O")
    with pytest.raises(InputError, match="3D-periodic"):
        relax_structure(
            mol, MockPairCalculator(), tmp_path / "x", name="w", backend="mock", relax_cell=True
        )
    assert not (tmp_path / "x").exists()


def test_preconditioned_optimizer_reaches_the_criterion_and_falls_back_where_it_must(
    tmp_path: Path,
) -> None:
    atoms = slab()
    fixed = atoms.constraints[0].get_indices()
    doc = relax_structure(
        atoms,
        MockPairCalculator(),
        tmp_path / "p",
        name="p",
        backend="mock",
        fmax=0.02,
        optimizer="precon",
    )
    assert doc.converged
    assert doc.fmax < 0.02
    assert doc.settings["optimizer"] == "precon"
    assert doc.settings["optimizer_used"] == "precon"
    final = read(doc.structure_file(), format="extxyz")
    np.testing.assert_allclose(final.positions[fixed], atoms.positions[fixed], atol=1e-6)
    bfgs = relax_structure(
        atoms, MockPairCalculator(), tmp_path / "b", name="b", backend="mock", fmax=0.02
    )
    assert doc.energy == pytest.approx(bfgs.energy, abs=0.05)  # the same basin
    # a cell relaxation and a molecule of a few atoms are relaxed with BFGS, and say so
    bulk = relax_structure(
        Atoms(
            "CsPbBr3",
            scaled_positions=[(0.5, 0.5, 0.5), (0, 0, 0), (0.5, 0, 0), (0, 0.5, 0), (0, 0, 0.5)],
            cell=np.eye(3) * 6.0,
            pbc=True,
        ),
        MockPairCalculator(),
        tmp_path / "c",
        name="c",
        backend="mock",
        relax_cell=True,
        optimizer="precon",
    )
    assert bulk.settings["optimizer_used"] == "bfgs"
    assert bulk.converged


def test_physics_backends_default_to_one_force_call_per_step() -> None:
    # precon's line search spent ~15 CHGNet calls per step on a ligand-covered endpoint
    from pqdflow.workflows.backends import get_backend

    assert get_backend("mock").describe()["optimizer"] == "bfgs"
    pytest.importorskip("chgnet")
    assert get_backend("chgnet").describe()["optimizer"] == "bfgs"
    assert get_backend("chgnet", optimizer="precon").describe()["optimizer"] == "precon"
    assert get_backend("chgnet", optimizer="fire").describe()["optimizer"] == "fire"


def test_physics_bands_have_a_force_call_budget_mock_none() -> None:
    # a flat ligand-surface path ran FIRE 3948 CHGNet calls to its step limit
    from pqdflow.workflows.backends import PHYSICS_BAND_BUDGET, get_backend

    assert get_backend("mock").describe()["neb"]["max_force_calls"] is None
    pytest.importorskip("chgnet")
    chgnet = get_backend("chgnet").describe()["neb"]
    assert chgnet["max_force_calls"] == PHYSICS_BAND_BUDGET == 1200
    bigger = get_backend("chgnet", neb_max_force_calls=5000).describe()["neb"]
    assert bigger["max_force_calls"] == 5000


def test_preconditioned_lbfgs_never_stores_a_zero_step_or_searches_a_nan_direction() -> None:
    from ase.optimize.precon import Exp

    from pqdflow.workflows.engine.relax import SafePreconLBFGS

    atoms = slab()
    atoms.calc = MockPairCalculator()
    opt = SafePreconLBFGS(atoms, precon=Exp(A=3), use_armijo=True, logfile=None)
    r = atoms.get_positions()
    f = atoms.get_forces()
    opt.update(r, f, r, f)  # a zero step (what a failed Armijo search leaves): not stored
    assert opt.rho == []
    r1 = r + 0.01
    f1 = f * 0.9
    opt.update(r1, f1, r, f)
    assert len(opt.rho) <= 1
    assert all(np.isfinite(opt.rho))
    opt.p = np.full((len(atoms), 3), np.nan)
    with pytest.raises(RuntimeError, match="non-finite"):
        opt.line_search(r.ravel(), -f.ravel(), atoms.get_potential_energy(), False)


def test_bfgs_initial_hessian_is_softer_than_ases_and_recorded(tmp_path: Path) -> None:
    """BFGS starts from BFGS_ALPHA (not ASE's 70), every BFGS the relaxation may use records it."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True)
    atoms.rattle(0.05, seed=1)
    opt, used = make_optimizer("bfgs", atoms)
    assert used == "bfgs"
    assert opt.alpha == BFGS_ALPHA == 20.0
    fallback, used = make_optimizer("precon", atoms, relax_cell=True, bfgs_alpha=35.0)
    assert used == "bfgs"
    assert fallback.alpha == 35.0
    doc = relax_structure(
        atoms, MockPairCalculator(), tmp_path / "a", name="a", backend="mock", bfgs_alpha=50.0
    )
    assert doc.settings["bfgs_alpha"] == 50.0
    with pytest.raises(InputError, match="bfgs_alpha"):
        relax_structure(
            atoms, MockPairCalculator(), tmp_path / "z", name="z", backend="mock", bfgs_alpha=0.0
        )
    assert not (tmp_path / "z").exists()
    with pytest.raises(BackendError, match="bfgs_alpha"):
        AseSettings(bfgs_alpha=-1.0)

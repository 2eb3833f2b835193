"""Mock pair calculator: exact gradients, stress, determinism, lattice constant, speed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ase import Atoms
from ase.build import molecule
from ase.calculators.calculator import all_changes
from ase.optimize import FIRE
from scipy.optimize import minimize_scalar

from pqdflow.errors import BackendError
from pqdflow.workflows.engine.calculators import (
    CountingCalculator,
    MockPairCalculator,
    element_role,
)


def cubic(a: float, halide: str = "Br") -> Atoms:
    h = a / 2
    return Atoms(
        ["Cs", "Pb", halide, halide, halide],
        positions=[(h, h, h), (0, 0, 0), (h, 0, 0), (0, h, 0), (0, 0, h)],
        cell=np.eye(3) * a,
        pbc=True,
    )


def mixed_system() -> Atoms:
    """Perovskite supercell with a molecule above it: every term of the potential acts."""
    host = cubic(5.9).repeat((2, 2, 1))
    host.center(vacuum=6.0, axis=2)
    mol = molecule("CH3CH2OH")
    mol.translate(host.cell.diagonal() / 2 + np.array([0.0, 0.0, 2.5]))
    atoms = (
        host
        + mol
        + Atoms("HBrSi", positions=[(1.0, 1.0, 10.0), (2.4, 1.0, 10.0), (3.0, 3.0, 11.0)])
    )
    atoms.rattle(0.05, seed=7)
    return atoms


def energy(atoms: Atoms) -> float:
    probe = atoms.copy()
    probe.calc = MockPairCalculator()
    return float(probe.get_potential_energy())


def test_forces_are_minus_the_energy_gradient() -> None:
    atoms = mixed_system()
    atoms.calc = MockPairCalculator()
    forces = atoms.get_forces()
    assert np.abs(forces).max() > 0.05  # not trivially zero
    h = 1e-5
    for index in (0, 5, 10, 21, 22, 26, len(atoms) - 1):
        for axis in range(3):
            plus, minus = atoms.copy(), atoms.copy()
            plus.positions[index, axis] += h
            minus.positions[index, axis] -= h
            numeric = -(energy(plus) - energy(minus)) / (2 * h)
            assert forces[index, axis] == pytest.approx(numeric, abs=2e-5)


def test_stress_is_the_strain_derivative() -> None:
    atoms = cubic(6.1).repeat(2)
    atoms.rattle(0.05, seed=1)
    atoms.calc = MockPairCalculator()
    stress = atoms.get_stress(voigt=False)
    volume = atoms.get_volume()
    h = 1e-5
    for i, j in ((0, 0), (1, 1), (0, 1), (1, 2)):
        strain = np.zeros((3, 3))
        strain[i, j] = strain[j, i] = h
        deformed = []
        for sign in (1, -1):
            probe = atoms.copy()
            probe.set_cell(atoms.cell @ (np.eye(3) + sign * strain), scale_atoms=True)
            deformed.append(energy(probe))
        factor = 1.0 if i == j else 2.0  # a symmetric shear strain enters twice
        numeric = (deformed[0] - deformed[1]) / (2 * h) / volume / factor
        assert stress[i, j] == pytest.approx(numeric, abs=1e-7)


def test_deterministic_and_cache_independent() -> None:
    atoms = mixed_system()
    first = atoms.copy()
    first.calc = MockPairCalculator()
    e1, f1 = first.get_potential_energy(), first.get_forces()
    # a calculator that has seen other structures first (Verlet list built elsewhere)
    reused = MockPairCalculator()
    other = atoms.copy()
    other.positions += 0.1
    other.calc = reused
    other.get_forces()
    second = atoms.copy()
    second.calc = reused
    assert second.get_potential_energy() == pytest.approx(e1, abs=1e-10)
    np.testing.assert_allclose(second.get_forces(), f1, atol=1e-10)


def test_cubic_cspbbr3_minimum_near_real_lattice_constant() -> None:
    calc = MockPairCalculator()

    def e(a: float) -> float:
        atoms = cubic(a)
        atoms.calc = calc
        return float(atoms.get_potential_energy())

    best = minimize_scalar(e, bounds=(5.5, 6.5), method="bounded").x
    assert 5.8 < best < 6.05  # experimental cubic CsPbBr3: 5.87 Å
    atoms = cubic(best)
    atoms.calc = calc
    assert np.abs(atoms.get_stress()[:3]).max() < 1e-3


def test_molecules_stay_intact() -> None:
    for name in ("CH3CH2OH", "C6H6", "CH3COOH"):
        mol = molecule(name)
        mol.center(vacuum=6.0)
        start = mol.get_all_distances()
        bonded = (start < 1.6) & (start > 0)
        mol.calc = MockPairCalculator()
        FIRE(mol, logfile=None).run(fmax=0.01, steps=2000)
        end = mol.get_all_distances()
        # no angular terms and single-bond lengths: bonds may stretch a little (C=O), none breaks
        assert (end / np.where(bonded, start, 1.0))[bonded].max() < 1.25, name


def test_any_element_is_accepted() -> None:
    atoms = Atoms("UXeAuFSn", positions=np.arange(15, dtype=float).reshape(5, 3) * 0.6)
    atoms.calc = MockPairCalculator()
    assert np.isfinite(atoms.get_potential_energy())
    assert element_role("Br") == "anion"
    assert element_role("Cs") == "cation"
    assert element_role("C") == "covalent"


def test_fast_for_200_atoms() -> None:
    atoms = cubic(5.9).repeat((4, 4, 3))
    assert len(atoms) == 240
    atoms.calc = MockPairCalculator()
    atoms.get_forces()
    start = time.perf_counter()
    for step in range(20):
        atoms.positions[0, 0] += 0.001 * (step + 1)
        atoms.get_forces()
    per_call = (time.perf_counter() - start) / 20
    assert per_call < 0.02  # ~1 ms on an idle core; generous for busy CI machines
    assert atoms.calc.n_calls == 21


def test_unknown_parameter_is_an_error() -> None:
    with pytest.raises(BackendError, match="ionic_depht"):
        MockPairCalculator(ionic_depht=1.0)


def test_counting_wrapper_counts_only_real_evaluations() -> None:
    atoms = cubic(5.9)
    counted = CountingCalculator(MockPairCalculator(), stress=True)
    atoms.calc = counted
    atoms.get_potential_energy()
    atoms.get_forces()
    atoms.get_stress()
    assert counted.n_calls == 1
    atoms.positions[0, 0] += 0.01
    atoms.get_forces()
    assert counted.n_calls == 2


class _Recording(MockPairCalculator):
    """The mock, remembering which properties each evaluation was asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[list[str]] = []

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):  # type: ignore[no-untyped-def]
        self.asked.append(sorted(properties))
        super().calculate(atoms, properties, system_changes)


def test_counting_wrapper_asks_for_stress_only_when_wanted() -> None:
    atoms = cubic(5.9)
    inner = _Recording()
    atoms.calc = CountingCalculator(inner)
    atoms.get_potential_energy()
    atoms.get_forces()
    assert inner.asked == [["energy", "forces"]]  # no stress asked of a fixed cell
    atoms.positions[0, 0] += 0.01
    atoms.get_stress()  # asked for explicitly: computed
    assert inner.asked[-1] == ["energy", "forces", "stress"]
    inner = _Recording()
    atoms.calc = CountingCalculator(inner, stress=True)  # a cell relaxation
    atoms.get_forces()
    atoms.get_stress()
    assert inner.asked == [["energy", "forces", "stress"]]

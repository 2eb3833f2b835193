"""pqdflow's CHGNet calculator: chgnet's numbers, only the requested properties."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
from ase import Atoms

pytest.importorskip("chgnet", reason="needs the ML extra (chgnet)")

from chgnet.model.dynamics import CHGNetCalculator

from pqdflow.structures.bulk import build_bulk
from pqdflow.workflows.engine.ase_backend import load_chgnet_model
from pqdflow.workflows.engine.calculators import CountingCalculator
from pqdflow.workflows.engine.chgnet_calc import (
    InferenceCHGNetCalculator,
    predict_chgnet,
)

pytestmark = pytest.mark.mlip


def _cell() -> Atoms:
    atoms = build_bulk("Br") * (2, 1, 1)
    atoms.rattle(0.05, seed=3)
    atoms.set_cell(atoms.cell * 1.01, scale_atoms=True)  # strained: a non-zero stress
    return atoms


def _reference(atoms: Atoms) -> tuple[float, np.ndarray, np.ndarray]:
    ref = atoms.copy()
    ref.calc = CHGNetCalculator(model=load_chgnet_model(), use_device="cpu")
    with warnings.catch_warnings():  # chgnet's tensor warning (torch: once per process)
        warnings.filterwarnings("ignore", message="Converting a tensor", category=UserWarning)
        energy = ref.get_potential_energy()
    return energy, ref.get_forces(), ref.get_stress()


@pytest.mark.filterwarnings("ignore:Converting a tensor:UserWarning")
def test_same_energy_forces_and_stress_as_chgnets_calculator() -> None:
    atoms = _cell()
    energy, forces, stress = _reference(atoms)
    ours = atoms.copy()
    ours.calc = InferenceCHGNetCalculator(load_chgnet_model())
    assert ours.get_potential_energy() == pytest.approx(energy, abs=1e-5)
    assert np.abs(ours.get_forces() - forces).max() < 1e-4
    assert np.abs(forces).max() > 0.05  # the comparison is not between two zeros
    assert np.abs(ours.get_stress() - stress).max() < 1e-6
    assert np.abs(stress[:3]).max() > 1e-4


@pytest.mark.filterwarnings("ignore:Converting a tensor:UserWarning")
def test_computes_only_what_is_asked() -> None:
    model = load_chgnet_model()
    atoms = _cell()
    energy_only = predict_chgnet(model, atoms, ["energy"])
    assert set(energy_only) == {"energy"}
    forces = predict_chgnet(model, atoms, ["energy", "forces"])
    assert set(forces) == {"energy", "forces"}
    assert forces["energy"] == pytest.approx(energy_only["energy"], abs=1e-6)
    assert set(predict_chgnet(model, atoms, ["forces", "stress"])) == {
        "energy",
        "forces",
        "stress_gpa",
    }
    # a fixed-cell evaluation through the counting wrapper leaves the stress out
    atoms.calc = CountingCalculator(InferenceCHGNetCalculator(model))
    atoms.get_forces()
    assert "stress" not in atoms.calc.results
    assert atoms.calc.n_calls == 1


class _OlderChgnet:
    """A model whose internal interface differs (no ``_compute``), else the real one."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        if name == "_compute":
            raise AttributeError("'CHGNet' object has no attribute '_compute'")
        return getattr(self._model, name)


@pytest.mark.filterwarnings("ignore:Converting a tensor:UserWarning")
def test_falls_back_to_predict_graph_with_a_warning() -> None:
    atoms = _cell()
    energy, forces, stress = _reference(atoms)
    ours = atoms.copy()
    ours.calc = InferenceCHGNetCalculator(_OlderChgnet(load_chgnet_model()))
    with pytest.warns(RuntimeWarning, match="predict_graph"):
        assert ours.get_potential_energy() == pytest.approx(energy, abs=1e-5)
    assert np.abs(ours.get_forces() - forces).max() < 1e-4
    assert np.abs(ours.get_stress() - stress).max() < 1e-6

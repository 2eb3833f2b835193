"""Surrogate NEB on the mock pair potential (plumbing: the oracle is a second mock)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ase import Atoms
from ase.io import read
from ase.optimize import BFGS

from pqdflow.documents.results import NebDoc
from pqdflow.errors import BackendError, InputError, OverwriteError
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.engine.neb import interpolate_images
from pqdflow.workflows.engine.surrogate_neb import (
    CalculatorOracle,
    SurrogateOutcome,
    SurrogateSettings,
    calculator_oracle,
    registry_oracle,
    run_surrogate_band,
    surrogate_band,
)

from .test_neb import vbr_endpoints


def oracle_calculator() -> MockPairCalculator:
    """The 'expensive' potential: another mock whose barrier differs from the cheap one's."""
    return MockPairCalculator(ionic_depth=0.5)


@pytest.fixture(scope="module")
def oracle_endpoints() -> tuple[Atoms, Atoms, float, float]:
    initial, final = vbr_endpoints(5.945)
    energies = []
    for atoms in (initial, final):
        atoms.calc = oracle_calculator()
        BFGS(atoms, logfile=None).run(fmax=0.002, steps=2000)
        energies.append(float(atoms.get_potential_energy()))
        atoms.calc = None
    return initial, final, energies[0], energies[1]


def oracle_energy(atoms: Atoms) -> float:
    work = atoms.copy()
    work.calc = oracle_calculator()
    return float(work.get_potential_energy())


@pytest.fixture(scope="module")
def surrogate_run(
    oracle_endpoints: tuple[Atoms, Atoms, float, float],
) -> tuple[SurrogateOutcome, CalculatorOracle, float]:
    initial, final, e_i, e_f = oracle_endpoints
    oracle = calculator_oracle(oracle_calculator)
    images = interpolate_images(initial, final, 3)
    out = surrogate_band(images, MockPairCalculator, oracle, e_initial=e_i, e_final=e_f)
    return out, oracle, e_i


def test_surrogate_barrier_is_the_oracles_energy_at_its_climbing_image(
    surrogate_run: tuple[SurrogateOutcome, CalculatorOracle, float],
) -> None:
    out, _, e_i = surrogate_run
    assert out.converged, out.stop_reason
    c = out.climbing_index
    assert c is not None
    # recomputed from scratch at the reported geometry: the oracle's energy, not a model's
    assert out.barrier == pytest.approx(oracle_energy(out.images[c]) - e_i, abs=1e-9)
    assert out.energies[c] - e_i == pytest.approx(out.barrier, abs=1e-12)
    assert out.energy_sources[c] == "oracle"
    # the cheap potential's barrier is far off: the answer did not come from it
    assert abs(out.cheap_barrier - out.barrier) > 0.05


def test_surrogate_stops_on_the_stopping_rule_within_its_oracle_budget(
    surrogate_run: tuple[SurrogateOutcome, CalculatorOracle, float],
) -> None:
    out, oracle, _ = surrogate_run
    assert out.barrier_error is not None
    assert out.barrier_error <= 0.010
    assert out.check["status"] == "ok"
    assert out.rounds[-1]["curvature"] == "oracle"  # accepted on the oracle's own curvature
    assert out.n_oracle_calls == oracle.n_calls
    assert out.n_oracle_calls < out.n_force_calls  # the cheap potential did most of the work
    assert out.n_oracle_calls <= SurrogateSettings().max_oracle_calls


def test_surrogate_out_of_budget_reports_its_last_oracle_point_and_keeps_outputs(
    oracle_endpoints: tuple[Atoms, Atoms, float, float], tmp_path: Path
) -> None:
    initial, final, e_i, e_f = oracle_endpoints
    oracle = calculator_oracle(oracle_calculator)
    kwargs: dict[str, Any] = {
        "path": "neb-bulk",
        "backend": "mock",
        "e_initial": e_i,
        "e_final": e_f,
        "n_images": 3,
        "settings": SurrogateSettings(max_oracle_calls=5, max_rounds=3),
    }
    doc = run_surrogate_band(initial, final, MockPairCalculator, oracle, tmp_path, **kwargs)
    assert doc.stopped_early
    assert not doc.converged
    assert "budget" in doc.stop_reason
    assert doc.barrier_confirmed
    assert doc.n_oracle_calls == oracle.n_calls
    assert oracle.n_calls <= 5
    assert doc.climbing_index is not None
    band = read(tmp_path / "band.extxyz", index=":")
    top = band[doc.climbing_index]
    assert doc.Ea_eV == pytest.approx(oracle_energy(top) - e_i, abs=1e-6)
    assert NebDoc.read(tmp_path / "result.json") == doc
    with pytest.raises(OverwriteError):
        run_surrogate_band(initial, final, MockPairCalculator, oracle, tmp_path, **kwargs)
    assert oracle.n_calls <= 5  # refused before any call


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_oracle_calls": 1}, "max_oracle_calls"),
        ({"check_probes": 1}, "check_probes"),
        ({"barrier_tol": 0.0}, "barrier_tol"),
    ],
)
def test_bad_surrogate_settings_are_refused_before_any_call(
    oracle_endpoints: tuple[Atoms, Atoms, float, float], kwargs: dict, match: str
) -> None:
    initial, final, e_i, e_f = oracle_endpoints
    oracle = calculator_oracle(oracle_calculator)
    images = [initial.copy(), initial.copy(), final.copy()]
    with pytest.raises(InputError, match=match):
        surrogate_band(
            images,
            MockPairCalculator,
            oracle,
            SurrogateSettings(**kwargs),
            e_initial=e_i,
            e_final=e_f,
        )
    assert oracle.n_calls == 0


def test_registry_oracle_runs_an_in_process_backend_and_refuses_vasp() -> None:
    atoms, _ = vbr_endpoints(5.945)
    oracle = registry_oracle("mock", atoms)
    ((energy, forces),) = oracle([atoms])
    work = atoms.copy()
    work.calc = MockPairCalculator()
    assert energy == pytest.approx(work.get_potential_energy())
    assert np.allclose(forces, work.get_forces(apply_constraint=False))
    assert oracle.n_calls == 1
    with pytest.raises(BackendError, match="FireWorks"):
        registry_oracle("vasp", atoms)

"""Surrogate NEB on the mock pair potential (plumbing: the oracle is a second mock)."""

from __future__ import annotations

import importlib.util
import sys
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
from pqdflow.workflows.engine.neb import NebSettings, interpolate_images
from pqdflow.workflows.engine.saddle_check import recycled_estimate
from pqdflow.workflows.engine.surrogate_neb import (
    CalculatorOracle,
    SurrogateOutcome,
    SurrogateSettings,
    calculator_oracle,
    first_batch_images,
    registry_oracle,
    run_surrogate_band,
    surrogate_band,
)
from pqdflow.workflows.engine.surrogate_seed import (
    AnchoredCalculator,
    anchored_calculators,
    seed_band,
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
        ({"first_batch": "highest"}, "first_batch"),
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


def test_first_batch_images_picks_the_cheap_top_its_neighbours_or_all() -> None:
    assert first_batch_images("climbing", 3, 5) == [3]
    assert first_batch_images("neighbours", 3, 5) == [2, 3, 4]
    assert first_batch_images("neighbours", 1, 5) == [1, 2]  # no endpoint sent
    assert first_batch_images("all", 3, 5) == [1, 2, 3, 4, 5]
    with pytest.raises(InputError, match="first_batch"):
        first_batch_images("top", 3, 5)


def test_climbing_first_batch_saves_the_other_images_calls_not_the_barrier(
    oracle_endpoints: tuple[Atoms, Atoms, float, float],
    surrogate_run: tuple[SurrogateOutcome, CalculatorOracle, float],
) -> None:
    initial, final, e_i, e_f = oracle_endpoints
    climbing_only, _, _ = surrogate_run  # the default: the cheap band's top image only
    oracle = calculator_oracle(oracle_calculator)
    images = interpolate_images(initial, final, 3)
    settings = SurrogateSettings(first_batch="all")
    full = surrogate_band(images, MockPairCalculator, oracle, settings, e_initial=e_i, e_final=e_f)
    # on the mock pair the oracle's highest image is the cheap band's: same climbing image,
    # same rounds after the first batch, so exactly the two other images' calls are saved
    c = climbing_only.climbing_index
    assert c == full.climbing_index == climbing_only.rounds[0]["cheap_climbing_index"]
    assert full.n_oracle_calls - climbing_only.n_oracle_calls == 2
    assert climbing_only.barrier == pytest.approx(full.barrier, abs=1e-9)
    assert full.energy_sources == ["oracle"] * 5
    assert climbing_only.energy_sources == [
        "oracle" if j in (0, c, 4) else "cheap" for j in range(5)
    ]
    first = climbing_only.rounds[0]["oracle_eV"]
    assert [e is not None for e in first] == [j in (0, c, 4) for j in range(5)]
    # the unevaluated images carry cheap energies on the oracle's endpoint scale: not the
    # oracle's (the two potentials differ), but pinned to its endpoints
    for j in range(1, 4):
        if j != c:
            assert climbing_only.energies[j] != pytest.approx(full.energies[j], abs=1e-6)
    assert climbing_only.energies[0] == e_i
    assert climbing_only.energies[-1] == e_f


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


def test_anchored_calculator_adds_a_consistent_first_order_correction() -> None:
    atoms, _ = vbr_endpoints(5.945)
    rng = np.random.default_rng(3)
    delta_f = rng.normal(0.0, 0.05, size=(len(atoms), 3))
    calc = AnchoredCalculator(MockPairCalculator(), atoms.positions, 0.3, delta_f)
    cheap = atoms.copy()
    cheap.calc = MockPairCalculator()
    work = atoms.copy()
    work.calc = calc
    # at the anchor: the cheap potential shifted by the correction
    assert work.get_potential_energy() == pytest.approx(cheap.get_potential_energy() + 0.3)
    assert np.allclose(work.get_forces(), cheap.get_forces() + delta_f)
    # away from it, energy and forces stay consistent (forces are minus the gradient)
    direction = rng.normal(size=(len(atoms), 3))
    direction /= np.linalg.norm(direction)
    h = 1e-4
    energies = []
    for sign in (1.0, -1.0):
        probe = atoms.copy()
        probe.positions = atoms.positions + 0.05 * direction + sign * h * direction
        probe.calc = AnchoredCalculator(MockPairCalculator(), atoms.positions, 0.3, delta_f)
        energies.append(probe.get_potential_energy())
    probe.positions = atoms.positions + 0.05 * direction
    slope = -float(np.vdot(probe.get_forces(), direction))
    assert (energies[0] - energies[1]) / (2 * h) == pytest.approx(slope, rel=1e-4, abs=1e-6)
    assert calc.n_calls == 1
    with pytest.raises(InputError, match="shape"):
        AnchoredCalculator(MockPairCalculator(), atoms.positions, 0.0, delta_f[:-1])


def test_anchored_band_interpolates_endpoint_corrections_and_spares_the_hopper() -> None:
    initial, final = vbr_endpoints(5.945)
    images = interpolate_images(initial, final, 3)
    hopper = int(np.argmax(np.linalg.norm(final.positions - initial.positions, axis=1)))
    ones = np.ones((len(initial), 3))
    deltas = ((1.0, ones), (3.0, 2.0 * ones))
    calcs = anchored_calculators(
        images, [MockPairCalculator() for _ in range(3)], deltas, mobile_cutoff=1.0
    )
    assert [c.delta_e for c in calcs] == pytest.approx([1.5, 2.0, 2.5])
    host = [i for i in range(len(initial)) if i != hopper]
    assert np.allclose(calcs[0].delta_f[host], 1.25)
    assert np.allclose(calcs[2].delta_f[host], 1.75)
    assert all(np.allclose(c.delta_f[hopper], 0.0) for c in calcs)
    default = anchored_calculators(images, [MockPairCalculator() for _ in range(3)], deltas)
    assert np.allclose(default[0].delta_f[hopper], 1.25)  # by default every atom is corrected
    assert all(
        np.allclose(c.anchor, im.positions) for c, im in zip(calcs, images[1:-1], strict=True)
    )
    with pytest.raises(InputError, match="interior images"):
        anchored_calculators(images, [MockPairCalculator()], ((0.0, ones), (0.0, ones)))


def test_anchored_cheap_band_changes_the_seed_not_the_confirmation(
    oracle_endpoints: tuple[Atoms, Atoms, float, float],
) -> None:
    initial, final, e_i, e_f = oracle_endpoints
    out = {}
    for anchor in (True, False):
        oracle = calculator_oracle(oracle_calculator)
        images = interpolate_images(initial, final, 3)
        settings = SurrogateSettings(anchor_cheap=anchor)
        out[anchor] = surrogate_band(
            images, MockPairCalculator, oracle, settings, e_initial=e_i, e_final=e_f
        )
        c = out[anchor].climbing_index
        assert c is not None
        assert out[anchor].barrier == pytest.approx(oracle_energy(images[c]) - e_i, abs=1e-9)
    # the anchored seed band sits on the oracle's energy scale at its ends: its barrier
    # is the corrected cheap potential's, not the bare one's
    assert out[True].cheap_barrier != pytest.approx(out[False].cheap_barrier, abs=1e-3)


def _benchmark_module() -> Any:
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "neb_efficiency.py"
    spec = importlib.util.spec_from_file_location("neb_efficiency", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_benchmark_reference_moves_an_endpoint_into_the_basin_its_band_found(
    oracle_endpoints: tuple[Atoms, Atoms, float, float],
) -> None:
    bench = _benchmark_module()
    initial, final, e_i, e_f = oracle_endpoints
    n = bench.N_IMAGES
    band = interpolate_images(initial, final, n)
    # an endpoint off the bottom of its basin (host pushed 0.06 Å), as a band finds it
    high = initial.copy()
    high.positions += np.random.default_rng(5).normal(0.0, 0.06, size=(len(high), 3))
    e_high = oracle_energy(high)
    assert e_high > e_i + 0.02
    sunken = [e_high, e_high - 0.02] + [e_high + 0.1] * (n - 1) + [e_f]
    ref = {"energies": sunken, "images": [high, initial.copy(), *band[2:]]}
    ep = {"initial": high, "final": final, "e_i": e_high, "e_f": e_f, "f_i": 0, "f_f": 0}
    (change,) = bench.settle_endpoints(ep, ref, oracle_calculator)
    assert change["side"] == "initial"
    assert change["replaced"]
    assert ep["e_i"] == pytest.approx(oracle_energy(ep["initial"]))
    assert ep["e_i"] < e_high - bench.SINK_TOL
    assert change["hopper_moved_A"] < bench.HOP_SITE_TOL
    # endpoints already at the bottom of their basin stand: the image relaxes back up to them
    ep = {"initial": initial, "final": final, "e_i": e_i, "e_f": e_f, "f_i": 0, "f_f": 0}
    sunken = [e_i, e_i - 0.02] + [e_i + 0.1] * (n - 1) + [e_f]
    ref = {"energies": sunken, "images": [initial, initial.copy(), *band[2:]]}
    (change,) = bench.settle_endpoints(ep, ref, oracle_calculator)
    assert not change["replaced"]
    assert ep["e_i"] == e_i
    # no image below an endpoint: nothing is relaxed
    ref = {"energies": [e_i] + [e_i + 0.1] * n + [e_f], "images": band}
    assert bench.settle_endpoints(ep, ref, oracle_calculator) == []


def test_recycled_probes_reach_the_soft_mode_one_check_leaves_out() -> None:
    rng = np.random.default_rng(7)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    curvatures = np.array([-1.0, 0.05, 1.0, 2.0, 3.0, 4.0])  # one negative, one soft (eV/Å²)
    hessian = q @ np.diag(curvatures) @ q.T
    offset = rng.normal(0.0, 0.1, size=6)  # image minus saddle (Å)
    forces = -(hessian @ offset)

    def pairs(vectors: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(v, hessian @ v) for v in vectors]

    full = recycled_estimate(forces.reshape(2, 3), pairs(np.eye(6)))
    assert full.status == "ok"
    assert np.allclose(full.step.reshape(-1), -offset, atol=1e-10)  # exactly onto the saddle
    assert full.shift == pytest.approx(0.5 * float(forces @ offset), rel=1e-10)
    # the soft mode alone: a check whose probes miss it cannot step along it
    soft = q[:, 1]
    partial = recycled_estimate(forces.reshape(2, 3), pairs(q[:, [0, 2, 3]].T))
    assert abs(float(partial.step.reshape(-1) @ soft)) < 1e-10
    assert abs(float(full.step.reshape(-1) @ soft)) == pytest.approx(abs(offset @ soft))
    # a repeated direction adds nothing
    repeated = recycled_estimate(forces.reshape(2, 3), pairs(np.vstack([np.eye(6), np.eye(6)[:1]])))
    assert repeated.n_probes == 6
    with pytest.raises(InputError, match="pairs"):
        recycled_estimate(forces.reshape(2, 3), [])


def test_seed_band_falls_back_to_the_bare_cheap_band_when_the_anchored_one_fails(
    oracle_endpoints: tuple[Atoms, Atoms, float, float],
) -> None:
    initial, final, e_i, e_f = oracle_endpoints
    settings = NebSettings(climb_fmax=0.01, barrier_check=False, saddle_first=False, max_steps=60)
    images = interpolate_images(initial, final, 3)
    good = seed_band(images, MockPairCalculator, settings, anchor=True, e_initial=e_i, e_final=e_f)
    assert good.seed == "anchored"
    assert good.outcome.converged
    assert good.outcome.energies[0] == e_i  # on the oracle's scale at the endpoints
    # endpoint forces no relaxed endpoint has: the corrected band runs away and is dropped
    wild = np.zeros((len(initial), 3))
    wild[:, 0] = 30.0
    images = interpolate_images(initial, final, 3)
    bad = seed_band(
        images,
        MockPairCalculator,
        settings,
        anchor=True,
        e_initial=e_i,
        e_final=e_f,
        endpoint_forces=(wild, -wild),
    )
    assert bad.seed.startswith("cheap (anchored")
    bare_images = interpolate_images(initial, final, 3)
    bare = seed_band(
        bare_images, MockPairCalculator, settings, anchor=False, e_initial=e_i, e_final=e_f
    )
    assert bare.seed == "cheap"
    assert bad.outcome.energies == pytest.approx(bare.outcome.energies, abs=1e-9)
    assert bad.n_force_calls > bare.n_force_calls  # the failed attempt is counted


def test_surrogate_reports_its_last_checked_point_not_an_unchecked_step(
    oracle_endpoints: tuple[Atoms, Atoms, float, float],
) -> None:
    initial, final, e_i, e_f = oracle_endpoints
    oracle = calculator_oracle(oracle_calculator)
    images = interpolate_images(initial, final, 3)
    settings = SurrogateSettings(oracle_checks=1, barrier_tol=1e-7)
    out = surrogate_band(images, MockPairCalculator, oracle, settings, e_initial=e_i, e_final=e_f)
    (check,) = out.rounds[1:]
    assert not out.converged
    assert "above" in out.stop_reason or "barrier check" in out.stop_reason
    # the first batch (the cheap band's top image) and one check's probes; no step was
    # paid for after it
    assert out.n_oracle_calls == 1 + check["n_probes"]
    assert out.barrier_error == pytest.approx(check["error_eV"])
    assert out.barrier == pytest.approx(check["oracle_eV"], abs=1e-12)

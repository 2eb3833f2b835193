"""NEB: the V_Br hop in bulk CsPbBr3 converges (mock), recipe details, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.singlepoint import SinglePointCalculator
from ase.constraints import FixAtoms
from ase.io import read
from ase.mep.neb import NEB, interpolate
from ase.optimize import FIRE

from pqdflow.documents.plan import CalcSpec, NebSpec
from pqdflow.documents.results import NebDoc, RelaxDoc
from pqdflow.errors import EndpointError, InputError
from pqdflow.structures.defects import build_neb_endpoints, final_in_initial_basin
from pqdflow.workflows.backends import get_backend
from pqdflow.workflows.engine.ase_backend import AseBackend
from pqdflow.workflows.engine.band_optimizer import BandLBFGS
from pqdflow.workflows.engine.calculators import CountingCalculator, MockPairCalculator
from pqdflow.workflows.engine.neb import (
    NebSettings,
    TieredNEB,
    interpolate_images,
    optimize_band,
    resolve_optimizer,
    run_band,
)
from pqdflow.workflows.engine.neb_stopping import climbing_tangent
from pqdflow.workflows.engine.saddle_check import estimate_saddle_error, finite_difference_hvp


def vbr_host(a: float, seed: int = 0) -> Atoms:
    h = a / 2
    unit = Atoms(
        "CsPbBr3",
        positions=[(h, h, h), (0, 0, 0), (h, 0, 0), (0, h, 0), (0, 0, h)],
        cell=np.eye(3) * a,
        pbc=True,
    )
    host = unit.repeat((2, 2, 2))
    host.rattle(0.03, seed=seed)
    return host


def vbr_endpoints(a: float, seed: int = 0) -> tuple[Atoms, Atoms]:
    """A Br vacancy at the first Br and its nearest Br hopping into it (same atom order)."""
    host = vbr_host(a, seed)
    br = [i for i, s in enumerate(host.get_chemical_symbols()) if s == "Br"]
    vacancy = br[0]
    d = host.get_distances(vacancy, br, mic=True)
    hop = br[int(np.argmin(np.where(d > 0.1, d, np.inf)))]
    return build_neb_endpoints(host, vacancy_index=vacancy, hop_index=hop)


Endpoints = tuple[AseBackend, Atoms, Atoms, float, float, RelaxDoc, RelaxDoc]


@pytest.fixture(scope="module")
def relaxed_mock_endpoints(
    tmp_path_factory: pytest.TempPathFactory,
) -> Endpoints:
    backend = get_backend("mock")
    root = tmp_path_factory.mktemp("endpoints")
    initial, final = vbr_endpoints(5.945)
    d_i = backend.relax(CalcSpec("i", "bulk", initial, role="neb_initial"), root / "i")
    d_f = backend.relax(CalcSpec("f", "bulk", final, role="neb_final"), root / "f")
    assert d_i.converged
    assert d_f.converged
    ini = read(d_i.structure_file(), format="extxyz")
    fin = read(d_f.structure_file(), format="extxyz")
    return backend, ini, fin, d_i.energy, d_f.energy, d_i, d_f


def test_bulk_vbr_neb_converges_with_mock(
    relaxed_mock_endpoints: Endpoints, tmp_path: Path
) -> None:
    backend, _, _, e_i, e_f, d_i, d_f = relaxed_mock_endpoints
    spec = NebSpec("neb-bulk", "bulk", "i", "f", n_images=5, hopping_index=0)
    doc = backend.neb(spec, d_i, d_f, tmp_path / "neb")
    settings = NebSettings()
    assert doc.converged
    assert doc.fmax <= settings.fmax
    assert doc.fmax_climbing <= settings.climb_fmax
    assert doc.backend == "mock"
    energies = np.array(doc.image_energies)
    assert len(energies) == 7
    assert energies[0] == e_i  # endpoint energies kept, never recomputed
    assert energies[-1] == e_f
    assert doc.climbing_index == int(np.argmax(energies))
    assert doc.Ea_eV == pytest.approx(energies.max() - e_i)
    assert doc.Ea_eV - doc.Ea_reverse_eV == pytest.approx(e_f - e_i)
    assert doc.Ea_eV > 0.1
    assert doc.Ea_spline_eV >= doc.Ea_eV - 1e-9
    assert doc.n_force_calls > 0
    # path length (all atoms, Å) at least the ~a/sqrt(2) = 4.2 Å straight hop
    assert 4.0 < doc.reaction_coordinate[-1] < 7.0
    assert np.all(np.diff(doc.reaction_coordinate) > 0)
    assert NebDoc.read(tmp_path / "neb" / "result.json") == doc
    band = read(tmp_path / "neb" / "band.extxyz", index=":", format="extxyz")
    assert len(band) == 7


def test_recipe_beats_ase_plain_and_matches_tight_reference(
    relaxed_mock_endpoints: Endpoints,
) -> None:
    _, ini, fin, e_i, e_f, _, _ = relaxed_mock_endpoints

    def fire_band(images: list[Atoms], fmax: float) -> tuple[int, float]:
        for image, energy in ((images[0], e_i), (images[-1], e_f)):
            image.calc = SinglePointCalculator(
                image, energy=energy, forces=np.zeros((len(image), 3))
            )
        calcs = [CountingCalculator(MockPairCalculator()) for _ in images[1:-1]]
        for image, calc in zip(images[1:-1], calcs, strict=True):
            image.calc = calc
        neb = NEB(images, climb=True, method="improvedtangent")
        FIRE(neb, logfile=None).run(fmax=fmax, steps=3000)
        return sum(c.n_calls for c in calcs), float(max(neb.energies) - e_i)

    linear = [ini.copy() for _ in range(6)] + [fin.copy()]
    interpolate(linear, mic=True, apply_constraint=False)
    ase_calls, _ = fire_band(linear, 0.05)
    _, reference = fire_band(interpolate_images(ini, fin, 5), 0.01)
    images = interpolate_images(ini, fin, 5)
    out = optimize_band(
        images, [MockPairCalculator() for _ in range(5)], NebSettings(), e_initial=e_i, e_final=e_f
    )
    assert out.converged
    assert out.n_force_calls < ase_calls
    assert max(out.energies) - e_i == pytest.approx(reference, abs=0.01)


def _fixed_band(images: list[Atoms], e_i: float, e_f: float) -> list[CountingCalculator]:
    for image, energy in ((images[0], e_i), (images[-1], e_f)):
        image.calc = SinglePointCalculator(image, energy=energy, forces=np.zeros((len(image), 3)))
    calcs = [CountingCalculator(MockPairCalculator()) for _ in images[1:-1]]
    for image, calc in zip(images[1:-1], calcs, strict=True):
        image.calc = calc
    return calcs


def test_saddle_first_start_saves_force_calls_and_keeps_the_barrier(
    relaxed_mock_endpoints: Endpoints,
) -> None:
    _, ini, fin, e_i, e_f, _, _ = relaxed_mock_endpoints
    settings = NebSettings()
    first = optimize_band(
        interpolate_images(ini, fin, 5),
        [MockPairCalculator() for _ in range(5)],
        settings,
        e_initial=e_i,
        e_final=e_f,
    )
    plain_settings = NebSettings(saddle_first=False)
    plain = optimize_band(
        interpolate_images(ini, fin, 5),
        [MockPairCalculator() for _ in range(5)],
        plain_settings,
        e_initial=e_i,
        e_final=e_f,
    )
    assert first.start == "saddle-first"
    assert plain.start == "interpolated"
    assert first.converged
    assert plain.converged
    assert set(first.stage_force_calls) == {"saddle", "band", "check"}
    assert sum(first.stage_force_calls.values()) == first.n_force_calls
    assert first.stage_force_calls["saddle"] > 0
    # the saddle sits in the middle of the rebuilt band and stays the climbing image
    assert first.climbing_index == 3
    assert first.n_force_calls < plain.n_force_calls
    assert max(first.energies) == pytest.approx(max(plain.energies), abs=0.005)


def test_saddle_first_falls_back_when_the_path_has_no_barrier(
    relaxed_mock_endpoints: Endpoints,
) -> None:
    _, ini, _, e_i, _, _, _ = relaxed_mock_endpoints
    # downhill path: a strained copy of the relaxed initial state relaxing back into it
    strained = ini.copy()
    strained.positions[0] += (0.35, 0.0, 0.0)
    strained.calc = MockPairCalculator()
    e_strained = strained.get_potential_energy()
    strained.calc = None
    assert e_strained > e_i + 0.05
    out = optimize_band(
        interpolate_images(strained, ini, 3),
        [MockPairCalculator() for _ in range(3)],
        NebSettings(),
        e_initial=e_strained,
        e_final=e_i,
    )
    assert out.start.startswith("interpolated (")
    assert max(out.energies) <= e_strained + 1e-6


def test_band_lbfgs_meets_each_image_criterion_in_fewer_calls_than_fire(
    relaxed_mock_endpoints: Endpoints,
) -> None:
    _, ini, fin, e_i, e_f, _, _ = relaxed_mock_endpoints
    counts = {}
    for name in ("qn", "fire"):
        images = interpolate_images(ini, fin, 5)
        calcs = _fixed_band(images, e_i, e_f)
        neb = TieredNEB(images, climb=True, fmax=0.05, climb_fmax=0.01)
        opt = BandLBFGS(neb) if name == "qn" else FIRE(neb, logfile=None)
        opt.run(fmax=0.01, steps=1000)
        norms = neb.image_fmax()
        assert np.all(norms < neb.image_thresholds())
        assert norms[neb.imax - 1] < 0.01
        counts[name] = sum(c.n_calls for c in calcs)
    assert counts["qn"] < counts["fire"]


class NoiseCalculator(Calculator):
    """Random forces (seeded): a band on which no optimiser can make progress."""

    implemented_properties = ("energy", "forces")

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.rng = np.random.default_rng(seed)

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:  # type: ignore[no-untyped-def]
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        self.results = {
            "energy": float(self.rng.normal()),
            "forces": self.rng.normal(scale=0.5, size=(len(self.atoms), 3)),
        }


def test_band_lbfgs_gives_up_without_progress_and_fire_finishes() -> None:
    ini, fin = vbr_endpoints(5.945)
    images = interpolate_images(ini, fin, 3, method="linear")
    for image in (images[0], images[-1]):
        image.calc = SinglePointCalculator(image, energy=0.0, forces=np.zeros((len(image), 3)))
    for k, image in enumerate(images[1:-1]):
        image.calc = NoiseCalculator(k)
    neb = TieredNEB(images, climb=True, fmax=0.05, climb_fmax=0.02)
    opt = BandLBFGS(neb, patience=5)
    assert opt.run(steps=500) is False
    assert opt.stalled
    assert opt.nsteps < 500

    images = interpolate_images(ini, fin, 3, method="linear")
    settings = NebSettings(optimizer="qn", saddle_first=False, max_steps=100)
    out = optimize_band(
        images, [NoiseCalculator(k) for k in range(3)], settings, e_initial=0.0, e_final=0.0
    )
    assert not out.converged
    assert out.optimizer == "qn"
    assert out.stage_force_calls["fire_fallback"] > 0
    assert sum(out.stage_force_calls.values()) == out.n_force_calls


def test_auto_optimizer_is_fire_only_with_free_molecular_atoms() -> None:
    ini, fin = vbr_endpoints(5.945)
    band = interpolate_images(ini, fin, 1, method="linear")
    assert resolve_optimizer("auto", band) == "qn"
    assert resolve_optimizer("fire", band) == "fire"
    with_h = [image + Atoms("H", positions=[(1.0, 1.0, 1.0)]) for image in band]
    assert resolve_optimizer("auto", with_h) == "fire"
    for image in with_h:
        image.set_constraint(FixAtoms(indices=[len(image) - 1]))
    assert resolve_optimizer("auto", with_h) == "qn"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"alpha": -1.0}, "alpha"), ({"maxstep": 0.0}, "maxstep"), ({"memory": 0}, "memory")],
)
def test_band_lbfgs_rejects_bad_parameters(kwargs: dict, match: str) -> None:
    ini, fin = vbr_endpoints(5.945)
    neb = TieredNEB(interpolate_images(ini, fin, 1, method="linear"))
    with pytest.raises(InputError, match=match):
        BandLBFGS(neb, **kwargs)


def test_idpp_start_differs_from_linear_and_keeps_endpoints() -> None:
    ini, fin = vbr_endpoints(5.945)
    idpp = interpolate_images(ini, fin, 5, method="idpp")
    linear = interpolate_images(ini, fin, 5, method="linear")
    assert len(idpp) == 7
    np.testing.assert_allclose(idpp[0].positions, ini.positions)
    np.testing.assert_allclose(idpp[-1].positions, fin.positions)
    assert np.abs(idpp[3].positions - linear[3].positions).max() > 0.05


def test_mismatched_endpoints_are_rejected() -> None:
    ini, fin = vbr_endpoints(5.945)
    with pytest.raises(EndpointError):
        interpolate_images(ini, fin[:-1], 5)
    with pytest.raises(InputError, match="n_images"):
        interpolate_images(ini, fin, 0)


def test_tiered_neb_freezes_converged_images_but_not_the_climbing_one() -> None:
    ini, fin = vbr_endpoints(5.945)
    images = interpolate_images(ini, fin, 3)
    for image in (images[0], images[-1]):
        image.calc = SinglePointCalculator(image, energy=0.0, forces=np.zeros((len(image), 3)))
    for image in images[1:-1]:
        image.calc = MockPairCalculator()
    neb = TieredNEB(images, climb=True, fmax=1e3, climb_fmax=1e-6)
    forces = neb.get_forces().reshape(3, len(ini), 3)
    climbing = neb.imax - 1
    frozen = [k for k in range(3) if k != climbing]
    assert np.all(forces[frozen] == 0.0)
    assert np.abs(forces[climbing]).max() > 0
    before = [image.positions.copy() for image in images[1:-1]]
    neb.set_positions(neb.get_positions() + 0.01)
    for k in range(3):
        moved = not np.allclose(images[k + 1].positions, before[k])
        assert moved == (k == climbing)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"optimizer": "ode"}, "loose_optimizer only"),
        ({"fmax": -0.05}, "fmax"),
        ({"loose_optimizer": "adam"}, "adam"),
        ({"interpolation": "spline"}, "spline"),
        ({"max_steps": 0}, "max_steps"),
        ({"qn_alpha": 0.0}, "qn_alpha"),
        ({"saddle_fmax": float("nan")}, "saddle_fmax"),
        ({"qn_memory": 0}, "qn_memory"),
    ],
)
def test_bad_neb_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        NebSettings(**kwargs)


@pytest.mark.mlip
@pytest.mark.slow
def test_chgnet_vbr_barrier_is_positive_and_below_one_ev(tmp_path: Path) -> None:
    pytest.importorskip("chgnet")
    backend = get_backend("chgnet")
    unit = vbr_host(5.9, seed=0)[:5]
    unit.set_cell(np.eye(3) * 5.9)  # the slice keeps the 2x2x2 cell
    bulk = backend.relax(CalcSpec("unit", "bulk", unit, relax_cell=True), tmp_path / "unit")
    a = float(np.mean(np.linalg.norm(bulk.cell, axis=1)))
    assert 5.9 < a < 6.1
    ini, fin = vbr_endpoints(a, seed=0)
    hop = int(np.argmax(np.linalg.norm(fin.positions - ini.positions, axis=1)))
    d_i = backend.relax(CalcSpec("i", "bulk", ini, role="neb_initial"), tmp_path / "i")
    # as the engine does: the final starts from the relaxed initial (same tilt basin)
    start = final_in_initial_basin(d_i.read_structure(), fin, hop)
    d_f = backend.relax(CalcSpec("f", "bulk", start, role="neb_final"), tmp_path / "f")
    spec = NebSpec("neb-bulk", "bulk", "i", "f", n_images=5, hopping_index=hop)
    doc = backend.neb(spec, d_i, d_f, tmp_path / "neb")
    assert 0.0 < doc.Ea_eV < 1.0
    assert doc.converged
    assert doc.fmax_climbing <= NebSettings().climb_fmax


class SoftModeCalculator(Calculator):
    """Analytic hop with a soft collective mode (energies eV, lengths Å).

    Atom 0 hops along x in a double well ``A (1 - (x/a)^2)^2`` (saddle at x = 0, energy A)
    and is held stiffly in y and z; every other atom sits in an isotropic soft well
    ``k_soft |r - r0|^2 / 2`` around its reference position: the saddle has energy ``A``
    with every spectator at ``r0``.
    """

    implemented_properties = ("energy", "forces")

    def __init__(self, reference: np.ndarray, *, barrier: float, half_hop: float, k_soft: float):
        super().__init__()
        self.reference = np.array(reference, dtype=float)
        self.barrier, self.half_hop, self.k_soft = barrier, half_hop, k_soft

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes) -> None:  # type: ignore[no-untyped-def]
        super().calculate(atoms, properties, system_changes)
        assert self.atoms is not None
        d = self.atoms.positions - self.reference
        x, a, big = d[0, 0], self.half_hop, self.barrier
        u = 1.0 - (x / a) ** 2
        forces = -self.k_soft * d
        forces[0] = (4.0 * big * u * x / a**2, -5.0 * d[0, 1], -5.0 * d[0, 2])
        energy = big * u**2 + 2.5 * (d[0, 1] ** 2 + d[0, 2] ** 2)
        energy += 0.5 * self.k_soft * float((d[1:] ** 2).sum())
        self.results = {"energy": float(energy), "forces": forces}


SOFT = {"barrier": 0.3, "half_hop": 2.0, "k_soft": 0.05}


def soft_mode_band(offset: float, n_spectators: int = 9) -> tuple[list[Atoms], np.ndarray]:
    """A converged-looking band: the hop's images with every spectator displaced by ``offset``.

    Each spectator feels ``k_soft * offset`` eV/Å, below a 0.02 criterion for small
    offsets, while the climbing image sits ``n k_soft offset^2 / 2`` above the saddle.
    """
    grid = np.array([(3.0 * (i % 3), 3.0 * (i // 3), 4.0) for i in range(n_spectators)])
    reference = np.vstack([[0.0, 0.0, 0.0], grid])
    images = []
    for x in (-2.0, -1.0, 0.0, 1.0, 2.0):
        atoms = Atoms(f"BrCs{n_spectators}", positions=reference, cell=np.eye(3) * 20.0)
        atoms.positions[0, 0] = x
        if abs(x) < 2.0:
            atoms.positions[1:, 1] += offset
        images.append(atoms)
    return images, reference


def test_stopping_rule_refuses_a_climbing_image_parked_on_a_soft_mode() -> None:
    offset = 0.36  # 0.018 eV/Å per spectator: a 0.02 criterion is met
    images, reference = soft_mode_band(offset)
    for image in (images[0], images[-1]):
        image.calc = SinglePointCalculator(image, energy=0.0, forces=np.zeros((len(image), 3)))
    for image in images[1:-1]:
        image.calc = SoftModeCalculator(reference, **SOFT)
    neb = TieredNEB(images, climb=True, fmax=0.05, climb_fmax=0.02)
    neb.get_forces()
    assert neb.imax == 2
    assert np.all(neb.image_fmax() < neb.image_thresholds())  # forces alone: "converged"
    climbing = images[2]
    above = 9 * 0.5 * SOFT["k_soft"] * offset**2  # 29 meV above the saddle
    assert climbing.get_potential_energy() - SOFT["barrier"] == pytest.approx(above)
    probe = SoftModeCalculator(reference, **SOFT)
    forces = climbing.get_forces()
    estimate = estimate_saddle_error(
        forces, climbing_tangent(neb), finite_difference_hvp(climbing, probe, forces)
    )
    assert estimate.status == "ok"
    assert estimate.n_negative == 1
    assert not estimate.within(0.010)
    assert estimate.error == pytest.approx(above, rel=0.05)
    assert estimate.shift == pytest.approx(-above, rel=0.05)
    assert estimate.softest_curvature == pytest.approx(SOFT["k_soft"], rel=0.05)


def test_band_with_stopping_rule_reaches_the_saddle_the_force_rule_misses() -> None:
    results = {}
    for check in (False, True):
        images, reference = soft_mode_band(0.36)
        out = optimize_band(
            images,
            [SoftModeCalculator(reference, **SOFT) for _ in range(3)],
            NebSettings(saddle_first=False, barrier_check=check),
            e_initial=0.0,
            e_final=0.0,
        )
        results[check] = out
    old, new = results[False], results[True]
    assert old.converged  # the force criteria hold from the start
    assert max(old.energies) - SOFT["barrier"] > 0.025
    assert new.converged
    assert abs(max(new.energies) - SOFT["barrier"]) <= 0.010
    assert new.barrier_error is not None
    assert new.barrier_error <= 0.010
    assert new.check["newton_steps"] >= 1
    assert new.stage_force_calls["check"] > 0
    assert new.n_force_calls == sum(new.stage_force_calls.values())


@pytest.mark.parametrize("barrier", [0.006, 0.05])
def test_a_flat_band_stops_once_its_highest_image_bounds_the_barrier(barrier: float) -> None:
    images, reference = soft_mode_band(0.36, n_spectators=1)  # 3 meV from the spectator
    soft = {**SOFT, "barrier": barrier}
    out = optimize_band(
        images,
        [SoftModeCalculator(reference, **soft) for _ in range(3)],
        NebSettings(saddle_first=False),
        e_initial=0.0,
        e_final=0.0,
    )
    assert out.converged
    top = max(out.energies)
    if barrier < NebSettings().barrier_tol:
        # stopped on the bound: the highest image within the tolerance of the endpoints, and
        # (mountain pass) never below the true saddle
        assert out.check["history"][-1] == {"status": "flat path", "upper_bound_eV": top}
        assert out.barrier_error == top
        assert barrier <= top <= NebSettings().barrier_tol
        assert "check" not in out.stage_force_calls  # no probes were needed
    else:
        # a real barrier: the stopping rule's probes and Newton steps, never the bound
        assert out.check["history"][-1].get("status") != "flat path"
        assert abs(top - barrier) <= 0.010
        assert out.stage_force_calls["check"] > 0


def test_budget_limited_band_says_it_stopped_early_with_an_estimated_error() -> None:
    images, reference = soft_mode_band(0.36)
    budget = 10
    out = optimize_band(
        images,
        [SoftModeCalculator(reference, **SOFT) for _ in range(3)],
        NebSettings(saddle_first=False, max_force_calls=budget),
        e_initial=0.0,
        e_final=0.0,
    )
    assert not out.converged
    assert out.stopped_early
    assert "budget" in out.stop_reason
    assert out.n_force_calls <= budget
    # the estimate belongs to the reported band: its climbing image is 29 meV too high
    reported = max(out.energies) - SOFT["barrier"]
    assert out.barrier_error is not None
    assert out.barrier_error > 0.010
    assert out.barrier_error == pytest.approx(reported, rel=0.1)


def test_budget_limited_mock_band_stays_within_budget_and_reports_why(
    relaxed_mock_endpoints: Endpoints, tmp_path: Path
) -> None:
    _, ini, fin, e_i, e_f, _, _ = relaxed_mock_endpoints
    settings = NebSettings(max_force_calls=25)
    doc = run_band(
        ini,
        fin,
        MockPairCalculator,
        tmp_path / "neb",
        path="neb-bulk",
        backend="mock",
        e_initial=e_i,
        e_final=e_f,
        settings=settings,
    )
    assert doc.stopped_early
    assert not doc.converged
    assert "budget" in doc.stop_reason
    assert doc.n_force_calls <= 25
    assert doc.n_oracle_calls == doc.n_force_calls
    assert doc.barrier_confirmed
    assert doc.barrier_tolerance_eV == settings.barrier_tol
    assert NebDoc.read(tmp_path / "neb" / "result.json") == doc


def test_refused_saddle_model_steps_up_the_tangent_and_down_every_other_mode() -> None:
    hessian = np.diag([-1.0, -2.0, 3.0])  # two negative curvatures: not a first-order saddle
    x = np.array([0.1, 0.1, 0.1])  # displacement from the stationary point (Å)
    forces = (-hessian @ x).reshape(1, 3)
    estimate = estimate_saddle_error(
        forces, np.array([[1.0, 0.0, 0.0]]), lambda v: hessian @ v, max_probes=3
    )
    assert estimate.n_negative == 2
    assert not estimate.within(1.0)
    # uphill back to 0 along the tangent, downhill away along the second negative mode,
    # downhill to 0 along the positive one
    assert np.allclose(estimate.step.reshape(-1), [-0.1, 0.1, -0.1])

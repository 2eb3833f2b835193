"""Partial-Hessian analysis against analytic models whose frequencies are known exactly.

Unit conversions in these tests use CODATA constants from scipy, not phonopy's, so they
check the module's units independently: ν = (1/2π) sqrt(k/m) with k in eV/Å² and m in amu.
"""

from __future__ import annotations

import json
import math
from typing import Any, ClassVar

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from scipy import constants as sc

from pqdflow.analysis.vibrations import (
    NOISE_TOLERANCE_THZ,
    HopVibDoc,
    VibrationalDoc,
    binding_free_energy,
    compare_hops,
    count_imaginary,
    default_ligand_subset,
    default_neb_subset,
    diffusion_coefficient,
    displaced_structures,
    hop_rate,
    hop_vibrations,
    modes_from_forces,
    path_tangent,
    plot_vibrational_spectrum,
    vibrational_analysis,
    vibrational_free_energy,
    vineyard_prefactor,
    zero_point_energy,
)
from pqdflow.errors import InputError, VibrationalError


def nu_thz(k_ev_a2: float, mass_amu: float) -> float:
    """Harmonic frequency (THz) from a force constant (eV/Å²) and a mass (amu), SI route."""
    omega = math.sqrt(k_ev_a2 * sc.e / 1e-20 / (mass_amu * sc.atomic_mass))
    return omega / (2 * math.pi) / 1e12


class QuadraticCalculator(Calculator):
    """E = ½ uᵀ K u with u the displacement from reference positions (K in eV/Å²)."""

    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]

    def __init__(self, reference: np.ndarray, k_matrix: np.ndarray) -> None:
        super().__init__()
        self.reference = np.array(reference, float)
        self.k_matrix = np.array(k_matrix, float)

    def calculate(
        self, atoms: Any = None, properties: Any = None, system_changes: Any = all_changes
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        u = (self.atoms.positions - self.reference).ravel()
        f = -self.k_matrix @ u
        self.results = {"energy": 0.5 * float(u @ self.k_matrix @ u), "forces": f.reshape(-1, 3)}


class DoubleWellCalculator(Calculator):
    """Atom 0 in V = a((x/L)² - 1)² + ½ k_y y² + ½ k_z z² (about ``origin``); the others
    sit in isotropic wells of stiffness k_env at their reference positions.

    Minima at x = ±L, saddle at x = 0 with barrier a; d²V/dx² = 8a/L² at a minimum and
    -4a/L² at the saddle.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]

    def __init__(
        self,
        reference: np.ndarray,
        *,
        a: float,
        half_length: float,
        k_y: float,
        k_z: float,
        k_env: float,
    ) -> None:
        super().__init__()
        self.reference = np.array(reference, float)
        self.a, self.L, self.k_y, self.k_z, self.k_env = a, half_length, k_y, k_z, k_env

    def calculate(
        self, atoms: Any = None, properties: Any = None, system_changes: Any = all_changes
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        pos = self.atoms.positions
        x, y, z = pos[0] - self.reference[0]
        s = (x / self.L) ** 2 - 1.0
        energy = self.a * s**2 + 0.5 * self.k_y * y**2 + 0.5 * self.k_z * z**2
        forces = np.zeros_like(pos)
        forces[0] = [-4 * self.a * s * x / self.L**2, -self.k_y * y, -self.k_z * z]
        u = pos[1:] - self.reference[1:]
        energy += 0.5 * self.k_env * float((u**2).sum())
        forces[1:] = -self.k_env * u
        self.results = {"energy": float(energy), "forces": forces}


def _two_atoms(cell: Any = (10.0, 10.0, 10.0)) -> Atoms:
    return Atoms("HO", positions=[[1.0, 1.0, 1.0], [2.0, 1.5, 1.0]], cell=cell, pbc=True)


# ------------------------------------------------------------------ harmonic frequencies
def test_single_atom_spring_gives_textbook_frequency() -> None:
    atoms = Atoms("H", positions=[[0, 0, 0]], cell=[8, 8, 8], pbc=True)
    k = np.diag([1.0, 4.0, 9.0])
    calc = QuadraticCalculator(atoms.positions, k)
    doc = vibrational_analysis(atoms, calc, [0])
    m = float(atoms.get_masses()[0])
    expected = [nu_thz(1.0, m), nu_thz(4.0, m), nu_thz(9.0, m)]
    assert doc.frequencies_THz == pytest.approx(expected, rel=1e-5)
    # 1 eV/Å² on 1 amu is 15.633 THz (phonopy's 'VaspToTHz'), cross-checked via SI.
    assert nu_thz(1.0, 1.0) == pytest.approx(15.633, abs=1e-3)
    assert doc.n_imaginary == 0
    assert doc.n_force_calls == 6 + 1
    assert doc.max_force_eV_A == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    "cell",
    [(10.0, 10.0, 10.0), [[9.0, 0.0, 0.0], [3.0, 8.0, 0.0], [1.0, 2.0, 7.0]]],
    ids=["cubic", "triclinic"],
)
def test_partial_hessian_equals_mass_weighted_block(cell: Any) -> None:
    """A coupled 3-atom quadratic model; the subset {0, 2} must see exactly K[S, S]."""
    atoms = Atoms("HOC", positions=[[1, 1, 1], [2, 1.5, 1], [3, 2, 2.5]], cell=cell, pbc=True)
    rng = np.random.default_rng(3)
    a = rng.normal(size=(9, 9))
    k = a @ a.T + 2.0 * np.eye(9)  # positive definite, every atom coupled to every other
    calc = QuadraticCalculator(atoms.positions, k)
    subset = [0, 2]
    doc = vibrational_analysis(atoms, calc, subset)
    rows = np.r_[0:3, 6:9]
    m = np.repeat(atoms.get_masses()[subset], 3)
    dyn = k[np.ix_(rows, rows)] / np.sqrt(np.outer(m, m))
    # eigenvalues of the mass-weighted block in eV/(Å² amu) -> THz through the SI route
    expected = sorted(nu_thz(float(w), 1.0) for w in np.linalg.eigvalsh(dyn))
    assert doc.frequencies_THz == pytest.approx(expected, rel=1e-5)
    # the frozen atom 1 matters: the full 3-atom Hessian has different frequencies
    full = vibrational_analysis(atoms, calc, [0, 1, 2])
    assert len(full.frequencies_THz) == 9
    assert not np.allclose(full.frequencies_THz[:6], doc.frequencies_THz, rtol=1e-3)


def test_modes_are_orthonormal_mass_weighted_eigenvectors() -> None:
    atoms = _two_atoms()
    k = np.diag([2.0, 3.0, 5.0, 7.0, 11.0, 13.0])
    k[0, 3] = k[3, 0] = -1.0
    doc = vibrational_analysis(atoms, QuadraticCalculator(atoms.positions, k), [0, 1])
    e = np.array(doc.modes)
    assert e @ e.T == pytest.approx(np.eye(6), abs=1e-8)
    m = np.repeat(atoms.get_masses(), 3)
    dyn = k / np.sqrt(np.outer(m, m))
    for row, nu in zip(e, doc.frequencies_THz, strict=True):
        # D e = ω² e  with ω² in eV/(Å² amu): recover ν and compare
        w2 = float(row @ dyn @ row)
        assert nu_thz(w2, 1.0) == pytest.approx(nu, rel=1e-5)


def test_displaced_structures_move_one_subset_atom_by_delta() -> None:
    atoms = _two_atoms()
    moved = displaced_structures(atoms, [1], 0.02)
    assert len(moved) == 6  # ± along three directions
    for m in moved:
        d = np.linalg.norm(m.positions - atoms.positions, axis=1)
        assert d[0] == 0.0
        assert d[1] == pytest.approx(0.02)
    assert atoms.positions[1] == pytest.approx([2.0, 1.5, 1.0])  # input untouched


def test_empty_subset_and_bad_indices_are_clear_errors() -> None:
    atoms = _two_atoms()
    calc = QuadraticCalculator(atoms.positions, np.eye(6))
    with pytest.raises(VibrationalError, match="empty atom subset"):
        vibrational_analysis(atoms, calc, [])
    with pytest.raises(VibrationalError, match=r"\[5\] are outside 0..1"):
        vibrational_analysis(atoms, calc, [0, 5])
    with pytest.raises(VibrationalError, match="repeats"):
        vibrational_analysis(atoms, calc, [0, 0])
    with pytest.raises(VibrationalError, match="need 6 force arrays"):
        modes_from_forces(atoms, [0], [np.zeros((2, 3))])


def test_default_subsets() -> None:
    atoms = Atoms(
        "PbBrPbCsC",
        positions=[[0, 0, 0], [3.0, 0, 0], [6.0, 0, 0], [3.0, 4.2, 0], [9, 9, 9]],
        cell=[12, 12, 12],
        pbc=True,
    )
    assert default_neb_subset([atoms], 1) == [0, 1, 2]  # Br + both Pb, not Cs at 4.2 Å
    moved = atoms.copy()
    moved.positions[1] = [3.0, 3.0, 0.0]  # now within 1.2 Å of Cs
    assert default_neb_subset([atoms, moved], 1) == [0, 1, 2, 3]
    with pytest.raises(VibrationalError, match="hop index 7"):
        default_neb_subset([atoms], 7)
    atoms.info["ligands"] = [{"name": "X", "site": "top", "indices": [4]}]
    assert default_ligand_subset(atoms, 0) == [4]
    atoms.info["ligands"] = [{"name": "X", "site": "top", "indices": [1]}]
    assert default_ligand_subset(atoms, 0) == [0, 1, 2]
    with pytest.raises(VibrationalError, match="ligand 1 not found"):
        default_ligand_subset(atoms, 1)


# ------------------------------------------------------------------ thermochemistry
def test_zpe_and_free_energy_match_closed_form() -> None:
    nus = [1.0, 5.0, 12.0]  # THz
    h_ev = sc.h / sc.e  # eV s
    kb_ev = sc.k / sc.e  # eV/K
    t = 300.0
    e = [h_ev * n * 1e12 for n in nus]
    zpe = 0.5 * sum(e)
    f = zpe + sum(kb_ev * t * math.log(1 - math.exp(-x / (kb_ev * t))) for x in e)
    # imaginary and noise-level modes are ignored
    freqs = [-3.0, 0.5 * NOISE_TOLERANCE_THZ, *nus]
    assert zero_point_energy(freqs) == pytest.approx(zpe, rel=1e-6)
    # phonopy's kB (CODATA 2006) differs from CODATA 2018 by 6e-7 relative
    assert vibrational_free_energy(freqs, t) == pytest.approx(f, rel=1e-5)
    assert vibrational_free_energy(freqs, 0.0) == pytest.approx(zpe, rel=1e-6)
    # classical limit: F -> kT ln(hν/kT) per mode when hν << kT
    soft = 0.3
    t_hot = 5000.0
    x = h_ev * soft * 1e12
    assert vibrational_free_energy([soft], t_hot) == pytest.approx(
        kb_ev * t_hot * math.log(x / (kb_ev * t_hot)), rel=1e-3
    )
    # rigid-body modes of a free molecule are dropped by |ν|, whatever their sign
    assert zero_point_energy([-0.4, 0.3, 5.0], skip_lowest=2) == pytest.approx(
        0.5 * h_ev * 5e12, rel=1e-6
    )
    with pytest.raises(InputError, match="temperature"):
        vibrational_free_energy(nus, -1.0)


def test_binding_free_energy_adds_vibrational_difference() -> None:
    doc = binding_free_energy(-1.20, 0.50, 0.30, 0.15, temperature_K=300.0)
    assert doc.delta_f_vib_eV == pytest.approx(0.50 - 0.15 - 0.30)
    assert doc.binding_free_energy_eV == pytest.approx(-1.20 + 0.05)
    one_mode = VibrationalDoc("ads", [0], ["H"], [10.0], [[1.0]], [1.0])
    doc2 = binding_free_energy(-1.0, one_mode, 0.0, temperature_K=0.0)
    assert doc2.f_vib_adsorbed_eV == pytest.approx(0.5 * sc.h / sc.e * 10e12, rel=1e-6)


# ------------------------------------------------------------------ saddle + hTST
A_EV, HALF_L, K_Y, K_Z, K_ENV = 0.30, 1.5, 4.0, 6.0, 8.0


def _double_well_hop() -> tuple[DoubleWellCalculator, list[Atoms]]:
    ref = np.array([[5.0, 5.0, 5.0], [8.0, 5.0, 5.0], [5.0, 8.0, 5.0]])
    atoms = Atoms("BrPbPb", positions=ref, cell=[12, 12, 12], pbc=True)
    calc = DoubleWellCalculator(ref, a=A_EV, half_length=HALF_L, k_y=K_Y, k_z=K_Z, k_env=K_ENV)
    images = []
    for x in (-HALF_L, -0.5 * HALF_L, 0.0, 0.5 * HALF_L, HALF_L):
        img = atoms.copy()
        img.positions[0, 0] += x
        images.append(img)
    return calc, images


def test_double_well_saddle_and_vineyard_rate_are_analytic() -> None:
    calc, images = _double_well_hop()
    subset = [0, 1]  # the hopping atom and one (decoupled) neighbour
    ini, sad, fin = (
        vibrational_analysis(images[i], calc, subset, label=lab)
        for i, lab in ((0, "initial"), (2, "saddle"), (4, "final"))
    )
    m = float(images[0].get_masses()[0])
    assert sad.frequencies_THz[0] == pytest.approx(-nu_thz(4 * A_EV / HALF_L**2, m), rel=1e-4)
    assert (ini.n_imaginary, sad.n_imaginary, fin.n_imaginary) == (0, 1, 0)
    doc = hop_vibrations(
        ini,
        sad,
        fin,
        path_tangent(images[1], images[3]),
        hop_index=0,
        hop_length_A=2 * HALF_L,
        temperature_K=400.0,
    )
    assert doc.saddle_mode_tangent_overlap == pytest.approx(1.0, abs=1e-6)
    assert doc.is_first_order_saddle
    assert doc.endpoints_are_minima
    assert doc.Ea_eV == pytest.approx(A_EV, abs=1e-12)
    # ν* = ν_x(minimum): every other mode is identical at minimum and saddle
    nu_star = nu_thz(8 * A_EV / HALF_L**2, m)
    assert doc.prefactor_THz == pytest.approx(nu_star, rel=1e-4)
    kb_ev = sc.k / sc.e
    k300 = nu_star * 1e12 * math.exp(-A_EV / (kb_ev * 300.0))  # 1/s
    assert doc.rate_300K_per_s == pytest.approx(k300, rel=1e-4)
    assert doc.rate_T_per_s == pytest.approx(
        nu_star * 1e12 * math.exp(-A_EV / (kb_ev * 400.0)), rel=1e-4
    )
    # D = z k a² / 6 with a = 3 Å = 3e-8 cm and z = 8
    assert doc.D_300K_cm2_per_s == pytest.approx(8 * k300 * (3e-8) ** 2 / 6, rel=1e-4)
    # ZPE-corrected barrier loses the reaction mode's ZPE
    assert doc.Ea_zpe_eV == pytest.approx(A_EV - 0.5 * sc.h / sc.e * nu_star * 1e12, rel=1e-4)
    back = HopVibDoc.from_dict(json.loads(json.dumps(doc.as_dict())))
    assert back == doc
    vib_back = VibrationalDoc.from_dict(json.loads(json.dumps(sad.as_dict())))
    assert vib_back == sad


def test_mode_perpendicular_to_path_is_flagged() -> None:
    calc, images = _double_well_hop()
    ini, sad, fin = (vibrational_analysis(images[i], calc, [0]) for i in (0, 2, 4))
    sideways = np.zeros((3, 3))
    sideways[0] = [0.0, 1.0, 0.0]
    doc = hop_vibrations(ini, sad, fin, sideways, hop_index=0, hop_length_A=3.0)
    assert doc.saddle_mode_tangent_overlap == pytest.approx(0.0, abs=1e-6)
    assert not doc.is_first_order_saddle
    assert any("not the hop" in n for n in doc.notes)


def test_vineyard_refuses_wrong_mode_counts() -> None:
    with pytest.raises(VibrationalError, match="exactly one imaginary"):
        vineyard_prefactor([1.0, 2.0], [1.0, 2.0])
    with pytest.raises(VibrationalError, match="not a minimum"):
        vineyard_prefactor([-1.0, 2.0], [-1.0, 2.0])
    calc, images = _double_well_hop()
    ini = vibrational_analysis(images[0], calc, [0])
    doc = hop_vibrations(ini, ini, ini, np.ones((3, 3)), hop_index=0, hop_length_A=3.0)
    assert doc.prefactor_THz is None
    assert doc.rate_300K_per_s is None
    assert doc.n_imaginary_saddle == 0
    assert any("no Vineyard rate" in n for n in doc.notes)


def test_rate_and_diffusion_units() -> None:
    # ν* = 1 THz and Ea = 0: k = 1e12 1/s exactly; a = 1 Å, z = 6, 3D: D = 1e12 * 1e-16 = 1e-4 cm²/s
    assert hop_rate(1.0, 0.0, 300.0) == pytest.approx(1e12)
    assert diffusion_coefficient(1e12, 1.0, n_equivalent_hops=6) == pytest.approx(1e-4)
    assert diffusion_coefficient(1e12, 1.0, n_equivalent_hops=4, dimension=2) == pytest.approx(1e-4)
    # Arrhenius: a 0.1 eV barrier slows a 300 K hop by exp(0.1 / kT) = 47.6
    assert hop_rate(1.0, 0.0, 300.0) / hop_rate(1.0, 0.1, 300.0) == pytest.approx(
        math.exp(0.1 / (sc.k / sc.e * 300)), rel=1e-5
    )
    with pytest.raises(InputError, match="temperature"):
        hop_rate(1.0, 0.1, 0.0)
    assert count_imaginary([-1.0, -0.1, 0.0, 3.0], 0.2) == 1


def test_compare_hops_ratios() -> None:
    calc, images = _double_well_hop()
    ini, sad, fin = (vibrational_analysis(images[i], calc, [0]) for i in (0, 2, 4))
    t = path_tangent(images[1], images[3])
    control = hop_vibrations(ini, sad, fin, t, hop_index=0, hop_length_A=3.0)
    treated = hop_vibrations(ini, sad, fin, t, hop_index=0, hop_length_A=3.0, barrier_eV=A_EV + 0.1)
    cmp = compare_hops(control, treated)
    assert cmp["delta_Ea_eV"] == pytest.approx(0.1)
    assert cmp["prefactor_ratio"] == pytest.approx(1.0)
    assert cmp["rate_ratio_300K"] == pytest.approx(math.exp(-0.1 / (sc.k / sc.e * 300)), rel=1e-5)
    assert cmp["D_ratio_300K"] == pytest.approx(cmp["rate_ratio_300K"])


def test_plot_vibrational_spectrum_writes_png(tmp_path: Any) -> None:
    calc, images = _double_well_hop()
    ini, sad, fin = (vibrational_analysis(images[i], calc, [0, 1]) for i in (0, 2, 4))
    doc = hop_vibrations(
        ini, sad, fin, path_tangent(images[1], images[3]), hop_index=0, hop_length_A=3.0
    )
    for obj, name in ((doc, "hop.png"), (sad, "saddle.png")):
        out = plot_vibrational_spectrum(obj, tmp_path / "figs" / name)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_free_diatomic_stretch_and_rigid_body_modes() -> None:
    """Br2 without a cell under the mock potential: 5 rigid-body modes + the stretch.

    The stretch must be sqrt(k/μ)/2π with k = d²E/dr² taken independently from energies.
    """
    from ase.optimize import BFGS

    from pqdflow.workflows.engine.calculators import MockPairCalculator

    # the mock's earlier, wider X-X well: its switching is gentle at the Br2 minimum, so the
    # finite-difference stretch stays harmonic to 1e-3 (the default well is cut at 1.25 r0)
    OLD_X2 = {"anion_pair_cutoff": 1.45}

    mol = Atoms("Br2", positions=[[0, 0, 0], [0, 0, 2.3]])
    mol.calc = MockPairCalculator(**OLD_X2)
    BFGS(mol, logfile=None).run(fmax=1e-6, steps=200)
    r0 = mol.get_distance(0, 1)
    h = 1e-3

    def energy(r: float) -> float:
        probe = Atoms("Br2", positions=[[0, 0, 0], [0, 0, r]])
        probe.calc = MockPairCalculator(**OLD_X2)
        return float(probe.get_potential_energy())

    k = (energy(r0 + h) - 2 * energy(r0) + energy(r0 - h)) / h**2
    mu = mol.get_masses()[0] / 2
    doc = vibrational_analysis(mol, MockPairCalculator(**OLD_X2), [0, 1], n_rigid_body_modes=5)
    by_size = sorted(doc.frequencies_THz, key=abs)
    assert max(abs(f) for f in by_size[:5]) < NOISE_TOLERANCE_THZ
    assert by_size[5] == pytest.approx(nu_thz(k, mu), rel=1e-3)
    assert doc.zero_point_energy() == pytest.approx(0.5 * sc.h / sc.e * by_size[5] * 1e12, rel=1e-6)


def test_default_ligand_subset_on_a_placed_ligand() -> None:
    from pqdflow.structures.adsorption import place_ligand
    from pqdflow.structures.slabs import build_slab

    ads = place_ligand(build_slab(x=3.0, termination="CsX", size=(2, 2), layers=4), "TMSBr")
    own = ads.info["ligands"][0]["indices"]
    subset = default_ligand_subset(ads, 0, cutoff_A=3.6)
    assert set(own) < set(subset)
    extra = [i for i in subset if i not in own]
    assert extra  # surface neighbours join the ligand
    for i in extra:  # minimum-image distance to the nearest ligand atom
        assert ads.get_distances(i, own, mic=True).min() < 3.6
    others = [i for i in range(len(ads)) if i not in subset]
    assert min(ads.get_distances(i, own, mic=True).min() for i in others) >= 3.6

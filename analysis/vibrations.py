"""Partial-Hessian vibrational analysis with phonopy: saddle checks, ZPE / F_vib, hTST rates.

Only a chosen subset of atoms vibrates (a *partial Hessian*); every other atom stays frozen.
The subset is handed to phonopy as its "cell" (same lattice, subset positions and masses,
no symmetry, identity supercell): phonopy generates the ±δ finite displacements, solves the
force constants and diagonalises the Gamma-point dynamical matrix. The forces it is fed come
from the **full** structure with the subset atom displaced, sliced to the subset rows, so the
frozen environment enters every force constant. Feeding phonopy the subset alone as a
crystal (no environment) would be wrong; displacing every atom would cost 3N/3n times more.
No translational sum rule is imposed: a pinned subset does not obey one. The force constants
are only made symmetric, ``(Φ + Φᵀ)/2``.

Conventions: frequencies in THz with imaginary modes shown as negative numbers (phonopy's
convention); energies in eV; lengths in Å; rates in 1/s; diffusion coefficients in cm²/s.
Modes with ``|ν| < NOISE_TOLERANCE_THZ`` (0.2 THz, 0.8 meV) count as numerical noise: they
are neither imaginary nor used in ZPE/F_vib. With δ = 0.01 Å, CHGNet's float32 forces split
symmetry-degenerate modes of cubic CsPbBr3 by ~1e-4 THz (measured); VASP forces converged to
EDIFF = 1e-6 (force noise ~1e-4 eV/Å) give force-constant noise ~5e-3 eV/Å², i.e. ~0.1 THz
for Br. Genuinely soft real modes below 0.2 THz (Br transverse modes in the ideal cube) are
therefore also left out of F_vib. The calculator is any ASE calculator passed in; this module
never imports :mod:`pqdflow.workflows`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.geometry import find_mic
from phonopy import Phonopy
from phonopy.physical_units import get_physical_units
from phonopy.structure.atoms import PhonopyAtoms

from pqdflow.errors import InputError, VibrationalError
from pqdflow.provenance import provenance

__all__ = [
    "DEFAULT_DISPLACEMENT_A",
    "DEFAULT_SHELL_CUTOFF_A",
    "MIN_TANGENT_OVERLAP",
    "NOISE_TOLERANCE_THZ",
    "BindingFreeEnergyDoc",
    "HopGeometry",
    "HopVibDoc",
    "VibrationalDoc",
    "binding_free_energy",
    "compare_hops",
    "count_imaginary",
    "default_ligand_subset",
    "default_neb_subset",
    "diffusion_coefficient",
    "displaced_structures",
    "displacement_dataset",
    "hop_geometry",
    "hop_rate",
    "hop_vibrations",
    "mode_tangent_overlap",
    "modes_from_forces",
    "neb_vibrations",
    "path_tangent",
    "plot_vibrational_spectrum",
    "vibrational_analysis",
    "vibrational_free_energy",
    "vineyard_prefactor",
    "zero_point_energy",
]

#: Finite-displacement amplitude (Å); phonopy's default for VASP.
DEFAULT_DISPLACEMENT_A = 0.01
#: Neighbour-shell cutoff around the migrating halide / ligand atoms (Å). It takes the two
#: Pb neighbours of a halide (Pb-Br 2.9-3.0 Å) but not the next Br/Cs shell (≈4.2 Å).
DEFAULT_SHELL_CUTOFF_A = 3.6
#: |ν| below this (THz) is finite-difference noise, not a mode.
NOISE_TOLERANCE_THZ = 0.2
#: Smallest |overlap| of the saddle's imaginary mode with the path tangent that passes.
MIN_TANGENT_OVERLAP = 0.5

_UNITS = get_physical_units()
#: Planck constant times 1 THz, in eV.
THZ_TO_EV: float = float(_UNITS.THzToEv)
#: Boltzmann constant (eV/K).
KB_EV_PER_K: float = float(_UNITS.KB)


@dataclass
class VibrationalDoc:
    """Partial-Hessian normal modes of one structure.

    Attributes
    ----------
    label
        Free label (``"initial"``, ``"saddle"``, ``"final"``, ``"adsorbed"``, ...).
    indices
        Indices of the vibrating atoms in the full structure; all others were frozen.
    symbols
        Chemical symbols of those atoms.
    frequencies_THz
        3n frequencies in ascending order (THz); imaginary modes are negative.
    modes
        Mass-weighted eigenvector of each mode (length 3n, unit norm), same order.
    masses_amu
        Masses used for the vibrating atoms (amu).
    displacement_A
        Finite-displacement amplitude (Å), ± along three directions per atom.
    tolerance_THz
        |ν| below this is numerical noise.
    energy_eV
        Energy of the undisplaced structure (eV), if known.
    max_force_eV_A
        Largest force on a vibrating atom in the undisplaced structure (eV/Å): how far from
        stationary the reference geometry was.
    n_force_calls
        Force evaluations used.
    n_rigid_body_modes
        Lowest-|ν| modes that are free translations/rotations (6, or 5 if linear, for an
        isolated molecule with every atom vibrating; 0 for a subset in a frozen host). They
        are left out of ZPE and F_vib.
    provenance
        Code versions and the calculator's name.
    """

    label: str
    indices: list[int]
    symbols: list[str]
    frequencies_THz: list[float]
    modes: list[list[float]]
    masses_amu: list[float]
    displacement_A: float = DEFAULT_DISPLACEMENT_A
    tolerance_THz: float = NOISE_TOLERANCE_THZ
    energy_eV: float | None = None
    max_force_eV_A: float | None = None
    n_force_calls: int = 0
    n_rigid_body_modes: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    doc_type: str = "VibrationalDoc"

    @property
    def n_imaginary(self) -> int:
        """Number of modes with ν < -tolerance."""
        return count_imaginary(self.frequencies_THz, self.tolerance_THz)

    def zero_point_energy(self) -> float:
        """Zero-point energy of the real modes (eV)."""
        return zero_point_energy(
            self.frequencies_THz,
            tolerance_THz=self.tolerance_THz,
            skip_lowest=self.n_rigid_body_modes,
        )

    def free_energy(self, temperature_K: float) -> float:
        """Harmonic vibrational free energy at ``temperature_K`` (eV), ZPE included."""
        return vibrational_free_energy(
            self.frequencies_THz,
            temperature_K,
            tolerance_THz=self.tolerance_THz,
            skip_lowest=self.n_rigid_body_modes,
        )

    def cartesian_mode(self, k: int) -> np.ndarray:
        """Cartesian displacement pattern of mode ``k``, shape (n, 3), unit norm."""
        e = np.asarray(self.modes[k], float).reshape(-1, 3)
        u = e / np.sqrt(np.asarray(self.masses_amu, float))[:, None]
        return u / np.linalg.norm(u)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VibrationalDoc:
        """Inverse of :meth:`as_dict`."""
        return cls(**data)


def count_imaginary(
    frequencies_THz: Sequence[float] | np.ndarray, tolerance_THz: float = NOISE_TOLERANCE_THZ
) -> int:
    """Count the frequencies below ``-tolerance_THz`` (imaginary modes, THz)."""
    return int(np.sum(np.asarray(frequencies_THz, float) < -abs(tolerance_THz)))


def _check_indices(atoms: Atoms, indices: Sequence[int]) -> list[int]:
    idx = [int(i) for i in indices]
    if not idx:
        raise VibrationalError(
            "empty atom subset: nothing would vibrate; pass at least one atom index "
            f"in 0..{len(atoms) - 1} (or a hop index / ligand to build a default subset)"
        )
    bad = [i for i in idx if not 0 <= i < len(atoms)]
    if bad:
        raise VibrationalError(f"atom indices {bad} are outside 0..{len(atoms) - 1}")
    if len(set(idx)) != len(idx):
        raise VibrationalError(f"atom subset {idx} repeats indices; give each atom once")
    return idx


def _neighbours(atoms: Atoms, centres: Sequence[int], cutoff_A: float) -> set[int]:
    """Atoms within ``cutoff_A`` (minimum image) of any of ``centres``."""
    found: set[int] = set()
    for c in centres:
        d = atoms.positions - atoms.positions[c]
        if atoms.pbc.any():
            d, _ = find_mic(d, atoms.cell, atoms.pbc)
        dist = np.linalg.norm(d, axis=1)
        found.update(int(i) for i in np.flatnonzero(dist < cutoff_A))
    return found


def default_neb_subset(
    structures: Sequence[Atoms], hop_index: int, *, cutoff_A: float = DEFAULT_SHELL_CUTOFF_A
) -> list[int]:
    """Migrating halide plus every atom within ``cutoff_A`` (Å) of it in any structure.

    Taking the union over the structures (initial, saddle, final) keeps one subset for all
    three Hessians, which the Vineyard prefactor needs.

    Raises
    ------
    VibrationalError
        ``hop_index`` outside the structure, or structures of different length.
    """
    if not structures:
        raise VibrationalError("default_neb_subset needs at least one structure")
    n = len(structures[0])
    if any(len(s) != n for s in structures):
        raise VibrationalError(f"structures differ in length: {[len(s) for s in structures]}")
    if not 0 <= hop_index < n:
        raise VibrationalError(f"hop index {hop_index} is outside 0..{n - 1}")
    found: set[int] = set()
    for s in structures:
        found |= _neighbours(s, [hop_index], cutoff_A)
    return sorted(found)


def default_ligand_subset(
    atoms: Atoms, ligand: int = 0, *, cutoff_A: float = DEFAULT_SHELL_CUTOFF_A
) -> list[int]:
    """Atoms of ligand number ``ligand`` (``atoms.info["ligands"]``) plus surface neighbours.

    Surface neighbours are the non-ligand atoms within ``cutoff_A`` (Å) of any ligand atom.

    Raises
    ------
    VibrationalError
        No ligand record, ``ligand`` out of range, or a ligand with no atoms.
    """
    records = atoms.info.get("ligands") or []
    if not 0 <= ligand < len(records):
        raise VibrationalError(
            f"ligand {ligand} not found: the structure records {len(records)} ligand(s) in "
            "atoms.info['ligands']"
        )
    own = _check_indices(atoms, records[ligand].get("indices", []))
    return sorted(_neighbours(atoms, own, cutoff_A) | set(own))


def _phonopy_cell(atoms: Atoms, indices: Sequence[int]) -> Phonopy:
    cell = np.array(atoms.cell.array, float)
    if abs(np.linalg.det(cell)) < 1e-6:  # molecule without a cell: any big box will do
        span = np.ptp(atoms.positions, axis=0) if len(atoms) else np.zeros(3)
        cell = np.diag(span + 20.0)
    unit = PhonopyAtoms(
        symbols=[atoms[i].symbol for i in indices],
        cell=cell,
        positions=atoms.positions[list(indices)],
        masses=atoms.get_masses()[list(indices)],
    )
    return Phonopy(
        unit,
        supercell_matrix=np.eye(3, dtype=int),
        primitive_matrix=np.eye(3),
        is_symmetry=False,
        log_level=0,
    )


def _first_atoms(ph: Phonopy, displacement_A: float) -> list[dict[str, Any]]:
    """Let phonopy generate ±δ displacements; return its type-1 dataset entries."""
    ph.generate_displacements(distance=displacement_A, is_plusminus=True)
    dataset: dict[str, Any] = dict(ph.dataset or {})
    return list(dataset["first_atoms"])


def displacement_dataset(
    atoms: Atoms, indices: Sequence[int], displacement_A: float = DEFAULT_DISPLACEMENT_A
) -> list[tuple[int, list[float]]]:
    """List the ±δ displacements phonopy asks for: (full-structure index, Cartesian Å).

    Raises
    ------
    VibrationalError
        Empty or invalid subset.
    InputError
        Non-positive displacement.
    """
    idx = _check_indices(atoms, indices)
    if not displacement_A > 0:
        raise InputError(f"displacement must be > 0 Å, got {displacement_A}")
    ph = _phonopy_cell(atoms, idx)
    return [
        (idx[int(d["number"])], [float(x) for x in d["displacement"]])
        for d in _first_atoms(ph, displacement_A)
    ]


def displaced_structures(
    atoms: Atoms, indices: Sequence[int], displacement_A: float = DEFAULT_DISPLACEMENT_A
) -> list[Atoms]:
    """Copy ``atoms`` once per displacement, one subset atom moved each (no constraints)."""
    out = []
    for i, vec in displacement_dataset(atoms, indices, displacement_A):
        moved = atoms.copy()
        del moved.constraints
        moved.positions[i] += vec
        out.append(moved)
    return out


def modes_from_forces(
    atoms: Atoms,
    indices: Sequence[int],
    forces: Sequence[np.ndarray],
    *,
    displacement_A: float = DEFAULT_DISPLACEMENT_A,
    label: str = "",
    tolerance_THz: float = NOISE_TOLERANCE_THZ,
    energy_eV: float | None = None,
    reference_forces: np.ndarray | None = None,
    extra_provenance: dict[str, Any] | None = None,
    n_rigid_body_modes: int = 0,
) -> VibrationalDoc:
    """Compute normal modes from full-structure forces of the :func:`displaced_structures`.

    Parameters
    ----------
    atoms
        Undisplaced structure.
    indices
        Vibrating atoms (same order as given to :func:`displaced_structures`).
    forces
        One (N, 3) force array (eV/Å) per displaced structure, in phonopy's order.
    displacement_A
        The amplitude the structures were made with (Å).
    reference_forces
        Forces of the undisplaced structure (eV/Å), to report the residual force.

    Raises
    ------
    VibrationalError
        Wrong number or shape of force arrays, or non-finite forces.
    """
    idx = _check_indices(atoms, indices)
    ph = _phonopy_cell(atoms, idx)
    n_disp = len(_first_atoms(ph, displacement_A))
    if len(forces) != n_disp:
        raise VibrationalError(
            f"need {n_disp} force arrays for {len(idx)} atoms, got {len(forces)}"
        )
    arrays = [np.asarray(f, float) for f in forces]
    if any(a.shape != (len(atoms), 3) for a in arrays):
        raise VibrationalError(f"each force array must have shape ({len(atoms)}, 3)")
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise VibrationalError("non-finite forces in a displaced structure")
    ph.forces = np.array([a[idx] for a in arrays])
    ph.produce_force_constants(fc_calculator="traditional", show_drift=False)
    fc = np.asarray(ph.force_constants)
    ph.force_constants = 0.5 * (fc + fc.transpose(1, 0, 3, 2))
    gamma = ph.run_qpoints([[0.0, 0.0, 0.0]], with_eigenvectors=True)
    freqs, vecs = np.asarray(gamma.frequencies)[0], np.asarray(gamma.eigenvectors)[0]
    order = np.argsort(freqs)
    max_f = None
    if reference_forces is not None:
        max_f = float(np.linalg.norm(np.asarray(reference_forces, float)[idx], axis=1).max())
    return VibrationalDoc(
        label=label,
        indices=idx,
        symbols=[atoms[i].symbol for i in idx],
        frequencies_THz=[float(freqs[k]) for k in order],
        modes=[np.real(vecs[:, k]).tolist() for k in order],
        masses_amu=[float(m) for m in atoms.get_masses()[idx]],
        displacement_A=float(displacement_A),
        tolerance_THz=float(tolerance_THz),
        energy_eV=energy_eV,
        max_force_eV_A=max_f,
        n_force_calls=n_disp + (reference_forces is not None),
        n_rigid_body_modes=int(n_rigid_body_modes),
        provenance=provenance(**(extra_provenance or {})),
    )


def vibrational_analysis(
    atoms: Atoms,
    calculator: BaseCalculator,
    indices: Sequence[int],
    *,
    displacement_A: float = DEFAULT_DISPLACEMENT_A,
    label: str = "",
    tolerance_THz: float = NOISE_TOLERANCE_THZ,
    n_rigid_body_modes: int = 0,
) -> VibrationalDoc:
    """Partial-Hessian modes of ``atoms`` with ``calculator`` (6n + 1 force calls).

    For an isolated molecule vibrate every atom and set ``n_rigid_body_modes`` to 6 (5 if
    linear) so ZPE / F_vib leave the translations and rotations out.

    Raises
    ------
    VibrationalError
        Empty or invalid subset.
    """
    idx = _check_indices(atoms, indices)
    ref = atoms.copy()
    del ref.constraints
    ref.calc = calculator
    energy = float(ref.get_potential_energy())
    ref_forces = np.array(ref.get_forces())
    forces = []
    for moved in displaced_structures(atoms, idx, displacement_A):
        moved.calc = calculator
        forces.append(np.array(moved.get_forces()))
    return modes_from_forces(
        atoms,
        idx,
        forces,
        displacement_A=displacement_A,
        label=label,
        tolerance_THz=tolerance_THz,
        energy_eV=energy,
        reference_forces=ref_forces,
        extra_provenance={"calculator": type(calculator).__name__},
        n_rigid_body_modes=n_rigid_body_modes,
    )


# --------------------------------------------------------------------------- thermochemistry
def _real_modes(
    frequencies_THz: Sequence[float], tolerance_THz: float, skip_lowest: int
) -> np.ndarray:
    f = np.asarray(frequencies_THz, float)
    if not 0 <= skip_lowest <= len(f):
        raise InputError(f"skip_lowest must be in 0..{len(f)}, got {skip_lowest}")
    f = f[np.argsort(np.abs(f))][skip_lowest:]
    return f[f > abs(tolerance_THz)]


def zero_point_energy(
    frequencies_THz: Sequence[float],
    *,
    tolerance_THz: float = NOISE_TOLERANCE_THZ,
    skip_lowest: int = 0,
) -> float:
    """ZPE = Σ hν/2 over real modes above the tolerance (eV).

    ``skip_lowest`` drops that many lowest-|ν| modes first (rigid-body modes of a molecule).
    """
    return float(0.5 * THZ_TO_EV * _real_modes(frequencies_THz, tolerance_THz, skip_lowest).sum())


def vibrational_free_energy(
    frequencies_THz: Sequence[float],
    temperature_K: float,
    *,
    tolerance_THz: float = NOISE_TOLERANCE_THZ,
    skip_lowest: int = 0,
) -> float:
    """Harmonic F_vib(T) = Σ [hν/2 + kT ln(1 - exp(-hν/kT))] over real modes (eV).

    Imaginary modes, modes below the tolerance and the ``skip_lowest`` lowest-|ν| modes
    (rigid-body modes of a free molecule) are left out. At T = 0 this is the ZPE.

    Raises
    ------
    InputError
        Negative temperature.
    """
    if not temperature_K >= 0:
        raise InputError(f"temperature must be >= 0 K, got {temperature_K}")
    e = THZ_TO_EV * _real_modes(frequencies_THz, tolerance_THz, skip_lowest)
    zpe = 0.5 * e.sum()
    if temperature_K == 0:
        return float(zpe)
    kt = KB_EV_PER_K * temperature_K
    return float(zpe + kt * np.log1p(-np.exp(-e / kt)).sum())


@dataclass(frozen=True)
class BindingFreeEnergyDoc:
    """Binding free energy ΔG_b(T) = E_b + ΔF_vib(T), all in eV.

    ``ΔF_vib = F(adsorbed) - F(surface) - F(ligand)``: the vibrating subsets of the adsorbed
    surface, of the clean surface (the same surface atoms) and of the free ligand. Only
    harmonic vibrations: the free ligand's translational and rotational free energy is not
    included.
    """

    temperature_K: float
    binding_energy_eV: float
    f_vib_adsorbed_eV: float
    f_vib_surface_eV: float
    f_vib_ligand_eV: float
    delta_f_vib_eV: float
    binding_free_energy_eV: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def binding_free_energy(
    binding_energy_eV: float,
    adsorbed: VibrationalDoc | float,
    ligand: VibrationalDoc | float,
    surface: VibrationalDoc | float = 0.0,
    *,
    temperature_K: float = 300.0,
) -> BindingFreeEnergyDoc:
    """ΔG_b(T) beside E_b from the three vibrational contributions.

    Each contribution is a :class:`VibrationalDoc` (F_vib taken at ``temperature_K``) or an
    F_vib value already in eV. ``surface`` defaults to 0 (clean-surface vibrations ignored).
    """

    def f(x: VibrationalDoc | float) -> float:
        return x.free_energy(temperature_K) if isinstance(x, VibrationalDoc) else float(x)

    fa, fl, fs = f(adsorbed), f(ligand), f(surface)
    delta = fa - fs - fl
    return BindingFreeEnergyDoc(
        temperature_K=float(temperature_K),
        binding_energy_eV=float(binding_energy_eV),
        f_vib_adsorbed_eV=fa,
        f_vib_surface_eV=fs,
        f_vib_ligand_eV=fl,
        delta_f_vib_eV=delta,
        binding_free_energy_eV=float(binding_energy_eV) + delta,
    )


# --------------------------------------------------------------------------- saddle check
def path_tangent(before: Atoms, after: Atoms) -> np.ndarray:
    """Return the unit path tangent (N, 3) from the images around one (minimum image)."""
    if len(before) != len(after):
        raise VibrationalError(f"images differ in length: {len(before)} vs {len(after)}")
    d = after.positions - before.positions
    if before.pbc.any():
        d, _ = find_mic(d, before.cell, before.pbc)
    norm = float(np.linalg.norm(d))
    if norm == 0:
        raise VibrationalError("the images around the saddle coincide: no path tangent")
    return np.asarray(d / norm)


def mode_tangent_overlap(doc: VibrationalDoc, tangent: np.ndarray, mode: int = 0) -> float:
    """|cos| between mode ``mode``'s Cartesian displacement and the tangent on the subset.

    Parameters
    ----------
    doc
        Modes of the saddle image (mode 0 is the lowest, i.e. the most imaginary).
    tangent
        Path tangent of the full structure, shape (N, 3) (any norm).
    """
    t = np.asarray(tangent, float)[doc.indices].ravel()
    norm = float(np.linalg.norm(t))
    if norm == 0:
        raise VibrationalError(
            f"the path tangent vanishes on the vibrating atoms {doc.indices}; include the "
            "migrating atom in the subset"
        )
    return float(abs(doc.cartesian_mode(mode).ravel() @ t) / norm)


# --------------------------------------------------------------------------- rates
def vineyard_prefactor(
    initial_THz: Sequence[float],
    saddle_THz: Sequence[float],
    *,
    tolerance_THz: float = NOISE_TOLERANCE_THZ,
) -> float:
    """Vineyard prefactor ν* = Π ν_i(initial, N modes) / Π ν_j(saddle, N-1 real modes) (THz).

    Raises
    ------
    VibrationalError
        Different mode counts, an initial state that is not a minimum, or a saddle without
        exactly one imaginary mode (beyond the tolerance) and N - 1 positive ones.
    """
    ini = np.sort(np.asarray(initial_THz, float))
    sad = np.sort(np.asarray(saddle_THz, float))
    if len(ini) != len(sad) or len(ini) < 2:
        raise VibrationalError(
            f"initial and saddle need equal mode counts (>= 2), got {len(ini)} and {len(sad)}"
        )
    if ini[0] <= abs(tolerance_THz):
        raise VibrationalError(
            f"initial state is not a minimum: lowest mode {ini[0]:.3f} THz (need > {tolerance_THz})"
        )
    if count_imaginary(sad, tolerance_THz) != 1 or sad[1] <= abs(tolerance_THz):
        raise VibrationalError(
            f"saddle must have exactly one imaginary mode and {len(sad) - 1} real ones; lowest "
            f"modes are {sad[:3].round(3).tolist()} THz (tolerance {tolerance_THz} THz)"
        )
    return float(np.exp(np.log(ini).sum() - np.log(sad[1:]).sum()))


def hop_rate(prefactor_THz: float, barrier_eV: float, temperature_K: float) -> float:
    """Harmonic-TST hop rate k = ν* exp(-Ea / kB T) in 1/s (ν* in THz, Ea in eV, T in K)."""
    if not temperature_K > 0:
        raise InputError(f"temperature must be > 0 K for a rate, got {temperature_K}")
    if not prefactor_THz > 0:
        raise InputError(f"prefactor must be > 0 THz, got {prefactor_THz}")
    return float(prefactor_THz * 1e12 * math.exp(-barrier_eV / (KB_EV_PER_K * temperature_K)))


def diffusion_coefficient(
    rate_per_s: float, hop_length_A: float, *, n_equivalent_hops: int = 8, dimension: int = 3
) -> float:
    """Random-walk D = z k a² / (2d) in cm²/s (k in 1/s, a in Å).

    ``z`` (``n_equivalent_hops``) is the number of equivalent destinations: 8 for a halide
    vacancy in cubic ABX3 (8 halide neighbours along the octahedron edges); ``d`` the
    dimension of the walk (3 in bulk, 2 within a surface layer).
    """
    if n_equivalent_hops < 1 or dimension not in (1, 2, 3):
        raise InputError(
            f"need n_equivalent_hops >= 1 and dimension 1..3, got {n_equivalent_hops}, {dimension}"
        )
    return float(n_equivalent_hops * rate_per_s * (hop_length_A * 1e-8) ** 2 / (2 * dimension))


@dataclass
class HopVibDoc:
    """Saddle check and harmonic-TST rate of one NEB hop (eV, Å, THz, 1/s, cm²/s).

    ``prefactor_THz`` and the rates are None where the Vineyard formula does not apply
    (saddle without exactly one imaginary mode, or an endpoint that is not a minimum);
    ``notes`` says why. ``Ea_zpe_eV`` adds the ZPE difference of the subset.
    """

    label: str
    hop_index: int
    indices: list[int]
    temperature_K: float
    Ea_eV: float
    hop_length_A: float
    n_imaginary_initial: int
    n_imaginary_saddle: int
    n_imaginary_final: int
    saddle_mode_tangent_overlap: float
    saddle_frequency_THz: float
    is_first_order_saddle: bool
    endpoints_are_minima: bool
    prefactor_THz: float | None
    rate_300K_per_s: float | None
    rate_T_per_s: float | None
    D_300K_cm2_per_s: float | None
    D_T_cm2_per_s: float | None
    Ea_zpe_eV: float
    frequencies_initial_THz: list[float]
    frequencies_saddle_THz: list[float]
    frequencies_final_THz: list[float]
    tolerance_THz: float = NOISE_TOLERANCE_THZ
    min_tangent_overlap: float = MIN_TANGENT_OVERLAP
    n_equivalent_hops: int = 8
    dimension: int = 3
    n_force_calls: int = 0
    neb_converged: bool = True
    backend: str = ""
    source: str = ""
    notes: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    doc_type: str = "HopVibDoc"

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HopVibDoc:
        """Inverse of :meth:`as_dict`."""
        return cls(**data)


def hop_vibrations(
    initial: VibrationalDoc,
    saddle: VibrationalDoc,
    final: VibrationalDoc,
    tangent: np.ndarray,
    *,
    hop_index: int,
    hop_length_A: float,
    barrier_eV: float | None = None,
    temperature_K: float = 300.0,
    n_equivalent_hops: int = 8,
    dimension: int = 3,
    min_tangent_overlap: float = MIN_TANGENT_OVERLAP,
    label: str = "",
    backend: str = "",
    source: str = "",
) -> HopVibDoc:
    """Saddle check + Vineyard rate from the three partial Hessians of one hop.

    Parameters
    ----------
    initial, saddle, final
        Modes of the two endpoints and the climbing image, on the same atom subset.
    tangent
        Path tangent at the saddle, shape (N, 3).
    hop_length_A
        Distance the migrating atom travels (Å), for D.
    barrier_eV
        Activation energy (eV); default ``saddle.energy_eV - initial.energy_eV``.
    temperature_K
        Device temperature (K); 300 K is always reported too.

    Raises
    ------
    VibrationalError
        Subsets differ, or no barrier is given and the docs carry no energies.
    """
    if not (initial.indices == saddle.indices == final.indices):
        raise VibrationalError("initial, saddle and final must vibrate the same atom subset")
    if barrier_eV is None:
        if initial.energy_eV is None or saddle.energy_eV is None:
            raise VibrationalError("no barrier given and the vibrational docs carry no energies")
        barrier_eV = saddle.energy_eV - initial.energy_eV
    tol = initial.tolerance_THz
    counts = [count_imaginary(d.frequencies_THz, tol) for d in (initial, saddle, final)]
    overlap = mode_tangent_overlap(saddle, tangent)
    first_order = counts[1] == 1 and overlap >= min_tangent_overlap
    minima = counts[0] == 0 and counts[2] == 0
    notes: list[str] = []
    prefactor = rate_300 = rate_t = d_300 = d_t = None
    try:
        prefactor = vineyard_prefactor(
            initial.frequencies_THz, saddle.frequencies_THz, tolerance_THz=tol
        )
    except VibrationalError as exc:
        notes.append(f"no Vineyard rate: {exc}")
    if prefactor is not None:
        rate_300 = hop_rate(prefactor, barrier_eV, 300.0)
        rate_t = hop_rate(prefactor, barrier_eV, temperature_K)
        d_300, d_t = (
            diffusion_coefficient(
                k, hop_length_A, n_equivalent_hops=n_equivalent_hops, dimension=dimension
            )
            for k in (rate_300, rate_t)
        )
    if counts[1] == 1 and overlap < min_tangent_overlap:
        notes.append(
            f"the imaginary mode overlaps the path tangent by only {overlap:.2f} "
            f"(< {min_tangent_overlap}): it is not the hop"
        )
    if counts[2]:
        notes.append(f"final state has {counts[2]} imaginary mode(s): not a minimum")
    # ZPE of the saddle leaves the reaction mode out (it is imaginary, hence not 'real').
    zpe_shift = saddle.zero_point_energy() - initial.zero_point_energy()
    return HopVibDoc(
        label=label,
        hop_index=int(hop_index),
        indices=list(initial.indices),
        temperature_K=float(temperature_K),
        Ea_eV=float(barrier_eV),
        hop_length_A=float(hop_length_A),
        n_imaginary_initial=counts[0],
        n_imaginary_saddle=counts[1],
        n_imaginary_final=counts[2],
        saddle_mode_tangent_overlap=overlap,
        saddle_frequency_THz=float(saddle.frequencies_THz[0]),
        is_first_order_saddle=first_order,
        endpoints_are_minima=minima,
        prefactor_THz=prefactor,
        rate_300K_per_s=rate_300,
        rate_T_per_s=rate_t,
        D_300K_cm2_per_s=d_300,
        D_T_cm2_per_s=d_t,
        Ea_zpe_eV=float(barrier_eV + zpe_shift),
        frequencies_initial_THz=list(initial.frequencies_THz),
        frequencies_saddle_THz=list(saddle.frequencies_THz),
        frequencies_final_THz=list(final.frequencies_THz),
        tolerance_THz=tol,
        min_tangent_overlap=float(min_tangent_overlap),
        n_equivalent_hops=int(n_equivalent_hops),
        dimension=int(dimension),
        n_force_calls=initial.n_force_calls + saddle.n_force_calls + final.n_force_calls,
        backend=backend,
        source=source,
        notes=notes,
        provenance=provenance(displacement_A=initial.displacement_A),
    )


@dataclass(frozen=True)
class HopGeometry:
    """Where the hop is in a band: migrating atom, saddle image, hop length (Å), tangent."""

    hop_index: int
    climbing_index: int
    hop_length_A: float
    tangent: np.ndarray


def hop_geometry(
    images: Sequence[Atoms],
    *,
    hop_index: int | None = None,
    climbing_index: int | None = None,
    calculator: BaseCalculator | None = None,
) -> HopGeometry:
    """Locate the hop in a band (endpoints included).

    ``hop_index`` defaults to the atom that moves furthest from first to last image
    (minimum image); ``climbing_index`` to the highest interior image, from the energies the
    images carry or, failing that, from ``calculator``. The tangent is the central
    difference around the saddle image.

    Raises
    ------
    VibrationalError
        Fewer than 3 images, indices out of range, or no way to find the saddle.
    """
    if len(images) < 3:
        raise VibrationalError(
            f"a band needs >= 3 images (initial, saddle, final), got {len(images)}"
        )
    initial, final = images[0], images[-1]
    hop_vec = final.positions - initial.positions
    if initial.pbc.any():
        hop_vec, _ = find_mic(hop_vec, initial.cell, initial.pbc)
    moved = np.linalg.norm(hop_vec, axis=1)
    hop = int(np.argmax(moved)) if hop_index is None else int(hop_index)
    if not 0 <= hop < len(initial):
        raise VibrationalError(f"hop index {hop} is outside 0..{len(initial) - 1}")
    if climbing_index is None:
        energies = []
        for im in images[1:-1]:
            stored = im.calc.results.get("energy") if im.calc is not None else None
            if stored is None and calculator is None:
                raise VibrationalError("images carry no energies: give the climbing index")
            if stored is None:
                probe = im.copy()
                probe.calc = calculator
                stored = probe.get_potential_energy()
            energies.append(float(stored))
        climbing_index = 1 + int(np.argmax(energies))
    if not 0 < climbing_index < len(images) - 1:
        raise VibrationalError(
            f"climbing index {climbing_index} must be an interior image, 1..{len(images) - 2}"
        )
    tangent = path_tangent(images[climbing_index - 1], images[climbing_index + 1])
    return HopGeometry(hop, int(climbing_index), float(moved[hop]), tangent)


def neb_vibrations(
    images: Sequence[Atoms],
    calculator: BaseCalculator,
    *,
    hop_index: int | None = None,
    climbing_index: int | None = None,
    indices: Sequence[int] | None = None,
    cutoff_A: float = DEFAULT_SHELL_CUTOFF_A,
    displacement_A: float = DEFAULT_DISPLACEMENT_A,
    **hop_options: Any,
) -> HopVibDoc:
    """Saddle check and Vineyard rate of a converged band (3 × (6n + 1) force calls).

    Parameters
    ----------
    images
        The band, endpoints included; see :func:`hop_geometry` for the defaults of
        ``hop_index`` and ``climbing_index``.
    calculator
        Any ASE calculator; energies and Hessians of all three states come from it.
    indices
        Vibrating atoms; default :func:`default_neb_subset` with ``cutoff_A`` (Å).
    hop_options
        Passed to :func:`hop_vibrations` (``barrier_eV``, ``temperature_K``,
        ``n_equivalent_hops``, ``dimension``, ``label``, ``backend``, ``source``, ...).

    Raises
    ------
    VibrationalError
        A bad band (see :func:`hop_geometry`) or a subset without the migrating atom.
    """
    geo = hop_geometry(
        images, hop_index=hop_index, climbing_index=climbing_index, calculator=calculator
    )
    initial, saddle, final = images[0], images[geo.climbing_index], images[-1]
    if indices is None:
        indices = default_neb_subset([initial, saddle, final], geo.hop_index, cutoff_A=cutoff_A)
    indices = _check_indices(initial, indices)
    if geo.hop_index not in indices:
        raise VibrationalError(
            f"the subset {list(indices)} must contain the migrating atom {geo.hop_index}"
        )
    docs = [
        vibrational_analysis(im, calculator, indices, displacement_A=displacement_A, label=lab)
        for im, lab in ((initial, "initial"), (saddle, "saddle"), (final, "final"))
    ]
    return hop_vibrations(
        docs[0],
        docs[1],
        docs[2],
        geo.tangent,
        hop_index=geo.hop_index,
        hop_length_A=geo.hop_length_A,
        **hop_options,
    )


def compare_hops(control: HopVibDoc, treated: HopVibDoc) -> dict[str, float | None]:
    """Treated vs control: barrier shift (eV) and rate / diffusion ratios (treated / control).

    Ratios are None where either side has no rate. ``temperature_K`` is the treated doc's.
    """

    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    return {
        "temperature_K": treated.temperature_K,
        "delta_Ea_eV": treated.Ea_eV - control.Ea_eV,
        "prefactor_ratio": ratio(treated.prefactor_THz, control.prefactor_THz),
        "rate_ratio_300K": ratio(treated.rate_300K_per_s, control.rate_300K_per_s),
        "rate_ratio_T": ratio(treated.rate_T_per_s, control.rate_T_per_s),
        "D_ratio_300K": ratio(treated.D_300K_cm2_per_s, control.D_300K_cm2_per_s),
        "D_ratio_T": ratio(treated.D_T_cm2_per_s, control.D_T_cm2_per_s),
    }


def plot_vibrational_spectrum(doc: VibrationalDoc | HopVibDoc, path: str | Path) -> Path:
    """Stick spectrum (THz; imaginary modes drawn at negative ν, in red); returns the path.

    A :class:`HopVibDoc` gives one row per state (initial, saddle, final); the grey band is
    the ±tolerance inside which modes count as noise.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if isinstance(doc, HopVibDoc):
        rows = [
            ("initial", doc.frequencies_initial_THz),
            ("saddle", doc.frequencies_saddle_THz),
            ("final", doc.frequencies_final_THz),
        ]
        title = f"{doc.label or 'hop'}: ν* = " + (
            f"{doc.prefactor_THz:.2f} THz" if doc.prefactor_THz is not None else "n/a"
        )
    else:
        rows = [(doc.label or "modes", doc.frequencies_THz)]
        title = f"{doc.label or 'modes'}: {len(doc.frequencies_THz)} modes"
    tol = doc.tolerance_THz
    fig = Figure(figsize=(5.0, 1.0 + 0.8 * len(rows)), layout="constrained")
    ax = fig.add_subplot()
    for y, (_, freqs) in enumerate(rows):
        f = np.asarray(freqs, float)
        colours = np.where(f < -tol, "#C44E52", "#4C72B0")
        ax.vlines(f, y - 0.35, y + 0.35, colors=list(colours), linewidth=1.5)
    ax.axvspan(-tol, tol, color="0.85", zorder=0)
    ax.set_yticks(range(len(rows)), [name for name, _ in rows])
    ax.set_xlabel("frequency (THz; imaginary < 0)")
    ax.set_title(title, fontsize=9)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=150)
    return out

"""Partial-Hessian vibrational analysis with phonopy: normal modes, ZPE / F_vib, ΔG_b.

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

Saddle checks and harmonic-TST rates of a hop live in :mod:`pqdflow.analysis.rates`; their
names are re-exported here (loaded on first use) so ``from pqdflow.analysis.vibrations
import hop_vibrations`` keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.geometry import find_mic
from phonopy import Phonopy
from phonopy.physical_units import get_physical_units
from phonopy.structure.atoms import PhonopyAtoms

from pqdflow.errors import InputError, VibrationalError
from pqdflow.provenance import provenance

if TYPE_CHECKING:
    from pqdflow.analysis.rates import (
        MIN_TANGENT_OVERLAP,
        HopGeometry,
        HopVibDoc,
        compare_hops,
        diffusion_coefficient,
        hop_geometry,
        hop_rate,
        hop_vibrations,
        mode_tangent_overlap,
        neb_vibrations,
        path_tangent,
        vineyard_prefactor,
    )

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


# Hidden from mypy, which takes the typed imports under TYPE_CHECKING above instead.
if not TYPE_CHECKING:

    def __getattr__(name: str) -> Any:
        """Load a re-exported :mod:`pqdflow.analysis.rates` name on first access (PEP 562).

        Every name of ``__all__`` not defined in this module comes from ``rates``, which imports
        this module and so cannot be imported at the top of it.
        """
        if name in __all__:
            from pqdflow.analysis import rates

            return getattr(rates, name)
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def plot_vibrational_spectrum(doc: VibrationalDoc | HopVibDoc, path: str | Path) -> Path:
    """Stick spectrum (THz; imaginary modes drawn at negative ν, in red); returns the path.

    A :class:`HopVibDoc` gives one row per state (initial, saddle, final); the grey band is
    the ±tolerance inside which modes count as noise.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from pqdflow.analysis.rates import HopVibDoc

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

"""Harmonic transition-state theory for one NEB hop: saddle check, Vineyard rate, diffusion.

The three partial Hessians (initial, saddle, final) come from
:mod:`pqdflow.analysis.vibrations` on one common atom subset. The saddle counts as a
first-order saddle of the hop when it has exactly one imaginary mode and that mode overlaps
the path tangent by at least :data:`MIN_TANGENT_OVERLAP`. The Vineyard prefactor
ν* = Π ν(initial) / Π ν(saddle, real) gives the rate k = ν* exp(-Ea / kB T) and the
random-walk diffusion coefficient D = z k a² / (2d).

Conventions as in :mod:`pqdflow.analysis.vibrations`: frequencies in THz (imaginary < 0),
energies in eV, lengths in Å, rates in 1/s, diffusion coefficients in cm²/s. The calculator
is any ASE calculator passed in; this module never imports :mod:`pqdflow.workflows`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.geometry import find_mic

from pqdflow.analysis.vibrations import (
    DEFAULT_DISPLACEMENT_A,
    DEFAULT_SHELL_CUTOFF_A,
    KB_EV_PER_K,
    NOISE_TOLERANCE_THZ,
    VibrationalDoc,
    _check_indices,
    count_imaginary,
    default_neb_subset,
    vibrational_analysis,
)
from pqdflow.errors import InputError, VibrationalError
from pqdflow.provenance import provenance

__all__ = [
    "MIN_TANGENT_OVERLAP",
    "HopGeometry",
    "HopVibDoc",
    "compare_hops",
    "diffusion_coefficient",
    "hop_geometry",
    "hop_rate",
    "hop_vibrations",
    "mode_tangent_overlap",
    "neb_vibrations",
    "path_tangent",
    "vineyard_prefactor",
]

#: Smallest |overlap| of the saddle's imaginary mode with the path tangent that passes.
MIN_TANGENT_OVERLAP = 0.5


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

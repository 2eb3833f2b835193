"""Extended Data Fig. 4d observable: lattice constant vs x and the predicted Bragg peaks.

The relaxed bulk CsPbBr(x)I(3-x) cells of a study give a pseudo-cubic lattice constant
``a = (V / n_fu)^(1/3)`` per composition, next to Vegard's law between the experimental
CsPbBr3 and CsPbI3 constants. Bragg peaks (hkl, d, q, 2-theta) at a given X-ray energy
(17.998 keV, the paper's GIWAXS) come from pymatgen's
:class:`~pymatgen.analysis.diffraction.xrd.XRDCalculator` (kinematic powder pattern with
atomic scattering factors).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ase import Atoms

from pqdflow.errors import InputError
from pqdflow.structures.bulk import vegard_a

__all__ = [
    "GIWAXS_ENERGY_KEV",
    "BraggPeak",
    "bragg_peaks",
    "lattice_table",
    "plot_lattice_and_peaks",
    "pseudo_cubic_a",
    "xray_wavelength",
]

#: keV, the X-ray energy of the paper's GIWAXS (Extended Data Fig. 4d).
GIWAXS_ENERGY_KEV: float = 17.998
_HC_KEV_ANGSTROM = 12.398419843320026  # h c in keV Å (CODATA 2018)


@dataclass(frozen=True)
class BraggPeak:
    """One powder Bragg peak.

    Attributes
    ----------
    hkl
        Miller indices of the (first) reflecting family, in the cell given.
    d
        Interplanar spacing, Å.
    q
        Scattering vector length 2 pi / d, 1/Å.
    two_theta
        Scattering angle 2-theta at the chosen energy, degrees.
    intensity
        Relative intensity (strongest peak = 100).
    """

    hkl: tuple[int, ...]
    d: float
    q: float
    two_theta: float
    intensity: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def xray_wavelength(energy_kev: float) -> float:
    """Return the X-ray wavelength (Å) of a photon energy in keV (17.998 keV -> 0.6889 Å)."""
    if not (isinstance(energy_kev, int | float) and math.isfinite(energy_kev) and energy_kev > 0):
        raise InputError(f"energy_kev={energy_kev!r} must be a positive number of keV")
    return _HC_KEV_ANGSTROM / float(energy_kev)


def pseudo_cubic_a(atoms: Atoms, formula_units: int) -> float:
    """Pseudo-cubic lattice constant ``(V / formula_units)^(1/3)`` of a bulk cell, Å."""
    if formula_units < 1:
        raise InputError(f"formula_units={formula_units} must be >= 1")
    return float((atoms.get_volume() / formula_units) ** (1.0 / 3.0))


def bragg_peaks(
    atoms: Atoms,
    *,
    energy_kev: float = GIWAXS_ENERGY_KEV,
    two_theta_max: float = 30.0,
    min_intensity: float = 1.0,
) -> list[BraggPeak]:
    """Powder Bragg peaks of a periodic structure at ``energy_kev``.

    Parameters
    ----------
    atoms
        Bulk cell (fully periodic).
    energy_kev
        Photon energy, keV (default 17.998, the paper's GIWAXS).
    two_theta_max
        Largest 2-theta, degrees.
    min_intensity
        Drop peaks weaker than this (strongest = 100).

    Returns
    -------
    list of BraggPeak
        In order of 2-theta.
    """
    from pymatgen.analysis.diffraction.xrd import XRDCalculator
    from pymatgen.io.ase import AseAtomsAdaptor

    if not atoms.pbc.all():
        raise InputError("bragg_peaks needs a fully periodic bulk cell")
    wavelength = xray_wavelength(energy_kev)
    structure = AseAtomsAdaptor.get_structure(atoms)
    pattern = XRDCalculator(wavelength=wavelength).get_pattern(
        structure, scaled=True, two_theta_range=(0.0, float(two_theta_max))
    )
    peaks = []
    for two_theta, intensity, hkls, d in zip(
        pattern.x, pattern.y, pattern.hkls, pattern.d_hkls, strict=True
    ):
        if intensity < min_intensity:
            continue
        hkl = tuple(int(i) for i in hkls[0]["hkl"])
        peaks.append(
            BraggPeak(
                hkl=hkl,
                d=round(float(d), 5),
                q=round(2.0 * math.pi / float(d), 5),
                two_theta=round(float(two_theta), 4),
                intensity=round(float(intensity), 2),
            )
        )
    return peaks


def lattice_table(
    bulks: Sequence[tuple[float, Atoms, int]],
    *,
    energy_kev: float = GIWAXS_ENERGY_KEV,
    two_theta_max: float = 30.0,
) -> list[dict[str, Any]]:
    """Relaxed lattice constant and Bragg peaks per composition.

    Parameters
    ----------
    bulks
        ``(x, relaxed bulk cell, formula units)`` per composition.
    energy_kev, two_theta_max
        See :func:`bragg_peaks`.

    Returns
    -------
    list of dict
        Sorted by x: ``{"x", "a", "a_vegard", "strain_vs_vegard", "energy_kev",
        "wavelength", "peaks": [BraggPeak dicts]}`` (lengths in Å).
    """
    rows = []
    for x, atoms, n_fu in sorted(bulks, key=lambda b: b[0]):
        a = pseudo_cubic_a(atoms, n_fu)
        ref = vegard_a(x)
        rows.append(
            {
                "x": float(x),
                "a": round(a, 5),
                "a_vegard": round(ref, 5),
                "strain_vs_vegard": round(a / ref - 1.0, 5),
                "energy_kev": float(energy_kev),
                "wavelength": round(xray_wavelength(energy_kev), 6),
                "peaks": [
                    p.as_dict()
                    for p in bragg_peaks(atoms, energy_kev=energy_kev, two_theta_max=two_theta_max)
                ],
            }
        )
    return rows


def plot_lattice_and_peaks(rows: Sequence[Mapping[str, Any]], path: str | Path) -> Path:
    """Two panels: lattice constant vs x (relaxed and Vegard); the peaks' 2-theta vs x.

    Writes ``path`` (PNG) and returns it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    xs = [r["x"] for r in rows]
    left.plot(xs, [r["a"] for r in rows], "o-", label="relaxed (this study)")
    left.plot(xs, [r["a_vegard"] for r in rows], "s--", label="Vegard (experiment)")
    left.set_xlabel("x in CsPbBr(x)I(3-x)")
    left.set_ylabel("pseudo-cubic a (Å)")
    left.legend(fontsize=8)
    for r in rows:
        peaks = r["peaks"]
        right.scatter(
            [p["two_theta"] for p in peaks],
            [r["x"]] * len(peaks),
            s=[4 + p["intensity"] for p in peaks],
        )
        for p in peaks[:3]:
            right.annotate("".join(map(str, p["hkl"])), (p["two_theta"], r["x"]), fontsize=6)
    energy = rows[0]["energy_kev"] if rows else GIWAXS_ENERGY_KEV
    right.set_xlabel(f"2θ (degrees) at {energy:g} keV")
    right.set_ylabel("x")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path

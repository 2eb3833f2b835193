"""Halide-vacancy formation energies against a halide chemical potential range.

``E_f(V_X) = E(host with V_X) - E(host) + mu_X`` for a neutral vacancy cell (the ML
backends have no charge; charged VASP cells would need the electron chemical potential and
a finite-size correction, which this module does not apply).

The halide chemical potential spans, from the calculator's own references
(:func:`halide_potential_limits`):

* halide-rich: ``mu_X = E(X2) / 2`` (equilibrium with the X2 molecule);
* halide-poor: CsPbX3 in equilibrium with CsX and Pb metal,
  ``mu_X = [E(CsPbX3) - E(CsX) - E(Pb)] / 2`` (per formula unit / atom): below it, Pb
  precipitates.

The effective migration activation of a hop is its vacancy's formation energy plus the
migration barrier (vacancies made thermally, not present already).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pqdflow.errors import InputError

__all__ = ["FORMATION_REFERENCES", "halide_potential_limits", "vacancy_formation_energy"]

#: Reference calculations (plan names) per halide: (X2 molecule, CsPbX3 bulk, CsX bulk, Pb).
FORMATION_REFERENCES: dict[str, tuple[str, str, str, str]] = {
    "Br": ("ref-Br2", "bulk-x3", "ref-CsBr", "ref-Pb"),
    "I": ("ref-I2", "bulk-x0", "ref-CsI", "ref-Pb"),
}


def halide_potential_limits(
    energies_per_unit: Mapping[str, float],
) -> dict[str, dict[str, Any]]:
    """Halide-rich and halide-poor chemical potentials (eV) from reference energies.

    Parameters
    ----------
    energies_per_unit
        Plan name -> energy per formula unit (molecule: per molecule; Pb: per atom), eV,
        for the names in :data:`FORMATION_REFERENCES`; halides whose references are
        missing are left out.

    Returns
    -------
    dict
        Halide -> ``{"rich": mu, "poor": mu, "references": {...}, "definition": str}``.
    """
    out: dict[str, dict[str, Any]] = {}
    for halide, (x2, perov, csx, pb) in FORMATION_REFERENCES.items():
        if not all(n in energies_per_unit for n in (x2, perov, csx, pb)):
            continue
        rich = energies_per_unit[x2] / 2.0
        poor = (energies_per_unit[perov] - energies_per_unit[csx] - energies_per_unit[pb]) / 2.0
        out[halide] = {
            "rich": round(rich, 6),
            "poor": round(poor, 6),
            "references": {n: energies_per_unit[n] for n in (x2, perov, csx, pb)},
            "definition": (
                f"rich: E({x2})/2; poor: [E(CsPb{halide}3) - E(Cs{halide}) - E(Pb)]/2 "
                "(CsPbX3 with CsX and Pb metal)"
            ),
        }
    return out


def vacancy_formation_energy(
    e_defect: float, e_host: float, halide: str, limits: Mapping[str, Mapping[str, Any]]
) -> dict[str, float]:
    """Return the formation energy (eV) of a neutral halide vacancy at both mu_X limits.

    Raises
    ------
    InputError
        No limits for ``halide``.
    """
    if halide not in limits:
        raise InputError(
            f"no chemical potential limits for {halide!r}; available: {sorted(limits)} "
            "(their reference calculations are missing)"
        )
    mu = limits[halide]
    return {
        "E_f_rich_eV": round(e_defect - e_host + float(mu["rich"]), 6),
        "E_f_poor_eV": round(e_defect - e_host + float(mu["poor"]), 6),
    }

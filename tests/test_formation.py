"""Halide-vacancy formation energies against the halide chemical potential range."""

from __future__ import annotations

import pytest

from pqdflow.analysis.formation import halide_potential_limits, vacancy_formation_energy
from pqdflow.analysis.migration import summarize_migration
from pqdflow.errors import InputError

# made-up reference energies per formula unit (eV): only the arithmetic is tested
REFS = {"ref-Br2": -5.0, "bulk-x3": -14.0, "ref-CsBr": -6.0, "ref-Pb": -3.0}


def test_limits_from_references() -> None:
    limits = halide_potential_limits(REFS)
    assert set(limits) == {"Br"}  # no iodide references given
    assert limits["Br"]["rich"] == pytest.approx(-2.5)
    assert limits["Br"]["poor"] == pytest.approx((-14.0 + 6.0 + 3.0) / 2)
    assert "CsPbBr3" in limits["Br"]["definition"]


def test_formation_energy_at_both_limits() -> None:
    limits = halide_potential_limits(REFS)
    e = vacancy_formation_energy(-97.0, -100.0, "Br", limits)
    assert e["E_f_rich_eV"] == pytest.approx(3.0 - 2.5)
    assert e["E_f_poor_eV"] == pytest.approx(3.0 - 2.5 + (-2.5 + 2.5))
    with pytest.raises(InputError, match=r"'I'.*available: \['Br'\]"):
        vacancy_formation_energy(-97.0, -100.0, "I", limits)


def test_summary_adds_formation_and_effective_activation() -> None:
    hop = {"name": "VBr-Br-bulk", "vacancy_element": "Br"}
    neb = {
        "Ea_eV": 0.3,
        "Ea_reverse_eV": 0.3,
        "image_energies": [-97.0, -96.7, -97.0],
        "meta": {"surface": "bulk-x3", "hop": hop},
    }
    net = {"host": "bulk", "host_calc": "host-bulk-x3", "hops": [hop]}
    summary = summarize_migration(
        [neb],
        {"bulk-x3": net},
        energies={"host-bulk-x3": -100.0},
        limits=halide_potential_limits(REFS),
    )
    row = summary["bulk-x3"]["hops"][0]
    assert row["E_f_rich_eV"] == pytest.approx(0.5)
    assert row["E_act_rich_eV"] == pytest.approx(0.8)
    assert summary["bulk-x3"]["chemical_potentials"]["Br"]["rich"] == pytest.approx(-2.5)

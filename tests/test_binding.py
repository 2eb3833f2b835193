"""Binding-energy definitions and atom balance."""

from __future__ import annotations

import pytest
from ase.build import molecule

from pqdflow.analysis.binding import (
    DEFINITIONS,
    balance_exchange,
    binding_energy,
    composition_of,
)
from pqdflow.errors import InputError


def test_exchange_definition_arithmetic() -> None:
    # slab + OAm-HBr pair -> adsorbed + CsBr ; numbers chosen by hand
    result = binding_energy(-100.0, -90.0, {"OAmBr": (-12.0, 1.0)}, {"CsBr": (-3.5, 1.0)})
    assert result.energy == pytest.approx(-100.0 - 3.5 + 90.0 + 12.0)  # = -1.5
    assert result.definition == "exchange"
    assert result.definition_text == DEFINITIONS["exchange"]
    assert result.terms["released:CsBr"] == {"energy_eV": -3.5, "coeff": 1.0}
    assert result.terms["ligand:OAmBr"]["coeff"] == -1.0


def test_interaction_definition_ignores_released_species() -> None:
    args = (-100.0, -90.0, {"L": (-12.0, 2.0)}, {"CsBr": (-3.5, 1.0)})
    result = binding_energy(*args, definition="interaction")
    assert result.energy == pytest.approx(-100.0 + 90.0 + 24.0)
    assert "released:CsBr" not in result.terms
    assert "not atom-balanced" in result.definition_text
    same = binding_energy(-100.0, -90.0, {"L": (-12.0, 2.0)}, {}, definition="exchange")
    assert same.energy == pytest.approx(result.energy)  # equal when nothing is released


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((-1.0, -1.0, {}), {}, "at least one ligand"),
        ((-1.0, -1.0, {"L": (-1.0, 1.0)}), {"definition": "adsorption"}, "adsorption"),
        ((float("nan"), -1.0, {"L": (-1.0, 1.0)}), {}, "finite"),
        ((-1.0, -1.0, {"L": (-1.0, 0.0)}), {}, "coefficient"),
        ((-1.0, -1.0, {"L": -1.0}), {}, "energy_eV, coefficient"),
    ],
)
def test_bad_binding_input(args: tuple, kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        binding_energy(*args, **kwargs)


def test_balance_exchange_accepts_a_balanced_reaction() -> None:
    # Cs8Pb4Br16 slab + C2H5NH3Br -> slab with the ammonium in a Cs site + CsBr
    balance_exchange(
        "Cs7Pb4Br16C2H8N",
        "Cs8Pb4Br16",
        {"EtNH3Br": ("C2H8NBr", 1.0)},
        {"CsBr": ("CsBr", 1.0)},
    )
    balance_exchange(molecule("CH4") + molecule("H2O"), "CH4", {"w": (molecule("H2O"), 1)})


def test_balance_exchange_names_the_imbalance() -> None:
    with pytest.raises(InputError, match=r"Cs: 8 \(slab \+ ligands\) vs 7"):
        balance_exchange("Cs7Pb4Br16C2H8N", "Cs8Pb4Br16", {"L": ("C2H8NBr", 1.0)}, {})


def test_composition_of_formats() -> None:
    assert composition_of("CsPbBr3") == {"Cs": 1.0, "Pb": 1.0, "Br": 3.0}
    assert composition_of({"H": 2}) == {"H": 2.0}
    with pytest.raises(InputError):
        composition_of("Xx2")
    with pytest.raises(InputError):
        composition_of({"H": -1})

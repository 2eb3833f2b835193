"""Balanced chemical reactions between built structures: atoms and formal charges.

A :class:`Reaction` is ``sum_j a_j reactant_j -> sum_i b_i product_i`` between
:class:`Species`, each the whole cell of one calculation (or one formula unit of it). It
is balanced when every element and the total formal charge agree on both sides;
:meth:`Reaction.check` raises :class:`~pqdflow.errors.UnbalancedReactionError` naming
what differs.

Formal charges are summed per fragment (:func:`formal_charge`), not guessed from an
electron count:

* framework ions of the perovskite: Cs +1, Pb +2, halides (Cl, Br, I) -1;
* each ligand placed on a surface (a record in ``atoms.info["ligands"]``): the ligand's
  charge (OAm / anilinium +1, oleate -1, TMSBr 0) plus -1 for each companion halide;
* a molecule: the sum of ``atoms.info["fragment_charges"]`` (an ion pair R-NH3+ Br- is
  ``(+1, -1)``), 0 when absent.

A neutral cell whose fragments do not sum to zero (an intact TMSBr taking the place of a
surface Br-, say) is an electron-counting artefact, whatever the parity of its electrons.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ase import Atoms

from pqdflow.errors import InputError, UnbalancedReactionError

__all__ = [
    "FRAMEWORK_CHARGES",
    "Reaction",
    "Species",
    "formal_charge",
    "is_charge_balanced",
]

#: Formal charges (e) of the ions of the inorganic CsPbX3 framework.
FRAMEWORK_CHARGES: dict[str, int] = {"Cs": 1, "Pb": 2, "Cl": -1, "Br": -1, "I": -1}


def formal_charge(atoms: Atoms) -> int:
    """Sum of the formal charges of the fragments of a structure (e).

    Parameters
    ----------
    atoms
        A bulk, slab or adsorbed cell from the pqdflow builders, or a molecule (see the
        module docstring for how each fragment counts).

    Returns
    -------
    int
        The total formal charge; 0 for a charge-balanced neutral cell.

    Raises
    ------
    InputError
        An atom that is neither a framework ion nor part of a ligand or a molecule, so
        that no formal charge can be given to it.
    """
    if atoms.info.get("kind") == "molecule":
        return int(sum(int(q) for q in atoms.info.get("fragment_charges", (0,))))
    symbols = atoms.get_chemical_symbols()
    in_ligand: set[int] = set()
    total = 0
    for record in atoms.info.get("ligands", []):
        in_ligand.update(int(i) for i in record["indices"])
        total += int(record.get("charge", 0)) - len(record.get("companion_indices", []))
    unknown = sorted(
        {symbols[i] for i in range(len(atoms)) if i not in in_ligand} - set(FRAMEWORK_CHARGES)
    )
    if unknown:
        raise InputError(
            f"no formal charge for {unknown} outside any ligand in "
            f"{atoms.get_chemical_formula()}; only framework ions "
            f"{sorted(FRAMEWORK_CHARGES)} may stand alone (place molecules with place_ligand)"
        )
    total += sum(FRAMEWORK_CHARGES[symbols[i]] for i in range(len(atoms)) if i not in in_ligand)
    return int(total)


def is_charge_balanced(atoms: Atoms) -> bool:
    """Whether the formal charges of all fragments of ``atoms`` sum to its net charge.

    The net charge is ``atoms.info["net_charge"]`` for a deliberately charged cell, else 0.
    """
    return formal_charge(atoms) == int(atoms.info.get("net_charge", 0))


@dataclass(frozen=True)
class Species:
    """One participant of a reaction.

    Attributes
    ----------
    name
        Label (usually the calculation name).
    composition
        Element -> atoms per formula unit.
    charge
        Net formal charge per formula unit (e).
    """

    name: str
    composition: Mapping[str, float]
    charge: int = 0

    @classmethod
    def of(cls, name: str, atoms: Atoms, formula_units: int = 1) -> Species:
        """Return the species of a built structure, per formula unit (charge from fragments)."""
        counts = Counter(atoms.get_chemical_symbols())
        q = formal_charge(atoms)
        if q % formula_units:
            raise InputError(
                f"species {name!r}: charge {q} e is not divisible by {formula_units} formula units"
            )
        return cls(name, {el: n / formula_units for el, n in counts.items()}, q // formula_units)


@dataclass(frozen=True)
class Reaction:
    """``sum a_j reactant_j -> sum b_i product_i`` (coefficients in formula units).

    Attributes
    ----------
    name
        Unique name.
    reactants, products
        Species name -> coefficient (> 0).
    species
        Species name -> :class:`Species`; must cover both sides.
    label
        What kind of step this is (``"adduct"``, ``"surface_exchange"``, ``"solution"``,
        ``"etching"``, ``"binding"``, ...).
    """

    name: str
    reactants: Mapping[str, float]
    products: Mapping[str, float]
    species: Mapping[str, Species]
    label: str = "binding"
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = sorted((set(self.reactants) | set(self.products)) - set(self.species))
        if missing:
            raise InputError(f"reaction {self.name!r}: no species given for {missing}")
        bad = {k: v for k, v in {**self.reactants, **self.products}.items() if not v > 0}
        if bad:
            raise InputError(f"reaction {self.name!r}: coefficients must be > 0, got {bad}")

    def _side(self, side: Mapping[str, float]) -> tuple[dict[str, float], float]:
        atoms: dict[str, float] = {}
        charge = 0.0
        for name, coeff in side.items():
            sp = self.species[name]
            for el, n in sp.composition.items():
                atoms[el] = atoms.get(el, 0.0) + coeff * n
            charge += coeff * sp.charge
        return atoms, charge

    def imbalance(self) -> tuple[dict[str, float], float]:
        """Per element and in charge: reactants minus products (empty and 0 when balanced)."""
        left, q_left = self._side(self.reactants)
        right, q_right = self._side(self.products)
        atoms = {
            el: left.get(el, 0.0) - right.get(el, 0.0)
            for el in sorted(set(left) | set(right))
            if abs(left.get(el, 0.0) - right.get(el, 0.0)) > 1e-6
        }
        return atoms, q_left - q_right

    def check(self) -> Reaction:
        """Return the reaction if it is atom- and charge-balanced.

        Raises
        ------
        UnbalancedReactionError
            Naming each element (reactants minus products) and the charge that differ.
        """
        atoms, charge = self.imbalance()
        if atoms or abs(charge) > 1e-6:
            parts = [f"{el} {d:+g}" for el, d in atoms.items()]
            if abs(charge) > 1e-6:
                parts.append(f"charge {charge:+g} e")
            raise UnbalancedReactionError(
                f"reaction {self.name!r} ({self.equation()}) is not balanced; "
                f"reactants minus products: {', '.join(parts)}; add the missing species or "
                "fix the coefficients"
            )
        return self

    def equation(self) -> str:
        """Return the reaction in words, e.g. ``"TMSBr + acid -> ester + HBr"``."""

        def side(terms: Mapping[str, float]) -> str:
            return " + ".join(f"{c:g} {n}" if c != 1 else n for n, c in terms.items())

        return f"{side(self.reactants)} -> {side(self.products)}"

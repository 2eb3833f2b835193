"""Ligand binding energies from total energies, with the definition written into every result.

Two definitions (energies in eV; every energy per formula unit of its calculation, i.e.
``E / formula_units``; negative means binding is favourable):

``"exchange"`` (default, atom-balanced)
    The reaction ``slab + sum_j m_j ligand_j -> adsorbed + sum_i n_i released_i``::

        E_b = E(adsorbed) + sum_i n_i E(released_i) - E(slab) - sum_j m_j E(ligand_j)

    Ligand references are neutral species (a molecule, or a neutral ion pair such as
    oleylammonium bromide or anilinium iodide); a surface Cs or halide that the ligand
    replaces leaves as its own neutral reference (e.g. CsBr bulk per formula unit, HBr).
    :func:`balance_exchange` checks that atoms are conserved.

``"interaction"`` (no exchange references)
    ::

        E_b = E(adsorbed) - E(slab) - sum_j m_j E(ligand_j)

    The released species are ignored. Equal to ``"exchange"`` when nothing is released;
    otherwise the reaction is not atom-balanced and the number includes the (missing)
    energy of the replaced surface atoms, so it compares only adsorptions that replace the
    same atoms.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ase import Atoms
from ase.data import chemical_symbols
from ase.formula import Formula

from pqdflow.documents.plan import BindingSpec
from pqdflow.documents.results import BindingDoc
from pqdflow.errors import InputError, StudyError
from pqdflow.provenance import provenance

__all__ = [
    "DEFINITIONS",
    "BindingResult",
    "Composition",
    "EnergyTerm",
    "balance_exchange",
    "binding_energy",
    "composition_of",
    "compute_binding",
]

Definition = Literal["exchange", "interaction"]

#: Definition key -> the formula in words (copied into every result).
DEFINITIONS: dict[str, str] = {
    "exchange": (
        "E_b = E(adsorbed) + sum_i n_i E(released_i) - E(slab) - sum_j m_j E(ligand_j); "
        "atom-balanced exchange reaction slab + ligands -> adsorbed + released, neutral "
        "references (ion pairs as neutral pairs), energies per formula unit; negative = "
        "favourable"
    ),
    "interaction": (
        "E_b = E(adsorbed) - E(slab) - sum_j m_j E(ligand_j); released species ignored "
        "(not atom-balanced when surface atoms were replaced); energies per formula unit; "
        "negative = favourable"
    ),
}

#: A composition: a formula string, an ``Atoms``, or element -> count.
Composition = str | Atoms | Mapping[str, float]


@dataclass(frozen=True)
class BindingResult:
    """A binding energy and how it was obtained.

    Attributes
    ----------
    energy
        Binding energy (eV).
    definition
        Definition key (``"exchange"`` or ``"interaction"``).
    definition_text
        The formula in words.
    terms
        Each energy used: label -> ``{"energy_eV": E, "coeff": c}``; ``c`` is positive for
        products (adsorbed, released) and negative for reactants (slab, ligands).
    """

    energy: float
    definition: str
    definition_text: str
    terms: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _finite(value: float, what: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what} must be a number (eV), got {value!r}") from exc
    if not math.isfinite(number):
        raise InputError(f"{what} must be finite, got {number}")
    return number


def _pairs(values: Mapping[str, tuple[float, float]], what: str) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for label, pair in values.items():
        try:
            energy, coeff = pair
        except (TypeError, ValueError) as exc:
            raise InputError(
                f"{what}[{label!r}] must be (energy_eV, coefficient), got {pair!r}"
            ) from exc
        out[label] = (
            _finite(energy, f"energy of {what} {label!r}"),
            _finite(coeff, f"coefficient of {what} {label!r}"),
        )
        if out[label][1] <= 0:
            raise InputError(f"coefficient of {what} {label!r} must be > 0, got {coeff}")
    return out


def binding_energy(
    e_adsorbed: float,
    e_slab: float,
    ligand_energies: Mapping[str, tuple[float, float]],
    released_energies: Mapping[str, tuple[float, float]] | None = None,
    *,
    definition: Definition = "exchange",
    require_ligand: bool = True,
) -> BindingResult:
    """Binding energy of ligands on a slab (see the module docstring for the definitions).

    Parameters
    ----------
    e_adsorbed, e_slab
        Energies of the surface with and without the ligands (eV).
    ligand_energies
        Ligand reference label -> ``(energy per formula unit in eV, coefficient consumed)``.
    released_energies
        Released species label -> ``(energy per formula unit in eV, coefficient)``.
    definition
        ``"exchange"`` or ``"interaction"``.
    require_ligand
        False for a reaction between surface isomers (a vacancy fill: the same atoms on both
        sides), where no ligand reference enters.

    Raises
    ------
    InputError
        Unknown definition, no ligands (while ``require_ligand``), a non-finite energy or a
        non-positive coefficient.
    """
    if definition not in DEFINITIONS:
        raise InputError(
            f"unknown binding-energy definition {definition!r}; choose one of {sorted(DEFINITIONS)}"
        )
    if require_ligand and not ligand_energies:
        raise InputError("binding_energy needs at least one ligand reference energy")
    e_ads = _finite(e_adsorbed, "e_adsorbed")
    e_sl = _finite(e_slab, "e_slab")
    ligands = _pairs(ligand_energies, "ligand")
    released = _pairs(released_energies or {}, "released species")
    terms: dict[str, dict[str, float]] = {
        "adsorbed": {"energy_eV": e_ads, "coeff": 1.0},
        "slab": {"energy_eV": e_sl, "coeff": -1.0},
    }
    energy = e_ads - e_sl
    for label, (e, m) in ligands.items():
        terms[f"ligand:{label}"] = {"energy_eV": e, "coeff": -m}
        energy -= m * e
    if definition == "exchange":
        for label, (e, n) in released.items():
            terms[f"released:{label}"] = {"energy_eV": e, "coeff": n}
            energy += n * e
    return BindingResult(
        energy=float(energy),
        definition=definition,
        definition_text=DEFINITIONS[definition],
        terms=terms,
    )


def composition_of(value: Composition) -> dict[str, float]:
    """Element -> count of a formula string, an ``Atoms`` or a mapping.

    Raises
    ------
    InputError
        An unparsable formula or a negative count.
    """
    if isinstance(value, Atoms):
        counts: dict[str, float] = {}
        for symbol in value.get_chemical_symbols():
            counts[symbol] = counts.get(symbol, 0.0) + 1.0
        return counts
    if isinstance(value, str):
        try:
            out = {k: float(v) for k, v in Formula(value).count().items()}
        except ValueError as exc:
            raise InputError(f"cannot parse chemical formula {value!r}: {exc}") from exc
    else:
        out = {str(k): float(v) for k, v in value.items()}
    unknown = sorted(k for k in out if k not in chemical_symbols[1:])
    if unknown:
        raise InputError(f"unknown element symbol(s) {unknown} in composition {value!r}")
    negative = {k: v for k, v in out.items() if v < 0}
    if negative:
        raise InputError(f"composition counts must be >= 0, got {negative}")
    return out


def balance_exchange(
    adsorbed: Composition,
    slab: Composition,
    ligands: Mapping[str, tuple[Composition, float]],
    released: Mapping[str, tuple[Composition, float]] | None = None,
    *,
    tolerance: float = 1e-6,
) -> None:
    """Check that ``slab + sum m_j ligand_j == adsorbed + sum n_i released_i`` atom by atom.

    Parameters
    ----------
    adsorbed, slab
        Compositions of the two surfaces (whole cells).
    ligands, released
        Label -> ``(composition per formula unit, coefficient)``.
    tolerance
        Largest allowed mismatch per element (atoms).

    Raises
    ------
    InputError
        Naming each element whose count differs, with both sides.
    """
    left = dict(composition_of(slab))
    right = dict(composition_of(adsorbed))
    for side, species in ((left, ligands), (right, released or {})):
        for _label, (comp, coeff) in species.items():
            for element, count in composition_of(comp).items():
                side[element] = side.get(element, 0.0) + float(coeff) * count
    bad = {
        el: (left.get(el, 0.0), right.get(el, 0.0))
        for el in sorted(set(left) | set(right))
        if abs(left.get(el, 0.0) - right.get(el, 0.0)) > tolerance
    }
    if bad:
        detail = ", ".join(
            f"{el}: {lhs:g} (slab + ligands) vs {rhs:g} (adsorbed + released)"
            for el, (lhs, rhs) in bad.items()
        )
        raise InputError(f"binding reaction is not atom-balanced: {detail}")


@dataclass(frozen=True)
class EnergyTerm:
    """One calculation's contribution to a reaction energy.

    Attributes
    ----------
    energy
        Total energy of the cell (eV).
    formula
        Chemical formula of the whole cell.
    formula_units
        Formula units in the cell; the reaction uses ``energy / formula_units``.
    converged
        Whether the calculation converged.
    backend
        What computed it (``"vasp"``, ``"chgnet"``, ...).
    """

    energy: float
    formula: str
    formula_units: int = 1
    converged: bool = True
    backend: str = ""

    @property
    def per_formula_unit(self) -> float:
        """``energy / formula_units`` (eV)."""
        return self.energy / self.formula_units

    def composition_per_formula_unit(self) -> dict[str, float]:
        """Element -> atoms per formula unit."""
        return {el: n / self.formula_units for el, n in composition_of(self.formula).items()}

    @classmethod
    def of(cls, doc: Any) -> EnergyTerm:
        """From any document with ``energy``, ``formula``, ``formula_units``, ``converged``."""
        return cls(
            energy=float(doc.energy),
            formula=str(doc.formula),
            formula_units=int(doc.formula_units),
            converged=bool(doc.converged),
            backend=str(getattr(doc, "backend", "")),
        )


def compute_binding(
    spec: BindingSpec,
    terms: Mapping[str, EnergyTerm | Any],
    *,
    definition: Definition = "exchange",
) -> BindingDoc:
    """Binding energy of one planned reaction, atom balance checked.

    Parameters
    ----------
    spec
        The reaction (coefficients in formula units).
    terms
        Calculation name -> :class:`EnergyTerm` (or a document that
        :meth:`EnergyTerm.of` reads: a :class:`~pqdflow.documents.results.RelaxDoc`); must
        hold every parent of ``spec``.
    definition
        ``"exchange"`` (atom-balanced, checked) or ``"interaction"``.

    Raises
    ------
    StudyError
        A parent calculation is missing.
    InputError
        An unbalanced exchange reaction (naming the elements) or an unknown definition.
    """
    missing = [p for p in spec.parents() if p not in terms]
    if missing:
        raise StudyError(f"binding {spec.name!r} lacks energies for {missing}")
    if definition not in DEFINITIONS:
        raise InputError(
            f"unknown binding-energy definition {definition!r}; choose one of {sorted(DEFINITIONS)}"
        )
    got = {
        n: t if isinstance(t, EnergyTerm) else EnergyTerm.of(t)
        for n, t in terms.items()
        if n in spec.parents()
    }
    ads, slab = got[spec.adsorbed], got[spec.slab]
    result = binding_energy(
        ads.energy,
        slab.energy,
        {n: (got[n].per_formula_unit, c) for n, c in spec.ligands.items()},
        {n: (got[n].per_formula_unit, c) for n, c in spec.released.items()},
        definition=definition,
        require_ligand=spec.meta.get("channel") != "vacancy_fill",
    )
    exchange = definition == "exchange"
    try:
        balance_exchange(
            ads.formula,
            slab.formula,
            {n: (got[n].composition_per_formula_unit(), c) for n, c in spec.ligands.items()},
            {n: (got[n].composition_per_formula_unit(), c) for n, c in spec.released.items()}
            if exchange
            else {},
        )
        balanced = True
    except InputError as exc:
        if exchange:
            raise InputError(f"binding {spec.name!r}: {exc}") from exc
        balanced = False
    return BindingDoc(
        name=spec.name,
        ligand=spec.ligand,
        site=spec.site,
        E_b_eV=result.energy,
        definition=result.definition,
        definition_text=result.definition_text,
        terms=result.terms,
        balanced=balanced,
        all_converged=all(got[p].converged for p in spec.parents()),
        backend=ads.backend,
        meta=dict(spec.meta),
        provenance=provenance(parents=spec.parents()),
    )

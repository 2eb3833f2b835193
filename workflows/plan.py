"""The study plan: the one data structure every execution path consumes.

A study file (:mod:`pqdflow.workflows.study`) expands into a :class:`StudyPlan`: a flat list
of structure calculations (relaxations), the binding-energy reactions that combine them and
the NEB paths between relaxed endpoints. The dry run writes it as VASP folders, the local
engine runs it with an ASE calculator, and the FireWorks builder turns it into a Workflow.
Plans hold ASE ``Atoms`` and touch no disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ase import Atoms

from pqdflow.errors import StudyError

__all__ = ["BindingSpec", "CalcKind", "CalcSpec", "NebSpec", "StudyPlan"]

CalcKind = Literal["bulk", "slab", "molecule", "adsorbed"]


@dataclass
class CalcSpec:
    """One structure to relax.

    Attributes
    ----------
    name
        Unique, filesystem-safe name (also the folder name), e.g. ``"slab-CsX-x3"``.
    kind
        Which input preset applies: bulk (cell relaxed), slab / adsorbed (ions only, dipole
        correction), molecule (box, Gamma only).
    atoms
        The starting structure; fixed atoms carry ``FixAtoms``; ``atoms.info`` holds builder
        metadata.
    relax_cell
        Relax the cell too (bulk only).
    formula_units
        Number of formula units in the cell, for per-formula-unit reference energies.
    role
        Free label: ``"model"``, ``"reference"`` (a species released in a binding reaction),
        ``"neb_initial"`` / ``"neb_final"`` (an NEB endpoint).
    meta
        JSON-serialisable metadata (termination, x, ligands, ...).
    """

    name: str
    kind: CalcKind
    atoms: Atoms
    relax_cell: bool = False
    formula_units: int = 1
    role: str = "model"
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class BindingSpec:
    """One binding reaction, atom-balanced.

    ``slab + sum(ligands) -> adsorbed + sum(released)``, so
    ``E_b = E(adsorbed) + sum_i n_i E(released_i) - E(slab) - sum_j m_j E(ligand_j)``
    where every energy is per formula unit of its calculation (``E / formula_units``).

    Attributes
    ----------
    name
        Unique name, e.g. ``"binding-OAm-CsX-x3"``.
    ligand
        Ligand label for tables (``"OAm"``, ``"AnHI"``, ... or ``"control"``).
    site
        Site label the ligand was placed on.
    adsorbed, slab
        Names of the :class:`CalcSpec` of the adsorbed and clean surfaces.
    ligands
        Calc name of each neutral ligand reference molecule -> coefficient consumed.
    released
        Calc name of each released reference species -> coefficient (formula units).
    """

    name: str
    ligand: str
    site: str
    adsorbed: str
    slab: str
    ligands: dict[str, float]
    released: dict[str, float] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def parents(self) -> list[str]:
        """Every calculation this reaction needs."""
        return [self.adsorbed, self.slab, *self.ligands, *self.released]


@dataclass
class NebSpec:
    """One halide-migration path between two relaxed endpoints.

    Attributes
    ----------
    name
        Unique name, e.g. ``"neb-control-VBr"``.
    label
        What is compared in plots and tables: ``"bulk"``, ``"control"``, ``"treated"``.
    initial, final
        Names of the endpoint :class:`CalcSpec` (relaxed before the band is built).
    n_images
        Number of intermediate images.
    hopping_index
        Index of the migrating halide (same in both endpoints).
    """

    name: str
    label: str
    initial: str
    final: str
    n_images: int
    hopping_index: int
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class StudyPlan:
    """Everything a study asks for, as data."""

    name: str
    calculations: list[CalcSpec]
    bindings: list[BindingSpec] = field(default_factory=list)
    nebs: list[NebSpec] = field(default_factory=list)
    incar_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def get(self, name: str) -> CalcSpec:
        """Return the calculation called ``name``."""
        for calc in self.calculations:
            if calc.name == name:
                return calc
        raise StudyError(f"no calculation named {name!r} in study {self.name!r}")

    def validate(self) -> None:
        """Check names are unique and every reference resolves; raise StudyError if not."""
        if not self.calculations and not self.nebs:
            raise StudyError(
                f"study {self.name!r} has no calculations; add compositions/ligands/NEB paths"
            )
        names = [c.name for c in self.calculations]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise StudyError(f"duplicate calculation names in study {self.name!r}: {dupes}")
        known = set(names)
        for b in self.bindings:
            missing = [p for p in b.parents() if p not in known]
            if missing:
                raise StudyError(f"binding {b.name!r} refers to unknown calculations {missing}")
        for n in self.nebs:
            missing = [p for p in (n.initial, n.final) if p not in known]
            if missing:
                raise StudyError(
                    f"NEB {n.name!r} refers to unknown endpoint calculations {missing}"
                )

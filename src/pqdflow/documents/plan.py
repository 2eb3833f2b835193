"""The study plan: the one data structure every execution path consumes.

A study file (:mod:`pqdflow.workflows.study`) expands into a :class:`StudyPlan`: a flat list
of structure calculations (relaxations), the binding-energy reactions that combine them and
the NEB paths between relaxed endpoints. The dry run writes it as VASP folders, the local
engine runs it with an ASE calculator, and the FireWorks builder turns it into a Workflow;
all three walk it in the order of :func:`pqdflow.workflows.study.scheduler.schedule`.

Plans hold ASE ``Atoms`` and touch no disk. Every spec has a JSON form (``as_dict`` /
``from_dict``, structures as ASE's JSON dict) so it can travel inside a Firework.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ase import Atoms
from ase.io.jsonio import decode, encode

from pqdflow.errors import InputError, StudyError

__all__ = [
    "ENDPOINT_ROLES",
    "BindingSpec",
    "CalcKind",
    "CalcSpec",
    "NebSpec",
    "StudyPlan",
    "atoms_from_dict",
    "atoms_to_dict",
    "jsonable",
]

CalcKind = Literal["bulk", "slab", "molecule", "adsorbed"]

#: Calculation roles that are NEB endpoints (relaxed more tightly than other structures).
#: Roles relaxed to the tight endpoint criterion: the NEB endpoints and the pristine host
#: they are cut from (the formation energy compares the two, and the initial endpoint
#: starts from the relaxed host).
ENDPOINT_ROLES = frozenset({"neb_initial", "neb_final", "vacancy_host"})


def jsonable(value: Any) -> Any:
    """Return ``value`` as plain JSON data (unknown objects become strings)."""
    return json.loads(json.dumps(value, default=str))


def atoms_to_dict(atoms: Atoms) -> dict[str, Any]:
    """ASE's JSON form of ``atoms`` as a dict (cell, pbc, constraints and ``info`` kept)."""
    return dict(json.loads(encode(atoms)))


def atoms_from_dict(data: Mapping[str, Any]) -> Atoms:
    """Inverse of :func:`atoms_to_dict`.

    Raises
    ------
    InputError
        If ``data`` is not a serialised ``Atoms``.
    """
    atoms = decode(json.dumps(dict(data)))
    if not isinstance(atoms, Atoms):
        raise InputError(f"not a serialised ASE Atoms object (got {type(atoms).__name__})")
    return atoms


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
        ``"ligand_reference"``, ``"neb_initial"`` / ``"neb_final"`` (an NEB endpoint).
    meta
        JSON-serialisable metadata (termination, x, ligands, ``charge`` of a vacancy cell,
        ...).
    """

    name: str
    kind: CalcKind
    atoms: Atoms
    relax_cell: bool = False
    formula_units: int = 1
    role: str = "model"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def charge(self) -> int:
        """Net charge of the cell (``meta["charge"]``; 0 when absent), e.g. +1 for V_Br+."""
        return int(self.meta.get("charge", 0))

    @property
    def is_endpoint(self) -> bool:
        """Whether this is relaxed tightly: an NEB endpoint or its pristine host."""
        return self.role in ENDPOINT_ROLES

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (structure as ASE's JSON dict)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "atoms": atoms_to_dict(self.atoms),
            "relax_cell": self.relax_cell,
            "formula_units": self.formula_units,
            "role": self.role,
            "meta": jsonable(self.meta),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CalcSpec:
        """Inverse of :meth:`as_dict`."""
        fields = dict(data)
        fields["atoms"] = atoms_from_dict(fields["atoms"])
        return cls(**fields)


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

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return dict(jsonable(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BindingSpec:
        """Inverse of :meth:`as_dict`."""
        return cls(**dict(data))


@dataclass
class NebSpec:
    """One halide-migration path between two relaxed endpoints.

    Attributes
    ----------
    name
        Unique name, e.g. ``"neb-control-x2"``.
    label
        What is compared in plots and tables: ``"bulk"``, ``"control"``, ``"treated"``.
    initial, final
        Names of the endpoint :class:`CalcSpec` (relaxed before the band is built).
    n_images
        Number of intermediate images.
    hopping_index
        Index of the migrating halide (same in both endpoints).
    meta
        JSON metadata (host, x, vacancy and hop indices, ``charge`` of the cells).
    """

    name: str
    label: str
    initial: str
    final: str
    n_images: int
    hopping_index: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def charge(self) -> int:
        """Net charge of the band's cells (``meta["charge"]``; 0 when absent)."""
        return int(self.meta.get("charge", 0))

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return dict(jsonable(asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NebSpec:
        """Inverse of :meth:`as_dict`."""
        return cls(**dict(data))


@dataclass
class StudyPlan:
    """Everything a study asks for, as data.

    Attributes
    ----------
    name
        Study name.
    calculations, bindings, nebs
        The relaxations, binding reactions and NEB paths.
    incar_overrides
        Per-kind absolute INCAR overrides of the study (``{"slab": {"ISYM": 0}}``).
    meta
        ``inputs`` (the study's VASP input options), ``study`` (the study file as data),
        ``skipped`` (presets left out and why), ``prerelax`` when pre-relaxed.
    """

    name: str
    calculations: list[CalcSpec]
    bindings: list[BindingSpec] = field(default_factory=list)
    nebs: list[NebSpec] = field(default_factory=list)
    incar_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def get(self, name: str) -> CalcSpec:
        """Return the calculation called ``name``.

        Raises
        ------
        StudyError
            If there is none.
        """
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

    def fingerprint(self, backend: str, backend_options: Mapping[str, Any] | None = None) -> str:
        """SHA-256 of the plan's content, the backend and its options (same study, same value).

        A reaction counts by what it combines (its calculations and coefficients) and by the
        settings that change its energy (``dispersion``, ``solvent``), not by its labels, so
        a renamed channel label never orphans a finished run folder.
        """
        energetic = ("dispersion", "solvent")
        reactions = [
            {
                **{k: v for k, v in b.as_dict().items() if k != "meta"},
                "meta": {k: b.meta[k] for k in energetic if k in b.meta},
            }
            for b in self.bindings
        ]
        payload = {
            "name": self.name,
            "backend": backend,
            "backend_options": dict(backend_options or {}),
            "calculations": [c.as_dict() for c in self.calculations],
            "bindings": reactions,
            "nebs": [n.as_dict() for n in self.nebs],
            "incar_overrides": self.incar_overrides,
        }
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

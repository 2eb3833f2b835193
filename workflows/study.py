"""The study file: what to compute, validated, and its expansion into a :class:`StudyPlan`.

A study (YAML) names the compositions, slab terminations and size, the ligands and the two
surface presets (control = OAc/OAm, treated = AnHI/TMSBr), the NEB paths and the input
options. The schema forbids unknown keys everywhere, so a misspelt key is an error, not a
silently ignored setting. :func:`plan_study` turns a study into the flat list of
calculations, binding reactions and NEB paths that every execution path consumes (the dry
run, the local engine, FireWorks). Nothing here touches the disk except :func:`load_study`.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping
from itertools import combinations
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from ase import Atoms
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pqdflow.errors import CompositionError, InputError, PqdflowError, StudyError
from pqdflow.structures.bulk import allowed_x, check_x
from pqdflow.workflows.inputsets import validate_incar
from pqdflow.workflows.plan import BindingSpec, CalcKind, CalcSpec, NebSpec, StudyPlan

__all__ = [
    "CALC_KINDS",
    "IncarOverrides",
    "InputOptions",
    "LigandOptions",
    "NebOptions",
    "NebPath",
    "SlabOptions",
    "Study",
    "balance_released",
    "example_study",
    "example_study_yaml",
    "load_study",
    "plan_study",
    "study_from_dict",
]

#: Calculation kinds that accept INCAR overrides.
CALC_KINDS: tuple[str, ...] = ("bulk", "slab", "adsorbed", "molecule", "neb")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlabOptions(_Strict):
    """(001) slab geometry shared by every surface model.

    Attributes
    ----------
    size
        Lateral supercell (n, m) of the cubic cell.
    layers
        Atomic layers (alternating CsX / PbX2, top = termination); odd -> symmetric slab.
    vacuum
        Vacuum gap along z in Å (>= 10).
    fixed_layers
        Bottom layers held fixed (POSCAR selective dynamics).
    """

    size: tuple[int, int] = (2, 2)
    layers: int = Field(default=5, ge=2, le=15)
    vacuum: float = Field(default=15.0, ge=10.0, le=60.0)
    fixed_layers: int = Field(default=2, ge=0)

    @model_validator(mode="after")
    def _fixed_below_top(self) -> SlabOptions:
        if self.fixed_layers >= self.layers:
            raise ValueError(
                f"fixed_layers={self.fixed_layers} must be smaller than layers={self.layers}"
            )
        if min(self.size) < 1:
            raise ValueError(f"size={self.size} must be positive integers")
        return self

    def host_supercell(self) -> tuple[int, int, int]:
        """Return the bulk supercell the slab is cut from (mixed-halide x must be exact on it)."""
        return (self.size[0], self.size[1], math.ceil(self.layers / 2))


SurfacePreset = Literal["control", "treated"]


def _default_surfaces() -> list[SurfacePreset]:
    return ["control", "treated"]


class LigandOptions(_Strict):
    """Ligands bound one at a time, and the two passivated surface presets.

    Attributes
    ----------
    names
        Ligands adsorbed singly, on the first composition and on the first study termination
        where the adsorbed cell is closed-shell (even electron count).
    surfaces
        Passivated surface presets to build (``control`` = OAc/OAm, ``treated`` = AnHI/TMSBr).
    chain_length
        Carbons of the OAm / OAc chain (``None`` = the library default, 4; full oleyl 18).
    """

    names: list[str] = Field(default_factory=lambda: ["OAm", "OAc", "AnHI", "TMSBr"])
    surfaces: list[SurfacePreset] = Field(default_factory=_default_surfaces)
    chain_length: int | None = Field(default=None, ge=1, le=18)

    @field_validator("names")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        from pqdflow.structures.ligands import get_ligand

        for name in names:
            get_ligand(name)  # UnknownLigandError lists the known ones
        if len(set(names)) != len(names):
            raise ValueError(f"ligand names must be unique, got {names}")
        return names


class NebPath(_Strict):
    """One halide-migration path.

    Attributes
    ----------
    host
        ``bulk`` (mixed-halide bulk supercell), ``clean`` (bare slab) or a passivated surface
        preset (``control``, ``treated``).
    n_images
        Intermediate images; ``None`` -> derived from the hop distance by the structures
        library (``default_n_images``).
    vacancy
        Which halide to remove, counted among the candidate halides the defect builder
        offers (0 = its default, the one nearest the surface / first Br).
    hop
        Which neighbouring halide hops into the vacancy, counted among the candidate hops.
    """

    host: Literal["bulk", "clean", "control", "treated"]
    n_images: int | None = Field(default=None, ge=1, le=15)
    vacancy: int = Field(default=0, ge=0)
    hop: int = Field(default=0, ge=0)


class NebOptions(_Strict):
    """Halide-migration (NEB) settings.

    Attributes
    ----------
    x
        Br per formula unit of the CsPbBr(x)I(3-x) the barriers are computed on.
    termination
        Slab termination of the surface hosts.
    bulk_supercell
        Supercell of the bulk host.
    vacancy_charge
        Net charge of the vacancy cells (NEB endpoints and bands) for VASP: +1 = V_Br+, the
        mobile closed-shell defect usually computed for halide migration (a neutral vacancy
        cell has an odd electron count); 0 = neutral. Written as NELECT; the ML engine
        ignores it (CHGNet has no charge).
    rattle
        Standard deviation (Å) of the seeded Gaussian rattle applied to the host before the
        endpoints are built (0 = ideal host); the ideal cubic cell is a saddle point under
        ML potentials (``NEB_NOTES``), a rattled host lets the endpoints relax into tilts.
    paths
        The paths to compute.
    """

    x: float = 2.0
    termination: Literal["CsX", "PbX2"] = "PbX2"
    bulk_supercell: tuple[int, int, int] = (2, 2, 2)
    vacancy_charge: int = Field(default=1, ge=-1, le=1)
    rattle: float = Field(default=0.03, ge=0.0, le=0.2)
    paths: list[NebPath] = Field(
        default_factory=lambda: [
            NebPath(host="bulk"),
            NebPath(host="control"),
            NebPath(host="treated"),
        ]
    )


class IncarOverrides(_Strict):
    """Absolute INCAR overrides per calculation kind; ``TAG: null`` removes a tag."""

    bulk: dict[str, Any] = Field(default_factory=dict)
    slab: dict[str, Any] = Field(default_factory=dict)
    adsorbed: dict[str, Any] = Field(default_factory=dict)
    molecule: dict[str, Any] = Field(default_factory=dict)
    neb: dict[str, Any] = Field(default_factory=dict)

    @field_validator("bulk", "slab", "adsorbed", "molecule", "neb")
    @classmethod
    def _vasp_tags(cls, tags: dict[str, Any]) -> dict[str, Any]:
        return validate_incar(tags)


class InputOptions(_Strict):
    """VASP input choices shared by every calculation.

    Attributes
    ----------
    kpoint_density
        k-points per 1/Å of reciprocal-vector length (VASP's R_k, Å).
    vtst
        NEB with the VTST tools (climbing image, VTST optimiser) or plain VASP.
    dispersion
        ``"d3bj"`` adds Grimme D3(BJ) (IVDW 12) to every calculation.
    neb_endpoint_ediffg
        EDIFFG of the NEB endpoint relaxations (eV/Å, negative = force criterion); tighter
        than the band because the soft tilt modes leave loosely relaxed endpoints above
        their basin bottom (see ``NEB_NOTES``).
    incar
        Per-kind INCAR overrides.
    """

    kpoint_density: float = Field(default=25.0, gt=0.0, le=200.0)
    vtst: bool = True
    dispersion: Literal["none", "d3bj"] = "none"
    neb_endpoint_ediffg: float = Field(default=-0.01, lt=0.0)
    incar: IncarOverrides = Field(default_factory=IncarOverrides)


Termination = Literal["CsX", "PbX2"]


def _default_terminations() -> list[Termination]:
    return ["CsX", "PbX2"]


class Study(_Strict):
    """A complete study.

    Attributes
    ----------
    name
        Filesystem-safe study name.
    compositions
        x values (Br per formula unit) of the binding-energy surfaces; the first is the
        default surface that single ligands are placed on.
    terminations
        Slab terminations, in order of preference for single ligands (see
        :class:`LigandOptions`); clean slabs and presets are built on each.
    slab, ligands, neb, inputs
        See :class:`SlabOptions`, :class:`LigandOptions`, :class:`NebOptions`,
        :class:`InputOptions`.
    seed
        Seed of the random halide arrangements (mixed x) and of any rattling.
    """

    name: str = "paper"
    compositions: list[float] = Field(default_factory=lambda: [3.0], min_length=1)
    terminations: list[Termination] = Field(default_factory=_default_terminations, min_length=1)
    slab: SlabOptions = Field(default_factory=SlabOptions)
    ligands: LigandOptions = Field(default_factory=LigandOptions)
    neb: NebOptions = Field(default_factory=NebOptions)
    inputs: InputOptions = Field(default_factory=InputOptions)
    seed: int = Field(default=0, ge=0)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        if not _NAME.match(name):
            raise ValueError(
                f"name {name!r} must start with a letter or digit and contain only "
                "letters, digits, '_', '.', '-'"
            )
        return name

    @model_validator(mode="after")
    def _realisable(self) -> Study:
        slab_cell = self.slab.host_supercell()
        for i, x in enumerate(self.compositions):
            _check_realisable(x, slab_cell, f"compositions[{i}]", "slab host")
        if len(set(self.compositions)) != len(self.compositions):
            raise ValueError(f"compositions must be unique, got {self.compositions}")
        if len(set(self.terminations)) != len(self.terminations):
            raise ValueError(f"terminations must be unique, got {self.terminations}")
        if self.neb.paths:
            if any(p.host != "bulk" for p in self.neb.paths):
                _check_realisable(self.neb.x, slab_cell, "neb.x", "slab host")
            if any(p.host == "bulk" for p in self.neb.paths):
                _check_realisable(self.neb.x, self.neb.bulk_supercell, "neb.x", "bulk host")
        hosts = [p.host for p in self.neb.paths]
        dupes = sorted({h for h in hosts if hosts.count(h) > 1})
        if dupes:
            raise ValueError(f"neb.paths: one path per host, got duplicates {dupes}")
        return self


def _check_realisable(x: float, supercell: tuple[int, int, int], field: str, what: str) -> None:
    try:
        value = check_x(x)
    except CompositionError as exc:
        raise CompositionError(f"{field}: {exc}") from exc
    allowed = allowed_x(supercell)
    if min(abs(value - a) for a in allowed) > 1e-6:
        nearest = sorted(allowed, key=lambda a: abs(a - value))[:2]
        n = supercell[0] * supercell[1] * supercell[2]
        raise CompositionError(
            f"{field}: x={x:g} is not realisable on the {'x'.join(map(str, supercell))} "
            f"{what} supercell ({n} formula units); allowed: multiples of 1/{n} in [0, 3], "
            f"nearest: {', '.join(f'{a:.6g}' for a in nearest)}"
        )


# ---------------------------------------------------------------------- loading
def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Study
    for part in loc:
        if isinstance(part, int):
            continue
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation = fields[part].annotation
        args = getattr(annotation, "__args__", ())
        model = next(
            (a for a in (annotation, *args) if isinstance(a, type) and issubclass(a, BaseModel)),
            None,
        )
        if model is None:
            return []
    return sorted(getattr(model, "model_fields", {}))


def study_from_dict(data: Mapping[str, Any]) -> Study:
    """Validate a study given as a mapping (e.g. parsed YAML).

    Raises
    ------
    StudyError
        For unknown keys or wrong types, naming the field (``ligands.names``, ...).
    UnknownLigandError, CompositionError, InputSetError
        For an unknown ligand, an impossible x or a bad INCAR override, naming the field.
    """
    if not isinstance(data, Mapping):
        raise StudyError(f"a study must be a mapping of keys to values, got {type(data).__name__}")
    try:
        return Study.model_validate(dict(data))
    except ValidationError as exc:
        raise _translate(exc) from None


def _translate(exc: ValidationError) -> PqdflowError:
    error = exc.errors()[0]
    loc = tuple(error["loc"])
    where = ".".join(str(p) for p in loc) or "study"
    cause = (error.get("ctx") or {}).get("error")
    n_more = len(exc.errors()) - 1
    more = f" (and {n_more} more problem{'s' if n_more > 1 else ''})" if n_more else ""
    if error["type"] == "extra_forbidden":
        parent = loc[:-1]
        allowed = _allowed_keys(parent)
        place = ".".join(str(p) for p in parent) or "the top level"
        return StudyError(
            f"unknown key {str(loc[-1])!r} in {place}; allowed keys: {', '.join(allowed)}{more}"
        )
    if isinstance(cause, InputError):
        message = str(cause)
        if loc and not message.startswith(where):
            message = f"{where}: {message}"
        return type(cause)(message + more)
    got = error.get("input")
    return StudyError(f"{where}: {error['msg']} (got {got!r}){more}")


def load_study(path: str | Path) -> Study:
    """Read and validate a study YAML file.

    Raises
    ------
    StudyError
        If the file is missing, not YAML, or has unknown keys / wrong types (naming the field).
    UnknownLigandError, CompositionError, InputSetError
        For an unknown ligand, an impossible x or a bad INCAR override.
    """
    path = Path(path)
    if not path.is_file():
        raise StudyError(f"study file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise StudyError(f"{path}: not valid YAML: {exc}") from exc
    return study_from_dict(data if data is not None else {})


def example_study() -> Study:
    """Return the paper's default study (see :func:`example_study_yaml` for the reasoning)."""
    return Study()


_EXAMPLE_YAML = """\
# pqdflow study: ligand binding and halide migration on CsPbBr(x)I(3-x) (001) surfaces,
# after Wang et al., "Long-range order enabled stability in perovskite quantum dot LEDs"
# (DFT Methods and Extended Data Fig. 4). Unknown keys are errors.
name: paper

# x = Br per formula unit. Binding energies on CsPbBr3 (x = 3): the ligand chemistry is
# the paper's comparison and pure bromide keeps every surface free of random I placement.
compositions: [3.0]
# Top terminations of the (001) slab. Each ligand binds on the first termination where its
# adsorbed cell stays closed-shell (even electron count): OAm, OAc and AnHI exchange with
# surface CsBr on CsX (what CsPbBr3 nanocrystals expose); TMSBr adds atop an exposed Pb on
# PbX2. Control/treated surfaces are built on every termination where they are closed-shell.
terminations: [CsX, PbX2]

slab:
  size: [2, 2]        # lateral supercell of the 5.87 A cubic cell
  layers: 5           # CsX/PbX2/CsX/PbX2/CsX, 48 atoms
  vacuum: 15.0        # A
  fixed_layers: 2     # bottom layers held fixed

ligands:
  # each one adsorbed alone (first composition, first closed-shell termination)
  names: [OAm, OAc, AnHI, TMSBr]
  # passivated surfaces: control = OAc/OAm, treated = AnHI/TMSBr
  surfaces: [control, treated]
  chain_length: null  # OAm/OAc carbons; null = library default (4), 18 = full oleyl

neb:
  # Halide migration on mixed CsPbBr2I (x = 2): realisable exactly on the 2x2x2 bulk
  # supercell (8 I of 24 halides) and on the 2x2x3 slab host (12 of 36).
  x: 2.0
  termination: PbX2   # both passivated presets are closed-shell on PbX2 (ligands added)
  bulk_supercell: [2, 2, 2]
  vacancy_charge: 1   # V_Br+ (NELECT = neutral - 1) in VASP; 0 = neutral (odd-electron) cell
  rattle: 0.03        # A, seeded rattle of the host (the ideal cube is a saddle point)
  paths:
    - {host: bulk}      # n_images: null = from the hop distance
    - {host: control}
    - {host: treated}

inputs:
  kpoint_density: 25.0      # k-points per 1/A (VASP R_k); 4x4x4 bulk, 2x2x1 slabs
  vtst: true                # VTST climbing-image NEB (IBRION 3, IOPT); false = plain VASP
  dispersion: none          # or d3bj (IVDW 12)
  neb_endpoint_ediffg: -0.01  # eV/A, NEB endpoints relaxed tighter than the band
  incar:                    # absolute overrides per kind; TAG: null removes a tag
    bulk: {}
    slab: {}
    adsorbed: {}
    molecule: {}
    neb: {}

seed: 0
"""


def example_study_yaml() -> str:
    """Return the paper's default study as commented YAML (``pqdflow inputs --example``)."""
    return _EXAMPLE_YAML


# ---------------------------------------------------------------------- planning
def _x_tag(x: float) -> str:
    """Readable, filesystem-safe composition label: 3.0 -> 'x3', 2.25 -> 'x2.25'."""
    return f"x{x:g}"


def _composition(atoms: Atoms) -> Counter[str]:
    return Counter(atoms.get_chemical_symbols())


def balance_released(
    consumed: Mapping[str, float],
    produced: Mapping[str, float],
    candidates: Mapping[str, Mapping[str, float]],
) -> dict[str, float]:
    """Released species that balance ``consumed -> produced + released``, atom by atom.

    Parameters
    ----------
    consumed, produced
        Element -> count on each side before the released species are added.
    candidates
        Species name -> element counts per formula unit, in order of preference.

    Returns
    -------
    dict
        Species -> non-negative coefficient (formula units); the smallest set of candidates
        (earliest in order among equals) that balances exactly; empty if already balanced.

    Raises
    ------
    StudyError
        If no non-negative combination of the candidates balances the reaction.
    """
    elements = sorted(set(consumed) | set(produced) | {e for c in candidates.values() for e in c})
    need = np.array([consumed.get(e, 0.0) - produced.get(e, 0.0) for e in elements], dtype=float)
    if np.allclose(need, 0.0):
        return {}
    names = list(candidates)
    matrix = np.array([[candidates[n].get(e, 0.0) for n in names] for e in elements], dtype=float)
    for size in range(1, len(names) + 1):
        for subset in combinations(range(len(names)), size):
            sub = matrix[:, subset]
            coeffs, *_ = np.linalg.lstsq(sub, need, rcond=None)
            if np.all(coeffs > 1e-9) and np.allclose(sub @ coeffs, need, atol=1e-8):
                return {names[i]: float(round(c, 9)) for i, c in zip(subset, coeffs, strict=True)}
    left = {e: float(v) for e, v in zip(elements, need, strict=True) if abs(v) > 1e-9}
    raise StudyError(
        f"cannot balance the binding reaction with the released species {names}; "
        f"left over (consumed - produced): {left}"
    )


def plan_study(study: Study) -> StudyPlan:
    """Expand a study into calculations, binding reactions and NEB paths (no disk access).

    Calculations: a cell-relaxed bulk per composition (binding compositions and ``neb.x``,
    on the smallest cell where x is exact); a clean slab per composition and termination;
    each ligand alone on the first study termination where it is closed-shell and the
    ``control`` / ``treated`` passivated surfaces on every clean slab; each ligand's neutral
    reference (role ``ligand_reference``); the released species the reactions need (CsBr /
    CsI bulk, HBr, HI, Br2, I2; role ``reference``); and both endpoints of every NEB path
    (role ``neb_initial`` / ``neb_final``, kind of their host, host rattled with the seed).
    Every binding reaction is atom-balanced by :func:`balance_released`.

    Raises
    ------
    UnknownLigandError, CompositionError, GeometryError, ClashError, StudyError
        From the structure builders or reaction balancing, before anything is written.
    """
    return _Planner(study).plan()


def _exact(x: float, supercell: tuple[int, int, int]) -> bool:
    return min(abs(x - a) for a in allowed_x(supercell)) < 1e-6


def _fu(atoms: Atoms) -> int:
    return int(atoms.info.get("formula_units", 1) or 1)


class _Planner:
    """Builds the plan of one study; holds the calculations collected so far."""

    def __init__(self, study: Study) -> None:
        from pqdflow.structures.ligands import REFERENCE_SPECIES, build_reference_species

        self.study = study
        self.chain = study.ligands.chain_length
        self.calcs: dict[str, CalcSpec] = {}
        self.bindings: list[BindingSpec] = []
        self.skipped: list[str] = []
        self.candidates = {
            name: dict(_composition(build_reference_species(name))) for name in REFERENCE_SPECIES
        }

    def add(self, name: str, kind: CalcKind, atoms: Atoms, **fields: Any) -> CalcSpec:
        if name not in self.calcs:
            fields.setdefault("formula_units", _fu(atoms))
            self.calcs[name] = CalcSpec(name, kind, atoms, **fields)
        return self.calcs[name]

    def slab(self, x: float, termination: str) -> Atoms:
        from pqdflow.structures.slabs import build_slab

        opts = self.study.slab
        return build_slab(
            x=x,
            termination=termination,
            size=opts.size,
            layers=opts.layers,
            vacuum=opts.vacuum,
            fixed_layers=opts.fixed_layers,
            seed=self.study.seed,
        )

    def bulk(self, x: float) -> None:
        from pqdflow.structures.bulk import build_mixed_halide

        host = self.study.slab.host_supercell()
        cell = next((c for c in ((1, 1, 1), (2, 2, 2)) if _exact(x, c)), host)
        atoms = build_mixed_halide(x, cell, seed=self.study.seed)
        n = cell[0] * cell[1] * cell[2]
        meta = {"x": x, "supercell": list(cell)}
        self.add(f"bulk-{_x_tag(x)}", "bulk", atoms, relax_cell=True, formula_units=n, meta=meta)

    def reference_species(self, name: str) -> str:
        from pqdflow.structures.ligands import build_reference_species

        atoms = build_reference_species(name)
        bulk = atoms.info.get("kind") == "bulk"
        meta = {"species": name}
        kind: CalcKind = "bulk" if bulk else "molecule"
        return self.add(
            f"ref-{name}", kind, atoms, relax_cell=bulk, role="reference", meta=meta
        ).name

    def ligand_reference(self, name: str) -> str:
        from pqdflow.structures.ligands import build_ligand_reference

        atoms = build_ligand_reference(name, chain_length=self.chain)
        meta = {"ligand": name, "chain_length": self.chain}
        return self.add(
            f"ligand-{name}", "molecule", atoms, role="ligand_reference", meta=meta
        ).name

    def binding(self, label: str, adsorbed: CalcSpec, slab: CalcSpec) -> None:
        records = adsorbed.atoms.info.get("ligands", [])
        counts = Counter(str(r["name"]) for r in records)
        ligands = {self.ligand_reference(name): float(k) for name, k in counts.items()}
        consumed = _composition(slab.atoms)
        for calc, k in ligands.items():
            for el, v in _composition(self.calcs[calc].atoms).items():
                consumed[el] += int(k) * v
        released = balance_released(consumed, _composition(adsorbed.atoms), self.candidates)
        self.bindings.append(
            BindingSpec(
                name=f"binding-{label}-{slab.name.removeprefix('slab-')}",
                ligand=label,
                site="+".join(str(r["site"]) for r in records),
                adsorbed=adsorbed.name,
                slab=slab.name,
                ligands=ligands,
                released={self.reference_species(s): c for s, c in released.items()},
                meta=dict(slab.meta),
            )
        )

    def surfaces(self, x: float, termination: str) -> None:
        """Clean slab plus every closed-shell passivated preset on one termination."""
        from pqdflow.structures.adsorption import (
            SURFACE_PRESETS,
            build_passivated_surface,
            is_closed_shell,
        )

        tag = f"{termination}-{_x_tag(x)}"
        clean = self.slab(x, termination)
        meta = {"x": x, "termination": termination}
        slab = self.add(f"slab-{tag}", "slab", clean, meta=meta)
        for preset in self.study.ligands.surfaces:
            atoms = build_passivated_surface(clean, preset, chain_length=self.chain)
            if not is_closed_shell(atoms):
                self.skipped.append(f"{preset} on {tag}: odd electron count (open shell)")
                continue
            extra = {**meta, "surface": preset, "ligands": list(SURFACE_PRESETS[preset])}
            self.binding(preset, self.add(f"{preset}-{tag}", "adsorbed", atoms, meta=extra), slab)

    def single(self, x: float, name: str) -> None:
        """One ligand alone, on the first study termination where it is closed-shell."""
        from pqdflow.structures.adsorption import is_closed_shell, place_ligand

        tried = []
        for termination in self.study.terminations:
            tag = f"{termination}-{_x_tag(x)}"
            clean = self.slab(x, termination)
            atoms = place_ligand(clean, name, chain_length=self.chain)
            if not is_closed_shell(atoms):
                tried.append(termination)
                continue
            meta = {"x": x, "termination": termination}
            slab = self.add(f"slab-{tag}", "slab", clean, meta=meta)
            site = str(atoms.info["ligands"][-1]["site"])
            extra = {**meta, "ligand": name, "site": site}
            self.binding(name, self.add(f"ads-{name}-{tag}", "adsorbed", atoms, meta=extra), slab)
            return
        raise StudyError(
            f"ligands.names: {name!r} gives an open-shell (odd-electron) adsorbed cell on every "
            f"termination of the study {tried}; add another termination (allowed: CsX, PbX2)"
        )

    def plan(self) -> StudyPlan:
        study = self.study
        neb_x = [study.neb.x] if study.neb.paths else []
        for x in dict.fromkeys([*study.compositions, *neb_x]):
            self.bulk(x)
        for x in study.compositions:
            for termination in study.terminations:
                self.surfaces(x, termination)
        for name in study.ligands.names:
            self.single(study.compositions[0], name)
        nebs = [self.neb(path) for path in study.neb.paths]
        return StudyPlan(
            name=study.name,
            calculations=list(self.calcs.values()),
            bindings=self.bindings,
            nebs=nebs,
            incar_overrides={k: v for k, v in study.inputs.incar.model_dump().items() if v},
            meta={
                "skipped": list(self.skipped),
                "inputs": study.inputs.model_dump(exclude={"incar"}),
                "study": study.model_dump(mode="json"),
            },
        )

    def neb_host(self, path: NebPath) -> Atoms:
        from pqdflow.structures.adsorption import build_passivated_surface
        from pqdflow.structures.bulk import build_mixed_halide

        x = self.study.neb.x
        if path.host == "bulk":
            return build_mixed_halide(x, self.study.neb.bulk_supercell, seed=self.study.seed)
        slab = self.slab(x, self.study.neb.termination)
        if path.host == "clean":
            return slab
        return build_passivated_surface(slab, path.host, chain_length=self.chain)

    def neb(self, path: NebPath) -> NebSpec:
        from pqdflow.structures.defects import (
            build_neb_endpoints,
            default_n_images,
            enumerate_halide_hops,
        )

        study = self.study
        host = self.neb_host(path)
        hops = enumerate_halide_hops(host)
        where = f"neb.paths[{path.host}]"
        vacancies = list(dict.fromkeys(int(h.vacancy_index) for h in hops))
        if path.vacancy >= len(vacancies):
            raise StudyError(
                f"{where}.vacancy={path.vacancy}; the host offers {len(vacancies)} candidate "
                f"vacancies (allowed 0..{len(vacancies) - 1})"
            )
        vacancy = vacancies[path.vacancy]
        moves = [int(h.hop_index) for h in hops if int(h.vacancy_index) == vacancy]
        if path.hop >= len(moves):
            raise StudyError(
                f"{where}.hop={path.hop}; vacancy {vacancy} has {len(moves)} candidate hops "
                f"(allowed 0..{len(moves) - 1})"
            )
        rattle = study.neb.rattle
        initial, final = build_neb_endpoints(
            host,
            vacancy_index=vacancy,
            hop_index=moves[path.hop],
            rattle=study.seed if rattle > 0 else None,
            rattle_stdev=rattle if rattle > 0 else 0.03,
        )
        kinds: dict[str, CalcKind] = {"bulk": "bulk", "clean": "slab"}
        kind = kinds.get(path.host, "adsorbed")
        tag = f"{path.host}-{_x_tag(study.neb.x)}"
        meta = {"x": study.neb.x, "host": path.host, "vacancy_index": vacancy}
        meta["charge"] = study.neb.vacancy_charge
        meta["hop_index"] = moves[path.hop]
        first = self.add(f"neb-{tag}-initial", kind, initial, role="neb_initial", meta=meta)
        last = self.add(f"neb-{tag}-final", kind, final, role="neb_final", meta=meta)
        return NebSpec(
            name=f"neb-{tag}",
            label=path.host,
            initial=first.name,
            final=last.name,
            n_images=path.n_images or int(default_n_images(initial, final)),
            hopping_index=int(initial.info["neb"]["hopping_index"]),
            meta=meta,
        )

"""The study file: what to compute, validated.

A study (YAML) names the compositions, slab terminations and size, the ligands and the two
surface presets (control = OAc/OAm, treated = AnHI/TMSBr), the NEB paths and the input
options. The schema forbids unknown keys everywhere, so a misspelt key is an error, not a
silently ignored setting. :func:`plan_study` turns a study into the flat list of
calculations, binding reactions and NEB paths that every execution path consumes (the dry
run, the local engine, FireWorks); it lives in :mod:`pqdflow.workflows.study.planner`.
Nothing here touches the disk except :func:`load_study`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pqdflow.errors import CompositionError, InputError, PqdflowError, StudyError
from pqdflow.structures.bulk import allowed_x, check_x
from pqdflow.workflows.vasp.incar import validate_incar

__all__ = [
    "CALC_KINDS",
    "FillOptions",
    "HopSelection",
    "IncarOverrides",
    "InputOptions",
    "LigandOptions",
    "NebOptions",
    "NebPath",
    "SlabOptions",
    "Study",
    "example_study",
    "example_study_yaml",
    "load_study",
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
    lattice
        ``relaxed`` (default): slabs, ligand surfaces and NEB hosts of composition x are put
        on the lattice of the study's relaxed bulk x before they run (the bulk relaxes
        first; recorded as ``meta["lattice"]`` of every result); ``vegard``: keep Vegard's
        law (experimental) lattice constants. VASP inputs of a dry run are always written
        on Vegard's lattice (nothing is relaxed yet).
    """

    size: tuple[int, int] = (2, 2)
    layers: int = Field(default=5, ge=2, le=15)
    vacuum: float = Field(default=15.0, ge=10.0, le=60.0)
    fixed_layers: int = Field(default=2, ge=0)
    lattice: Literal["relaxed", "vegard"] = "relaxed"

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
    configurations
        Site / orientation candidates per single ligand and termination (1 = the placement
        with most clearance only); the results report the lowest and the spread.
    coverage
        Copies of each single ligand on the slab (on successive free sites).
    allow_redox
        Let a binding reaction release redox products (Br2, I2); off by default, so a
        reaction that only balances by oxidising a halide is an error.
    silyl_channels
        Plan the TMSBr reaction channels (surface oleate exchange, acid / amine silylation
        releasing HBr, HBr etching of surface oleate) next to the intact adduct, when the
        single ligands include TMSBr, OAc and OAm.
    references
        ``gas`` (default): every reaction calculation in vacuum, ion pairs (OAmBr, AnHI) as
        gas-phase pairs. ``solvent``: every calculation of a reaction (surfaces, ligand
        references, released species) in an implicit solvent of permittivity
        ``solvent_epsilon`` (VASPsol: LSOL, EB_K; backends without a solvent model refuse
        the study before anything runs).
    solvent_epsilon
        Relative permittivity of the implicit solvent: 2.38, toluene, the solvent of the
        paper's AnHI/TMSBr treatment.
    """

    names: list[str] = Field(default_factory=lambda: ["OAm", "OAc", "AnHI", "TMSBr"])
    surfaces: list[SurfacePreset] = Field(default_factory=_default_surfaces)
    chain_length: int | None = Field(default=None, ge=1, le=18)
    configurations: int = Field(default=1, ge=1, le=12)
    coverage: int = Field(default=1, ge=1, le=4)
    allow_redox: bool = False
    silyl_channels: bool = True
    references: Literal["gas", "solvent"] = "gas"
    solvent_epsilon: float = Field(default=2.38, gt=1.0, le=200.0)

    @field_validator("names")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        from pqdflow.structures.ligands import get_ligand

        for name in names:
            get_ligand(name)  # UnknownLigandError lists the known ones
        if len(set(names)) != len(names):
            raise ValueError(f"ligand names must be unique, got {names}")
        return names


HopSelection = Literal["all", "spread", "nearest"] | list[str]


class NebPath(_Strict):
    """The halide-migration hops of one host.

    Attributes
    ----------
    host
        ``bulk`` (mixed-halide bulk supercell), ``clean`` (bare slab) or a ligand-covered
        surface (:data:`~pqdflow.structures.coverage.SURFACE_MODELS`: ``control`` = OAc/OAm,
        ``anhi`` = AnHI only, ``treated`` = AnHI + TMSBr) at ``neb.coverage``, all on
        ``neb.termination``.
    hops
        Which symmetry-distinct hops of the host to run (named by geometry, see
        :mod:`pqdflow.structures.hops`): ``all``; ``spread`` (per class of elements, layers
        and direction, the hop nearest to a ligand and the one farthest from any);
        ``nearest`` (per class, the hop nearest to a ligand); or a list of hop names
        (``VBr0-I1-updown-OAc4.2``; a trailing ``*`` matches a prefix).
        ``pqdflow inputs`` lists every hop of every host in the dry run's manifest.
    n_images
        Intermediate images; ``None`` -> derived from the hop distance by the structures
        library (``default_n_images``).
    """

    host: Literal["bulk", "clean", "control", "anhi", "treated"]
    hops: HopSelection = "nearest"
    n_images: int | None = Field(default=None, ge=1, le=15)

    @model_validator(mode="before")
    @classmethod
    def _no_index(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            old = sorted(k for k in ("vacancy", "hop") if k in data)
            if old:
                raise StudyError(
                    f"{' and '.join(old)} (a list index) is no longer accepted: an index meant "
                    "different atoms in different hosts. Name the hops instead, e.g. "
                    "hops: [VBr0-I1-updown-OAc4.2], or hops: all | spread | nearest"
                )
        return data

    @field_validator("hops")
    @classmethod
    def _names(cls, hops: HopSelection) -> HopSelection:
        if isinstance(hops, list):
            if not hops:
                raise ValueError("hops is empty; give all, spread, nearest or hop names")
            if len(set(hops)) != len(hops):
                raise ValueError(f"hop names must be unique, got {hops}")
        return hops


FillHost = Literal["clean", "control", "anhi", "treated"]


class FillOptions(_Strict):
    """Vacancy filling on the NEB surfaces (:mod:`pqdflow.workflows.study.fills`).

    Attributes
    ----------
    fillers
        Halides (``Br``, ``I``) and anionic X_site ligands (``OAc``) put into a top-layer
        halide vacancy and, as the same-atoms isomer, on top of a surface Pb; empty = none.
    hosts
        NEB surface hosts to fill on (built as for ``neb.paths``).
    element
        Element of the vacancy (the paper's V_Br: ``Br``).
    """

    fillers: list[str] = Field(default_factory=list)
    hosts: list[FillHost] = Field(default_factory=lambda: list[FillHost](["control"]))
    element: Literal["Br", "I"] = "Br"

    @field_validator("fillers", "hosts")
    @classmethod
    def _unique(cls, names: list[str]) -> list[str]:
        if len(set(names)) != len(names):
            raise ValueError(f"names must be unique, got {names}")
        return names


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
    coverage
        Ligands per top-layer surface cell of the ligand-covered NEB hosts, in (0, 1]
        (0.5: two ligands on the 2x2 cell).
    formation
        Also relax each pristine NEB host and the references of the halide chemical
        potential (X2, CsPbX3, CsX, Pb metal) for vacancy formation energies.
    max_depth
        Slab hosts: sample hops between top-layer halides (0) and also top <-> subsurface
        (1, default).
    fill
        Halides / X-type ligands in a surface halide vacancy vs on top (:class:`FillOptions`).
    paths
        The paths to compute.
    """

    x: float = 2.0
    termination: Literal["CsX", "PbX2"] = "PbX2"
    bulk_supercell: tuple[int, int, int] = (2, 2, 2)
    vacancy_charge: int = Field(default=1, ge=-1, le=1)
    rattle: float = Field(default=0.03, ge=0.0, le=0.2)
    max_depth: int = Field(default=1, ge=0, le=1)
    formation: bool = True
    coverage: float = Field(default=0.5, gt=0.0, le=1.0)
    fill: FillOptions = Field(default_factory=FillOptions)
    paths: list[NebPath] = Field(
        default_factory=lambda: [
            NebPath(host="bulk"),
            NebPath(host="control"),
            NebPath(host="anhi"),
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
        ``"auto"`` (default) adds Grimme D3(BJ) (IVDW 12; a D3(BJ) correction on the ML
        backends) to every calculation of a binding reaction with organic ligands, so each
        reaction energy is computed with one Hamiltonian; ``"d3bj"`` adds it to every
        calculation, ``"none"`` to none.
    neb_endpoint_ediffg
        EDIFFG of the NEB endpoint relaxations (eV/Å, negative = force criterion); tighter
        than the band because the soft tilt modes leave loosely relaxed endpoints above
        their basin bottom (see ``NEB_NOTES``).
    incar
        Per-kind INCAR overrides.
    """

    kpoint_density: float = Field(default=25.0, gt=0.0, le=200.0)
    vtst: bool = True
    dispersion: Literal["none", "d3bj", "auto"] = "auto"
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
    esp
        Write the VASP single points of the ligand ESP maps (Extended Data Fig. 4b: LOCPOT +
        CHGCAR of every ligand molecule, ``esp/<name>`` of the dry run); one cheap Gamma-point
        SCF per molecule.
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
    esp: bool = True

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
    if data is None or data == {}:
        raise StudyError(
            f"study file {str(path)!r} is empty; write a study into it (`pqdflow run "
            "--example` runs the default study; `pqdflow inputs --example > study.yaml` "
            "writes it to start from)"
        )
    return study_from_dict(data)


#: Example presets: ``paper`` (the default study, ``make study``), ``full`` (every
#: top<->subsurface hop too, the site search and the fills on every surface) and ``quick``
#: (migration only).
PRESETS: tuple[str, ...] = ("paper", "full", "quick")

ExamplePreset = Literal["paper", "full", "quick"]


def example_study(preset: ExamplePreset = "paper") -> Study:
    """Return an example study (see :func:`example_study_yaml` for the reasoning).

    ``preset="paper"``: the default study (binding, TMSBr channels, vacancy fills on the
    control surface, top-layer in-plane hops nearest to a ligand on bulk and the three
    surfaces). ``"full"``: the paper study plus top <-> subsurface hops, three site and
    orientation candidates per ligand and the fills on every surface. ``"quick"``: a quick
    look at the migration comparison only (no binding energies).
    """
    return study_from_dict(yaml.safe_load(example_study_yaml(preset)))


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
  lattice: relaxed    # slabs/NEB hosts on the backend's relaxed bulk lattice (or: vegard)

ligands:
  # each one adsorbed alone (first composition, first closed-shell termination)
  names: [OAm, OAc, AnHI, TMSBr]
  # passivated surfaces: control = OAc/OAm, treated = AnHI/TMSBr
  surfaces: [control, treated]
  chain_length: null  # OAm/OAc carbons; null = library default (4), 18 = full oleyl
  configurations: 1   # site/orientation candidates per single ligand (lowest + spread)
  coverage: 1         # copies of each single ligand on the slab
  allow_redox: false  # never balance a reaction with Br2/I2 unless true
  silyl_channels: true  # TMSBr + surface oleate / acid / amine, HBr etching

neb:
  # Halide migration on mixed CsPbBr2I (x = 2): realisable exactly on the 2x2x2 bulk
  # supercell (8 I of 24 halides) and on the 2x2x3 slab host (12 of 36).
  x: 2.0
  termination: PbX2   # both passivated presets are closed-shell on PbX2 (ligands added)
  bulk_supercell: [2, 2, 2]
  vacancy_charge: 1   # V_Br+ (NELECT = neutral - 1) in VASP; 0 = neutral (odd-electron) cell
  rattle: 0.03        # A, seeded rattle of the host (the ideal cube is a saddle point)
  max_depth: 0        # slab hops: 0 = top layer in-plane only, 1 = also top <-> subsurface
  formation: true     # vacancy formation energies (pristine hosts, X2/CsPbX3/CsX/Pb refs)
  coverage: 0.5       # ligands per top-layer cell on the covered hosts (2 on the 2x2 cell)
  fill:               # the Fig. 1 mechanism: X-type species in a surface V_Br vs on top of a Pb
    fillers: [Br, I, OAc]   # Br- (TMSBr's), I- (AnHI's), oleate (the control's)
    hosts: [control]        # NEB surfaces to fill on (same host model as the bands)
  paths:
    # hops by geometry (pqdflow.structures.hops): all | spread | nearest | [names];
    # nearest = per class of elements, layers and direction, the hop closest to a ligand
    - {host: bulk, hops: nearest}      # n_images: null = from the hop distance
    - {host: control, hops: nearest}  # pristine OAc/OAm
    - {host: anhi, hops: nearest}     # AnHI only (the paper's film control)
    - {host: treated, hops: nearest}  # AnHI + TMSBr

inputs:
  kpoint_density: 25.0      # k-points per 1/A (VASP R_k); 4x4x4 bulk, 2x2x1 slabs
  vtst: true                # VTST climbing-image NEB (IBRION 3, IOPT); false = plain VASP
  dispersion: auto          # D3(BJ) (IVDW 12) on binding calculations; d3bj = all; none
  neb_endpoint_ediffg: -0.01  # eV/A, NEB endpoints relaxed tighter than the band
  incar:                    # absolute overrides per kind; TAG: null removes a tag
    bulk: {}
    slab: {}
    adsorbed: {}
    molecule: {}
    neb: {}

seed: 0
"""


_QUICK_YAML = """\
# pqdflow quick look: halide migration only, top-layer in-plane hops, one per class
name: quick
compositions: [3.0]
terminations: [PbX2]
ligands: {names: [], surfaces: []}
neb:
  x: 2.0
  max_depth: 0        # top layer in-plane hops only
  paths:
    - {host: bulk, hops: nearest}
    - {host: control, hops: nearest}
    - {host: anhi, hops: nearest}
    - {host: treated, hops: nearest}
"""


def example_study_yaml(preset: ExamplePreset = "paper") -> str:
    """Return an example study as commented YAML (``pqdflow inputs --example [PRESET]``).

    See :func:`example_study` for the presets.
    """
    if preset == "quick":
        return _QUICK_YAML
    if preset == "full":
        return _full_yaml()
    if preset != "paper":
        raise StudyError(f"unknown example preset {preset!r}; allowed: {', '.join(PRESETS)}")
    return _EXAMPLE_YAML


def _full_yaml() -> str:
    text = _EXAMPLE_YAML.replace("name: paper", "name: full", 1)
    for old, new in (
        ("  configurations: 1 ", "  configurations: 3 "),
        ("  max_depth: 0 ", "  max_depth: 1 "),
        ("    hosts: [control]  ", "    hosts: [control, anhi, treated]  "),
    ):
        if old not in text:  # pragma: no cover - guards the template against edits
            raise AssertionError(f"full preset: {old!r} not in the paper template")
        text = text.replace(old, new, 1)
    head = "# pqdflow full preset: the paper study with every hop class, site search and fill\n"
    return head + text

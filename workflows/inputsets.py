"""VASP PBE/PAW input sets: declarative YAML presets plus one function that writes a folder.

The presets live in ``workflows/presets/*.yaml`` (``PARENT:`` inheritance, dated provenance
comments) and are loaded with :mod:`importlib.resources`. A :class:`VaspInputSet` is a
frozen dataclass naming a preset and the user's choices (INCAR overrides, k-point density,
VTST switch, D3(BJ) switch, molecule box). Computing INCAR / KPOINTS / POSCAR / POTCAR.spec
touches neither the disk nor the environment; :func:`write_vasp_inputs` and
:func:`write_neb_inputs` write one folder atomically and never clobber outputs. Only at
write time is ``PMG_VASP_PSP_DIR`` read, to decide between a real ``POTCAR`` (library
configured) and ``POTCAR.spec`` (no licence needed).

Presets: ``base``, ``bulk_relax`` (ISIF 3), ``bulk_fixed_cell`` (ISIF 2), ``slab_relax``
(ISIF 2, dipole correction), ``molecule`` (cubic box, Gamma only), ``neb_bulk``,
``neb_slab``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import gzip
import hashlib
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import yaml
from ase import Atoms
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp.inputs import POTCAR_FUNCTIONAL_MAP, Incar, Kpoints, Poscar

from pqdflow.errors import EndpointError, InputSetError, OverwriteError
from pqdflow.fileio import atomic_directory, find_outputs
from pqdflow.provenance import provenance
from pqdflow.workflows.kpoints import gamma_grid, poscar_order, selective_dynamics, slab_centre

__all__ = [
    "INPUT_PROVENANCE_FILE",
    "KIND_PRESETS",
    "PreparedInputs",
    "VaspInputSet",
    "available_presets",
    "get_input_set",
    "load_preset",
    "poscar_order",
    "prepare_neb_inputs",
    "prepare_vasp_inputs",
    "validate_incar",
    "write_neb_inputs",
    "write_vasp_inputs",
]

#: Name of the provenance JSON written next to the inputs (not part of the input hash).
INPUT_PROVENANCE_FILE = "pqdflow_inputs.json"

#: Calculation kind -> preset name (``bulk`` with a fixed cell uses ``bulk_fixed_cell``).
KIND_PRESETS: Mapping[str, str] = MappingProxyType(
    {
        "bulk": "bulk_relax",
        "slab": "slab_relax",
        "adsorbed": "slab_relax",
        "molecule": "molecule",
        "neb": "neb_slab",
    }
)

# VTST tags (Henkelman group) that pymatgen's INCAR table does not list, with their types.
_VTST_TAGS: Mapping[str, str] = MappingProxyType(
    {
        "LCLIMB": "bool",
        "IOPT": "int",
        "ICHAIN": "int",
        "MAXMOVE": "float",
        "TIMESTEP": "float",
        "LNEBCELL": "bool",
        "ILBFGSMEM": "int",
        "LGLOBAL": "bool",
        "LAUTOSCALE": "bool",
        "INVCURV": "float",
        "LLINEOPT": "bool",
        "FDSTEP": "float",
        "LTANGENTOLD": "bool",
        "LDNEB": "bool",
        "JACOBIAN": "float",
        "FTIMEMAX": "float",
        "FTIMEDEC": "float",
        "FTIMEINC": "float",
        "FALPHA": "float",
        "FNMIN": "int",
    }
)
# VTST-only tags that must not appear without VTST.
_VTST_ONLY = frozenset(_VTST_TAGS)
# pymatgen's table types SPRING as int; VASP reads a real (eV/A^2).
_TYPE_FIXES: Mapping[str, str] = MappingProxyType({"SPRING": "float"})


def _tag_type(tag: str) -> str | None:
    """Return the declared type of a known INCAR tag, or None when the tag is unknown."""
    if tag in _TYPE_FIXES:
        return _TYPE_FIXES[tag]
    if tag in _VTST_TAGS:
        return _VTST_TAGS[tag]
    params: Mapping[Any, Any] = Incar.INCAR_PARAMS
    entry = params.get(tag)
    return None if entry is None else str(entry.get("type", "str"))


def _known_tags() -> list[str]:
    return sorted(set(Incar.INCAR_PARAMS) | set(_VTST_TAGS))


def _check_value(tag: str, value: Any, declared: str) -> Any:
    """Return ``value`` (floats normalised) if it matches ``declared``, else raise."""
    kinds = {k.strip() for k in declared.split("|")}
    scalar = (bool, int, float, str)
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
    elif isinstance(value, int | np.integer):
        if "int" in kinds:
            return int(value)
        if "float" in kinds:
            return float(value)
    elif isinstance(value, float | np.floating):
        if "float" in kinds and math.isfinite(float(value)):
            return float(value)
    elif isinstance(value, str):
        if "str" in kinds:
            return value
    elif isinstance(value, list | tuple) and "list" in kinds:
        if value and all(isinstance(v, scalar) for v in value):
            return list(value)
    raise InputSetError(
        f"INCAR tag {tag} = {value!r} has the wrong type ({type(value).__name__}); "
        f"VASP expects {declared}"
    )


def validate_incar(tags: Mapping[str, Any], *, allow_none: bool = True) -> dict[str, Any]:
    """Check INCAR tag names and value types; return a normalised copy.

    Parameters
    ----------
    tags
        Tag -> value. Tag names must be UPPERCASE VASP tags (pymatgen's INCAR table plus the
        VTST tags). ``None`` means "remove this tag" when ``allow_none``.
    allow_none
        Accept ``None`` values (override semantics).

    Raises
    ------
    InputSetError
        Naming the tag for an unknown tag or a value of the wrong type.
    """
    out: dict[str, Any] = {}
    for tag, value in tags.items():
        if not isinstance(tag, str) or not tag or tag != tag.upper() or not tag.isidentifier():
            raise InputSetError(f"INCAR tag {tag!r} is not an UPPERCASE VASP tag name")
        declared = _tag_type(tag)
        if declared is None:
            close = difflib.get_close_matches(tag, _known_tags(), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise InputSetError(f"unknown INCAR tag {tag!r} (not a VASP or VTST tag){hint}")
        if value is None:
            if not allow_none:
                raise InputSetError(f"INCAR tag {tag} has no value")
            out[tag] = None
            continue
        out[tag] = _check_value(tag, value, declared)
    return out


def available_presets() -> list[str]:
    """Names of the bundled presets (``workflows/presets/*.yaml``)."""
    folder = resources.files("pqdflow.workflows").joinpath("presets")
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _merge(base: dict[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; a ``None`` value in ``child`` removes the key."""
    out = copy.deepcopy(base)
    for key, value in child.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


@functools.cache
def _load_preset_cached(name: str) -> dict[str, Any]:
    if name not in available_presets():
        raise InputSetError(f"unknown input-set preset {name!r}; available: {available_presets()}")
    text = resources.files("pqdflow.workflows").joinpath("presets", f"{name}.yaml").read_text()
    data = yaml.safe_load(text) or {}
    parent = data.pop("PARENT", None)
    merged = _merge(_load_preset_cached(parent), data) if parent else data
    validate_incar(merged.get("INCAR", {}), allow_none=False)
    return merged


def load_preset(name: str) -> dict[str, Any]:
    """Return the fully merged settings of preset ``name`` (a fresh copy).

    Raises
    ------
    InputSetError
        If the preset does not exist.
    """
    return copy.deepcopy(_load_preset_cached(name))


def _jsonable(obj: Any) -> Any:
    """Convert ``atoms.info``-like data to plain JSON types (unknown objects -> str)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


@dataclass(frozen=True)
class VaspInputSet:
    """A VASP input set: a preset plus the user's choices. Immutable; computes, never writes.

    Parameters
    ----------
    preset
        Preset name (see :func:`available_presets`).
    incar_overrides
        Absolute INCAR overrides applied last; ``{"TAG": None}`` removes a tag. Checked on
        construction: unknown tags and wrong value types raise :class:`InputSetError`.
    kpoint_density
        k-points per 1/Å of reciprocal-vector length (VASP's automatic length R_k, in Å);
        ``None`` uses the preset's (25 Å). Ignored for molecules (Gamma only).
    vtst
        NEB presets only: use the VTST optimisers and climbing image (IBRION 3, POTIM 0,
        IOPT, LCLIMB); ``False`` gives a plain-VASP NEB (IBRION 1, POTIM 0.5, no LCLIMB).
    dispersion
        ``"d3bj"`` switches on Grimme D3 with Becke-Johnson damping (IVDW 12).
    box
        Molecule preset only: cubic box edge in Å; ``None`` -> largest extent + 2 x 10 Å,
        rounded up to a whole Å.
    potcar_overrides
        Element -> POTCAR symbol, replacing the preset's choice.
    charge
        Net charge of the cell in units of e (+1 = one electron removed, e.g. a V_Br+ halide
        vacancy); a non-zero charge sets NELECT from the preset's ZVAL table. An explicit
        NELECT override wins.
    """

    preset: str = "base"
    incar_overrides: Mapping[str, Any] = field(default_factory=dict)
    kpoint_density: float | None = None
    vtst: bool = True
    dispersion: Literal["none", "d3bj"] = "none"
    box: float | None = None
    potcar_overrides: Mapping[str, str] = field(default_factory=dict)
    charge: int = 0

    def __post_init__(self) -> None:
        settings = load_preset(self.preset)  # raises for an unknown preset
        if isinstance(self.charge, bool) or not isinstance(self.charge, int):
            raise InputSetError(f"charge = {self.charge!r}; must be an integer number of e")
        if not isinstance(self.incar_overrides, Mapping):
            raise InputSetError(
                f"incar_overrides must be a mapping TAG -> value, got {self.incar_overrides!r}"
            )
        overrides = validate_incar(self.incar_overrides)
        object.__setattr__(self, "incar_overrides", MappingProxyType(overrides))
        object.__setattr__(self, "potcar_overrides", MappingProxyType(dict(self.potcar_overrides)))
        if self.kpoint_density is not None and not (
            isinstance(self.kpoint_density, int | float) and self.kpoint_density > 0
        ):
            raise InputSetError(
                f"kpoint_density = {self.kpoint_density!r}; must be a positive number (per 1/Å)"
            )
        if self.dispersion not in ("none", "d3bj"):
            raise InputSetError(f"dispersion = {self.dispersion!r}; allowed: 'none', 'd3bj'")
        if self.box is not None and "MOLECULE" not in settings:
            raise InputSetError(
                f"box is only meaningful for the molecule preset, not {self.preset!r}"
            )
        if self.box is not None and not (isinstance(self.box, int | float) and self.box > 0):
            raise InputSetError(f"box = {self.box!r}; must be a positive edge length in Å")
        if not self.vtst:
            bad = sorted(k for k, v in overrides.items() if k in _VTST_ONLY and v is not None)
            if bad:
                raise InputSetError(
                    f"INCAR tags {bad} need the VTST tools; set vtst=True or drop them"
                )

    # ------------------------------------------------------------------ settings
    @functools.cached_property
    def _settings(self) -> dict[str, Any]:
        # read-only by convention: every public accessor copies
        return load_preset(self.preset)

    @property
    def settings(self) -> dict[str, Any]:
        """The merged preset settings (a fresh copy)."""
        return copy.deepcopy(self._settings)

    @property
    def is_neb(self) -> bool:
        """True for NEB presets."""
        return "NEB" in self._settings

    def prepare_atoms(self, atoms: Atoms) -> Atoms:
        """Return the structure as it will be written: a copy; molecules centred in a box.

        Atoms are grouped by element (stable sort, elements in order of first appearance,
        see :func:`poscar_order`) so that the POSCAR has one block and the POTCAR one entry
        per element; ``FixAtoms`` constraints follow their atoms.

        Raises
        ------
        InputSetError
            If an explicit molecule box leaves less than the preset's vacuum on a side.
        """
        out = atoms[poscar_order(atoms)]
        molecule = self._settings.get("MOLECULE")
        if molecule is None:
            return out
        vacuum = float(molecule["vacuum"])
        pos = out.get_positions()
        extent = float(np.max(pos.max(axis=0) - pos.min(axis=0))) if len(out) else 0.0
        needed = extent + 2.0 * vacuum
        edge = float(math.ceil(needed)) if self.box is None else float(self.box)
        if edge < needed - 1e-9:
            raise InputSetError(
                f"molecule box {edge:.2f} Å is too small for a {extent:.2f} Å molecule with "
                f"{vacuum:.1f} Å vacuum each side; allowed: box >= {needed:.2f} Å"
            )
        centre = (pos.max(axis=0) + pos.min(axis=0)) / 2.0
        out.set_cell(np.eye(3) * edge)
        out.set_pbc(True)
        out.set_positions(pos - centre + edge / 2.0)
        return out

    def kpoint_grid(self, atoms: Atoms) -> tuple[int, int, int]:
        """Gamma-centred grid N_i = max(1, int(density * |b_i| + 0.5)), |b_i| in 1/Å.

        Molecules get (1, 1, 1); slabs get 1 along the vacuum axis.
        """
        settings = self._settings
        if settings["KPOINTS"].get("gamma_only"):
            return (1, 1, 1)
        slab = settings.get("SLAB")
        return gamma_grid(
            atoms.cell,
            float(self.kpoint_density or settings["KPOINTS"]["density"]),
            vacuum_axis=None if slab is None else int(slab["vacuum_axis"]),
        )

    def incar(self, atoms: Atoms, *, n_images: int | None = None) -> dict[str, Any]:
        """INCAR tags for ``atoms`` (as returned by :meth:`prepare_atoms`).

        Parameters
        ----------
        atoms
            The structure (for LREAL, DIPOL and SYSTEM).
        n_images
            Number of intermediate NEB images (NEB presets only; sets IMAGES).

        Raises
        ------
        InputSetError
            For an NEB preset without ``n_images`` (or ``n_images`` < 1), or ``n_images``
            given for a non-NEB preset.
        """
        settings = self._settings
        tags: dict[str, Any] = dict(settings["INCAR"])
        if self.dispersion != "none":
            tags.update(settings["DISPERSION"][self.dispersion])
        neb = settings.get("NEB")
        if neb is not None:
            if n_images is None or int(n_images) < 1:
                raise InputSetError(
                    f"NEB preset {self.preset!r} needs n_images >= 1, got {n_images!r}"
                )
            tags.update(neb.get("common", {}))
            tags.update(neb["vtst"] if self.vtst else neb["plain"])
            tags["IMAGES"] = int(n_images)
        elif n_images is not None:
            raise InputSetError(f"n_images is only allowed for NEB presets, not {self.preset!r}")
        slab = settings.get("SLAB")
        if slab is not None and slab.get("dipole_centre") and tags.get("LDIPOL"):
            centre = [0.5, 0.5, 0.5]
            axis = int(slab["vacuum_axis"])
            centre[axis] = round(slab_centre(atoms, axis), 4)
            tags["DIPOL"] = centre
        tags["LREAL"] = "Auto" if len(atoms) >= int(settings["LREAL_AUTO_MIN_ATOMS"]) else False
        tags["SYSTEM"] = f"{atoms.get_chemical_formula(mode='hill')} {self.preset}"
        if self.charge:
            tags["NELECT"] = float(self.neutral_electrons(atoms) - self.charge)
        for tag, value in self.incar_overrides.items():
            if value is None:
                tags.pop(tag, None)
            else:
                tags[tag] = value
        return validate_incar(tags, allow_none=False)

    def neutral_electrons(self, atoms: Atoms) -> int:
        """Valence electrons of the neutral cell from the preset's ZVAL table.

        Raises
        ------
        InputSetError
            If a POTCAR in use has no ZVAL entry (e.g. after a ``potcar_overrides``).
        """
        zval = dict(self._settings.get("ZVAL", {}))
        choice = dict(self._settings["POTCAR"])
        choice.update(self.potcar_overrides)
        total = 0
        for symbol in atoms.get_chemical_symbols():
            potcar = choice.get(symbol)
            if potcar not in zval:
                raise InputSetError(
                    f"no ZVAL for POTCAR {potcar!r} (element {symbol}); known: {sorted(zval)}. "
                    "Set NELECT with an INCAR override for charged cells."
                )
            total += int(zval[potcar])
        return total

    def potcar_symbols(self, atoms: Atoms) -> list[str]:
        """POTCAR symbol of each consecutive element group, in POSCAR order.

        Raises
        ------
        InputSetError
            For an element without a POTCAR choice.
        """
        choice = dict(self._settings["POTCAR"])
        choice.update(self.potcar_overrides)
        symbols: list[str] = []
        previous = None
        for element in atoms.get_chemical_symbols():
            if element != previous:
                if element not in choice:
                    raise InputSetError(
                        f"no POTCAR choice for element {element!r}; known: {sorted(choice)} "
                        "(add one with potcar_overrides)"
                    )
                symbols.append(choice[element])
                previous = element
        return symbols

    def poscar(self, atoms: Atoms, comment: str | None = None) -> Poscar:
        """Return a pymatgen Poscar with selective dynamics from the atoms' constraints."""
        structure = Structure(
            Lattice(np.array(atoms.cell[:])),
            atoms.get_chemical_symbols(),
            atoms.get_positions(),
            coords_are_cartesian=True,
        )
        return Poscar(
            structure,
            comment=comment or atoms.get_chemical_formula(mode="hill"),
            selective_dynamics=selective_dynamics(atoms),
        )

    def kpoints(self, atoms: Atoms) -> Kpoints:
        """Return a pymatgen Gamma-centred Kpoints object."""
        grid = self.kpoint_grid(atoms)
        if self._settings["KPOINTS"].get("gamma_only"):
            comment = "pqdflow Gamma only"
        else:
            density = self.kpoint_density or self._settings["KPOINTS"]["density"]
            comment = f"pqdflow Gamma-centred, density {density:g} per 1/A"
        return Kpoints.gamma_automatic(grid, comment=comment)

    def as_dict(self) -> dict[str, Any]:
        """Plain-JSON description of this input set."""
        return {
            "preset": self.preset,
            "incar_overrides": dict(self.incar_overrides),
            "kpoint_density": self.kpoint_density,
            "vtst": self.vtst,
            "dispersion": self.dispersion,
            "box": self.box,
            "potcar_overrides": dict(self.potcar_overrides),
            "charge": self.charge,
        }


def get_input_set(
    kind: str, *, relax_cell: bool = True, host: str = "slab", **opts: Any
) -> VaspInputSet:
    """Return the input set for a calculation kind.

    Parameters
    ----------
    kind
        ``"bulk"``, ``"slab"``, ``"adsorbed"``, ``"molecule"`` or ``"neb"``, or a preset name.
    relax_cell
        Bulk only: ``False`` selects ``bulk_fixed_cell`` (ISIF 2).
    host
        NEB only: ``"bulk"`` or ``"slab"`` (``"adsorbed"`` counts as slab).
    **opts
        Further :class:`VaspInputSet` fields (``incar_overrides``, ``kpoint_density``, ...).

    Raises
    ------
    InputSetError
        For an unknown kind/host or a bad option.
    """
    if kind == "bulk":
        preset = "bulk_relax" if relax_cell else "bulk_fixed_cell"
    elif kind == "neb":
        hosts = {"bulk": "neb_bulk", "slab": "neb_slab", "adsorbed": "neb_slab"}
        if host not in hosts:
            raise InputSetError(f"NEB host {host!r} is not allowed; allowed: {sorted(hosts)}")
        preset = hosts[host]
    elif kind in KIND_PRESETS:
        preset = KIND_PRESETS[kind]
    elif kind in available_presets():
        preset = kind
    else:
        raise InputSetError(
            f"unknown calculation kind {kind!r}; allowed: {sorted(KIND_PRESETS)} or a preset "
            f"{available_presets()}"
        )
    try:
        return VaspInputSet(preset=preset, **opts)
    except TypeError as exc:
        raise InputSetError(f"bad input-set option for {kind!r}: {exc}") from exc


# ---------------------------------------------------------------------- writing
@dataclass(frozen=True)
class PreparedInputs:
    """The complete content of one input folder, computed in memory.

    Attributes
    ----------
    files
        Relative path -> bytes. The POTCAR is represented by ``POTCAR.spec`` here.
    input_sha256
        SHA-256 over ``files`` (names and bytes, sorted), the same scheme as
        :func:`pqdflow.fileio.sha256_of_files`; independent of whether a real POTCAR is
        written, so it is the same with or without a POTCAR licence.
    potcar_symbols, functional
        The POTCAR choice, written as POTCAR.spec or assembled into a POTCAR at write time.
    record
        Extra provenance (input set, structure metadata, k-point grid).
    """

    files: Mapping[str, bytes]
    input_sha256: str
    potcar_symbols: tuple[str, ...]
    functional: str
    record: Mapping[str, Any]
    potcar_dirs: tuple[str, ...] = ("",)

    def materialise(self) -> dict[str, bytes]:
        """Return the files as written now (POTCAR, not POTCAR.spec, with PMG_VASP_PSP_DIR).

        Raises
        ------
        InputSetError
            If the POTCAR library is configured but a POTCAR is missing.
        """
        files = dict(self.files)
        psp_dir = os.environ.get("PMG_VASP_PSP_DIR")
        if not psp_dir:
            return files
        potcar = _assemble_potcar(Path(psp_dir), self.functional, self.potcar_symbols)
        for sub in self.potcar_dirs:
            files.pop(f"{sub}POTCAR.spec", None)
            files[f"{sub}POTCAR"] = potcar
        return files

    def is_current(self, directory: str | Path, files: Mapping[str, bytes] | None = None) -> bool:
        """Return True if ``directory`` already holds exactly these inputs."""
        directory = Path(directory)
        prov = directory / INPUT_PROVENANCE_FILE
        if not prov.is_file():
            return False
        try:
            recorded = json.loads(prov.read_text()).get("input_sha256")
        except (OSError, ValueError):
            return False
        if recorded != self.input_sha256:
            return False
        files = self.materialise() if files is None else files
        for rel, data in files.items():
            path = directory / rel
            if not path.is_file() or path.read_bytes() != data:
                return False
        return True

    def check(self, directory: str | Path, *, force: bool = False) -> bool:
        """Decide what writing to ``directory`` would do, without writing.

        Returns
        -------
        bool
            True if the folder must be (re)written, False if it is already current.

        Raises
        ------
        OverwriteError
            If the folder holds outputs, its inputs differ and ``force`` is False.
        """
        directory = Path(directory)
        if self.is_current(directory):
            return False
        outputs = find_outputs(directory)
        if outputs and not force:
            names = ", ".join(str(p.relative_to(directory)) for p in outputs[:5])
            raise OverwriteError(
                f"{directory} already holds calculation outputs ({names}) and its inputs differ; "
                "refusing to overwrite. Use force=True (--force) to move them aside."
            )
        return True

    def write(self, directory: str | Path, *, force: bool = False) -> bool:
        """Write the folder atomically unless it is already current; return True if written."""
        directory = Path(directory)
        files = self.materialise()
        if self.is_current(directory, files):
            return False
        self.check(directory, force=force)
        with atomic_directory(directory, force=force) as tmp:
            for rel, data in files.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            record = provenance(
                input_sha256=self.input_sha256,
                files=sorted(files),
                potcar="POTCAR" if "POTCAR" in {Path(r).name for r in files} else "POTCAR.spec",
                **self.record,
            )
            # inside the temporary folder, which is renamed into place as a whole
            text = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
            (tmp / INPUT_PROVENANCE_FILE).write_text(text)
        return True


def _assemble_potcar(psp_dir: Path, functional: str, symbols: Sequence[str]) -> bytes:
    subdir = POTCAR_FUNCTIONAL_MAP.get(functional, functional)
    parts: list[bytes] = []
    for symbol in symbols:
        tried = [
            psp_dir / subdir / symbol / "POTCAR",
            psp_dir / subdir / f"POTCAR.{symbol}",
            psp_dir / subdir / f"POTCAR.{symbol}.gz",
        ]
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            raise InputSetError(
                f"PMG_VASP_PSP_DIR is set but POTCAR {symbol!r} ({functional}) was not found; "
                f"tried {[str(p) for p in tried]}"
            )
        data = found.read_bytes()
        parts.append(gzip.decompress(data) if found.suffix == ".gz" else data)
    return b"".join(parts)


def _hash_files(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode())
        digest.update(b"\0")
        digest.update(files[rel])
    return digest.hexdigest()


def _extra_bytes(extra_files: Mapping[str, str | bytes] | None) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, content in (extra_files or {}).items():
        if Path(name).name != name or name in {INPUT_PROVENANCE_FILE, ""}:
            raise InputSetError(f"extra file name {name!r} must be a plain file name")
        out[name] = content.encode() if isinstance(content, str) else bytes(content)
    return out


def prepare_vasp_inputs(
    atoms: Atoms,
    input_set: VaspInputSet,
    *,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> PreparedInputs:
    """Compute the INCAR, KPOINTS, POSCAR and POTCAR.spec of one calculation, in memory.

    Raises
    ------
    InputSetError
        For an NEB preset (use :func:`prepare_neb_inputs`), a missing POTCAR choice, an
        unsupported constraint or a bad override.
    """
    if input_set.is_neb:
        raise InputSetError(f"preset {input_set.preset!r} is an NEB preset; use write_neb_inputs")
    if len(atoms) == 0:
        raise InputSetError("cannot write VASP inputs for a structure with no atoms")
    prepared = input_set.prepare_atoms(atoms)
    order = poscar_order(atoms)
    symbols = input_set.potcar_symbols(prepared)
    files = {
        "INCAR": str(Incar(input_set.incar(prepared))).encode(),
        "KPOINTS": str(input_set.kpoints(prepared)).encode(),
        "POSCAR": input_set.poscar(prepared).get_str().encode(),
        "POTCAR.spec": ("\n".join(symbols) + "\n").encode(),
    }
    extra = _extra_bytes(extra_files)
    clash = sorted(set(extra) & set(files))
    if clash:
        raise InputSetError(f"extra files {clash} would replace generated inputs")
    files.update(extra)
    record = {
        "input_set": input_set.as_dict(),
        "kpoint_grid": list(input_set.kpoint_grid(prepared)),
        "poscar_order": None if order == sorted(order) else order,
        "potcar_symbols": symbols,
        "potcar_functional": input_set._settings["POTCAR_FUNCTIONAL"],
        "structure": {
            "formula": prepared.get_chemical_formula(mode="hill"),
            "natoms": len(prepared),
            "info": _jsonable(dict(atoms.info)),
        },
    }
    return PreparedInputs(
        files=MappingProxyType(files),
        input_sha256=_hash_files(files),
        potcar_symbols=tuple(symbols),
        functional=str(input_set._settings["POTCAR_FUNCTIONAL"]),
        record=MappingProxyType(record),
    )


def write_vasp_inputs(
    atoms: Atoms,
    directory: str | Path,
    input_set: VaspInputSet,
    *,
    force: bool = False,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> PreparedInputs:
    """Write one VASP input folder atomically; idempotent; never clobbers outputs.

    Writes INCAR, KPOINTS, POSCAR (selective dynamics from ``FixAtoms``), POTCAR.spec (or
    POTCAR when ``PMG_VASP_PSP_DIR`` is set), any ``extra_files`` and
    ``pqdflow_inputs.json`` (pqdflow version, input hash, structure metadata from
    ``atoms.info``). A folder that already holds the same inputs is left untouched.

    Parameters
    ----------
    atoms
        The structure (never modified).
    directory
        Target folder.
    input_set
        The input set.
    force
        Rewrite a folder holding outputs whose inputs differ; the old folder is moved aside
        to ``<name>.bak-<timestamp>``, never deleted.
    extra_files
        Additional file name -> content, part of the input hash.

    Returns
    -------
    PreparedInputs
        What was (or already had been) written, with ``input_sha256``.

    Raises
    ------
    InputSetError
        For bad inputs (before anything is written).
    OverwriteError
        If the folder holds outputs, its inputs differ and ``force`` is False.
    """
    prepared = prepare_vasp_inputs(atoms, input_set, extra_files=extra_files)
    prepared.write(directory, force=force)
    return prepared


def prepare_neb_inputs(images: Sequence[Atoms], input_set: VaspInputSet) -> PreparedInputs:
    """Compute an NEB folder in memory: top-level INCAR/KPOINTS/POTCAR.spec, ``NN/POSCAR``.

    Every image's POSCAR carries selective dynamics. Images without constraints inherit the
    initial endpoint's flags (interpolation often drops constraints); images whose flags
    differ from the initial endpoint's are an error.

    Raises
    ------
    InputSetError
        If the preset is not an NEB preset or fewer than 3 images are given.
    EndpointError
        If the images differ in length, element order or cell.
    """
    if not input_set.is_neb:
        raise InputSetError(
            f"preset {input_set.preset!r} is not an NEB preset; use neb_bulk/neb_slab"
        )
    images = list(images)
    if len(images) < 3:
        raise InputSetError(
            f"an NEB needs both endpoints and >= 1 image; got {len(images)} structures"
        )
    first = images[0]
    symbols = first.get_chemical_symbols()
    for i, image in enumerate(images[1:], start=1):
        if image.get_chemical_symbols() != symbols:
            raise EndpointError(f"NEB image {i:02d} has a different element order from image 00")
        if not np.allclose(image.cell[:], first.cell[:], atol=1e-6):
            raise EndpointError(f"NEB image {i:02d} has a different cell from image 00")
    order = poscar_order(first)
    images = [image[order] for image in images]
    first = images[0]
    flags = selective_dynamics(first)
    n_images = len(images) - 2
    files: dict[str, bytes] = {
        "INCAR": str(Incar(input_set.incar(first, n_images=n_images))).encode(),
        "KPOINTS": str(input_set.kpoints(first)).encode(),
        "POTCAR.spec": ("\n".join(input_set.potcar_symbols(first)) + "\n").encode(),
    }
    width = max(2, len(str(len(images) - 1)))
    for i, image in enumerate(images):
        own = selective_dynamics(image)
        if own is not None and flags is not None and own != flags:
            raise EndpointError(f"NEB image {i:02d} fixes different atoms from image 00")
        poscar = input_set.poscar(image, comment=f"NEB image {i:0{width}d}")
        if flags is not None:
            poscar.selective_dynamics = np.array(flags, dtype=bool)
        files[f"{i:0{width}d}/POSCAR"] = poscar.get_str().encode()
    symbols_potcar = input_set.potcar_symbols(first)
    record = {
        "input_set": input_set.as_dict(),
        "kpoint_grid": list(input_set.kpoint_grid(first)),
        "potcar_symbols": symbols_potcar,
        "potcar_functional": input_set._settings["POTCAR_FUNCTIONAL"],
        "n_images": n_images,
        "poscar_order": None if order == sorted(order) else order,
        "structure": {
            "formula": first.get_chemical_formula(mode="hill"),
            "natoms": len(first),
            "info": _jsonable(dict(first.info)),
        },
    }
    return PreparedInputs(
        files=MappingProxyType(files),
        input_sha256=_hash_files(files),
        potcar_symbols=tuple(symbols_potcar),
        functional=str(input_set._settings["POTCAR_FUNCTIONAL"]),
        record=MappingProxyType(record),
    )


def write_neb_inputs(
    images: Sequence[Atoms],
    directory: str | Path,
    input_set: VaspInputSet,
    *,
    force: bool = False,
) -> PreparedInputs:
    """Write an NEB folder (``00`` .. ``NN+1``) atomically; idempotent; never clobbers outputs.

    Parameters
    ----------
    images
        Initial endpoint, intermediate images, final endpoint (all with the same atoms).
    directory
        Target folder.
    input_set
        An NEB input set (``get_input_set("neb", host=...)``).
    force
        Move a folder with outputs (also image OUTCARs) aside and rewrite.

    Returns
    -------
    PreparedInputs
        What was (or already had been) written.
    """
    prepared = prepare_neb_inputs(images, input_set)
    prepared.write(directory, force=force)
    return prepared

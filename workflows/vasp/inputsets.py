"""VASP PBE/PAW input sets: declarative YAML presets plus one function that writes a folder.

The presets live in ``workflows/vasp/presets/*.yaml`` (``PARENT:`` inheritance, dated provenance
comments) and are loaded with :mod:`importlib.resources`. A :class:`VaspInputSet` is a
frozen dataclass naming a preset and the user's choices (INCAR overrides, k-point density,
VTST switch, D3(BJ) switch, molecule box). Computing INCAR / KPOINTS / POSCAR / POTCAR.spec
touches neither the disk nor the environment; :func:`write_vasp_inputs` and
:func:`write_neb_inputs` write one folder atomically and never clobber outputs. Only at
write time is ``PMG_VASP_PSP_DIR`` read, to decide between a real ``POTCAR`` (library
configured) and ``POTCAR.spec`` (no licence needed).

INCAR tag validation lives in :mod:`pqdflow.workflows.vasp.incar` and folder writing
(:class:`PreparedInputs`, POTCAR assembly, input hashing) in
:mod:`pqdflow.workflows.vasp.vaspfiles`; their public names are re-exported here.

Presets: ``base``, ``bulk_relax`` (ISIF 3), ``bulk_fixed_cell`` (ISIF 2), ``slab_relax``
(ISIF 2, dipole correction), ``molecule`` (cubic box, Gamma only), ``neb_bulk``,
``neb_slab``.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, Literal

import numpy as np
import yaml
from ase import Atoms
from pymatgen.core import Lattice, Structure
from pymatgen.io.vasp.inputs import Kpoints, Poscar

from pqdflow.errors import InputSetError
from pqdflow.workflows.vasp.incar import _VTST_ONLY, validate_incar
from pqdflow.workflows.vasp.kpoints import gamma_grid, poscar_order, selective_dynamics, slab_centre
from pqdflow.workflows.vasp.vaspfiles import (
    INPUT_PROVENANCE_FILE,
    PreparedInputs,
    prepare_neb_inputs,
    prepare_vasp_inputs,
    write_neb_inputs,
    write_vasp_inputs,
)

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


def available_presets() -> list[str]:
    """Names of the bundled presets (``workflows/vasp/presets/*.yaml``)."""
    folder = resources.files("pqdflow.workflows.vasp").joinpath("presets")
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
    text = resources.files("pqdflow.workflows.vasp").joinpath("presets", f"{name}.yaml").read_text()
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

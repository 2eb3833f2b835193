"""The paper's model set: every structure the binding and migration study needs.

For each composition x: the bulk cell, the clean (001) slabs of both terminations, each
ligand adsorbed on the first termination (CsX, then PbX2) where the cell stays closed-shell
(OAm, OAc, AnHI exchange with surface CsBr on CsX; TMSBr adds atop an exposed Pb on PbX2),
the control (OAc + OAm) and treated (AnHI + TMSBr) surfaces on every termination where they
are closed-shell, and NEB endpoint pairs of the halide-vacancy hops that a study's
``hops: nearest`` selects (:mod:`pqdflow.structures.hops`: per class of elements, layers and
direction, the hop nearest to a ligand; named by geometry, the same names and atoms as
``pqdflow inputs`` / ``run`` / ``submit`` give on the same host) in the bulk (2x2x2
supercell), on the clean CsX surface and on the control and treated PbX2 surfaces (the
same termination for both, so the comparison is fair), and on each PbX2 NEB host the two
isomers of Br-, I- and oleate in a surface V_Br vs on top of a Pb
(:func:`~pqdflow.structures.passivation.fill_isomers`, the study's rule). Independent of x: each
ligand's neutral reference molecule in vacuum and the released reference species (CsBr,
CsI, HBr, HI, Br2, I2).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ase import Atoms

from pqdflow.errors import CompositionError, InputError
from pqdflow.structures.adsorption import (
    SURFACE_PRESETS,
    build_passivated_surface,
    is_closed_shell,
    place_ligand,
)
from pqdflow.structures.bulk import allowed_x, build_bulk, build_mixed_halide, check_x
from pqdflow.structures.coverage import build_covered_surface
from pqdflow.structures.defects import build_neb_endpoints, default_n_images
from pqdflow.structures.hops import sample_hops, select_hops
from pqdflow.structures.ligands import (
    REFERENCE_SPECIES,
    build_ligand_reference,
    get_ligand,
)
from pqdflow.structures.passivation import HALIDE_FILLERS, fill_isomers
from pqdflow.structures.slabs import TERMINATIONS, build_slab

#: Vacancy fillers of the model set: TMSBr's Br-, AnHI's I- and the control's oleate.
FILLERS: tuple[str, ...] = ("Br", "I", "OAc")

__all__ = ["MODEL_KINDS", "ModelEntry", "ModelKind", "build_model_set", "x_label"]

ModelKind = Literal["bulk", "slab", "molecule", "adsorbed", "neb_initial", "neb_final"]
#: Kinds of model-set entries (the manifest's ``kind`` values).
MODEL_KINDS: tuple[str, ...] = ("bulk", "slab", "molecule", "adsorbed", "neb_initial", "neb_final")
_BUILTIN_LIGANDS: tuple[str, ...] = ("OAc", "OAm", "AnHI", "TMSBr")


@dataclass
class ModelEntry:
    """One structure of the model set.

    Attributes
    ----------
    name
        Unique, filesystem-safe name, e.g. ``"slab-CsX-x3"``.
    kind
        One of :data:`MODEL_KINDS`.
    atoms
        The structure (fixed atoms carry ``FixAtoms``; builder metadata in ``info``).
    ligands
        Names of the ligands on it (adsorbed) or that it is the reference of (molecule).
    termination
        Slab termination, None for bulk and molecules.
    x
        Composition (Br per formula unit), None where it does not apply.
    meta
        JSON-ready extras: role (model / reference), formula_units, NEB hop data.
    """

    name: str
    kind: ModelKind
    atoms: Atoms
    ligands: list[str] = field(default_factory=list)
    termination: str | None = None
    x: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def x_label(x: float) -> str:
    """Filesystem-safe label of a composition: ``x3``, ``x1.5``."""
    return f"x{x:g}"


def _realisable(x: float, cells: Sequence[int]) -> bool:
    return any(abs(x - v) < 1e-9 for v in allowed_x(cells))


def _bulk_cells(x: float) -> int:
    """Smallest n (1..4) such that x is realisable on an n x n x n bulk supercell."""
    for n in (1, 2, 3, 4):
        if _realisable(x, (n, n, n)):
            return n
    raise CompositionError(
        f"x={x:g} is not realisable on a cubic bulk supercell up to 4x4x4; allowed x on "
        "2x2x2: " + ", ".join(f"{v:g}" for v in allowed_x((2, 2, 2)))
    )


def _bulk_for(x: float) -> Atoms:
    if x in (0.0, 3.0):
        return build_bulk("Br" if x == 3.0 else "I")
    n = _bulk_cells(x)
    return build_mixed_halide(x, (n, n, n))


def _check_compositions(xs: Sequence[float], size: Sequence[int], layers: int) -> None:
    """Raise CompositionError for any x the bulk or slab supercells cannot realise."""
    slab_cells = (int(size[0]), int(size[1]), math.ceil(layers / 2))
    for x in xs:
        _bulk_cells(x)
        if not _realisable(x, slab_cells):
            raise CompositionError(
                f"x={x:g} is not realisable on the slab's {'x'.join(map(str, slab_cells))} bulk "
                "supercell; allowed x: " + ", ".join(f"{v:g}" for v in allowed_x(slab_cells))
            )


def build_model_set(
    x_values: Sequence[float] = (3.0,),
    *,
    chain_length: int | None = None,
    seed: int = 0,
    size: Sequence[int] = (2, 2),
    layers: int = 5,
    vacuum: float = 15.0,
    fixed_layers: int = 2,
    rattle: int | None = 0,
    ligands: Sequence[str] = _BUILTIN_LIGANDS,
) -> list[ModelEntry]:
    """Build the paper's model set in memory (nothing is written).

    Parameters
    ----------
    x_values
        Compositions (Br per formula unit) to build; each must be realisable on the slab's
        bulk supercell (see :func:`~pqdflow.structures.bulk.allowed_x`).
    chain_length
        OAm / OAc chain carbons (default 4; 18 = full oleyl).
    seed
        Seed of mixed-halide arrangements.
    size, layers, vacuum, fixed_layers
        Slab settings, see :func:`~pqdflow.structures.slabs.build_slab`.
    rattle
        Seed of the rattle (0.03 Å) applied to NEB endpoint hosts; None for ideal hosts.
    ligands
        Ligands to build references and single-ligand adsorbates for.

    Returns
    -------
    list of ModelEntry
        In a fixed order; names are unique.
    """
    if not x_values:
        raise InputError("x_values is empty; give at least one composition x in [0, 3]")
    xs = [check_x(x) for x in x_values]
    if len({round(x, 9) for x in xs}) != len(xs):
        raise InputError(f"x_values {list(x_values)} contains duplicates")
    _check_compositions(xs, size, layers)
    for name in ligands:
        get_ligand(name)
    entries: list[ModelEntry] = []
    for name in ligands:
        ref = build_ligand_reference(name, chain_length=chain_length)
        entries.append(
            ModelEntry(f"mol-{name}", "molecule", ref, [name], meta={"role": "reference"})
        )
    for species in REFERENCE_SPECIES:
        from pqdflow.structures.ligands import build_reference_species

        atoms = build_reference_species(species)
        kind: ModelKind = "bulk" if atoms.info["kind"] == "bulk" else "molecule"
        entries.append(ModelEntry(f"ref-{species}", kind, atoms, meta={"role": "released"}))
    for x in xs:
        entries.extend(
            _entries_for_x(
                x,
                chain_length=chain_length,
                seed=seed,
                size=size,
                layers=layers,
                vacuum=vacuum,
                fixed_layers=fixed_layers,
                rattle=rattle,
                ligands=ligands,
            )
        )
    for entry in entries:
        entry.meta.setdefault("role", "model")
        entry.meta["formula_units"] = int(entry.atoms.info.get("formula_units", 1))
    return entries


def _entries_for_x(
    x: float,
    *,
    chain_length: int | None,
    seed: int,
    size: Sequence[int],
    layers: int,
    vacuum: float,
    fixed_layers: int,
    rattle: int | None,
    ligands: Sequence[str],
) -> list[ModelEntry]:
    tag = x_label(x)
    out: list[ModelEntry] = [ModelEntry(f"bulk-{tag}", "bulk", _bulk_for(x), x=x)]
    slabs: dict[str, Atoms] = {}
    for term in TERMINATIONS:
        slabs[term] = build_slab(
            x=x,
            termination=term,
            size=size,
            layers=layers,
            vacuum=vacuum,
            fixed_layers=fixed_layers,
            seed=seed,
        )
        out.append(ModelEntry(f"slab-{term}-{tag}", "slab", slabs[term], [], term, x))
    for name in ligands:
        for term in TERMINATIONS:
            ads = place_ligand(slabs[term], name, chain_length=chain_length)
            if is_closed_shell(ads):
                break
        else:
            raise InputError(
                f"ligand {name!r} gives an open-shell (odd-electron) cell on every termination "
                f"{list(TERMINATIONS)}; register it with a charge-balancing counter-ion"
            )
        out.append(ModelEntry(f"ads-{name}-{term}-{tag}", "adsorbed", ads, [name], term, x))
    surfaces: dict[str, tuple[Atoms, str]] = {"clean": (slabs["CsX"], "CsX")}
    for preset, pair in SURFACE_PRESETS.items():
        for term in TERMINATIONS:
            surf = build_passivated_surface(slabs[term], preset, chain_length=chain_length)
            if not is_closed_shell(surf):
                continue
            out.append(
                ModelEntry(f"surf-{preset}-{term}-{tag}", "adsorbed", surf, list(pair), term, x)
            )
            if term == "PbX2":
                surfaces[preset] = (surf, term)
    n = max(2, _bulk_cells(x))
    hosts: list[tuple[str, Atoms, str | None]] = [
        ("bulk", build_mixed_halide(x, (n, n, n), seed=seed), None)
    ]
    hosts += [(label, surf, term_of) for label, (surf, term_of) in surfaces.items()]
    anhi = build_covered_surface(slabs["PbX2"], "anhi", chain_length=chain_length)
    hosts.insert(-1, ("anhi", anhi, "PbX2"))  # AnHI only, same termination and coverage
    for label, host, host_term in hosts:
        lig_names = [r["name"] for r in host.info.get("ligands", [])]
        for hop in select_hops(sample_hops(host), "nearest", where=f"{label} hops"):
            initial, final = build_neb_endpoints(
                host, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index, rattle=rattle
            )
            meta = dict(
                initial.info["neb"],
                label=label,
                hop=hop.labels(),
                n_images=default_n_images(initial, final),
            )
            meta.pop("role")
            for role, atoms in (("initial", initial), ("final", final)):
                out.append(
                    ModelEntry(
                        f"neb-{label}-{tag}-{hop.name}-{role}",
                        "neb_initial" if role == "initial" else "neb_final",
                        atoms,
                        lig_names,
                        host_term,
                        x,
                        meta=dict(meta),
                    )
                )
        if host_term == "PbX2":  # a filler in a surface V_Br vs on top (same atoms)
            (index, _, _), pairs = fill_isomers(host, FILLERS, chain_length=chain_length)
            for filler, (top, inside) in pairs.items():
                for where, atoms in (("ontop", top), ("vacancy", inside)):
                    out.append(
                        ModelEntry(
                            f"fill-{label}-{tag}-VBr{index}-{filler}-{where}",
                            "adsorbed",
                            atoms,
                            [*lig_names, *([filler] if filler not in HALIDE_FILLERS else [])],
                            host_term,
                            x,
                            meta={"vacancy_fill": dict(atoms.info["vacancy_fill"])},
                        )
                    )
    return out

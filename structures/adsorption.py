"""Put ligands on the (001) surface of a slab, the way each one binds.

Surface sites of the top layer (:func:`surface_sites`):

* ``"A_pocket"``: on a CsX-terminated surface, a surface Cs (replaced by an ammonium head);
  on a PbX2-terminated surface, the empty hollow above four surface halides (where the Cs
  of the next layer would sit).
* ``"X_site"``: on a CsX-terminated surface, an apical surface halide on top of a Pb
  (replaced by the ligand's binding atom); on a PbX2-terminated surface, the empty apical
  site above a surface Pb (the binding atom is added there).

Placement (:func:`place_ligand`) puts the ligand's binding atom at the site: at an X_site
it sits above the Pb at ``r_cov(Pb) + r_cov(anchor) + 0.3`` Å (Pb-O 2.42, Pb-Br 2.96,
Pb-I 3.15 Å); an ammonium N sits 0.5 Å above the Cs it replaces (CsX) or 1.6 Å above the
top-layer plane in the hollow (PbX2), with its N-H bonds pointing down at surface halides.
The ligand is turned about z through its allowed rotations and the arrangement with the
largest clearance is kept; any ligand atom closer than 1.2 Å (pairs with H) or 1.8 Å
(heavy-atom pairs) to another atom, with the minimum-image convention, is a
:class:`~pqdflow.errors.ClashError`. The input slab is never modified. The cell grows
along z if needed so that the requested vacuum stays above the ligands.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.data import atomic_numbers, covalent_radii
from ase.neighborlist import neighbor_list

from pqdflow.errors import ClashError, InputError, UnknownSiteError
from pqdflow.structures.ligands import Ligand, build_ligand, get_ligand
from pqdflow.structures.slabs import (
    MIN_VACUUM,
    layer_type,
    ligand_indices,
    reindex_ligands,
    slab_layers,
)

__all__ = [
    "HEAVY_MIN_DISTANCE",
    "H_MIN_DISTANCE",
    "SITES",
    "SURFACE_PRESETS",
    "Site",
    "build_passivated_surface",
    "find_clashes",
    "is_closed_shell",
    "place_ligand",
    "placement_candidates",
    "surface_sites",
]

#: Site names offered by :func:`surface_sites`.
SITES: tuple[str, ...] = ("A_pocket", "X_site")
#: The paper's two surfaces: control (oleate + oleylammonium) and treated (AnHI + TMSBr).
SURFACE_PRESETS: dict[str, tuple[str, str]] = {
    "control": ("OAc", "OAm"),
    "treated": ("AnHI", "TMSBr"),
}
#: Minimum distance (Å) from a ligand atom to any other atom when either is H.
H_MIN_DISTANCE: float = 1.2
#: Minimum distance (Å) between a ligand heavy atom and any other heavy atom.
HEAVY_MIN_DISTANCE: float = 1.8

_HALIDES = ("Br", "I", "Cl")
_N_RAISE_CSX = 0.5  # Å, ammonium N above the Cs position it takes
_N_HEIGHT_PBX2 = 1.6  # Å, ammonium N above the PbX2 top-layer plane
_BELOW_TOLERANCE = 1.0  # Å, how far a ligand atom may sit below the top-layer plane


@dataclass(frozen=True)
class Site:
    """One adsorption site of the top layer.

    Attributes
    ----------
    name
        ``"A_pocket"`` or ``"X_site"``.
    index
        Position in the list :func:`surface_sites` returns for this name.
    position
        Cartesian position of the site in Å: the atom it holds, or the empty site.
    occupant
        Index of the surface atom replaced on binding (Cs or halide), None if empty.
    pb_index
        For an X_site, the surface Pb below it; else None.
    termination
        Termination of the top layer, ``"CsX"`` or ``"PbX2"``.
    """

    name: str
    index: int
    position: tuple[float, float, float]
    occupant: int | None
    pb_index: int | None
    termination: str


def _lateral_mic(atoms: Atoms, vectors: np.ndarray) -> np.ndarray:
    """Minimum-image lateral (x, y) part of displacement vectors, z kept."""
    cell = atoms.cell.array
    frac = np.linalg.solve(cell.T, np.atleast_2d(vectors).T).T
    frac[:, :2] -= np.round(frac[:, :2])
    return frac @ cell


def _primitive_lateral(slab: Atoms) -> tuple[np.ndarray, np.ndarray]:
    n, m = slab.info.get("size", (1, 1))
    return slab.cell.array[0] / n, slab.cell.array[1] / m


def surface_sites(slab: Atoms) -> dict[str, list[Site]]:
    """Free adsorption sites of the top layer of a slab.

    Parameters
    ----------
    slab
        A slab from :func:`~pqdflow.structures.slabs.build_slab`, possibly already carrying
        ligands (their atoms and the sites they took are left out).

    Returns
    -------
    dict
        ``{"A_pocket": [Site, ...], "X_site": [Site, ...]}``, each list in a fixed order.
    """
    layers = slab_layers(slab)
    if len(layers) < 2:
        raise InputError("surface_sites needs a slab with at least two atomic layers")
    top, below = layers[-1], layers[-2]
    term = layer_type(slab, top)
    symbols = slab.get_chemical_symbols()
    z_top = float(slab.positions[top, 2].mean())
    lig = sorted(ligand_indices(slab))
    pockets: list[tuple[tuple[float, float, float], int | None]] = []
    xsites: list[tuple[tuple[float, float, float], int | None, int]] = []
    if term == "CsX":
        pbs = [i for i in below if symbols[i] == "Pb"]
        for i in top:
            if symbols[i] == "Cs":
                pockets.append((tuple(slab.positions[i]), int(i)))
            elif symbols[i] in _HALIDES:
                d = _lateral_mic(slab, slab.positions[pbs] - slab.positions[i])
                pb = pbs[int(np.argmin(np.linalg.norm(d[:, :2], axis=1)))]
                xsites.append((tuple(slab.positions[i]), int(i), int(pb)))
    else:
        a1, a2 = _primitive_lateral(slab)
        a = float(slab.info.get("a", np.linalg.norm(a1)))
        for i in top:
            if symbols[i] == "Pb":
                p = slab.positions[i]
                xsites.append((tuple(p + np.array([0.0, 0.0, a / 2])), None, int(i)))
                hollow = p + 0.5 * (a1 + a2)
                hollow[2] = z_top + a / 2
                pockets.append((tuple(hollow), None))

    def free(position: Sequence[float]) -> bool:
        if not lig:
            return True
        d = _lateral_mic(slab, slab.positions[lig] - np.asarray(position))
        return bool(np.linalg.norm(d, axis=1).min() > 1.5)

    pockets = [p for p in pockets if p[1] is not None or free(p[0])]
    xsites = [s for s in xsites if s[1] is not None or free(s[0])]
    return {
        "A_pocket": [
            Site("A_pocket", k, _round3(p), occ, None, term) for k, (p, occ) in enumerate(pockets)
        ],
        "X_site": [
            Site("X_site", k, _round3(p), occ, pb, term) for k, (p, occ, pb) in enumerate(xsites)
        ],
    }


def _round3(p: Sequence[float]) -> tuple[float, float, float]:
    return (float(p[0]), float(p[1]), float(p[2]))


def find_clashes(
    atoms: Atoms, groups: Sequence[Sequence[int]]
) -> list[tuple[int, int, float, float]]:
    """Pairs closer than the clash limits that involve the atoms of ``groups``.

    Parameters
    ----------
    atoms
        Periodic structure; distances use the minimum-image convention.
    groups
        Index groups of new fragments; pairs inside one group (same periodic image) are
        bonded and skipped, every other pair with a group atom is checked.

    Returns
    -------
    list of (i, j, distance, limit)
        Offending pairs in Å, limit 1.2 Å where either atom is H, else 1.8 Å.
    """
    group_of = {int(i): g for g, members in enumerate(groups) for i in members}
    i_all, j_all, d_all, s_all = neighbor_list("ijdS", atoms, HEAVY_MIN_DISTANCE)
    numbers = atoms.numbers
    found = []
    for i, j, d, s in zip(i_all, j_all, d_all, s_all, strict=True):
        gi, gj = group_of.get(int(i)), group_of.get(int(j))
        if gi is None and gj is None:
            continue
        if gi is not None and gi == gj and not np.any(s):
            continue
        if (gi is None and i > j) or (gi is not None and gj is not None and i > j):
            continue
        limit = H_MIN_DISTANCE if 1 in (numbers[i], numbers[j]) else HEAVY_MIN_DISTANCE
        if d < limit:
            found.append((int(i), int(j), float(d), limit))
    return found


def _clearance(atoms: Atoms, groups: Sequence[Sequence[int]], cutoff: float = 4.0) -> float:
    """Smallest distance/limit ratio between group atoms and anything else (>= 1: no clash)."""
    group_of = {int(i): g for g, members in enumerate(groups) for i in members}
    i_all, j_all, d_all, s_all = neighbor_list("ijdS", atoms, cutoff)
    best = cutoff / H_MIN_DISTANCE
    numbers = atoms.numbers
    for i, j, d, s in zip(i_all, j_all, d_all, s_all, strict=True):
        gi = group_of.get(int(i))
        if gi is None or (group_of.get(int(j)) == gi and not np.any(s)):
            continue
        limit = H_MIN_DISTANCE if 1 in (numbers[i], numbers[j]) else HEAVY_MIN_DISTANCE
        best = min(best, d / limit)
    return float(best)


def _anchor_height(symbol: str) -> float:
    return float(
        covalent_radii[atomic_numbers["Pb"]] + covalent_radii[atomic_numbers[symbol]] + 0.3
    )


def _anchor_position(slab: Atoms, site: Site, anchor_symbol: str, z_top: float) -> np.ndarray:
    if site.name == "X_site":
        assert site.pb_index is not None
        return slab.positions[site.pb_index] + (0.0, 0.0, _anchor_height(anchor_symbol))
    p = np.array(site.position, dtype=float)
    if site.termination == "CsX":
        return p + np.array([0.0, 0.0, _N_RAISE_CSX])
    p[2] = z_top + _N_HEIGHT_PBX2
    return p


def _companion_site(slab: Atoms, anchor: np.ndarray, fragment: Atoms, xsites: list[Site]) -> Site:
    """Pick the free X_site next to a pocket that an N-H bond points at most directly."""
    rel = fragment.positions - anchor
    h_dirs = [
        rel[i]
        for i in range(len(fragment))
        if fragment[i].symbol == "H" and np.linalg.norm(rel[i]) < 1.2
    ]
    a = float(slab.info.get("a", 6.0))
    best: tuple[float, int] | None = None
    for k, site in enumerate(xsites):
        d = _lateral_mic(slab, np.asarray(site.position) - anchor)[0]
        lateral = np.linalg.norm(d[:2])
        if lateral > 0.85 * a or lateral < 1e-6:
            continue
        cos = max(float(np.dot(h[:2], d[:2]) / (np.linalg.norm(h[:2]) * lateral)) for h in h_dirs)
        if best is None or cos > best[0] + 1e-9:
            best = (cos, k)
    if best is None:
        raise UnknownSiteError("no free X_site next to this A_pocket for the companion halide")
    return xsites[best[1]]


def place_ligand(
    slab: Atoms,
    ligand: str | Ligand,
    *,
    site: str | None = None,
    index: int = 0,
    chain_length: int | None = None,
    rotation: float | None = None,
) -> Atoms:
    """Return a copy of ``slab`` with ``ligand`` bound at a surface site.

    Parameters
    ----------
    slab
        Slab (possibly already carrying ligands); not modified.
    ligand
        Ligand name (see :func:`~pqdflow.structures.ligands.known_ligands`).
    site
        ``"A_pocket"`` or ``"X_site"``; default (and only allowed value) the ligand's site.
    index
        Which free site of that kind (order of :func:`surface_sites`).
    chain_length
        Chain carbons for OAm / OAc (default 4); ignored for the others.
    rotation
        Rotation about z in degrees; default: the allowed rotation with most clearance.

    Returns
    -------
    ase.Atoms
        ``info["kind"] = "adsorbed"``; ``info["ligands"]`` gains ``{name, site, indices,
        replaced, anchor_index, charge, chain_length, rotation, site_index}`` (companion
        halide indices included in ``indices``).

    Raises
    ------
    UnknownLigandError, UnknownSiteError, ClashError
        Unknown ligand; unknown, unsupported or taken site; atoms closer than 1.2 Å (H) /
        1.8 Å (heavy) or a ligand atom below the top layer.
    """
    lig = get_ligand(ligand) if isinstance(ligand, str) else ligand
    name = site or lig.site
    if name not in SITES:
        raise UnknownSiteError(f"unknown site {name!r}; allowed: {', '.join(SITES)}")
    if name != lig.site:
        raise UnknownSiteError(f"{lig.name} binds at {lig.site!r}, not at site {name!r}")
    sites = surface_sites(slab)
    available = sites[name]
    if (
        isinstance(index, bool)
        or not isinstance(index, int | np.integer)
        or not (0 <= index < len(available))
    ):
        raise UnknownSiteError(
            f"site index {index!r} for {name!r}: this slab has {len(available)} free "
            f"{name} sites (indices 0..{len(available) - 1})"
        )
    chosen = available[int(index)]
    fragment = build_ligand(lig.name, chain_length=chain_length)
    z_top = float(slab.positions[slab_layers(slab)[-1], 2].mean())
    anchor = _anchor_position(slab, chosen, fragment[lig.binding_atom].symbol, z_top)
    angles = lig.rotations if rotation is None else (float(rotation),)
    best: tuple[tuple[bool, float, float], Atoms, dict[str, Any]] | None = None
    for angle in angles:
        frag = fragment.copy()
        frag.rotate(angle, "z", center=frag.positions[lig.binding_atom])
        frag.positions += anchor - frag.positions[lig.binding_atom]
        companion = None
        if lig.companion:
            companion = _companion_site(slab, anchor, frag, sites["X_site"])
        trial, record = _assemble(slab, lig, chosen, frag, companion, chain_length)
        clearance = _clearance(trial, _groups(record))
        aligned = _nh_alignment(trial, record) if lig.hbond_donor else 0.0
        record["rotation"] = float(angle)
        key = (clearance >= 1.0, round(aligned, 3), clearance)
        if best is None or key > best[0]:
            best = (key, trial, record)
    assert best is not None
    _, out, record = best
    clashes = find_clashes(out, _groups(record))
    if clashes:
        i, j, d, limit = clashes[0]
        raise ClashError(
            f"placing {lig.name} at {name}[{index}] puts {out[i].symbol}{i} and "
            f"{out[j].symbol}{j} {d:.2f} Å apart; at least {limit:.1f} Å is required "
            f"({len(clashes)} clashing pair(s)); try another site index or a shorter chain"
        )
    low = float(out.positions[record["indices"], 2].min())
    if low < z_top - _BELOW_TOLERANCE:
        raise ClashError(
            f"{lig.name} at {name}[{index}] reaches {z_top - low:.2f} Å below the top layer; "
            f"ligands must lie above it (tolerance {_BELOW_TOLERANCE} Å)"
        )
    out.info.setdefault("ligands", []).append(record)
    out.info["kind"] = "adsorbed"
    return out


def _nh_alignment(atoms: Atoms, record: dict[str, Any]) -> float:
    """Mean over the N-H bonds of the best cosine to an N->halide vector (halides < 4.7 Å)."""
    n = record["anchor_index"]
    own = set(record["indices"]) - set(record.get("companion_indices", []))
    symbols = atoms.get_chemical_symbols()
    hs = [i for i in own if symbols[i] == "H" and atoms.get_distance(n, i) < 1.2]
    halides = [i for i, s in enumerate(symbols) if s in _HALIDES and i not in own]
    if not hs or not halides:
        return 0.0
    vec = _lateral_mic(atoms, atoms.positions[halides] - atoms.positions[n])
    vec = vec[np.linalg.norm(vec, axis=1) < 4.7]
    if not len(vec):
        return 0.0
    unit = vec / np.linalg.norm(vec, axis=1)[:, None]
    cos = [float((unit @ (atoms.positions[h] - atoms.positions[n])).max()) for h in hs]
    return float(np.mean(cos)) / 1.03


def _groups(record: dict[str, Any]) -> list[list[int]]:
    idx = list(record["indices"])
    comp = record.get("companion_indices", [])
    return [[i for i in idx if i not in comp], list(comp)] if comp else [idx]


def _assemble(
    slab: Atoms,
    lig: Ligand,
    site: Site,
    frag: Atoms,
    companion: Site | None,
    chain_length: int | None,
) -> tuple[Atoms, dict[str, Any]]:
    out = slab.copy()
    out.info = copy.deepcopy(slab.info)
    out.info["ligands"] = out.info.get("ligands", [])
    removed = [s.occupant for s in (site, companion) if s is not None and s.occupant is not None]
    replaced: dict[str, int] = {}
    for i in removed:
        replaced[out[i].symbol] = replaced.get(out[i].symbol, 0) + 1
    if removed:
        out.info["ligands"] = reindex_ligands(out.info["ligands"], removed)
        del out[sorted(removed)]
    start = len(out)
    out.extend(frag)
    indices = list(range(start, len(out)))
    record: dict[str, Any] = {
        "name": lig.name,
        "site": site.name,
        "site_index": site.index,
        "indices": indices,
        "replaced": replaced,
        "anchor_index": start + lig.binding_atom,
        "charge": lig.charge,
        "chain_length": frag.info.get("chain_length"),
    }
    if companion is not None and lig.companion:
        assert companion.pb_index is not None
        pb = companion.pb_index - sum(1 for r in removed if r < companion.pb_index)
        out.append(lig.companion)
        out.positions[-1] = out.positions[pb] + (0.0, 0.0, _anchor_height(lig.companion))
        record["indices"] = [*indices, len(out) - 1]
        record["companion_indices"] = [len(out) - 1]
        record["companion_site"] = "X_site"
    _keep_vacuum(out, float(slab.info.get("vacuum", MIN_VACUUM)))
    return out, record


def _keep_vacuum(atoms: Atoms, vacuum: float) -> None:
    """Grow the cell along z so that the vacuum gap above everything is >= ``vacuum``."""
    z = atoms.positions[:, 2]
    needed = float(z.max() - z.min()) + vacuum
    if atoms.cell[2, 2] < needed:
        cell = atoms.cell.array.copy()
        cell[2, 2] = needed + max(0.0, float(z.min()) - vacuum / 2)
        atoms.set_cell(cell, scale_atoms=False)


def build_passivated_surface(
    slab: Atoms, preset: str = "control", chain_length: int | None = None
) -> Atoms:
    """Build a slab carrying the paper's two ligands of ``preset`` on separate sites.

    The first ligand goes on its site number 0; the second on whichever free site (and
    rotation) leaves the most clearance to everything already there.

    Parameters
    ----------
    slab
        Clean slab; not modified.
    preset
        ``"control"`` (OAc + OAm) or ``"treated"`` (AnHI + TMSBr), see :data:`SURFACE_PRESETS`.
    chain_length
        Chain carbons for OAm / OAc (default 4).
    """
    if preset not in SURFACE_PRESETS:
        raise InputError(
            f"unknown surface preset {preset!r}; allowed: {', '.join(SURFACE_PRESETS)}"
        )
    first, second = SURFACE_PRESETS[preset]
    out = place_ligand(slab, first, chain_length=chain_length)
    lig2 = get_ligand(second)
    best: tuple[float, Atoms] | None = None
    errors: list[str] = []
    for k in range(len(surface_sites(out)[lig2.site])):
        try:
            trial = place_ligand(out, second, index=k, chain_length=chain_length)
        except ClashError as exc:
            errors.append(str(exc))
            continue
        score = _clearance(trial, [trial.info["ligands"][-1]["indices"]])
        if best is None or score > best[0] + 1e-9:
            best = (score, trial)
    if best is None:
        raise ClashError(
            f"no clash-free site for {second} next to {first} on this slab: "
            + ("; ".join(errors[:2]) or f"no free {lig2.site}")
        )
    result = best[1]
    result.info["preset"] = preset
    return result


def is_closed_shell(atoms: Atoms) -> bool:
    """Return True if the neutral cell has an even electron count (closed shell possible).

    Core electrons of every PAW set pqdflow uses (Cs_sv, Pb_d, Br, I, C, H, N, O, Si) are
    even, so the parity of sum(Z) is the parity of the valence electron count. Exchanging a
    surface Cs+ for an ammonium, or a surface halide for a carboxylate, keeps the cell
    closed-shell; replacing a surface Br- by neutral TMSBr does not (TMSBr binds atop an
    exposed Pb of the PbX2 termination instead).
    """
    return int(atoms.get_atomic_numbers().sum()) % 2 == 0


def placement_candidates(
    slab: Atoms,
    ligand: str | Ligand,
    n: int,
    *,
    chain_length: int | None = None,
    step: float = 45.0,
) -> list[tuple[int, float]]:
    """Distinct clash-free placements of one ligand: ``(site index, rotation in degrees)``.

    The first is the placement :func:`place_ligand` picks by itself (most clearance); the
    others are spread over the free sites of the ligand's kind and its allowed rotations
    (every ``step`` degrees), each new one as far in angle from those already taken as
    possible (site index breaking ties), so that a few candidates sample the orientations.

    Parameters
    ----------
    slab
        Slab (possibly carrying ligands); not modified.
    ligand
        Ligand name or :class:`~pqdflow.structures.ligands.Ligand`.
    n
        How many candidates (at most; fewer when fewer are clash-free).
    chain_length
        Chain carbons for OAm / OAc.
    step
        Spacing (degrees) of the rotations tried.

    Returns
    -------
    list of (int, float)
        Arguments ``index`` and ``rotation`` of :func:`place_ligand`, no two alike.
    """
    lig = get_ligand(ligand) if isinstance(ligand, str) else ligand
    if n < 1:
        raise InputError(f"placement_candidates needs n >= 1, got {n}")
    first = place_ligand(slab, lig, chain_length=chain_length)
    record = first.info["ligands"][-1]
    chosen = [(int(record["site_index"]), float(record["rotation"]))]
    pool: list[tuple[int, float]] = []
    angles = [a for a in lig.rotations if abs(a / step - round(a / step)) < 1e-9]
    for k in range(len(surface_sites(slab)[lig.site])):
        for angle in angles:
            if (k, float(angle)) in chosen:
                continue
            try:
                place_ligand(slab, lig, index=k, rotation=angle, chain_length=chain_length)
            except ClashError:
                continue
            pool.append((k, float(angle)))

    def separation(candidate: tuple[int, float]) -> tuple[float, int]:
        gap = min(abs((candidate[1] - a + 180.0) % 360.0 - 180.0) for _, a in chosen)
        return gap, -candidate[0]

    while pool and len(chosen) < n:
        best = max(pool, key=separation)
        chosen.append(best)
        pool.remove(best)
    return chosen

"""A halide or X-type ligand filling a surface halide vacancy, and its on-top isomer.

The paper's Fig. 1 mechanism is that strongly bound ligands occupy halide vacancies at the
surface. :func:`fill_vacancy` builds the two isomers that test it on any slab host (clean
or ligand-covered): the host with one top-layer halide removed and a filler

* ``where="vacancy"``: bound *in* the vacancy (its binding atom on the empty halide site), or
* ``where="on_top"``: bound on top of a surface Pb (the free apical ``X_site`` farthest from
  the vacancy), the vacancy left empty.

Both isomers have the same atoms, so their energy difference
``E(vacancy) - E(on_top)`` needs no reference species: negative means the filler prefers to
passivate the vacancy. Fillers (:func:`vacancy_fillers`) are the halide ions ``Br`` and
``I`` (framework ions, charge -1) and the library's anionic ``X_site`` ligands (OAc, the
oleate carboxylate, and any registered one). A host that is charge-balanced stays so:
the removed halide (-1) is replaced by a -1 filler. ``On top`` needs an empty apical site
above a surface Pb, which a PbX2-terminated host has and a CsX-terminated one does not.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from pqdflow.errors import ClashError, InputError, UnknownLigandError, UnknownSiteError
from pqdflow.structures.adsorption import (
    _anchor_position,
    _clearance,
    _keep_vacuum,
    _lateral_mic,
    find_clashes,
    surface_sites,
)
from pqdflow.structures.defects import (
    _check_halide,
    _halides,
    _is_slab,
    _layer_from_top,
    _remove,
)
from pqdflow.structures.ligands import build_ligand, get_ligand, known_ligands
from pqdflow.structures.slabs import MIN_VACUUM, slab_layers

__all__ = [
    "HALIDE_FILLERS",
    "FillWhere",
    "fill_isomers",
    "fill_site_candidates",
    "fill_vacancy",
    "vacancy_fillers",
]

#: Halide ions that can fill a halide vacancy (framework ions, formal charge -1).
HALIDE_FILLERS: tuple[str, ...] = ("Br", "I")

FillWhere = Literal["vacancy", "on_top"]


def vacancy_fillers() -> tuple[str, ...]:
    """Names :func:`fill_vacancy` accepts: the halides, then the anionic X_site ligands."""
    ligands = [
        name
        for name in known_ligands()
        if get_ligand(name).charge == -1 and get_ligand(name).site == "X_site"
    ]
    return (*HALIDE_FILLERS, *ligands)


def _check_filler(filler: str) -> None:
    allowed = vacancy_fillers()
    if filler not in allowed:
        raise UnknownLigandError(
            f"{filler!r} cannot fill a halide vacancy; fillers are the halides and the "
            f"anionic X_site ligands: {', '.join(allowed)} (register an X-type ligand with "
            "charge=-1, site='X_site' to add one)"
        )


def _top_site(host: Atoms, position: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Return the free apical X_site whose Pb is farthest (laterally) from ``position``."""
    free = [s for s in surface_sites(host)["X_site"] if s.occupant is None]
    if not free:
        raise UnknownSiteError(
            "no empty apical site above a surface Pb on this host for the on-top isomer; "
            "use a PbX2-terminated host (slab.termination / neb.termination: PbX2)"
        )
    lateral = _lateral_mic(host, np.array([np.asarray(s.position) - position for s in free]))
    distances = np.linalg.norm(lateral[:, :2], axis=1)
    k = max(range(len(free)), key=lambda i: (round(float(distances[i]), 3), -i))
    site = free[k]
    assert site.pb_index is not None
    return np.asarray(site.position, dtype=float), site.index, site.pb_index


def fill_vacancy(
    host: Atoms,
    vacancy_index: int,
    filler: str,
    *,
    where: FillWhere = "vacancy",
    chain_length: int | None = None,
    rotation: float | None = None,
) -> Atoms:
    """Return ``host`` with a top-layer halide removed and ``filler`` in the vacancy or on top.

    Parameters
    ----------
    host
        Slab without a vacancy, clean or with ligands; not modified.
    vacancy_index
        Host index of the top-layer halide to remove (for example a
        :class:`~pqdflow.structures.hops.HopSite`'s ``vacancy_index``).
    filler
        ``"Br"``, ``"I"`` or an anionic X_site ligand (see :func:`vacancy_fillers`).
    where
        ``"vacancy"``: the filler's binding atom on the empty halide site; ``"on_top"``: on
        the free apical site above the surface Pb farthest from the vacancy.
    chain_length
        Chain carbons of OAc (default 4); ignored for halides.
    rotation
        Ligand rotation about z (degrees); default the allowed rotation with most clearance.

    Returns
    -------
    ase.Atoms
        Same atoms for both ``where`` (in the same order). ``info["vacancy_fill"]`` =
        ``{filler, where, vacancy_index, vacancy_element, vacancy_position, site_index,
        pb_index}`` (host indices); a ligand filler is appended to ``info["ligands"]``
        with ``site = "vacancy"`` or ``"X_site"``.

    Raises
    ------
    InputError
        Not a slab, or ``vacancy_index`` not a top-layer (non-ligand) halide.
    UnknownLigandError
        A filler that is neither a halide nor an anionic X_site ligand.
    UnknownSiteError
        ``where="on_top"`` on a host without an empty apical site (CsX termination).
    ClashError
        The filler would sit closer than 1.2 Å (H) / 1.8 Å (heavy atoms) to another atom.
    """
    if where not in ("vacancy", "on_top"):
        raise InputError(f"where={where!r}: choose 'vacancy' or 'on_top'")
    _check_filler(filler)
    if not _is_slab(host):
        raise InputError("fill_vacancy needs a slab host (a surface vacancy); got a bulk cell")
    v = _check_halide(host, vacancy_index, "vacancy_index")
    layer = _layer_from_top(host)[v]
    if layer != 0:
        raise InputError(
            f"vacancy_index={v} is a halide of layer {layer} (counted from the top); a filler "
            "reaches only top-layer (layer 0) vacancies"
        )
    vacancy_position = host.positions[v].copy()
    work = _remove(host, v)
    work.info.pop("vacancy", None)
    site_index, pb_index = -1, None
    if where == "vacancy":
        anchor = vacancy_position
    else:
        z_top = float(work.positions[slab_layers(work)[-1], 2].mean())
        _, site_index, pb_index = _top_site(work, vacancy_position)
        site = next(s for s in surface_sites(work)["X_site"] if s.index == site_index)
        symbol = filler if filler in HALIDE_FILLERS else _anchor_symbol(filler, chain_length)
        anchor = _anchor_position(work, site, symbol, z_top)
    if filler in HALIDE_FILLERS:
        out = work.copy()
        out.info = copy.deepcopy(work.info)
        out.append(filler)
        out.positions[-1] = anchor
        groups = [[len(out) - 1]]
    else:
        out, record = _place_fragment(work, filler, anchor, where, chain_length, rotation)
        record["site_index"] = site_index
        groups = [list(record["indices"])]
        out.info.setdefault("ligands", []).append(record)
    clashes = find_clashes(out, groups)
    if clashes:
        i, j, d, limit = clashes[0]
        raise ClashError(
            f"{filler} {where.replace('_', ' ')} of halide {v} puts {out[i].symbol}{i} and "
            f"{out[j].symbol}{j} {d:.2f} Å apart (at least {limit:.1f} Å required); try "
            "another vacancy or a shorter chain"
        )
    out.info["kind"] = "adsorbed"
    out.info["vacancy_fill"] = {
        "filler": filler,
        "where": where,
        "vacancy_index": v,
        "vacancy_element": host[v].symbol,
        "vacancy_position": [round(float(c), 4) for c in vacancy_position],
        "site_index": site_index,
        "pb_index": pb_index,
    }
    _keep_vacuum(out, float(host.info.get("vacuum", MIN_VACUUM)))
    return out


def _anchor_symbol(filler: str, chain_length: int | None) -> str:
    lig = get_ligand(filler)
    return str(build_ligand(lig.name, chain_length=chain_length)[lig.binding_atom].symbol)


def _place_fragment(
    work: Atoms,
    filler: str,
    anchor: np.ndarray,
    where: FillWhere,
    chain_length: int | None,
    rotation: float | None,
) -> tuple[Atoms, dict[str, Any]]:
    """Add the ligand with its binding atom at ``anchor``, at the rotation of most clearance."""
    lig = get_ligand(filler)
    fragment = build_ligand(lig.name, chain_length=chain_length)
    angles = lig.rotations if rotation is None else (float(rotation),)
    best: tuple[float, Atoms, dict[str, Any]] | None = None
    for angle in angles:
        frag = fragment.copy()
        frag.rotate(angle, "z", center=frag.positions[lig.binding_atom])
        frag.positions += anchor - frag.positions[lig.binding_atom]
        trial = work.copy()
        trial.info = copy.deepcopy(work.info)
        start = len(trial)
        trial.extend(frag)
        record: dict[str, Any] = {
            "name": lig.name,
            "site": "vacancy" if where == "vacancy" else "X_site",
            "indices": list(range(start, len(trial))),
            "replaced": {},
            "anchor_index": start + lig.binding_atom,
            "charge": lig.charge,
            "chain_length": frag.info.get("chain_length"),
            "rotation": float(angle),
        }
        clearance = _clearance(trial, [record["indices"]])
        if best is None or clearance > best[0]:
            best = (clearance, trial, record)
    if best is None:  # pragma: no cover - every ligand has at least one rotation
        raise ClashError(f"no rotation of {filler} fits")
    return best[1], best[2]


def fill_site_candidates(host: Atoms, element: str) -> list[tuple[int, str | None, float | None]]:
    """Top-layer ``element`` halides of a slab host, farthest from any ligand first.

    Returns
    -------
    list of (host index, nearest ligand name or None, its nearest atom's distance in Å)
    """
    from pqdflow.structures.hops import _ligand_of

    layer = _layer_from_top(host)
    owner = _ligand_of(host)
    lig = np.array(sorted(owner), dtype=int)
    out: list[tuple[int, str | None, float | None]] = []
    for i in _halides(host):
        if layer[i] != 0 or host[i].symbol != element:
            continue
        if lig.size:
            vec = find_mic(host.positions[lig] - host.positions[i], host.cell, host.pbc)[0]
            d = np.linalg.norm(vec, axis=1)
            k = int(np.argmin(d))
            out.append((i, owner[int(lig[k])], round(float(d[k]), 2)))
        else:
            out.append((i, None, None))
    return sorted(out, key=lambda c: (-(c[2] if c[2] is not None else np.inf), c[0]))


def fill_isomers(
    host: Atoms,
    fillers: Sequence[str],
    *,
    element: str = "Br",
    chain_length: int | None = None,
) -> tuple[tuple[int, str | None, float | None], dict[str, tuple[Atoms, Atoms]]]:
    """Both isomers of every filler on the first vacancy site where all of them fit.

    Sites are tried in the order of :func:`fill_site_candidates` (most room first).

    Returns
    -------
    tuple
        ``(site, {filler: (on_top, in_vacancy)})`` with ``site`` as in
        :func:`fill_site_candidates`.

    Raises
    ------
    InputError
        No top-layer ``element`` site takes every filler in both isomers (each site's
        reason listed), or an unknown filler.
    """
    for filler in fillers:
        _check_filler(filler)
    tried: list[str] = []
    for site in fill_site_candidates(host, element):
        try:
            pairs = {
                f: (
                    fill_vacancy(host, site[0], f, where="on_top", chain_length=chain_length),
                    fill_vacancy(host, site[0], f, where="vacancy", chain_length=chain_length),
                )
                for f in fillers
            }
        except InputError as exc:  # ClashError, UnknownSiteError
            tried.append(f"{element}{site[0]}: {exc}")
            continue
        return site, pairs
    raise InputError(
        f"no top-layer {element} vacancy takes every filler {list(fillers)} in both isomers "
        f"({'; '.join(tried) or 'no such halide'})"
    )

"""Vacancy filling: a halide or X-type ligand in a surface halide vacancy vs on top of a Pb.

The paper's Fig. 1 mechanism (strongly bound ligands occupy halide vacancies) as an
isomer energy on the migration model's own surfaces. For each host of ``neb.fill.hosts``
(built exactly as its NEB host: ``neb.termination``, ``neb.coverage``, ``neb.x``) and each
filler of ``neb.fill.fillers``, :func:`plan_vacancy_fills` plans the two isomers of
:func:`~pqdflow.structures.passivation.fill_vacancy` on one top-layer halide vacancy, and
the reaction ``on_top -> vacancy`` as a :class:`~pqdflow.documents.plan.BindingSpec`
(``meta["channel"] = "vacancy_fill"``): its energy ``E(vacancy) - E(on_top)`` is negative
when the filler passivates the vacancy. Both isomers have the same atoms, so no reference
species enters.

The vacancy is the top-layer ``neb.fill.element`` site with the most room (farthest from
the host's ligands) on which every filler fits in both isomers, so all fillers on one host
compare on one site; the site is recorded (host index, nearest ligand and distance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from ase.geometry import find_mic

from pqdflow.documents.plan import BindingSpec
from pqdflow.errors import ClashError, InputError, StudyError

if TYPE_CHECKING:
    from ase import Atoms

    from pqdflow.workflows.study.planner import _Planner

__all__ = ["fill_site_candidates", "plan_vacancy_fills"]


def fill_site_candidates(host: Atoms, element: str) -> list[tuple[int, str | None, float | None]]:
    """Top-layer ``element`` halides of a slab host, farthest from any ligand first.

    Returns
    -------
    list of (host index, nearest ligand name or None, its nearest atom's distance in Å)
    """
    from pqdflow.structures.defects import _halides, _layer_from_top
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


def plan_vacancy_fills(planner: _Planner) -> None:
    """Add the vacancy-filling isomers and reactions of ``neb.fill`` to ``planner``."""
    from pqdflow.structures.passivation import fill_vacancy, vacancy_fillers
    from pqdflow.workflows.study.planner import _unbalanced, _x_tag
    from pqdflow.workflows.study.schema import NebPath

    study = planner.study
    fill = study.neb.fill
    if not fill.fillers or not fill.hosts:
        return
    unknown = [f for f in fill.fillers if f not in vacancy_fillers()]
    if unknown:
        raise StudyError(
            f"neb.fill.fillers: {unknown} cannot fill a halide vacancy; allowed: "
            f"{', '.join(vacancy_fillers())} (register an X-type ligand with charge=-1, "
            "site='X_site' to add one)"
        )
    chain = planner.chain
    for host_name in fill.hosts:
        host = planner.neb_host(NebPath(host=host_name))
        tag = f"{host_name}-{_x_tag(study.neb.x)}"
        chosen: tuple[tuple[int, str | None, float | None], dict[str, tuple[Atoms, Atoms]]] | None
        chosen = None
        tried: list[str] = []
        for site in fill_site_candidates(host, fill.element):
            pairs: dict[str, tuple[Atoms, Atoms]] = {}
            try:
                for filler in fill.fillers:
                    pairs[filler] = (
                        fill_vacancy(host, site[0], filler, where="on_top", chain_length=chain),
                        fill_vacancy(host, site[0], filler, where="vacancy", chain_length=chain),
                    )
            except (ClashError, InputError) as exc:
                tried.append(f"{fill.element}{site[0]}: {exc}")
                continue
            chosen = (site, pairs)
            break
        if chosen is None:
            raise StudyError(
                f"neb.fill on {tag}: no top-layer {fill.element} vacancy takes every filler "
                f"{fill.fillers} in both isomers ({'; '.join(tried) or 'no such halide'}); "
                "use a PbX2 termination, fewer fillers or a lower neb.coverage"
            )
        (index, ligand, distance), pairs = chosen
        site_label = f"V{fill.element}{index}"
        for filler, (top, inside) in pairs.items():
            reason = _unbalanced(inside)
            if reason:
                planner.skipped.append(f"vacancy fill {filler} on {tag}: {reason}")
                continue
            meta: dict[str, Any] = {
                "x": study.neb.x,
                "surface": tag,
                "host": host_name,
                "filler": filler,
                "vacancy_index": index,
                "vacancy_element": fill.element,
                "vacancy_site": site_label,
                "nearest_ligand": ligand,
                "nearest_ligand_distance": distance,
            }
            base = f"fill-{tag}-{site_label}-{filler}"
            calcs = {}
            for where, atoms in (("on_top", top), ("vacancy", inside)):
                calcs[where] = planner.add(
                    f"{base}-{where.replace('_', '')}",
                    "adsorbed",
                    atoms,
                    formula_units=1,
                    role="vacancy_fill",
                    meta={**meta, "where": where},
                )
            planner.add_reaction(
                BindingSpec(
                    name=f"reaction-vacancy_fill-{tag}-{site_label}-{filler}",
                    ligand=filler,
                    site="vacancy",
                    adsorbed=calcs["vacancy"].name,
                    slab=calcs["on_top"].name,
                    ligands={},
                    released={},
                    meta={
                        **meta,
                        "channel": "vacancy_fill",
                        "reaction": (
                            f"{filler} on top of a surface Pb -> {filler} in the surface "
                            f"V_{fill.element} ({host_name} surface)"
                        ),
                    },
                )
            )

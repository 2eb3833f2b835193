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

from pqdflow.documents.plan import BindingSpec
from pqdflow.errors import InputError, StudyError

if TYPE_CHECKING:
    from pqdflow.workflows.study.planner import _Planner

__all__ = ["plan_vacancy_fills"]


def plan_vacancy_fills(planner: _Planner) -> None:
    """Add the vacancy-filling isomers and reactions of ``neb.fill`` to ``planner``."""
    from pqdflow.structures.passivation import fill_isomers, vacancy_fillers
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
        try:
            (index, ligand, distance), pairs = fill_isomers(
                host, fill.fillers, element=fill.element, chain_length=chain
            )
        except InputError as exc:
            raise StudyError(
                f"neb.fill on {tag}: {exc}; use a PbX2 termination, fewer fillers or a lower "
                "neb.coverage"
            ) from None
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
                    meta={**meta, "where": where, **planner.host_start(tag, index, atoms)},
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

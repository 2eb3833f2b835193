"""The paper's surfaces at a chosen ligand coverage.

Three surface models (Supplementary Note 1 and Extended Data Fig. 4c of the paper):
``control`` = pristine oleate/oleylammonium (OAc + OAm), ``anhi`` = AnHI only (the film
control), ``treated`` = AnHI + TMSBr. :func:`build_covered_surface` puts
``round(coverage x top-layer sites)`` ligands (at least one of each of the model's ligands)
on one clean slab, cycling through the model's ligands: the first on its site 0, each next
one on the free site and rotation with the most clearance. At coverage 0.5 on a 2x2 cell
(two ligands) this is the same structure as
:func:`~pqdflow.structures.adsorption.build_passivated_surface` gives for the two presets.
"""

from __future__ import annotations

import math

from ase import Atoms

from pqdflow.errors import ClashError, InputError
from pqdflow.structures.adsorption import _clearance, place_ligand, surface_sites
from pqdflow.structures.ligands import get_ligand

__all__ = ["SURFACE_MODELS", "build_covered_surface", "top_layer_sites"]

#: Surface model -> ligands, in placement order.
SURFACE_MODELS: dict[str, tuple[str, ...]] = {
    "control": ("OAc", "OAm"),
    "anhi": ("AnHI",),
    "treated": ("AnHI", "TMSBr"),
}


def top_layer_sites(slab: Atoms) -> int:
    """Return the number of top-layer surface unit cells (one A_pocket and one X_site each)."""
    sites = surface_sites(slab)
    return max(len(v) for v in sites.values()) if sites else 0


def build_covered_surface(
    slab: Atoms, model: str, coverage: float = 0.5, *, chain_length: int | None = None
) -> Atoms:
    """Clean ``slab`` covered with the ligands of ``model`` at ``coverage``.

    Parameters
    ----------
    slab
        Clean slab; not modified.
    model
        ``"control"``, ``"anhi"`` or ``"treated"`` (:data:`SURFACE_MODELS`).
    coverage
        Ligands per top-layer surface cell, in (0, 1].
    chain_length
        OAm / OAc chain carbons (default 4).

    Returns
    -------
    ase.Atoms
        ``info["preset"] = model``, ``info["coverage"]`` = ligands / top-layer cells.

    Raises
    ------
    InputError
        Unknown model or coverage outside (0, 1].
    ClashError
        No clash-free site for a ligand.
    """
    if model not in SURFACE_MODELS:
        raise InputError(f"unknown surface model {model!r}; allowed: {', '.join(SURFACE_MODELS)}")
    if not (isinstance(coverage, int | float) and 0.0 < float(coverage) <= 1.0):
        raise InputError(f"coverage={coverage!r} must be in (0, 1] (fraction of top-layer sites)")
    ligands = SURFACE_MODELS[model]
    n_cells = top_layer_sites(slab)
    n = max(len(ligands), math.floor(float(coverage) * n_cells + 0.5))
    out = place_ligand(slab, ligands[0], chain_length=chain_length)
    for k in range(1, n):
        name = ligands[k % len(ligands)]
        best: tuple[float, Atoms] | None = None
        for index in range(len(surface_sites(out)[get_ligand(name).site])):
            try:
                trial = place_ligand(out, name, index=index, chain_length=chain_length)
            except ClashError:
                continue
            score = _clearance(trial, [trial.info["ligands"][-1]["indices"]])
            if best is None or score > best[0] + 1e-9:
                best = (score, trial)
        if best is None:
            raise ClashError(
                f"no clash-free site for ligand {k + 1} ({name}) of {model} at coverage "
                f"{coverage:g}; lower the coverage"
            )
        out = best[1]
    out.info["preset"] = model
    out.info["coverage"] = round(n / n_cells, 6) if n_cells else None
    return out

"""Site search summaries and the paper's relative binding affinities (Ext. Data Fig. 4c).

A study with ``ligands.configurations > 1`` computes each single ligand on several sites
and orientations; :func:`summarize_sites` reports, per ligand, termination and dispersion
setting, the lowest binding energy per ligand (eV, ``E_b / coverage``), where it was found
and the spread (highest - lowest) over the candidates. :func:`relative_affinities` compares
AnHI and TMSBr with the control ligands of the same binding mode (AnHI with OAm, both
ammonium cations in an A-site pocket; TMSBr with OAc, both bound to surface Pb), with the
spreads as the uncertainty; :func:`plot_relative_affinities` draws them as bars.
:func:`reaction_energies` lists the reactions of the TMSBr channels.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pqdflow.errors import InputError

__all__ = [
    "AFFINITY_REFERENCES",
    "SiteSummary",
    "plot_relative_affinities",
    "reaction_energies",
    "relative_affinities",
    "summarize_sites",
]

#: Ligand -> the control ligand of the same binding mode it is compared with.
AFFINITY_REFERENCES: dict[str, str] = {"AnHI": "OAm", "TMSBr": "OAc"}


@dataclass(frozen=True)
class SiteSummary:
    """The site search of one ligand on one termination.

    Attributes
    ----------
    ligand, termination, dispersion
        What was searched (dispersion ``"d3bj"`` or ``"none"``).
    lowest_eV
        Lowest binding energy per ligand (eV).
    binding
        Name of the binding reaction that gave it.
    site, site_index, rotation
        Where the lowest was found (rotation about z in degrees).
    spread_eV
        Highest minus lowest over the candidates (eV); 0 for one candidate.
    n_candidates
        How many candidates had an energy.
    """

    ligand: str
    termination: str
    dispersion: str
    lowest_eV: float
    binding: str
    site: str
    site_index: int
    rotation: float
    spread_eV: float
    n_candidates: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _single(doc: Mapping[str, Any]) -> bool:
    meta = doc.get("meta", {})
    return "termination" in meta and meta.get("ligand") == doc.get("ligand")


def summarize_sites(bindings: Iterable[Mapping[str, Any]]) -> list[SiteSummary]:
    """Lowest binding energy and spread of every single ligand's site search.

    Parameters
    ----------
    bindings
        Binding documents as dicts (``StudyResults.binding``); those of single ligands
        (``meta["ligand"]`` and ``meta["termination"]`` set) are used, the others
        (passivated surfaces, reaction channels) are ignored.

    Returns
    -------
    list of SiteSummary
        One per (ligand, termination, dispersion), in the order first seen.
    """
    groups: dict[tuple[str, str, str], list[tuple[float, Mapping[str, Any]]]] = {}
    for doc in bindings:
        if not _single(doc):
            continue
        meta = doc["meta"]
        key = (str(doc["ligand"]), str(meta["termination"]), str(meta.get("dispersion", "none")))
        per_ligand = float(doc["E_b_eV"]) / int(meta.get("coverage", 1))
        groups.setdefault(key, []).append((per_ligand, doc))
    out = []
    for (ligand, termination, dispersion), found in groups.items():
        energies = [e for e, _ in found]
        low, doc = min(found, key=lambda item: item[0])
        meta = doc["meta"]
        out.append(
            SiteSummary(
                ligand=ligand,
                termination=termination,
                dispersion=dispersion,
                lowest_eV=low,
                binding=str(doc["name"]),
                site=str(meta.get("site", doc.get("site", ""))),
                site_index=int(meta.get("site_index", 0)),
                rotation=float(meta.get("rotation", 0.0)),
                spread_eV=max(energies) - low,
                n_candidates=len(found),
            )
        )
    return out


def relative_affinities(
    summaries: Iterable[SiteSummary],
    references: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Binding energy of each ligand relative to its control ligand (Fig. 4c style).

    For each ligand with a reference in ``references`` (default
    :data:`AFFINITY_REFERENCES`) and each dispersion setting: the ligand's lowest energy
    over its terminations minus the reference's, ``delta_eV`` (negative = binds more
    strongly than the control ligand), with ``uncertainty_eV`` = the sum of the two site
    spreads, and ``same_termination`` telling whether both lowest values come from the same
    termination.

    Raises
    ------
    InputError
        When a reference ligand has no summary (name it, and what there is).
    """
    refs = dict(AFFINITY_REFERENCES if references is None else references)
    best: dict[tuple[str, str], SiteSummary] = {}
    for s in summaries:
        key = (s.ligand, s.dispersion)
        if key not in best or s.lowest_eV < best[key].lowest_eV:
            best[key] = s
    rows = []
    for (ligand, dispersion), s in best.items():
        if ligand not in refs:
            continue
        ref = best.get((refs[ligand], dispersion))
        if ref is None:
            raise InputError(
                f"relative affinity of {ligand}: no binding energy of its reference "
                f"{refs[ligand]} ({dispersion}); have {sorted({k[0] for k in best})}"
            )
        rows.append(
            {
                "ligand": ligand,
                "reference": ref.ligand,
                "dispersion": dispersion,
                "E_b_eV": s.lowest_eV,
                "E_ref_eV": ref.lowest_eV,
                "delta_eV": s.lowest_eV - ref.lowest_eV,
                "uncertainty_eV": s.spread_eV + ref.spread_eV,
                "termination": s.termination,
                "reference_termination": ref.termination,
                "same_termination": s.termination == ref.termination,
            }
        )
    return rows


def reaction_energies(bindings: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """List the reaction channels of a study (``meta["channel"]`` other than binding).

    Returns
    -------
    list of dict
        ``name``, ``channel``, ``reaction`` (in words), ``E_eV`` and ``dispersion``.
    """
    rows = []
    for doc in bindings:
        meta = doc.get("meta", {})
        channel = meta.get("channel", "binding")
        if channel == "binding":
            continue
        rows.append(
            {
                "name": doc["name"],
                "channel": channel,
                "reaction": meta.get("reaction", meta.get("equation", "")),
                "E_eV": float(doc["E_b_eV"]),
                "dispersion": meta.get("dispersion", "none"),
            }
        )
    return rows


def plot_relative_affinities(rows: Iterable[Mapping[str, Any]], path: str | Path) -> Path:
    """Bar plot of :func:`relative_affinities` rows, site spreads as error bars (PNG).

    Bars are grouped by ligand, one per dispersion setting; the y axis is the binding
    energy relative to the control ligand (eV, negative = stronger).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)
    if not rows:
        raise InputError("plot_relative_affinities: no rows to plot")
    ligands = list(dict.fromkeys(str(r["ligand"]) for r in rows))
    modes = list(dict.fromkeys(str(r["dispersion"]) for r in rows))
    width = 0.8 / len(modes)
    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    for k, mode in enumerate(modes):
        xs, ys, errs = [], [], []
        for i, ligand in enumerate(ligands):
            for r in rows:
                if r["ligand"] == ligand and r["dispersion"] == mode:
                    xs.append(i + (k - (len(modes) - 1) / 2) * width)
                    ys.append(float(r["delta_eV"]))
                    errs.append(float(r["uncertainty_eV"]))
        label = "D3(BJ)" if mode == "d3bj" else "no dispersion"
        ax.bar(xs, ys, width, yerr=errs, capsize=3, label=label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(range(len(ligands)))
    ax.set_xticklabels(
        [f"{lig} vs {next(r['reference'] for r in rows if r['ligand'] == lig)}" for lig in ligands]
    )
    ax.set_ylabel("E_b - E_b(control ligand) (eV)")
    ax.legend(frameon=False)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=150)
    plt.close(fig)
    return out

"""Halide migration per surface: barrier distributions and the transport-limiting barrier.

A study samples the symmetry-distinct halide-vacancy hops of each host
(:mod:`pqdflow.structures.hops`) and runs one NEB per sampled hop. This module turns those
barriers into what a surface is compared on:

* the distribution: every barrier with its hop labels (elements, layers, direction, pivot
  Pb, nearest ligand and its distance);
* the lowest barrier;
* the transport-limiting barrier: the smallest ``b`` such that the hops with barrier
  ``<= b`` connect vacancy sites across the periodic cell (:func:`transport_limiting_barrier`,
  a union-find over the periodic site network that tracks cell offsets).

A hop's barrier for the network is the larger of its forward and reverse barriers (the
band crossed in either direction), since sustained transport uses each hop both ways.

A hop whose forward and reverse barriers are both below :data:`BARRIERLESS_EV` (the noise of
ML NEB barriers in CsPbBr3, ``NEB_NOTES``) is flagged ``barrierless``: its two endpoints are
not separated minima (the vacancy there relaxes without a barrier), so the number is "no
barrier", not a small one; ``lowest_bound_eV`` / ``lowest_bound_hop`` leave such hops out.

A hop whose final endpoint relaxed back into the initial state, even when rebuilt in the
initial's basin (the band's ``meta["endpoint_check"]["same_state"]``), is ``blocked``: the
vacancy is no minimum at the hopping atom's site, so the hop has no final state and no
barrier. It is left out of the lowest barriers and of the transport network (no edge), and
counted in ``n_blocked``; its row keeps what the band gave.

A hop whose final endpoint relaxed on by a second hop (another atom took the hopping atom's
site: ``meta["endpoint_check"]["cascade"]``) names that atom in ``cascade_by``; its band
crosses both hops and is flagged, not a clean elementary barrier.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pqdflow.analysis.formation import FORMATION_REFERENCES, vacancy_formation_energy
from pqdflow.errors import InputError

__all__ = [
    "BARRIERLESS_EV",
    "hop_barrier",
    "hop_blocked",
    "hop_cascade",
    "plot_barrier_vs_ligand_distance",
    "summarize_migration",
    "transport_limiting_barrier",
    "write_migration",
]

Edge = tuple[int, int, Sequence[int], float]

#: eV: a hop with both barriers below this is ``barrierless`` (ML barrier noise, NEB_NOTES).
BARRIERLESS_EV: float = 0.015


class _Offsets:
    """Union-find whose nodes carry integer cell offsets relative to their root."""

    def __init__(self, n: int) -> None:
        self.parent = list(range(n))
        self.offset = [np.zeros(3, dtype=int) for _ in range(n)]

    def find(self, i: int) -> tuple[int, np.ndarray]:
        """Root of ``i`` and the offset of ``i`` relative to it (path compressed)."""
        parent = self.parent[i]
        if parent == i:
            return i, np.zeros(3, dtype=int)
        root, above = self.find(parent)
        self.offset[i] = self.offset[i] + above
        self.parent[i] = root
        return root, self.offset[i]


def transport_limiting_barrier(
    n_sites: int, edges: Sequence[Edge], periodic_axes: Sequence[int] = (0, 1, 2)
) -> float | None:
    """Smallest barrier ``b`` such that hops with barrier ``<= b`` connect across the cell.

    Sites live in a periodic cell; an edge ``(i, j, shift, barrier)`` joins site ``i`` to
    the image of site ``j`` shifted by ``shift`` (integer cell vectors). Edges are added in
    order of barrier; the answer is the barrier of the first edge that closes a loop with a
    non-zero net cell shift along one of ``periodic_axes``: from then on a vacancy can
    travel arbitrarily far.

    Parameters
    ----------
    n_sites
        Number of vacancy sites.
    edges
        ``(i, j, shift, barrier)`` with barrier in eV.
    periodic_axes
        Cell axes along which transport counts (slabs: ``(0, 1)``).

    Returns
    -------
    float or None
        The barrier (eV), or None when even all edges do not connect across the cell.
    """
    if n_sites < 0:
        raise InputError(f"n_sites={n_sites} must be >= 0")
    axes = list(periodic_axes)
    uf = _Offsets(n_sites)
    for i, j, shift, barrier in sorted(edges, key=lambda e: float(e[3])):
        if not (0 <= i < n_sites and 0 <= j < n_sites):
            raise InputError(f"edge ({i}, {j}) names a site outside 0..{n_sites - 1}")
        s = np.asarray(shift, dtype=int)
        ri, oi = uf.find(i)
        rj, oj = uf.find(j)
        if ri == rj:
            # position(j) = position(i) + s; the component already says oj - oi
            if np.any((oi + s - oj)[axes] != 0):
                return float(barrier)
            continue
        uf.parent[rj] = ri
        uf.offset[rj] = oi + s - oj
    return None


def hop_blocked(neb: Mapping[str, Any]) -> bool:
    """Return True when the band's endpoints relaxed into one state (module docstring)."""
    check = (neb.get("meta") or {}).get("endpoint_check") or {}
    # a band of pqdflow before 'same_state' was recorded: the check's own words say it
    same = check.get("same_state", "same state" in str(check.get("reason", "")))
    return check.get("passed") is False and bool(same)


def _ligands_rebased(neb: Mapping[str, Any]) -> str | None:
    """Return the endpoint rebuilt in the other's ligand conformation, if the band used it."""
    record = (neb.get("meta") or {}).get("ligands_rebased") or {}
    return str(record["endpoint"]) if record.get("used") else None


def _filled_by(neb: Mapping[str, Any]) -> str | None:
    filled = (neb.get("meta") or {}).get("vacancy_filled")
    if not filled:
        return None
    owner = f" ({filled['ligand']})" if filled.get("ligand") else ""
    return f"{filled.get('element')} atom {filled.get('index')}{owner}"


def hop_cascade(neb: Mapping[str, Any]) -> str | None:
    """Return the second atom that took the hopping atom's site (``"Br atom 45"``), if any."""
    cascade = ((neb.get("meta") or {}).get("endpoint_check") or {}).get("cascade")
    if not cascade:
        return None
    return f"{cascade.get('element')} atom {cascade.get('index')}"


def hop_barrier(neb: Mapping[str, Any]) -> float:
    """Return the barrier of a hop for transport: max(forward, reverse) of its band, eV."""
    return float(max(neb["Ea_eV"], neb.get("Ea_reverse_eV", neb["Ea_eV"])))


def summarize_migration(
    nebs: Sequence[Mapping[str, Any]],
    networks: Mapping[str, Mapping[str, Any]],
    *,
    energies: Mapping[str, float] | None = None,
    limits: Mapping[str, Mapping[str, Any]] | None = None,
    other_dispersion: Sequence[str] = (),
) -> dict[str, Any]:
    """Per host: every sampled barrier with its labels, the lowest and transport-limiting.

    Parameters
    ----------
    nebs
        NEB result dicts (:class:`~pqdflow.documents.results.NebDoc` as dict) whose
        ``meta`` carries ``surface`` and ``hop`` (labels) as the planner records them.
    networks
        The plan's ``meta["hop_networks"]``: per surface tag, the offered hops, the site
        network (``sites``, ``edges``, ``periodic``) and ``host_calc`` (the pristine host).
    energies, limits
        Total energies (eV) of the relaxed calculations by name and the halide chemical
        potential limits (:func:`~pqdflow.analysis.formation.halide_potential_limits`):
        with both, every hop row gains the formation energy of its vacancy (the relaxed
        initial endpoint vs the pristine host) at the halide-rich and -poor limits and the
        effective activation (formation + forward barrier).
    other_dispersion
        Relaxations computed with another dispersion setting than the bands (left out of
        ``energies`` and ``limits`` by the caller); formation references among them are
        listed per surface as ``formation_left_out`` (no formation energy mixes the two).

    Returns
    -------
    dict
        Surface tag -> ``{"host", "x", "hops": [labels + Ea_eV, Ea_reverse_eV, barrier_eV,
        barrierless, converged], "lowest_eV", "lowest_hop", "lowest_bound_eV",
        "lowest_bound_hop" (barrierless hops left out), "n_barrierless", "n_blocked",
        "blocked_hops" (no final state: left out of the lowest and transport barriers),
        "transport_limiting_eV" (sampled hops only;
        None if they do not connect across the cell), "transport_limiting_estimate_eV"
        (every unsampled hop class given the barrier of the sampled hop of the same
        elements, layers and direction), "n_offered", "n_sampled"}``.
    """
    by_surface: dict[str, dict[str, Mapping[str, Any]]] = {}
    for neb in nebs:
        meta = neb.get("meta") or {}
        if "surface" in meta and "hop" in meta:
            by_surface.setdefault(str(meta["surface"]), {})[str(meta["hop"]["name"])] = neb
    out: dict[str, Any] = {}
    for tag, net in networks.items():
        done = by_surface.get(tag, {})
        e_host = (energies or {}).get(str(net.get("host_calc")))
        rows = []
        for name, neb in sorted(done.items()):
            row = {
                **neb["meta"]["hop"],
                "Ea_eV": float(neb["Ea_eV"]),
                "Ea_reverse_eV": float(neb.get("Ea_reverse_eV", neb["Ea_eV"])),
                "barrier_eV": hop_barrier(neb),
                "barrierless": hop_barrier(neb) < BARRIERLESS_EV and not hop_blocked(neb),
                "blocked": hop_blocked(neb),
                # who filled the vacancy in the relaxed initial endpoint (then E_f below is
                # that of the filled configuration, not of an open vacancy)
                "vacancy_filled_by": _filled_by(neb),
                # ligand atoms moved this far between the endpoints (> 2 Å: the band includes
                # a ligand rearrangement, pqdflow.structures.defects.LIGAND_REARRANGEMENT_A)
                "ligand_rearranged_A": (neb.get("meta") or {}).get("ligand_rearranged_A"),
                # which endpoint was rebuilt in the other's ligand conformation (and used)
                "ligands_rebased": _ligands_rebased(neb),
                # a second atom took the hopping atom's site while the final endpoint relaxed:
                # the band crosses two hops (pqdflow.errors.VacancyCascadeError)
                "cascade_by": hop_cascade(neb),
                "converged": bool(neb.get("converged", False)),
                "unconverged_inputs": list(neb.get("unconverged_inputs", [])),
                "path": neb.get("path", name),
            }
            element = row["vacancy_element"]
            if e_host is not None and limits and element in limits and neb.get("image_energies"):
                formation = vacancy_formation_energy(
                    float(neb["image_energies"][0]), e_host, element, limits
                )
                row.update(formation)
                row["E_act_rich_eV"] = round(formation["E_f_rich_eV"] + row["Ea_eV"], 6)
                row["E_act_poor_eV"] = round(formation["E_f_poor_eV"] + row["Ea_eV"], 6)
            rows.append(row)
        usable = [r for r in rows if not r["blocked"]]
        sampled = {r["name"]: r["barrier_eV"] for r in usable}
        by_class: dict[str, float] = {}
        for r in usable:
            key = _class(r["name"])
            by_class[key] = min(by_class.get(key, np.inf), r["barrier_eV"])
        estimate = {h["name"]: by_class.get(_class(h["name"])) for h in net.get("hops", [])}
        n = len(net.get("sites", []))
        axes = net.get("periodic", [0, 1, 2])
        edges = net.get("edges", [])
        exact = [(i, j, s, sampled[name]) for i, j, s, name in edges if name in sampled]
        approx = [
            (i, j, s, float(b)) for i, j, s, name in edges if (b := estimate.get(name)) is not None
        ]
        lowest = min(usable, key=lambda r: r["Ea_eV"]) if usable else None
        bound = [r for r in usable if not r["barrierless"]]
        lowest_bound = min(bound, key=lambda r: r["Ea_eV"]) if bound else None
        out[tag] = {
            "host": net.get("host"),
            "x": net.get("x"),
            "hops": rows,
            "lowest_eV": lowest["Ea_eV"] if lowest else None,
            "lowest_hop": lowest["name"] if lowest else None,
            "lowest_bound_eV": lowest_bound["Ea_eV"] if lowest_bound else None,
            "lowest_bound_hop": lowest_bound["name"] if lowest_bound else None,
            "n_barrierless": len(usable) - len(bound),
            "n_blocked": len(rows) - len(usable),
            "blocked_hops": [r["name"] for r in rows if r["blocked"]],
            "transport_limiting_eV": transport_limiting_barrier(n, exact, axes),
            "transport_limiting_estimate_eV": transport_limiting_barrier(n, approx, axes),
            "n_offered": len(net.get("hops", [])),
            "n_sampled": len(rows),
            "chemical_potentials": dict(limits or {}),
            "formation_left_out": [
                n for n in other_dispersion if any(n in r for r in FORMATION_REFERENCES.values())
            ],
        }
    return out


def _class(name: str) -> str:
    return "-".join(name.split("-")[:3])


def plot_barrier_vs_ligand_distance(
    summary: Mapping[str, Mapping[str, Any]], path: str | Path, *, no_ligand: float = 7.0
) -> Path:
    """Scatter plot: each sampled hop's barrier vs its distance to the nearest ligand.

    One colour per surface; hops with no ligand within range (bulk, clean) are drawn at
    ``no_ligand`` Å, blocked hops (no final state) as crosses. Writes ``path`` (PNG) and
    returns it.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for tag, surf in summary.items():
        rows = surf.get("hops", [])
        if not rows:
            continue
        xs = [no_ligand if r.get("ligand_distance") is None else r["ligand_distance"] for r in rows]
        ys = [r["Ea_eV"] for r in rows]
        blocked = [bool(r.get("blocked")) for r in rows]
        dots = ax.scatter(
            [x for x, b in zip(xs, blocked, strict=True) if not b],
            [y for y, b in zip(ys, blocked, strict=True) if not b],
            label=tag,
        )
        if any(blocked):  # no final state: drawn as crosses at what the band gave
            ax.scatter(
                [x for x, b in zip(xs, blocked, strict=True) if b],
                [y for y, b in zip(ys, blocked, strict=True) if b],
                marker="x",
                color=dots.get_facecolor()[0] if len(dots.get_facecolor()) else None,
                label=f"{tag}: blocked (no final state)",
            )
    ax.axvline(no_ligand - 0.5, color="0.7", lw=0.8, ls=":")
    ax.set_xlabel(f"distance hop midpoint - nearest ligand atom (Å; {no_ligand:g} = none near)")
    ax.set_ylabel("migration barrier (eV)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


_CSV_COLUMNS = (
    "surface",
    "name",
    "vacancy_element",
    "vacancy_layer",
    "hop_element",
    "hop_layer",
    "direction",
    "pivot_pb",
    "ligand",
    "ligand_distance",
    "multiplicity",
    "Ea_eV",
    "Ea_reverse_eV",
    "barrier_eV",
    "barrierless",
    "blocked",
    "vacancy_filled_by",
    "ligand_rearranged_A",
    "ligands_rebased",
    "cascade_by",
    "E_f_rich_eV",
    "E_f_poor_eV",
    "E_act_rich_eV",
    "E_act_poor_eV",
    "converged",
)


def write_migration(
    summary: Mapping[str, Mapping[str, Any]], out: str | Path, *, plot: bool = True
) -> Path:
    """Write ``migration.csv`` (one row per sampled hop, then one summary row per surface).

    With ``plot``, also ``migration_barriers.png``
    (:func:`plot_barrier_vs_ligand_distance`). Returns the CSV path.
    """
    import csv
    import io

    from pqdflow.fileio import atomic_write_text

    out = Path(out)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(_CSV_COLUMNS)
    for tag, surf in summary.items():
        for row in surf.get("hops", []):
            writer.writerow([tag, *(row.get(c) for c in _CSV_COLUMNS[1:])])
    writer.writerow([])
    keys = (
        "n_sampled",
        "n_offered",
        "lowest_eV",
        "lowest_hop",
        "lowest_bound_eV",
        "lowest_bound_hop",
        "n_barrierless",
        "n_blocked",
        "transport_limiting_eV",
        "transport_limiting_estimate_eV",
    )
    writer.writerow(["surface", *keys])
    for tag, surf in summary.items():
        writer.writerow([tag, *(surf.get(k) for k in keys)])
    path = out / "migration.csv"
    atomic_write_text(path, buffer.getvalue())
    if plot and any(s.get("hops") for s in summary.values()):
        plot_barrier_vs_ligand_distance(summary, out / "migration_barriers.png")
    return path

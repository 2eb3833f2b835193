"""Halide-vacancy hops identified by geometry, with stable names.

A hop is an unordered pair of edge-sharing halides of a host (bulk or slab): a vacancy on
one, the other hopping into it (:func:`~pqdflow.structures.defects.build_neb_endpoints`).
The same band run backwards is the reverse hop, so each pair is one hop, oriented with the
vacancy in the upper layer (then Br before I, then the lower index).

Hops are grouped into symmetry-distinct classes by a geometric fingerprint: both elements
and layers, the hop length and vertical rise (on a 0.2 Å grid), the elements within 4.5 Å
of the hop midpoint, and the nearest ligand (name and distance, 0.1 Å grid). Each class is
named by what it is, for example ``VBr0-I1-updown-OAc2.3``: vacancy element and layer
(0 = top layer; no layer in bulk), hopper element and layer, ``inplane`` / ``updown`` /
``bulk``, and the nearest ligand within :data:`LIGAND_RANGE` Å of the midpoint with its
distance. Classes whose names coincide get ``-a``, ``-b``, ... in the order of their
lowest atom indices. Every command that builds hops calls :func:`sample_hops` on the same
host, so a name always means the same atoms.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from pqdflow.errors import InputError
from pqdflow.structures.defects import _edge_neighbours, _halides, _is_slab, _layer_from_top

__all__ = ["LIGAND_RANGE", "HopDirection", "HopSite", "hop_network", "sample_hops", "select_hops"]

#: Å: a ligand atom farther than this from the hop midpoint is not named in the hop.
LIGAND_RANGE: float = 6.0
_ENV_RADIUS = 4.5  # Å, environment of the hop midpoint in the fingerprint
_GRID = 0.2  # Å, grid of hop length and rise in the fingerprint

HopDirection = Literal["bulk", "inplane", "updown"]


@dataclass(frozen=True)
class HopSite:
    """One symmetry-distinct halide-vacancy hop of a host, in host indices.

    Attributes
    ----------
    name
        Stable name (see the module docstring), unique within the host.
    vacancy_index, hop_index
        Host indices of the representative pair: the halide removed and the one that hops.
    vacancy_element, hop_element
        Their elements.
    vacancy_layer, hop_layer
        Layers counted from the top (0 = surface layer); None in bulk.
    direction
        ``"bulk"``, ``"inplane"`` (both halides in one layer) or ``"updown"`` (surface <->
        subsurface).
    distance
        Hop length, Å (minimum image).
    pivot_pb
        Host index of the Pb whose octahedron edge the two halides share.
    ligand, ligand_distance
        Nearest ligand (name) and its nearest atom's distance from the hop midpoint (Å);
        None when no ligand atom is within :data:`LIGAND_RANGE`.
    members
        Every equivalent pair ``(vacancy, hop, (n1, n2, n3))`` of the class: the hop goes
        from the vacancy site to the hopper's periodic image shifted by ``n`` cells.
    """

    name: str
    vacancy_index: int
    hop_index: int
    vacancy_element: str
    hop_element: str
    vacancy_layer: int | None
    hop_layer: int | None
    direction: HopDirection
    distance: float
    pivot_pb: int | None
    ligand: str | None
    ligand_distance: float | None
    members: tuple[tuple[int, int, tuple[int, int, int]], ...] = field(default=())

    @property
    def multiplicity(self) -> int:
        """Number of equivalent pairs in the host."""
        return len(self.members)

    def labels(self) -> dict[str, Any]:
        """JSON-ready labels (everything but ``members``)."""
        out = asdict(self)
        out.pop("members")
        out["multiplicity"] = self.multiplicity
        return out


def _ligand_of(host: Atoms) -> dict[int, str]:
    owner: dict[int, str] = {}
    for record in host.info.get("ligands", []) or []:
        for i in record.get("indices", []):
            owner[int(i)] = str(record.get("name", "ligand"))
    return owner


def _shift(host: Atoms, i: int, j: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Minimum-image vector i -> j (Å) and the cell shift of j's image."""
    raw = host.positions[j] - host.positions[i]
    vec, _ = find_mic(raw, host.cell, host.pbc)
    cells = np.linalg.solve(np.asarray(host.cell).T, np.asarray(vec) - raw)
    shift = tuple(round(float(c)) for c in cells)
    return np.asarray(vec), (shift[0], shift[1], shift[2])


def _pivot(host: Atoms, v: int, h: int, vec: np.ndarray) -> int | None:
    pbs = [i for i, s in enumerate(host.get_chemical_symbols()) if s == "Pb"]
    if not pbs:
        return None
    mid = host.positions[v] + vec / 2
    d = np.linalg.norm(find_mic(host.positions[pbs] - mid, host.cell, host.pbc)[0], axis=1)
    return int(pbs[int(np.argmin(d))])


def _orient(host: Atoms, a: int, b: int, layer: dict[int, int]) -> tuple[int, int]:
    def key(i: int) -> tuple[int, str, int]:
        return (layer.get(i, 0), host[i].symbol, i)

    return (a, b) if key(a) <= key(b) else (b, a)


def sample_hops(host: Atoms, *, max_depth: int = 1) -> list[HopSite]:
    """Enumerate the symmetry-distinct halide-vacancy hops of ``host``, with stable names.

    Parameters
    ----------
    host
        Bulk or slab without a vacancy (ligands allowed; ligand atoms never hop). Not
        modified.
    max_depth
        Slabs: hops whose upper halide is in the top layer and whose lower one is at most
        ``max_depth`` layers down (1: top-layer in-plane and top <-> subsurface hops).
        Ignored for bulk.

    Returns
    -------
    list of HopSite
        Sorted by name.
    """
    if isinstance(max_depth, bool) or not isinstance(max_depth, int) or max_depth < 0:
        raise InputError(f"max_depth={max_depth!r} must be an integer >= 0")
    slab = _is_slab(host)
    layer = _layer_from_top(host) if slab else {}
    owner = _ligand_of(host)
    lig_idx = np.array(sorted(owner), dtype=int)
    symbols = host.get_chemical_symbols()
    groups: dict[tuple[Any, ...], list[tuple[int, int, tuple[int, int, int], dict[str, Any]]]] = {}
    seen: set[tuple[int, int]] = set()
    for a in _halides(host):
        if slab and layer[a] != 0:
            continue
        for b in _edge_neighbours(host, a):
            if slab and layer[b] > max_depth:
                continue
            v, h = _orient(host, a, b, layer)
            if (v, h) in seen:
                continue
            seen.add((v, h))
            vec, shift = _shift(host, v, h)
            mid = host.positions[v] + vec / 2
            to_mid = np.linalg.norm(find_mic(host.positions - mid, host.cell, host.pbc)[0], axis=1)
            env = tuple(
                sorted(symbols[k] for k in np.flatnonzero(to_mid < _ENV_RADIUS) if k not in (v, h))
            )
            ligand, lig_d = None, None
            if lig_idx.size:
                k = int(lig_idx[np.argmin(to_mid[lig_idx])])
                if to_mid[k] < LIGAND_RANGE:
                    ligand, lig_d = owner[k], round(float(to_mid[k]), 1)
            dist = float(np.linalg.norm(vec))
            key: tuple[Any, ...] = (
                symbols[v],
                symbols[h],
                layer.get(v),
                layer.get(h),
                round(dist / _GRID),
                round(-vec[2] / _GRID) if slab else 0,
                env,
                ligand,
                lig_d,
            )
            info: dict[str, Any] = {"vec": vec, "dist": dist, "ligand": ligand, "lig_d": lig_d}
            groups.setdefault(key, []).append((v, h, shift, info))
    drafts: list[tuple[str, HopSite]] = []
    for members in groups.values():
        members.sort(key=lambda m: (m[0], m[1]))
        v, h, _, info = members[0]
        direction: HopDirection = (
            "bulk" if not slab else ("inplane" if layer[v] == layer[h] else "updown")
        )
        base = f"V{symbols[v]}{layer.get(v, '')}-{symbols[h]}{layer.get(h, '')}-{direction}" + (
            f"-{info['ligand']}{info['lig_d']:.1f}" if info["ligand"] else ""
        )
        site = HopSite(
            name=base,
            vacancy_index=int(v),
            hop_index=int(h),
            vacancy_element=symbols[v],
            hop_element=symbols[h],
            vacancy_layer=layer.get(v),
            hop_layer=layer.get(h),
            direction=direction,
            distance=round(float(info["dist"]), 4),
            pivot_pb=_pivot(host, v, h, info["vec"]),
            ligand=info["ligand"],
            ligand_distance=info["lig_d"],
            members=tuple((int(m[0]), int(m[1]), m[2]) for m in members),
        )
        drafts.append((base, site))
    drafts.sort(key=lambda d: (d[0], d[1].vacancy_index, d[1].hop_index))
    counts: dict[str, int] = {}
    for base, _ in drafts:
        counts[base] = counts.get(base, 0) + 1
    out: list[HopSite] = []
    used: dict[str, int] = {}
    for base, site in drafts:
        name = base
        if counts[base] > 1:
            k = used.get(base, 0)
            used[base] = k + 1
            name = f"{base}-{_suffix(k)}"
        out.append(_renamed(site, name))
    return out


def _suffix(k: int) -> str:
    letters = string.ascii_lowercase
    return letters[k] if k < len(letters) else f"{letters[k // 26 - 1]}{letters[k % 26]}"


def _renamed(site: HopSite, name: str) -> HopSite:
    data = asdict(site)
    data["name"] = name
    data["members"] = site.members
    return HopSite(**data)


def select_hops(
    hops: Sequence[HopSite], wanted: str | Sequence[str], *, where: str
) -> list[HopSite]:
    """Pick hops by name (``"all"`` for every one).

    Parameters
    ----------
    hops
        From :func:`sample_hops`.
    wanted
        ``"all"``; ``"spread"``: in each class of elements, layers and direction, the hop
        nearest to a ligand and the one farthest from any (one hop where no ligand is
        near); ``"nearest"``: in each class, the hop nearest to a ligand; or a list of
        names, where a name ending in ``*`` matches every hop whose name starts with the
        rest (``"VBr0-Br1-updown*"``).
    where
        What asked (named in the error), e.g. ``"neb.paths[control].hops"``.

    Raises
    ------
    InputError
        Naming the unknown name and listing the hops the host offers.
    """
    if isinstance(wanted, str):
        if wanted == "all":
            return list(hops)
        if wanted in ("spread", "nearest"):
            return _spread(hops, both=wanted == "spread")
        raise InputError(
            f"{where}={wanted!r}: give 'all', 'spread', 'nearest' or a list of hop names"
        )
    by_name = {h.name: h for h in hops}
    chosen: dict[str, HopSite] = {}
    for name in wanted:
        matched = (
            [h for h in hops if h.name.startswith(name[:-1])]
            if name.endswith("*")
            else [by_name[name]]
            if name in by_name
            else []
        )
        if not matched:
            raise InputError(f"{where}: no hop {name!r} on this host; available: {sorted(by_name)}")
        for h in matched:
            chosen.setdefault(h.name, h)
    return list(chosen.values())


def _class_of(hop: HopSite) -> str:
    return "-".join(hop.name.split("-")[:3])


def _spread(hops: Sequence[HopSite], *, both: bool) -> list[HopSite]:
    classes: dict[str, list[HopSite]] = {}
    for hop in hops:
        classes.setdefault(_class_of(hop), []).append(hop)
    out: list[HopSite] = []
    for members in classes.values():

        def near(h: HopSite) -> tuple[float, str]:
            d = h.ligand_distance
            return (LIGAND_RANGE if d is None else d, h.name)

        ordered = sorted(members, key=near)
        out.append(ordered[0])
        if both and len(ordered) > 1 and near(ordered[-1])[0] > near(ordered[0])[0]:
            out.append(ordered[-1])
    return sorted(out, key=lambda h: h.name)


def hop_network(host: Atoms, hops: Sequence[HopSite]) -> dict[str, Any]:
    """Return the periodic network of vacancy sites joined by the sampled hop classes.

    Returns
    -------
    dict
        ``{"sites": [host indices], "edges": [[i, j, [n1, n2, n3], name], ...],
        "periodic": [axes along which the host is periodic and transport counts]}`` with
        ``i``, ``j`` positions in ``sites``; slabs count the in-plane axes only.
    """
    sites = sorted({i for h in hops for m in h.members for i in m[:2]})
    pos = {s: k for k, s in enumerate(sites)}
    edges = [[pos[m[0]], pos[m[1]], list(m[2]), h.name] for h in hops for m in h.members]
    axes = [k for k in range(3) if host.pbc[k]]
    if _is_slab(host):
        axes = [k for k in axes if k != 2]
    return {"sites": sites, "edges": edges, "periodic": axes}

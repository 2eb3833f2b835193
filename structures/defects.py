"""Halide vacancies and NEB endpoints for halide migration.

A halide vacancy V_X is made by removing one halide; a neighbouring halide then hops into
it along the edge of the PbX6 octahedron they share (hop length ~a/sqrt(2), 4.15 Å in
CsPbBr3). Both endpoints keep the same atom order and differ only in the hopping atom;
all distances use the minimum-image convention.

Under ML potentials the ideal cubic cell is a saddle point (octahedral tilting lowers it
by ~0.08 eV per formula unit), so endpoints can be built from any host: a relaxed
structure, or the ideal one rattled with a seed (``rattle=``), which displaces every
unconstrained atom identically in both endpoints.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from ase import Atoms
from ase.geometry import find_mic
from ase.mep.neb import IDPP, NEB, idpp_interpolate, interpolate

from pqdflow.errors import EndpointError, InputError, SameStateError, VacancyCascadeError
from pqdflow.structures.ligands import MOLECULAR_ELEMENTS
from pqdflow.structures.slabs import ligand_indices, reindex_ligands, slab_layers

__all__ = [
    "HALIDES",
    "LIGAND_REARRANGEMENT_A",
    "VACANCY_CLASH_RADIUS",
    "Hop",
    "build_halide_vacancy",
    "build_neb_endpoints",
    "check_endpoints",
    "default_n_images",
    "enumerate_halide_hops",
    "final_in_initial_basin",
    "hop_distance",
    "interpolate_band",
    "ligand_displacement",
    "rattle_host",
    "vacancy_occupant",
]

HALIDES: tuple[str, ...] = ("Br", "I")
_PB_X_MAX = 3.7  # Å, longest Pb-X distance counted as a bond (relaxed / rattled hosts)
_EDGE_MAX = 5.3  # Å, longest X-X distance counted as an octahedron edge
_IMAGE_SPACING = 0.8  # Å of hop per intermediate NEB image


@dataclass(frozen=True)
class Hop:
    """A halide hop into a vacancy, in the indices of the host (before removal).

    Attributes
    ----------
    vacancy_index
        Host index of the halide removed to make the vacancy.
    hop_index
        Host index of the neighbouring halide that hops into the vacancy.
    distance
        Hop length in Å (minimum image).
    vacancy_element, hop_element
        Elements of the removed and the hopping halide.
    vacancy_layer, hop_layer
        Atomic layer counted from the top (0 = surface layer) for slabs; None for bulk.
    """

    vacancy_index: int
    hop_index: int
    distance: float
    vacancy_element: str
    hop_element: str
    vacancy_layer: int | None = None
    hop_layer: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _is_slab(atoms: Atoms) -> bool:
    return atoms.info.get("kind") in ("slab", "adsorbed") or "termination" in atoms.info


def _layer_from_top(atoms: Atoms) -> dict[int, int]:
    layers = slab_layers(atoms)
    return {int(i): len(layers) - 1 - k for k, layer in enumerate(layers) for i in layer}


def _halides(atoms: Atoms) -> list[int]:
    lig = ligand_indices(atoms)
    return [i for i, s in enumerate(atoms.get_chemical_symbols()) if s in HALIDES and i not in lig]


def _mic_vector(atoms: Atoms, i: int, j: int) -> np.ndarray:
    vec, _ = find_mic(atoms.positions[j] - atoms.positions[i], atoms.cell, atoms.pbc)
    return np.asarray(vec)


def _edge_neighbours(atoms: Atoms, index: int) -> list[int]:
    """Halides sharing a PbX6 octahedron edge with ``index`` (common Pb, short X-X)."""
    pbs = [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "Pb"]
    if not pbs:
        return []
    dists = atoms.get_distances(index, pbs, mic=True)
    my_pbs = [pbs[k] for k in np.flatnonzero(dists < _PB_X_MAX)]
    found: list[int] = []
    for j in _halides(atoms):
        if j == index:
            continue
        if np.linalg.norm(_mic_vector(atoms, index, j)) > _EDGE_MAX:
            continue
        if any(atoms.get_distance(j, p, mic=True) < _PB_X_MAX for p in my_pbs):
            found.append(j)
    return found


def _check_halide(atoms: Atoms, index: int, what: str) -> int:
    allowed = _halides(atoms)
    if (
        isinstance(index, bool)
        or not isinstance(index, int | np.integer)
        or int(index) not in allowed
    ):
        shown = allowed if len(allowed) <= 30 else [*allowed[:30], "..."]
        raise InputError(
            f"{what}={index!r} is not a (non-ligand) halide of the host; allowed: {shown}"
        )
    return int(index)


def _remove(host: Atoms, index: int) -> Atoms:
    out = host.copy()
    out.info = copy.deepcopy(host.info)
    if "ligands" in host.info:
        out.info["ligands"] = reindex_ligands(host.info["ligands"], [index])
    del out[index]
    return out


def build_halide_vacancy(
    host: Atoms, index: int | None = None, *, layer: int | None = None, element: str = "Br"
) -> Atoms:
    """Copy of ``host`` with one halide removed.

    Parameters
    ----------
    host
        Bulk or slab (with or without ligands; ligand atoms are never removed).
    index
        Host index of the halide to remove; default the first ``element`` halide of
        ``layer`` (slabs) or of the cell (bulk).
    layer
        Slab layer counted from the top (0 = surface layer); slabs only.
    element
        Halide to remove when ``index`` is not given.

    Returns
    -------
    ase.Atoms
        ``info["vacancy"] = {"host_index", "element", "position" (Å), "layer"}``.
    """
    from_top = _layer_from_top(host) if _is_slab(host) else {}
    if index is None:
        if layer is not None and not from_top:
            raise InputError(f"layer={layer!r} applies to slabs only; this host is bulk")
        candidates = [
            i
            for i in _halides(host)
            if host[i].symbol == element and (layer is None or from_top.get(i) == layer)
        ]
        if not candidates:
            n_layers = max(from_top.values(), default=-1) + 1
            raise InputError(
                f"no {element} halide in layer {layer!r} of this host; element must be one of "
                f"{sorted({host[i].symbol for i in _halides(host)})}"
                + (f", layer 0..{n_layers - 1}" if n_layers else "")
            )
        index = candidates[0]
    index = _check_halide(host, index, "index")
    out = _remove(host, index)
    out.info["vacancy"] = {
        "host_index": index,
        "element": host[index].symbol,
        "position": host.positions[index].tolist(),
        "layer": from_top.get(index),
    }
    return out


def enumerate_halide_hops(
    host: Atoms, *, max_depth: int = 2, element: str = "Br", decimals: float = 0.2
) -> list[Hop]:
    """Distinct halide hops into a vacancy, near the surface for slabs.

    Every pair (vacancy halide of ``element``, edge-sharing neighbour halide) is a hop.
    Hops are grouped by geometry: for slabs the layers (from the top) of both atoms, both
    elements, hop length and vertical rise; for bulk the elements and hop length; plus, for
    both, the elements around the hop midpoint (within 4.5 Å). Lengths are compared on a
    ``decimals`` Å grid, so a rattled host still groups symmetry-equivalent hops. One
    representative (lowest indices) per group is returned.

    Parameters
    ----------
    host
        Bulk or slab (ligand atoms are never vacancy or hop partners).
    max_depth
        Slabs: vacancies in the top ``max_depth`` layers only.
    element
        Element of the vacancy (the paper's V_Br: ``"Br"``).
    decimals
        Grid in Å on which distances are compared.

    Returns
    -------
    list of Hop
        Ordered by vacancy layer, hop layer, then indices.
    """
    slab = _is_slab(host)
    from_top = _layer_from_top(host) if slab else {}
    seen: dict[tuple[Any, ...], Hop] = {}
    for v in _halides(host):
        if host[v].symbol != element or (slab and from_top[v] >= max_depth):
            continue
        for h in _edge_neighbours(host, v):
            vec = _mic_vector(host, v, h)
            dist = float(np.linalg.norm(vec))
            mid = host.positions[v] + vec / 2
            env_d = np.linalg.norm(find_mic(host.positions - mid, host.cell, host.pbc)[0], axis=1)
            env = tuple(
                sorted(host[k].symbol for k in np.flatnonzero(env_d < 4.5) if k not in (v, h))
            )
            key: tuple[Any, ...] = (host[v].symbol, host[h].symbol, round(dist / decimals), env)
            if slab:
                key += (from_top[v], from_top[h], round(-vec[2] / decimals))
            hop = Hop(v, h, dist, host[v].symbol, host[h].symbol, from_top.get(v), from_top.get(h))
            if key not in seen:
                seen[key] = hop
    return sorted(
        seen.values(),
        key=lambda p: (p.vacancy_layer or 0, p.hop_layer or 0, p.vacancy_index, p.hop_index),
    )


def build_neb_endpoints(
    host: Atoms,
    *,
    vacancy_index: int,
    hop_index: int,
    rattle: int | None = None,
    rattle_stdev: float = 0.03,
) -> tuple[Atoms, Atoms]:
    """Build initial and final states of a halide hopping into a neighbouring vacancy.

    Parameters
    ----------
    host
        Bulk or slab without the vacancy (ideal, relaxed or rattled); not modified.
    vacancy_index
        Host index of the halide removed (the vacancy site).
    hop_index
        Host index of an edge-sharing neighbour halide that hops into the vacancy.
    rattle
        Seed: displace every unconstrained atom of the host by a Gaussian of
        ``rattle_stdev`` Å per coordinate before building both endpoints (None: no rattle).
    rattle_stdev
        Standard deviation of the rattle, Å.

    Returns
    -------
    (initial, final)
        Same atoms in the same order; only the hopping atom differs, moved onto the vacancy
        site along the minimum-image vector. ``info["neb"]``: role, hopping_index (in the
        endpoints), vacancy_index / hop_index (host), hop_distance (Å), vacancy_position,
        rattle.

    Raises
    ------
    InputError
        If the indices are not halides or not edge-sharing neighbours (the message lists
        the allowed hop indices).
    """
    v = _check_halide(host, vacancy_index, "vacancy_index")
    h = _check_halide(host, hop_index, "hop_index")
    neighbours = _edge_neighbours(host, v)
    if h not in neighbours:
        raise InputError(
            f"hop_index={h} does not share a PbX6 octahedron edge with vacancy_index={v}; "
            f"allowed hop indices for this vacancy: {neighbours}"
        )
    work = rattle_host(host, rattle, rattle_stdev) if rattle is not None else host.copy()
    vec = _mic_vector(work, h, v)
    initial = _remove(work, v)
    k = h - (h > v)
    final = initial.copy()
    final.info = copy.deepcopy(initial.info)
    final.positions[k] = initial.positions[k] + vec
    meta = {
        "hopping_index": int(k),
        "vacancy_index": v,
        "hop_index": h,
        "vacancy_element": host[v].symbol,
        "hop_element": host[h].symbol,
        "hop_distance": float(np.linalg.norm(vec)),
        "vacancy_position": work.positions[v].tolist(),
        "rattle": rattle,
        "rattle_stdev": rattle_stdev if rattle is not None else 0.0,
    }
    initial.info["neb"] = dict(meta, role="initial")
    final.info["neb"] = dict(meta, role="final")
    return initial, final


def rattle_host(host: Atoms, seed: int, stdev: float = 0.03) -> Atoms:
    """Copy of ``host`` with every unconstrained atom displaced by a seeded Gaussian (Å).

    The same seed gives the same displacements as the NEB endpoints built with
    ``build_neb_endpoints(..., rattle=seed, rattle_stdev=stdev)``.
    """
    work = host.copy()
    rng = np.random.default_rng(seed)
    fixed = _fixed(work)
    free = np.array([i not in fixed for i in range(len(work))])
    work.positions[free] += rng.normal(0.0, stdev, size=(int(free.sum()), 3))
    return work


def _fixed(atoms: Atoms) -> set[int]:
    out: set[int] = set()
    for c in atoms.constraints:
        out.update(int(i) for i in c.get_indices())
    return out


def _ligand_atoms(atoms: Atoms) -> set[int]:
    """Return ligand atom indices: recorded ligands plus every atom of a molecular element."""
    found = {i for i, s in enumerate(atoms.get_chemical_symbols()) if s in MOLECULAR_ELEMENTS}
    for record in atoms.info.get("ligands", []) or []:
        found.update(int(i) for i in record.get("indices", []))
    return found


#: Å: ligand atoms moving more than this between relaxed NEB endpoints mean the ligand layer
#: rearranged, and the band's barrier includes that rearrangement (flagged, not refused).
LIGAND_REARRANGEMENT_A: float = 2.0


def ligand_displacement(initial: Atoms, final: Atoms) -> float:
    """Largest displacement (Å, minimum image) of a ligand atom between two endpoints.

    :func:`check_endpoints` lets ligand atoms move freely (flexible chains relax differently
    in the two endpoints); this measures how far they went. 0 without ligand atoms.
    """
    ligand = sorted(_ligand_atoms(initial))
    if not ligand or len(initial) != len(final):
        return 0.0
    disp, _ = find_mic(
        final.positions[ligand] - initial.positions[ligand], initial.cell, initial.pbc
    )
    return float(np.linalg.norm(disp, axis=1).max())


def check_endpoints(
    initial: Atoms,
    final: Atoms,
    *,
    max_other_displacement: float = 1.5,
    hopping_index: int | None = None,
) -> int:
    """Check that two NEB endpoints correspond atom by atom; return the hopping atom.

    The endpoints must have the same length, the same elements in the same order, the same
    cell and the same fixed atoms. Apart from the hopping atom, no atom of the inorganic
    framework may be displaced by more than ``max_other_displacement`` Å (minimum image): the
    1.5 Å default lets separately relaxed endpoints through (octahedral tilts) while a
    permuted atom order (same-species framework atoms are >= 2.5 Å apart) is caught. Ligand
    atoms (recorded in ``atoms.info["ligands"]`` or of a molecular element H, C, N, O, Si)
    are exempt: flexible chains legitimately relax differently in the two endpoints.

    Parameters
    ----------
    initial, final
        The endpoints.
    max_other_displacement
        Largest allowed displacement of a framework atom other than the hopping one (Å).
    hopping_index
        The hopping atom if known; else ``initial.info["neb"]["hopping_index"]`` if recorded,
        else the framework atom that moves most.

    Raises
    ------
    EndpointError
        Naming the first mismatch; :class:`~pqdflow.errors.SameStateError` when no atom
        moves (the endpoints are one state); :class:`~pqdflow.errors.VacancyCascadeError`
        when another framework atom ends within :data:`VACANCY_CLASH_RADIUS` of the hopping
        atom's starting site (the vacancy moved on by a second hop).
    """
    if len(initial) != len(final):
        raise EndpointError(
            f"endpoints have {len(initial)} and {len(final)} atoms; they must have the same atoms"
        )
    s1, s2 = initial.get_chemical_symbols(), final.get_chemical_symbols()
    bad = [i for i, (a, b) in enumerate(zip(s1, s2, strict=True)) if a != b]
    if bad:
        i = bad[0]
        raise EndpointError(
            f"atom {i} is {s1[i]} in the initial and {s2[i]} in the final endpoint "
            f"({len(bad)} mismatches); both endpoints need the same atom order"
        )
    if not np.allclose(initial.cell.array, final.cell.array, atol=1e-6):
        raise EndpointError("endpoints have different cells; NEB needs one fixed cell")
    if _fixed(initial) != _fixed(final):
        raise EndpointError("endpoints fix different atoms; the FixAtoms sets must be equal")
    disp, _ = find_mic(final.positions - initial.positions, initial.cell, initial.pbc)
    moved = np.linalg.norm(disp, axis=1)
    ligand = _ligand_atoms(initial)
    framework = np.array([i not in ligand for i in range(len(initial))], dtype=bool)
    if hopping_index is None:
        recorded = (initial.info.get("neb") or {}).get("hopping_index")
        if recorded is not None:
            hopping_index = int(recorded)
    if hopping_index is None:
        candidates = np.where(framework, moved, -1.0)
        k = int(np.argmax(candidates))
    else:
        k = int(hopping_index)
        if not 0 <= k < len(initial):
            raise EndpointError(f"hopping_index {k} is outside 0..{len(initial) - 1}")
    big = [int(i) for i in np.flatnonzero(framework & (moved > max_other_displacement)) if i != k]
    if big:
        # did one of them end on the hopping atom's starting site? (the vacancy moved on)
        to_site, _ = find_mic(
            final.positions[big] - initial.positions[k], initial.cell, initial.pbc
        )
        gaps = np.linalg.norm(to_site, axis=1)
        nearest = int(np.argmin(gaps))
        if gaps[nearest] < VACANCY_CLASH_RADIUS:
            j = big[nearest]
            raise VacancyCascadeError(
                f"atoms {big} move by more than {max_other_displacement} Å between the "
                f"endpoints: {s1[j]} {j} ends {gaps[nearest]:.2f} Å from the hopping atom's "
                "starting site, so the vacancy moved on by a second hop while the final "
                "endpoint relaxed (the planned final state is no minimum)",
                index=j,
                element=s1[j],
                distance_A=round(float(gaps[nearest]), 3),
            )
        raise EndpointError(
            f"atoms {big} move by more than {max_other_displacement} Å between the "
            "endpoints; only the hopping atom may (the framework rearranged, or the two "
            "endpoints list their atoms in different orders)"
        )
    if moved[k] < 0.1:
        raise SameStateError("no atom moves between the endpoints; they are the same state")
    return k


#: Å: a non-hydrogen atom this close to a vacancy site occupies it (half a Pb-X bond; the
#: shortest X...H-N hydrogen bonds of the ammonium ligands are ~2.4 Å, Pb-X bonds 3.0-3.2 Å).
VACANCY_CLASH_RADIUS: float = 1.6


def vacancy_occupant(
    atoms: Atoms, hopping_index: int, *, radius: float = VACANCY_CLASH_RADIUS
) -> tuple[int, float] | None:
    """Return the atom that already sits where the hopping atom was put, if any.

    ``atoms`` is a final-endpoint start (the hopping atom moved onto its vacancy site, e.g.
    by :func:`final_in_initial_basin`). When the relaxed initial endpoint had that vacancy
    filled (a ligand's halide or carboxylate O moved into it: the passivation of Fig. 1 of
    the paper), a non-hydrogen atom lies within ``radius`` Å of the site and the hop has no
    final state. Returns ``(index, distance)`` of the nearest such atom, or None.
    """
    others = [i for i, z in enumerate(atoms.numbers) if i != hopping_index and z != 1]
    if not others:
        return None
    d = atoms.get_distances(hopping_index, others, mic=True)
    k = int(np.argmin(d))
    return (others[k], float(d[k])) if d[k] < radius else None


def final_in_initial_basin(
    initial: Atoms, final: Atoms, hopping_index: int, *, shell: float = 4.5
) -> Atoms:
    """Return a final-endpoint start in the same distortion basin as ``initial``.

    Separately relaxed endpoints of a soft perovskite can fall into different octahedral
    tilt patterns (framework atoms 1-2 Å apart); a band between them would mix a collective
    tilt change into the hop. This puts the hopping atom of ``initial`` on the vacancy site
    it occupies in ``final``, mapped into the frame of ``initial`` by the mean displacement
    of the framework atoms within ``shell`` Å of that site. Relax the result (tightly)
    before using it as the final endpoint.

    Parameters
    ----------
    initial, final
        Relaxed endpoints with the same atoms in the same order.
    hopping_index
        The migrating atom.
    shell
        Radius (Å) of the neighbourhood whose relaxation shift is applied to the site.

    Returns
    -------
    Atoms
        A copy of ``initial`` (constraints and info kept) with the hopping atom moved.
    """
    if len(initial) != len(final) or initial.get_chemical_symbols() != final.get_chemical_symbols():
        raise EndpointError("endpoints must have the same atoms in the same order")
    k = int(hopping_index)
    site = final.positions[k]
    to_site, _ = find_mic(final.positions - site, final.cell, final.pbc)
    near = np.linalg.norm(to_site, axis=1) < shell
    near[k] = False
    near &= np.array([s not in MOLECULAR_ELEMENTS for s in final.get_chemical_symbols()])
    shift = np.zeros(3)
    if near.any():
        delta, _ = find_mic(
            initial.positions[near] - final.positions[near], initial.cell, initial.pbc
        )
        shift = delta.mean(axis=0)
    out = initial.copy()
    out.positions[k] = site + shift
    out.info = dict(initial.info)
    if isinstance(out.info.get("neb"), dict):
        out.info["neb"] = {**out.info["neb"], "role": "final"}
    return out


def hop_distance(initial: Atoms, final: Atoms) -> float:
    """Largest minimum-image displacement between the endpoints (the hop length), Å."""
    disp, _ = find_mic(final.positions - initial.positions, initial.cell, initial.pbc)
    return float(np.linalg.norm(disp, axis=1).max())


def default_n_images(initial: Atoms, final: Atoms) -> int:
    """Intermediate NEB images for a hop: one per 0.8 Å of hop length, between 3 and 7.

    A 4.15 Å CsPbBr3 edge hop gets 5 images.
    """
    return int(min(7, max(3, round(hop_distance(initial, final) / _IMAGE_SPACING))))


def interpolate_band(
    initial: Atoms,
    final: Atoms,
    n_images: int,
    *,
    method: str = "idpp",
    fmax: float = 0.01,
    steps: int = 2000,
    check: bool = True,
) -> list[Atoms]:
    """Build a starting NEB band between two endpoints, endpoints included.

    Parameters
    ----------
    initial, final
        Corresponding endpoints (checked with :func:`check_endpoints`); not modified.
    n_images
        Number of intermediate images (>= 1).
    method
        ``"idpp"`` (default): linear minimum-image interpolation refined with ASE's IDPP
        routine converged tightly to ``fmax``; ``"linear"``: the linear interpolation.
    fmax
        IDPP convergence in (IDPP) eV/Å; 0.01 rather than ASE's loose default of 0.1.
    steps
        Maximum IDPP optimiser steps.
    check
        Run :func:`check_endpoints` (default). ``False`` only where the correspondence is
        known by construction (a band's own images) or the mismatch was already flagged.

    Returns
    -------
    list of ase.Atoms
        ``n_images + 2`` images; each keeps the endpoints' FixAtoms and carries
        ``info["neb_image"]`` (its position in the band).
    """
    if check:
        check_endpoints(initial, final)
    if isinstance(n_images, bool) or not isinstance(n_images, int | np.integer) or n_images < 1:
        raise InputError(f"n_images={n_images!r} must be an integer >= 1")
    if method not in ("idpp", "linear"):
        raise InputError(f"method={method!r} is not known; allowed: idpp, linear")
    images = [initial.copy() for _ in range(int(n_images) + 1)] + [final.copy()]
    for image in images:
        image.calc = None
    interpolate(images, mic=True, apply_constraint=False)
    idpp_fmax = None
    if method == "idpp":
        band = NEB(images, method="improvedtangent")
        idpp_interpolate(band, traj=None, log=None, fmax=fmax, mic=True, steps=steps)
        idpp_fmax = _idpp_residual(images)
    for k, image in enumerate(images):
        image.info = copy.deepcopy(initial.info if k < len(images) - 1 else final.info)
        image.info["neb_image"] = k
        if idpp_fmax is not None:
            image.info["idpp_fmax"] = idpp_fmax
    return images


def _idpp_residual(images: list[Atoms]) -> float:
    """Largest NEB force (IDPP surrogate) left on the band, eV/Å."""
    band = [image.copy() for image in images]
    d1 = band[0].get_all_distances(mic=True)
    d2 = band[-1].get_all_distances(mic=True)
    for i, image in enumerate(band):
        image.calc = IDPP(d1 + i * (d2 - d1) / (len(band) - 1), mic=True)
    forces = NEB(band, method="improvedtangent").get_forces()
    return float(np.sqrt((forces**2).sum(axis=1)).max())

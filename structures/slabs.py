"""(001) slabs of cubic CsPbBr(x)I(3-x) with CsX or PbX2 termination.

A (001) slab is a stack of alternating, charge-neutral CsX and PbX2 atomic layers (spacing
a/2). ``layers`` counts atomic layers; the *top* layer has the requested ``termination``
(the surface that ligands bind to) and layers alternate downwards, so an odd number of
layers gives a symmetric slab. The default, 5 layers on a 2x2 lateral cell, is a symmetric
CsX/PbX2/CsX/PbX2/CsX slab of 48 atoms (Cs12Pb8X28), large enough to hold two ligands
side by side yet small enough for DFT. CsX (CsBr) termination is the default because it is
what CsPbBr3 nanocrystals expose (Cs sites of which are taken by alkylammonium ligands).

Mixed-halide slabs are cut from a mixed bulk supercell (:func:`~pqdflow.structures.bulk.
build_mixed_halide`, same seed, same arrangement), so ``x`` must be realisable on that
bulk supercell; the slab's own I count is recorded in ``info["n_iodide"]``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from typing import Literal

import numpy as np
from ase import Atoms
from ase.constraints import FixAtoms

from pqdflow.errors import GeometryError, UnknownTerminationError
from pqdflow.structures.bulk import build_mixed_halide, check_x

__all__ = [
    "MIN_VACUUM",
    "TERMINATIONS",
    "Termination",
    "build_slab",
    "layer_type",
    "ligand_indices",
    "reindex_ligands",
    "slab_layers",
    "top_layer_indices",
]

Termination = Literal["CsX", "PbX2"]

#: Surface terminations of the (001) slab.
TERMINATIONS: tuple[str, ...] = ("CsX", "PbX2")

#: Smallest vacuum gap (Å) between a slab and its periodic image that the builders accept.
MIN_VACUUM: float = 10.0

_LAYER_GAP = 0.8  # Å; atoms closer than this in z belong to the same atomic layer


def ligand_indices(atoms: Atoms) -> set[int]:
    """Return the indices of the atoms that belong to placed ligands (``info["ligands"]``)."""
    found: set[int] = set()
    for record in atoms.info.get("ligands", []) or []:
        found.update(int(i) for i in record["indices"])
    return found


def reindex_ligands(records: Iterable[dict], removed: Iterable[int]) -> list[dict]:
    """Copy ``info["ligands"]`` records, shifting indices for removed atoms.

    Parameters
    ----------
    records
        Ligand records (``indices``, optional ``anchor_index`` / ``companion_indices``).
    removed
        Indices of atoms being deleted (none of them a ligand atom).
    """
    gone = sorted(int(r) for r in removed)

    def shift(i: int) -> int:
        return int(i) - sum(1 for r in gone if r < i)

    out = []
    for rec in records:
        new = dict(rec)
        new["indices"] = [shift(i) for i in rec["indices"]]
        if "companion_indices" in rec:
            new["companion_indices"] = [shift(i) for i in rec["companion_indices"]]
        if "anchor_index" in rec:
            new["anchor_index"] = shift(rec["anchor_index"])
        out.append(new)
    return out


def slab_layers(atoms: Atoms, *, exclude: Iterable[int] | None = None) -> list[np.ndarray]:
    """Group slab atoms into atomic layers along z, bottom first.

    Parameters
    ----------
    atoms
        A slab (vacuum along the third cell vector, which must be along z).
    exclude
        Indices to leave out; default the ligand atoms of ``info["ligands"]``.

    Returns
    -------
    list of numpy.ndarray
        Atom indices of each layer, ordered by increasing z; a new layer starts where the
        sorted z coordinates jump by more than 0.8 Å.
    """
    skip = ligand_indices(atoms) if exclude is None else {int(i) for i in exclude}
    idx = np.array([i for i in range(len(atoms)) if i not in skip], dtype=int)
    if idx.size == 0:
        return []
    z = atoms.positions[idx, 2]
    order = np.argsort(z, kind="stable")
    groups: list[list[int]] = [[int(idx[order[0]])]]
    for prev, cur in itertools.pairwise(order):
        if z[cur] - z[prev] > _LAYER_GAP:
            groups.append([])
        groups[-1].append(int(idx[cur]))
    return [np.array(sorted(g), dtype=int) for g in groups]


def layer_type(atoms: Atoms, layer: Sequence[int] | np.ndarray) -> str:
    """``"CsX"`` or ``"PbX2"`` from the cations present in one atomic layer."""
    symbols = {atoms[int(i)].symbol for i in layer}
    if "Pb" in symbols and "Cs" not in symbols:
        return "PbX2"
    if "Cs" in symbols and "Pb" not in symbols:
        return "CsX"
    raise GeometryError(
        f"atomic layer with elements {sorted(symbols)} is neither a CsX nor a PbX2 layer"
    )


def top_layer_indices(atoms: Atoms) -> np.ndarray:
    """Return the indices of the top atomic layer of a slab, ligand atoms excluded."""
    layers = slab_layers(atoms)
    if not layers:
        raise GeometryError("structure has no slab atoms")
    return layers[-1]


def _check_slab_args(
    termination: str, size: Sequence[int], layers: int, vacuum: float, fixed_layers: int
) -> tuple[int, int]:
    if termination not in TERMINATIONS:
        raise UnknownTerminationError(
            f"termination={termination!r} is not known; allowed: {', '.join(TERMINATIONS)}"
        )
    if isinstance(layers, bool) or not isinstance(layers, int | np.integer) or layers < 2:
        raise GeometryError(f"layers={layers!r}: a slab needs an integer number of layers >= 2")
    if not isinstance(vacuum, int | float) or not math.isfinite(vacuum) or vacuum < MIN_VACUUM:
        raise GeometryError(f"vacuum={vacuum!r} Å is too small; it must be >= {MIN_VACUUM:g} Å")
    if (
        isinstance(fixed_layers, bool)
        or not isinstance(fixed_layers, int | np.integer)
        or not 0 <= fixed_layers < layers
    ):
        raise GeometryError(
            f"fixed_layers={fixed_layers!r} must be an integer from 0 to layers-1={layers - 1}"
        )
    try:
        n, m = (int(v) for v in size)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"size={size!r} must be two positive integers (n, m)") from exc
    if n < 1 or m < 1:
        raise GeometryError(f"size={size!r} must be two positive integers (n, m)")
    return n, m


def _host_layers(host: Atoms) -> tuple[list[np.ndarray], np.ndarray, float]:
    """Cluster a bulk host into atomic layers along c, periodically; return unrolled z."""
    cell = host.cell.array
    if not all(host.pbc):
        raise GeometryError("host must be a periodic bulk cell (pbc on all three axes)")
    if np.abs(cell[0, 2]) > 1e-3 or np.abs(cell[1, 2]) > 1e-3 or np.abs(cell[2, :2]).max() > 1e-3:
        raise GeometryError(
            "host cell must have a and b in the xy plane and c along z, as the cells of "
            "build_bulk/build_mixed_halide; got cell "
            f"{np.round(cell, 3).tolist()}"
        )
    c = float(cell[2, 2])
    frac = host.get_scaled_positions(wrap=True)[:, 2]
    order = np.argsort(frac, kind="stable")
    ring = frac[order]
    gaps = np.diff(np.concatenate([ring, [ring[0] + 1.0]]))
    start = (int(np.argmax(gaps)) + 1) % len(ring)
    # unroll so that the largest gap is the boundary: z increases continuously
    z = frac.copy()
    z[z < ring[start] - 1e-12] += 1.0
    z *= c
    order = np.argsort(z, kind="stable")
    groups: list[list[int]] = [[int(order[0])]]
    for prev, cur in itertools.pairwise(order):
        if z[cur] - z[prev] > _LAYER_GAP:
            groups.append([])
        groups[-1].append(int(cur))
    layers = [np.array(sorted(g), dtype=int) for g in groups]
    types = [layer_type(host, g) for g in layers]
    if len(layers) % 2 or any(t == u for t, u in zip(types, types[1:] + types[:1], strict=True)):
        raise GeometryError(
            f"host does not stack alternating CsX/PbX2 layers along z (found {types})"
        )
    return layers, z, c


def build_slab(
    *,
    x: float = 3.0,
    termination: str = "CsX",
    size: Sequence[int] = (2, 2),
    layers: int = 5,
    vacuum: float = 15.0,
    fixed_layers: int = 2,
    a: float | None = None,
    seed: int = 0,
    host: Atoms | None = None,
) -> Atoms:
    """Build a (001) CsPbBr(x)I(3-x) slab.

    Parameters
    ----------
    x
        Br count per formula unit of the bulk the slab is cut from, in [0, 3].
    termination
        Top-surface termination: ``"CsX"`` (default) or ``"PbX2"``.
    size
        Lateral supercell (n, m) of the cubic cell; ignored when ``host`` is given.
    layers
        Number of atomic layers (>= 2), alternating CsX / PbX2; top layer = termination.
    vacuum
        Vacuum gap between the slab and its periodic image along z, in Å (>= 10).
    fixed_layers
        Number of bottom layers held fixed (``FixAtoms``; becomes POSCAR selective dynamics).
    a
        Lattice constant in Å; default Vegard's law (:func:`~pqdflow.structures.bulk.vegard_a`).
    seed
        Seed of the random halide arrangement for mixed x.
    host
        Optional bulk cell to cut the slab from (e.g. a relaxed or rattled supercell of
        :func:`~pqdflow.structures.bulk.build_mixed_halide`); its a and b vectors must lie
        in the xy plane and c along z. Its positions are kept; it is not modified.

    Returns
    -------
    ase.Atoms
        Atoms ordered by layer from the bottom; ``info``: kind="slab", termination,
        miller=[0, 0, 1], layers, x, fixed_layers, size, vacuum, a, seed, layer_types
        (bottom to top), n_iodide, formula_units=1.

    Raises
    ------
    UnknownTerminationError, GeometryError, CompositionError
        For an unknown termination, vacuum < 10 Å, fewer than 2 layers, bad fixed_layers
        or size, or a non-realisable x.
    """
    n, m = _check_slab_args(termination, size, layers, vacuum, fixed_layers)
    if host is None:
        value = check_x(x)
        n_cells = math.ceil(layers / 2)
        host = build_mixed_halide(value, (n, m, n_cells), a=a, seed=seed)
        lattice = float(host.info["a"])
    else:
        n_pb = sum(1 for s in host.get_chemical_symbols() if s == "Pb")
        n_br = sum(1 for s in host.get_chemical_symbols() if s == "Br")
        value = n_br / n_pb if n_pb else float("nan")
        lattice = float(host.info.get("a", (host.get_volume() / max(n_pb, 1)) ** (1 / 3)))
        n, m = (round(float(np.linalg.norm(host.cell[i])) / lattice) for i in (0, 1))
    host_layers, z_unrolled, c = _host_layers(host)
    k = len(host_layers)
    types = [layer_type(host, g) for g in host_layers]
    top = max(i for i in range(k) if types[i] == termination)
    chosen = range(top - layers + 1, top + 1)  # unrolled layer numbers, bottom first
    symbols: list[str] = []
    positions: list[np.ndarray] = []
    layer_of_atom: list[int] = []
    for pos, j in enumerate(chosen):
        group = host_layers[j % k]
        shift = (j // k) * c
        for i in group:
            cation_first = 0 if host[int(i)].symbol in ("Cs", "Pb") else 1
            symbols.append(host[int(i)].symbol)
            p = host.positions[int(i)].copy()
            p[2] = z_unrolled[int(i)] + shift
            positions.append(p)
            layer_of_atom.append(2 * pos + cation_first)
    order = np.argsort(layer_of_atom, kind="stable")
    pos_arr = np.array(positions)[order]
    sym_arr = [symbols[i] for i in order]
    layer_arr = np.array(layer_of_atom)[order] // 2
    thickness = float(pos_arr[:, 2].max() - pos_arr[:, 2].min())
    pos_arr[:, 2] += vacuum / 2.0 - pos_arr[:, 2].min()
    cell = host.cell.array.copy()
    cell[2] = (0.0, 0.0, thickness + vacuum)
    slab = Atoms(symbols=sym_arr, positions=pos_arr, cell=cell, pbc=True)
    slab.wrap(pbc=(True, True, False))
    fixed = np.flatnonzero(layer_arr < fixed_layers)
    if fixed.size:
        slab.set_constraint(FixAtoms(indices=fixed))
    layer_types = [types[j % k] for j in chosen]
    slab.info.update(
        kind="slab",
        termination=termination,
        bottom_termination=layer_types[0],
        miller=[0, 0, 1],
        layers=int(layers),
        layer_types=layer_types,
        x=float(value),
        fixed_layers=int(fixed_layers),
        size=[int(n), int(m)],
        vacuum=float(vacuum),
        a=lattice,
        seed=int(seed),
        n_iodide=int(sum(1 for s in sym_arr if s == "I")),
        formula_units=1,
    )
    return slab

"""k-point grids and cell geometry for VASP inputs (pure functions, no disk).

* :func:`gamma_grid`: Gamma-centred grid from a k-point density, 1 along a vacuum axis.
* :func:`slab_centre`: the slab's centre along its normal (DIPOL of the dipole correction).
* :func:`poscar_order`: the atom order written to POSCAR (grouped by element).
* :func:`selective_dynamics`: POSCAR T/F flags from ASE constraints.
"""

from __future__ import annotations

import numpy as np
from ase import Atoms
from ase.cell import Cell
from ase.constraints import FixAtoms, FixCartesian

from pqdflow.errors import InputSetError

__all__ = ["gamma_grid", "poscar_order", "selective_dynamics", "slab_centre"]


def gamma_grid(
    cell: Cell | np.ndarray, density: float, *, vacuum_axis: int | None = None
) -> tuple[int, int, int]:
    """Return the Gamma-centred grid N_i = max(1, int(density * |b_i| + 0.5)).

    Parameters
    ----------
    cell
        Lattice vectors (rows), Å.
    density
        k-points per 1/Å of reciprocal-vector length, |b_i| without the 2 pi (VASP's
        fully automatic length R_k, in Å).
    vacuum_axis
        Axis along which the grid is 1 (slabs).

    Raises
    ------
    InputSetError
        If ``density`` is not positive.
    """
    if not density > 0:
        raise InputSetError(f"k-point density {density!r} must be positive (per 1/Å)")
    lengths = np.linalg.norm(Cell(np.asarray(cell)).reciprocal(), axis=1)
    grid = [max(1, int(density * float(b) + 0.5)) for b in lengths]
    if vacuum_axis is not None:
        grid[vacuum_axis] = 1
    return (grid[0], grid[1], grid[2])


def poscar_order(atoms: Atoms) -> list[int]:
    """Return the atom order written to POSCAR: grouped by element, stable within an element.

    Elements appear in the order of their first occurrence in ``atoms``; ``written[i] =
    atoms[order[i]]``. The order is recorded in the provenance JSON when it is not the
    identity.
    """
    symbols = atoms.get_chemical_symbols()
    rank: dict[str, int] = {}
    for symbol in symbols:
        rank.setdefault(symbol, len(rank))
    return sorted(range(len(symbols)), key=lambda i: (rank[symbols[i]], i))


def slab_centre(atoms: Atoms, axis: int) -> float:
    """Return the fractional coordinate of a slab's centre along ``axis``.

    Periodic-safe: the vacuum is the largest gap between atoms along ``axis``, so a slab
    that wraps through 0 is handled. Used for DIPOL (dipole-correction centre).
    """
    frac = np.sort(np.mod(atoms.get_scaled_positions(wrap=False)[:, axis], 1.0))
    if len(frac) == 1:
        return float(frac[0])
    gaps = np.diff(np.concatenate([frac, [frac[0] + 1.0]]))
    i = int(np.argmax(gaps))  # the vacuum runs from frac[i] up to frac[i + 1]
    start = frac[(i + 1) % len(frac)]
    thickness = 1.0 - gaps[i]
    return float(np.mod(start + thickness / 2.0, 1.0))


def selective_dynamics(atoms: Atoms) -> list[list[bool]] | None:
    """Return POSCAR selective-dynamics flags (True = free) from the atoms' constraints.

    ``FixAtoms`` -> F F F, ``FixCartesian`` -> F on its masked directions; ``None`` when
    there are no constraints.

    Raises
    ------
    InputSetError
        For a constraint a POSCAR cannot express.
    """
    if not atoms.constraints:
        return None
    free = np.ones((len(atoms), 3), dtype=bool)
    for constraint in atoms.constraints:
        if isinstance(constraint, FixAtoms):
            free[constraint.get_indices()] = False
        elif isinstance(constraint, FixCartesian):
            idx = constraint.get_indices()
            free[idx] &= ~np.asarray(constraint.mask, dtype=bool)
        else:
            raise InputSetError(
                f"constraint {type(constraint).__name__} cannot be written to a POSCAR; "
                "allowed: FixAtoms, FixCartesian"
            )
    return free.tolist()

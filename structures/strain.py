"""Put a structure built on one lattice constant onto another (the calculator's own).

Slabs and NEB hosts are built on Vegard's-law lattice constants (experiment); a calculator
relaxes bulk to its own (PBE's is ~2 % larger), and barriers are strain-sensitive, so
before a run the structures are put on the relaxed lattice: :func:`rescale_to_lattice`.
"""

from __future__ import annotations

import copy

import numpy as np
from ase import Atoms

from pqdflow.errors import InputError
from pqdflow.structures.ligands import MOLECULAR_ELEMENTS
from pqdflow.structures.slabs import ligand_indices

__all__ = ["rescale_to_lattice"]


def rescale_to_lattice(atoms: Atoms, factor: float) -> Atoms:
    """Copy of ``atoms`` with its inorganic lattice scaled by ``factor``.

    Bulk (periodic along all three axes): the cell and all positions scale isotropically.
    Slab: the in-plane cell vectors and in-plane positions scale; inorganic heights scale
    about the slab's bottom; the vacuum (cell height above the slab) is kept; ligand atoms
    (recorded in ``info["ligands"]`` or of a molecular element) are moved rigidly with the
    top surface (their in-plane positions follow the cell). Constraints and ``info`` are
    kept; ``info["lattice_scale"]`` records the factor.

    Parameters
    ----------
    atoms
        Bulk or slab; not modified.
    factor
        New / old lattice constant, between 0.8 and 1.2.

    Raises
    ------
    InputError
        A factor outside 0.8-1.2 (not a lattice mismatch, a wrong reference).
    """
    if not (isinstance(factor, int | float) and 0.8 <= float(factor) <= 1.2):
        raise InputError(f"lattice scale factor {factor!r} must be between 0.8 and 1.2")
    f = float(factor)
    out = atoms.copy()
    out.info = copy.deepcopy(atoms.info)
    if not (atoms.info.get("kind") in ("slab", "adsorbed") or "termination" in atoms.info):
        out.set_cell(atoms.cell[:] * f, scale_atoms=True)
        out.info["lattice_scale"] = f
        return out
    if np.abs(atoms.cell[2, :2]).max() > 1e-6 or np.abs(atoms.cell[:2, 2]).max() > 1e-6:
        raise InputError("rescale_to_lattice needs a slab cell with c along z, a and b in-plane")
    symbols = atoms.get_chemical_symbols()
    ligand = ligand_indices(atoms) | {i for i, s in enumerate(symbols) if s in MOLECULAR_ELEMENTS}
    inorganic = np.array([i not in ligand for i in range(len(atoms))], dtype=bool)
    cell = atoms.cell[:].copy()
    frac = atoms.get_scaled_positions(wrap=False)
    new_cell = cell.copy()
    new_cell[0] *= f
    new_cell[1] *= f
    z = atoms.positions[:, 2]
    z0 = float(z[inorganic].min())
    top_old = float(z[inorganic].max())
    new_z = z.copy()
    new_z[inorganic] = z0 + (z[inorganic] - z0) * f
    new_z[~inorganic] = z[~inorganic] + (z0 + (top_old - z0) * f - top_old)
    new_cell[2, 2] = cell[2, 2] + (top_old - z0) * (f - 1.0)
    positions = frac[:, :1] * new_cell[0] + frac[:, 1:2] * new_cell[1]
    positions[:, 2] = new_z
    out.set_cell(new_cell, scale_atoms=False)
    out.positions = positions
    out.info["lattice_scale"] = f
    return out

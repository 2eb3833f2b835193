"""Conversion and file export of pqdflow structures.

* ASE ``Atoms`` <-> pymatgen ``Structure`` (:func:`to_structure`, :func:`from_structure`):
  fixed atoms travel as the ``selective_dynamics`` site property, ``atoms.info`` as
  ``Structure.properties``; the round trip is lossless.
* Files (:func:`write_structure`, :func:`read_structure`), format from the file name:
  ``.extxyz`` / ``.xyz`` extended XYZ (keeps ``info``, including the ligand records, and
  fixed atoms), ``POSCAR`` / ``CONTCAR`` / ``.vasp`` / ``.poscar`` VASP 5 with selective
  dynamics (atom order kept, so a species may appear in several blocks), ``.cif`` CIF.
  Files are written atomically (temporary sibling + rename).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.io import read as ase_read
from ase.io import write as ase_write
from pymatgen.core import Structure
from pymatgen.io.ase import AseAtomsAdaptor

from pqdflow.errors import InputError, ParseError
from pqdflow.fileio import atomic_write_bytes, atomic_write_text

__all__ = [
    "FORMATS",
    "from_structure",
    "guess_format",
    "read_structure",
    "to_structure",
    "write_structure",
]

#: File formats :func:`write_structure` writes, by the name ASE gives them.
FORMATS: tuple[str, ...] = ("extxyz", "vasp", "cif")


def _plain(value: Any) -> Any:
    """Numpy scalars/arrays -> Python numbers/lists, recursively (JSON-ready info)."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def to_structure(atoms: Atoms) -> Structure:
    """Pymatgen ``Structure`` of a periodic ``Atoms``.

    FixAtoms become ``selective_dynamics`` (False = fixed) and ``atoms.info`` becomes
    ``Structure.properties``.
    """
    if not all(atoms.pbc) and atoms.cell.rank < 3:
        raise InputError("to_structure needs a cell with three lattice vectors")
    work = atoms.copy()
    work.info = _plain(atoms.info)
    return AseAtomsAdaptor.get_structure(work)


def from_structure(structure: Structure) -> Atoms:
    """ASE ``Atoms`` of a pymatgen ``Structure`` (inverse of :func:`to_structure`)."""
    atoms = AseAtomsAdaptor.get_atoms(structure)
    atoms.info = _plain(atoms.info)
    return atoms


def guess_format(path: str | Path) -> str:
    """ASE format name for a file name: ``extxyz``, ``vasp`` or ``cif``.

    Raises
    ------
    InputError
        For a name whose format is not one of :data:`FORMATS`.
    """
    name = Path(path).name
    suffix = Path(path).suffix.lower()
    if suffix in (".extxyz", ".xyz"):
        return "extxyz"
    if suffix in (".vasp", ".poscar") or name.upper().startswith(("POSCAR", "CONTCAR")):
        return "vasp"
    if suffix == ".cif":
        return "cif"
    raise InputError(
        f"cannot tell the format of {name!r}; use .extxyz/.xyz, POSCAR/CONTCAR/.vasp or .cif"
    )


def write_structure(atoms: Atoms, path: str | Path, *, fmt: str | None = None) -> Path:
    """Write ``atoms`` to ``path`` atomically; return the path.

    Parameters
    ----------
    atoms
        Structure to write (not modified).
    path
        Target file; the format comes from its name unless ``fmt`` is given.
    fmt
        ``"extxyz"``, ``"vasp"`` (POSCAR, selective dynamics where atoms are fixed) or ``"cif"``.
    """
    path = Path(path)
    form = fmt or guess_format(path)
    if form not in FORMATS:
        raise InputError(f"fmt={fmt!r} is not supported; allowed: {', '.join(FORMATS)}")
    work = atoms.copy()
    work.calc = None
    work.info = _plain(atoms.info)
    if form == "cif":
        raw = io.BytesIO()
        ase_write(raw, work, format="cif")
        atomic_write_bytes(path, raw.getvalue())
        return path
    buffer = io.StringIO()
    if form == "vasp":
        ase_write(buffer, work, format="vasp", direct=True, sort=False)
    else:
        ase_write(buffer, work, format="extxyz")
    atomic_write_text(path, buffer.getvalue())
    return path


def read_structure(path: str | Path, *, fmt: str | None = None) -> Atoms:
    """Read one structure written by :func:`write_structure` (or any file of that format).

    Raises
    ------
    ParseError
        If the file is missing or cannot be read.
    """
    path = Path(path)
    if not path.is_file():
        raise ParseError(path, "file does not exist")
    form = fmt or guess_format(path)
    try:
        atoms = ase_read(path, format=form)
    except Exception as exc:
        raise ParseError(path, f"cannot read as {form}: {exc}") from exc
    assert isinstance(atoms, Atoms)
    atoms.info = _plain(atoms.info)
    return atoms

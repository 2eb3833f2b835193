"""Writing VASP input folders: in-memory :class:`PreparedInputs`, POTCAR assembly, hashing.

:func:`prepare_vasp_inputs` / :func:`prepare_neb_inputs` compute every file of one folder
from an input set (:class:`~pqdflow.workflows.vasp.inputsets.VaspInputSet`) without touching the
disk; :func:`write_vasp_inputs` / :func:`write_neb_inputs` write the folder atomically and
never clobber outputs. Only at write time is ``PMG_VASP_PSP_DIR`` read, to decide between a
real ``POTCAR`` (library configured) and ``POTCAR.spec`` (no licence needed).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
from ase import Atoms
from pymatgen.io.vasp.inputs import POTCAR_FUNCTIONAL_MAP, Incar

from pqdflow.errors import EndpointError, InputSetError, OverwriteError
from pqdflow.fileio import atomic_directory, find_outputs
from pqdflow.provenance import provenance
from pqdflow.workflows.vasp.kpoints import poscar_order, selective_dynamics

if TYPE_CHECKING:
    from pqdflow.workflows.vasp.inputsets import VaspInputSet

__all__ = [
    "INPUT_PROVENANCE_FILE",
    "PreparedInputs",
    "prepare_neb_inputs",
    "prepare_vasp_inputs",
    "write_neb_inputs",
    "write_vasp_inputs",
]

#: Name of the provenance JSON written next to the inputs (not part of the input hash).
INPUT_PROVENANCE_FILE = "pqdflow_inputs.json"


def _jsonable(obj: Any) -> Any:
    """Convert ``atoms.info``-like data to plain JSON types (unknown objects -> str)."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    return str(obj)


@dataclass(frozen=True)
class PreparedInputs:
    """The complete content of one input folder, computed in memory.

    Attributes
    ----------
    files
        Relative path -> bytes. The POTCAR is represented by ``POTCAR.spec`` here.
    input_sha256
        SHA-256 over ``files`` (names and bytes, sorted), the same scheme as
        :func:`pqdflow.fileio.sha256_of_files`; independent of whether a real POTCAR is
        written, so it is the same with or without a POTCAR licence.
    potcar_symbols, functional
        The POTCAR choice, written as POTCAR.spec or assembled into a POTCAR at write time.
    record
        Extra provenance (input set, structure metadata, k-point grid).
    """

    files: Mapping[str, bytes]
    input_sha256: str
    potcar_symbols: tuple[str, ...]
    functional: str
    record: Mapping[str, Any]
    potcar_dirs: tuple[str, ...] = ("",)

    def materialise(self) -> dict[str, bytes]:
        """Return the files as written now (POTCAR, not POTCAR.spec, with PMG_VASP_PSP_DIR).

        Raises
        ------
        InputSetError
            If the POTCAR library is configured but a POTCAR is missing.
        """
        files = dict(self.files)
        psp_dir = os.environ.get("PMG_VASP_PSP_DIR")
        if not psp_dir:
            return files
        potcar = _assemble_potcar(Path(psp_dir), self.functional, self.potcar_symbols)
        for sub in self.potcar_dirs:
            files.pop(f"{sub}POTCAR.spec", None)
            files[f"{sub}POTCAR"] = potcar
        return files

    def is_current(self, directory: str | Path, files: Mapping[str, bytes] | None = None) -> bool:
        """Return True if ``directory`` already holds exactly these inputs."""
        directory = Path(directory)
        prov = directory / INPUT_PROVENANCE_FILE
        if not prov.is_file():
            return False
        try:
            recorded = json.loads(prov.read_text()).get("input_sha256")
        except (OSError, ValueError):
            return False
        if recorded != self.input_sha256:
            return False
        files = self.materialise() if files is None else files
        for rel, data in files.items():
            path = directory / rel
            if not path.is_file() or path.read_bytes() != data:
                return False
        return True

    def check(self, directory: str | Path, *, force: bool = False) -> bool:
        """Decide what writing to ``directory`` would do, without writing.

        Returns
        -------
        bool
            True if the folder must be (re)written, False if it is already current.

        Raises
        ------
        OverwriteError
            If the folder holds outputs, its inputs differ and ``force`` is False.
        """
        directory = Path(directory)
        if self.is_current(directory):
            return False
        outputs = find_outputs(directory)
        if outputs and not force:
            names = ", ".join(str(p.relative_to(directory)) for p in outputs[:5])
            raise OverwriteError(
                f"{directory} already holds calculation outputs ({names}) and its inputs differ; "
                "refusing to overwrite. Use force=True (--force) to move them aside."
            )
        return True

    def write(self, directory: str | Path, *, force: bool = False) -> bool:
        """Write the folder atomically unless it is already current; return True if written."""
        directory = Path(directory)
        files = self.materialise()
        if self.is_current(directory, files):
            return False
        self.check(directory, force=force)
        with atomic_directory(directory, force=force) as tmp:
            for rel, data in files.items():
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            record = provenance(
                input_sha256=self.input_sha256,
                files=sorted(files),
                potcar="POTCAR" if "POTCAR" in {Path(r).name for r in files} else "POTCAR.spec",
                **self.record,
            )
            # inside the temporary folder, which is renamed into place as a whole
            text = json.dumps(record, indent=2, sort_keys=True, default=str) + "\n"
            (tmp / INPUT_PROVENANCE_FILE).write_text(text)
        return True


def _assemble_potcar(psp_dir: Path, functional: str, symbols: Sequence[str]) -> bytes:
    subdir = POTCAR_FUNCTIONAL_MAP.get(functional, functional)
    parts: list[bytes] = []
    for symbol in symbols:
        tried = [
            psp_dir / subdir / symbol / "POTCAR",
            psp_dir / subdir / f"POTCAR.{symbol}",
            psp_dir / subdir / f"POTCAR.{symbol}.gz",
        ]
        found = next((p for p in tried if p.is_file()), None)
        if found is None:
            raise InputSetError(
                f"PMG_VASP_PSP_DIR is set but POTCAR {symbol!r} ({functional}) was not found; "
                f"tried {[str(p) for p in tried]}"
            )
        data = found.read_bytes()
        parts.append(gzip.decompress(data) if found.suffix == ".gz" else data)
    return b"".join(parts)


def _hash_files(files: Mapping[str, bytes]) -> str:
    digest = hashlib.sha256()
    for rel in sorted(files):
        digest.update(rel.encode())
        digest.update(b"\0")
        digest.update(files[rel])
    return digest.hexdigest()


def _extra_bytes(extra_files: Mapping[str, str | bytes] | None) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for name, content in (extra_files or {}).items():
        if Path(name).name != name or name in {INPUT_PROVENANCE_FILE, ""}:
            raise InputSetError(f"extra file name {name!r} must be a plain file name")
        out[name] = content.encode() if isinstance(content, str) else bytes(content)
    return out


def prepare_vasp_inputs(
    atoms: Atoms,
    input_set: VaspInputSet,
    *,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> PreparedInputs:
    """Compute the INCAR, KPOINTS, POSCAR and POTCAR.spec of one calculation, in memory.

    Raises
    ------
    InputSetError
        For an NEB preset (use :func:`prepare_neb_inputs`), a missing POTCAR choice, an
        unsupported constraint or a bad override.
    """
    if input_set.is_neb:
        raise InputSetError(f"preset {input_set.preset!r} is an NEB preset; use write_neb_inputs")
    if len(atoms) == 0:
        raise InputSetError("cannot write VASP inputs for a structure with no atoms")
    prepared = input_set.prepare_atoms(atoms)
    order = poscar_order(atoms)
    symbols = input_set.potcar_symbols(prepared)
    files = {
        "INCAR": str(Incar(input_set.incar(prepared))).encode(),
        "KPOINTS": str(input_set.kpoints(prepared)).encode(),
        "POSCAR": input_set.poscar(prepared).get_str().encode(),
        "POTCAR.spec": ("\n".join(symbols) + "\n").encode(),
    }
    extra = _extra_bytes(extra_files)
    clash = sorted(set(extra) & set(files))
    if clash:
        raise InputSetError(f"extra files {clash} would replace generated inputs")
    files.update(extra)
    record = {
        "input_set": input_set.as_dict(),
        "kpoint_grid": list(input_set.kpoint_grid(prepared)),
        "poscar_order": None if order == sorted(order) else order,
        "potcar_symbols": symbols,
        "potcar_functional": input_set._settings["POTCAR_FUNCTIONAL"],
        "structure": {
            "formula": prepared.get_chemical_formula(mode="hill"),
            "natoms": len(prepared),
            "info": _jsonable(dict(atoms.info)),
        },
    }
    return PreparedInputs(
        files=MappingProxyType(files),
        input_sha256=_hash_files(files),
        potcar_symbols=tuple(symbols),
        functional=str(input_set._settings["POTCAR_FUNCTIONAL"]),
        record=MappingProxyType(record),
    )


def write_vasp_inputs(
    atoms: Atoms,
    directory: str | Path,
    input_set: VaspInputSet,
    *,
    force: bool = False,
    extra_files: Mapping[str, str | bytes] | None = None,
) -> PreparedInputs:
    """Write one VASP input folder atomically; idempotent; never clobbers outputs.

    Writes INCAR, KPOINTS, POSCAR (selective dynamics from ``FixAtoms``), POTCAR.spec (or
    POTCAR when ``PMG_VASP_PSP_DIR`` is set), any ``extra_files`` and
    ``pqdflow_inputs.json`` (pqdflow version, input hash, structure metadata from
    ``atoms.info``). A folder that already holds the same inputs is left untouched.

    Parameters
    ----------
    atoms
        The structure (never modified).
    directory
        Target folder.
    input_set
        The input set.
    force
        Rewrite a folder holding outputs whose inputs differ; the old folder is moved aside
        to ``<name>.bak-<timestamp>``, never deleted.
    extra_files
        Additional file name -> content, part of the input hash.

    Returns
    -------
    PreparedInputs
        What was (or already had been) written, with ``input_sha256``.

    Raises
    ------
    InputSetError
        For bad inputs (before anything is written).
    OverwriteError
        If the folder holds outputs, its inputs differ and ``force`` is False.
    """
    prepared = prepare_vasp_inputs(atoms, input_set, extra_files=extra_files)
    prepared.write(directory, force=force)
    return prepared


def prepare_neb_inputs(images: Sequence[Atoms], input_set: VaspInputSet) -> PreparedInputs:
    """Compute an NEB folder in memory: top-level INCAR/KPOINTS/POTCAR.spec, ``NN/POSCAR``.

    Every image's POSCAR carries selective dynamics. Images without constraints inherit the
    initial endpoint's flags (interpolation often drops constraints); images whose flags
    differ from the initial endpoint's are an error.

    Raises
    ------
    InputSetError
        If the preset is not an NEB preset or fewer than 3 images are given.
    EndpointError
        If the images differ in length, element order or cell.
    """
    if not input_set.is_neb:
        raise InputSetError(
            f"preset {input_set.preset!r} is not an NEB preset; use neb_bulk/neb_slab"
        )
    images = list(images)
    if len(images) < 3:
        raise InputSetError(
            f"an NEB needs both endpoints and >= 1 image; got {len(images)} structures"
        )
    first = images[0]
    symbols = first.get_chemical_symbols()
    for i, image in enumerate(images[1:], start=1):
        if image.get_chemical_symbols() != symbols:
            raise EndpointError(f"NEB image {i:02d} has a different element order from image 00")
        if not np.allclose(image.cell[:], first.cell[:], atol=1e-6):
            raise EndpointError(f"NEB image {i:02d} has a different cell from image 00")
    order = poscar_order(first)
    images = [image[order] for image in images]
    first = images[0]
    flags = selective_dynamics(first)
    n_images = len(images) - 2
    files: dict[str, bytes] = {
        "INCAR": str(Incar(input_set.incar(first, n_images=n_images))).encode(),
        "KPOINTS": str(input_set.kpoints(first)).encode(),
        "POTCAR.spec": ("\n".join(input_set.potcar_symbols(first)) + "\n").encode(),
    }
    width = max(2, len(str(len(images) - 1)))
    for i, image in enumerate(images):
        own = selective_dynamics(image)
        if own is not None and flags is not None and own != flags:
            raise EndpointError(f"NEB image {i:02d} fixes different atoms from image 00")
        poscar = input_set.poscar(image, comment=f"NEB image {i:0{width}d}")
        if flags is not None:
            poscar.selective_dynamics = np.array(flags, dtype=bool)
        files[f"{i:0{width}d}/POSCAR"] = poscar.get_str().encode()
    symbols_potcar = input_set.potcar_symbols(first)
    record = {
        "input_set": input_set.as_dict(),
        "kpoint_grid": list(input_set.kpoint_grid(first)),
        "potcar_symbols": symbols_potcar,
        "potcar_functional": input_set._settings["POTCAR_FUNCTIONAL"],
        "n_images": n_images,
        "poscar_order": None if order == sorted(order) else order,
        "structure": {
            "formula": first.get_chemical_formula(mode="hill"),
            "natoms": len(first),
            "info": _jsonable(dict(first.info)),
        },
    }
    return PreparedInputs(
        files=MappingProxyType(files),
        input_sha256=_hash_files(files),
        potcar_symbols=tuple(symbols_potcar),
        functional=str(input_set._settings["POTCAR_FUNCTIONAL"]),
        record=MappingProxyType(record),
    )


def write_neb_inputs(
    images: Sequence[Atoms],
    directory: str | Path,
    input_set: VaspInputSet,
    *,
    force: bool = False,
) -> PreparedInputs:
    """Write an NEB folder (``00`` .. ``NN+1``) atomically; idempotent; never clobbers outputs.

    Parameters
    ----------
    images
        Initial endpoint, intermediate images, final endpoint (all with the same atoms).
    directory
        Target folder.
    input_set
        An NEB input set (``get_input_set("neb", host=...)``).
    force
        Move a folder with outputs (also image OUTCARs) aside and rewrite.

    Returns
    -------
    PreparedInputs
        What was (or already had been) written.
    """
    prepared = prepare_neb_inputs(images, input_set)
    prepared.write(directory, force=force)
    return prepared

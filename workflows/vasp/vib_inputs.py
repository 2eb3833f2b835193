"""Vibrational analysis as workflow steps: VASP displacement folders and NEB run folders.

Two routes give the same :class:`~pqdflow.analysis.vibrations.VibrationalDoc` /
:class:`~pqdflow.analysis.rates.HopVibDoc`:

* **Local** (:func:`neb_folder_vibrations`): read an NEB folder written by the engine
  (``result.json`` = ``NebDoc``, ``band.extxyz``) and compute the three partial Hessians
  with any ASE calculator.
* **VASP** (dry run, then parse): :func:`write_vib_inputs` writes one single-point folder
  per ±δ displacement phonopy asks for (``ref/``, ``disp-001/``, ...), plus
  ``vib_manifest.json``; after VASP has run, :func:`read_vib_outputs` reads each
  ``POSCAR`` and ``vasprun.xml`` back through phonopy's VASP interface (``read_vasp``,
  ``parse_set_of_forces``) and builds the modes. :func:`write_hop_vib_inputs` /
  :func:`read_hop_vib_outputs` do this for the initial, saddle and final states of a hop.

POSCARs group atoms by element (:func:`~pqdflow.workflows.vasp.inputsets.poscar_order`), so VASP
forces come back in POSCAR order; the manifest records the order and forces are mapped back
to the structure's own atom order before the Hessian is built.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms
from ase.calculators.calculator import BaseCalculator
from ase.geometry import find_mic
from ase.io import read
from phonopy.interface.vasp import parse_set_of_forces, read_vasp

from pqdflow.analysis.rates import HopVibDoc, hop_geometry, hop_vibrations, neb_vibrations
from pqdflow.analysis.vibrations import (
    DEFAULT_DISPLACEMENT_A,
    DEFAULT_SHELL_CUTOFF_A,
    NOISE_TOLERANCE_THZ,
    VibrationalDoc,
    default_neb_subset,
    displacement_dataset,
    modes_from_forces,
)
from pqdflow.documents.results import NebDoc
from pqdflow.errors import InputError, OverwriteError, ParseError, VibrationalError
from pqdflow.fileio import OUTPUT_FILES, atomic_directory, move_outputs_aside
from pqdflow.provenance import provenance
from pqdflow.workflows.vasp.inputsets import (
    VaspInputSet,
    get_input_set,
    poscar_order,
    prepare_vasp_inputs,
)

__all__ = [
    "HOP_MANIFEST",
    "STATIC_OVERRIDES",
    "VIB_MANIFEST",
    "load_converged_band",
    "load_neb_folder",
    "neb_folder_vibrations",
    "read_hop_vib_outputs",
    "read_vib_outputs",
    "static_input_set",
    "write_hop_vib_inputs",
    "write_vib_inputs",
]

VIB_MANIFEST = "vib_manifest.json"
HOP_MANIFEST = "hop_manifest.json"
#: Single points: no ionic steps, and a tighter SCF than relaxations because finite
#: differences of forces amplify SCF noise by 1/(2δ).
STATIC_OVERRIDES: Mapping[str, Any] = {"IBRION": -1, "NSW": 0, "EDIFF": 1e-6}
_KINDS = ("bulk", "slab", "adsorbed", "molecule")


def static_input_set(kind: str = "bulk") -> VaspInputSet:
    """Single-point input set for displacement folders of a ``kind`` structure.

    Raises
    ------
    InputError
        ``kind`` not one of bulk, slab, adsorbed, molecule.
    """
    if kind not in _KINDS:
        raise InputError(f"kind {kind!r} is not allowed for displacement folders; use {_KINDS}")
    return get_input_set(kind, relax_cell=False, incar_overrides=dict(STATIC_OVERRIDES))


def _prepare_vib(
    atoms: Atoms,
    indices: Sequence[int],
    input_set: VaspInputSet | None,
    displacement_A: float,
    label: str,
) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Manifest and files (relative path -> bytes) of one displacement set, in memory."""
    dataset = displacement_dataset(atoms, indices, displacement_A)  # validates the subset
    if input_set is None:
        kind = str(atoms.info.get("kind", "bulk"))
        input_set = static_input_set(kind if kind in _KINDS else "bulk")
    if input_set.is_neb:
        raise InputError(f"preset {input_set.preset!r} is an NEB preset; give a static input set")
    reference = atoms.copy()
    del reference.constraints
    structures = [reference]
    for i, vec in dataset:
        moved = reference.copy()
        moved.positions[i] += vec
        structures.append(moved)
    folders = ["ref"] + [f"disp-{k:03d}" for k in range(1, len(dataset) + 1)]
    files: dict[str, bytes] = {}
    for folder, s in zip(folders, structures, strict=True):
        for name, data in prepare_vasp_inputs(s, input_set).files.items():
            files[f"{folder}/{name}"] = data
    manifest = {
        "doc_type": "VibManifest",
        "label": label,
        "indices": [int(i) for i in indices],
        "displacement_A": float(displacement_A),
        "displacements": [[int(i), *vec] for i, vec in dataset],
        "folders": folders,
        "poscar_order": poscar_order(atoms),
        "symbols": atoms.get_chemical_symbols(),
        "masses": atoms.get_masses().tolist(),
        "positions": atoms.positions.tolist(),
        "cell": atoms.cell.array.tolist(),
        "pbc": atoms.pbc.tolist(),
        "input_set": input_set.as_dict(),
        "provenance": provenance(),
    }
    files[VIB_MANIFEST] = (json.dumps(manifest, indent=2, default=str) + "\n").encode()
    return manifest, files


def _write_tree(directory: str | Path, files: Mapping[str, bytes], *, force: bool) -> None:
    """Write ``files`` as a new folder tree atomically, never clobbering outputs.

    ``fileio.find_outputs`` only looks into numbered NEB image folders, so the displacement
    folders (any depth) are checked here; with ``force`` the old tree is moved aside whole.
    """
    directory = Path(directory)
    if directory.is_dir():
        found = [p for name in OUTPUT_FILES for p in directory.rglob(name)]
        if found and not force:
            shown = ", ".join(str(p.relative_to(directory)) for p in sorted(found)[:3])
            raise OverwriteError(
                f"{directory} already holds calculation outputs ({shown}, ...); refusing to "
                "overwrite. Use force=True (--force) to move the folder aside and rewrite."
            )
        if found:
            move_outputs_aside(directory)
    with atomic_directory(directory, force=force) as tmp:
        for rel, data in files.items():
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def write_vib_inputs(
    atoms: Atoms,
    indices: Sequence[int],
    directory: str | Path,
    *,
    input_set: VaspInputSet | None = None,
    displacement_A: float = DEFAULT_DISPLACEMENT_A,
    label: str = "",
    force: bool = False,
) -> dict[str, Any]:
    """Write VASP single-point folders for the partial Hessian of ``atoms`` (dry run).

    Parameters
    ----------
    atoms
        The (relaxed) structure; never modified.
    indices
        Vibrating atoms.
    directory
        Created atomically: ``ref/`` (undisplaced), ``disp-001/`` ... (6 per atom), each
        with INCAR, KPOINTS, POSCAR, POTCAR.spec, and ``vib_manifest.json``.
    input_set
        Default :func:`static_input_set` for ``atoms.info["kind"]``.
    displacement_A
        Finite-displacement amplitude (Å).
    force
        Move a folder holding outputs aside instead of refusing.

    Returns
    -------
    dict
        The manifest.

    Raises
    ------
    VibrationalError, InputError, InputSetError
        Bad subset or inputs, before anything is written.
    OverwriteError
        ``directory`` holds outputs and ``force`` is False.
    """
    manifest, files = _prepare_vib(atoms, indices, input_set, displacement_A, label)
    _write_tree(directory, files, force=force)
    return manifest


def _load_json(path: Path, doc_type: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ParseError(path, f"cannot read {doc_type}: {exc}") from exc
    if not isinstance(data, dict) or data.get("doc_type") != doc_type:
        raise ParseError(path, f"not a {doc_type} file")
    return data


def read_vib_outputs(
    directory: str | Path, *, tolerance_THz: float = NOISE_TOLERANCE_THZ
) -> VibrationalDoc:
    """Parse the folders of :func:`write_vib_inputs` after VASP ran, through phonopy.

    Every ``POSCAR`` is read with phonopy's ``read_vasp`` and checked against the
    displacement the manifest promises (so folders cannot be mixed up); forces and energies
    come from each ``vasprun.xml`` via phonopy's ``parse_set_of_forces``.

    Raises
    ------
    ParseError
        Missing manifest or vasprun.xml, a POSCAR that is not the expected structure, or
        force arrays of the wrong size.
    """
    directory = Path(directory)
    man = _load_json(directory / VIB_MANIFEST, "VibManifest")
    atoms = Atoms(man["symbols"], positions=man["positions"], cell=man["cell"], pbc=man["pbc"])
    atoms.set_masses(man["masses"])
    order = np.asarray(man["poscar_order"], int)
    expected = [atoms.positions.copy()]
    for i, *vec in man["displacements"]:
        moved = atoms.positions.copy()
        moved[i] += vec
        expected.append(moved)
    runs = []
    for folder, pos in zip(man["folders"], expected, strict=True):
        poscar, run = directory / folder / "POSCAR", directory / folder / "vasprun.xml"
        for f in (poscar, run):
            if not f.is_file():
                raise ParseError(f, "missing: run VASP in every displacement folder first")
        cell = read_vasp(poscar)
        d = np.asarray(cell.positions) - pos[order]
        if atoms.pbc.any():
            d, _ = find_mic(d, atoms.cell, atoms.pbc)
        if np.abs(d).max() > 1e-4:
            raise ParseError(poscar, f"not the structure of {folder} in {VIB_MANIFEST}")
        runs.append(run)
    parsed = parse_set_of_forces(len(atoms), runs, verbose=False)
    if not parsed:
        raise ParseError(directory, f"vasprun.xml force arrays do not have {len(atoms)} atoms")
    forces = []
    for f_poscar in parsed["forces"]:
        f = np.empty((len(atoms), 3))
        f[order] = np.asarray(f_poscar, float)
        forces.append(f)
    return modes_from_forces(
        atoms,
        man["indices"],
        forces[1:],
        displacement_A=man["displacement_A"],
        label=man["label"],
        tolerance_THz=tolerance_THz,
        energy_eV=float(parsed["supercell_energies"][0]),
        reference_forces=forces[0],
        extra_provenance={"source": "vasp", "directory": str(directory)},
    )


def load_neb_folder(neb_dir: str | Path) -> tuple[NebDoc, list[Atoms]]:
    """Read the ``NebDoc`` (``result.json``) and final band (``band.extxyz``) of an NEB folder.

    Raises
    ------
    ParseError
        Missing or unreadable files.
    """
    neb_dir = Path(neb_dir)
    doc = NebDoc.read(neb_dir / "result.json")
    band = neb_dir / doc.band_path
    try:
        images = read(band, index=":", format="extxyz")
    except (OSError, ValueError) as exc:
        raise ParseError(band, f"cannot read the band: {exc}") from exc
    if not isinstance(images, list) or len(images) < 3:
        raise ParseError(band, "a band needs at least 3 images")
    return doc, images


def load_converged_band(neb_dir: str | Path) -> tuple[NebDoc, list[Atoms]]:
    """Like :func:`load_neb_folder`, but raise VibrationalError for a non-converged band."""
    doc, images = load_neb_folder(neb_dir)
    if not doc.converged:
        raise VibrationalError(
            f"NEB {doc.path!r} in {neb_dir} is not converged (converged=False, fmax "
            f"{doc.fmax:.3f}, climbing-image fmax {doc.fmax_climbing:.3f} eV/Å): its highest "
            "image is not a saddle point; converge the band before the vibrational analysis"
        )
    return doc, images


def neb_folder_vibrations(
    neb_dir: str | Path,
    calculator: BaseCalculator,
    *,
    backend: str = "",
    hop_index: int | None = None,
    **options: Any,
) -> HopVibDoc:
    """Saddle check and hTST rate for the NEB folder written by the engine.

    ``hop_index`` defaults to ``meta["hopping_index"]`` of the NebDoc, else to the atom
    that moves furthest; the climbing image is the NebDoc's. ``options`` go to
    :func:`~pqdflow.analysis.rates.neb_vibrations`.

    Raises
    ------
    VibrationalError
        The band is not converged, or the analysis is impossible.
    ParseError
        The folder is not an NEB folder.
    """
    doc, images = load_converged_band(neb_dir)
    if hop_index is None and doc.meta.get("hopping_index") is not None:
        hop_index = int(doc.meta["hopping_index"])
    options.setdefault("label", doc.label or doc.path)
    out = neb_vibrations(
        images,
        calculator,
        hop_index=hop_index,
        climbing_index=doc.climbing_index,
        backend=backend or doc.backend,
        source=str(Path(neb_dir).resolve()),
        **options,
    )
    if backend and doc.backend and backend != doc.backend:
        out.notes.append(
            f"band converged with {doc.backend!r} but Hessians computed with {backend!r}: "
            "the band's climbing image need not be a saddle of the second potential"
        )
    return out


def write_hop_vib_inputs(
    images: Sequence[Atoms],
    directory: str | Path,
    *,
    hop_index: int | None = None,
    climbing_index: int | None = None,
    indices: Sequence[int] | None = None,
    cutoff_A: float = DEFAULT_SHELL_CUTOFF_A,
    input_set: VaspInputSet | None = None,
    displacement_A: float = DEFAULT_DISPLACEMENT_A,
    label: str = "",
    force: bool = False,
) -> dict[str, Any]:
    """Write ``initial/``, ``saddle/`` and ``final/`` displacement sets of one hop (dry run).

    The hop (migrating atom, saddle image, tangent, hop length) is located as in
    :func:`~pqdflow.analysis.rates.hop_geometry` and stored in ``hop_manifest.json``.

    Raises
    ------
    VibrationalError
        Bad band or subset, before anything is written.
    """
    geo = hop_geometry(images, hop_index=hop_index, climbing_index=climbing_index)
    states = {"initial": images[0], "saddle": images[geo.climbing_index], "final": images[-1]}
    if indices is None:
        indices = default_neb_subset(list(states.values()), geo.hop_index, cutoff_A=cutoff_A)
    if not indices:
        raise VibrationalError("empty atom subset: nothing would vibrate; include the hop atom")
    if geo.hop_index not in indices:
        raise VibrationalError(f"the subset {list(indices)} must contain atom {geo.hop_index}")
    files: dict[str, bytes] = {}
    for name, atoms in states.items():
        _, sub = _prepare_vib(atoms, indices, input_set, displacement_A, name)
        files.update({f"{name}/{rel}": data for rel, data in sub.items()})
    manifest = {
        "doc_type": "HopManifest",
        "label": label,
        "hop_index": geo.hop_index,
        "climbing_index": geo.climbing_index,
        "hop_length_A": geo.hop_length_A,
        "tangent": np.asarray(geo.tangent).tolist(),
        "indices": [int(i) for i in indices],
        "provenance": provenance(),
    }
    files[HOP_MANIFEST] = (json.dumps(manifest, indent=2) + "\n").encode()
    _write_tree(directory, files, force=force)
    return manifest


def read_hop_vib_outputs(directory: str | Path, **options: Any) -> HopVibDoc:
    """Parse a :func:`write_hop_vib_inputs` folder after VASP ran into a ``HopVibDoc``.

    ``options`` go to :func:`~pqdflow.analysis.rates.hop_vibrations`
    (``temperature_K``, ``barrier_eV``, ...); the barrier defaults to the VASP energy
    difference saddle - initial of the two ``ref`` single points.
    """
    directory = Path(directory)
    man = _load_json(directory / HOP_MANIFEST, "HopManifest")
    initial, saddle, final = (
        read_vib_outputs(directory / name) for name in ("initial", "saddle", "final")
    )
    options.setdefault("label", man["label"])
    options.setdefault("backend", "vasp")
    return hop_vibrations(
        initial,
        saddle,
        final,
        np.asarray(man["tangent"], float),
        hop_index=man["hop_index"],
        hop_length_A=man["hop_length_A"],
        source=str(directory.resolve()),
        **options,
    )

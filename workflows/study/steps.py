"""Run one scheduled step with a backend: the code the local engine and FireWorks share.

:func:`execute_step` takes a :class:`~pqdflow.workflows.study.scheduler.Step`, any backend
of the registry and the documents of the step's parents, and returns the step's document:

* ``relax``: :func:`relax_calculation` (a structure built on a relaxed host, an NEB initial
  endpoint, a vacancy fill or an adsorbed cell, first put on it by :func:`start_on_host`; an
  NEB final endpoint moved onto its relaxed initial endpoint by :func:`final_endpoint_start`);
* ``neb``: :func:`run_neb` (endpoints that relaxed into different tilt basins are rebased,
  and a band whose endpoints still differ is run and flagged);
* ``binding``: :func:`~pqdflow.analysis.binding.compute_binding`;
* ``neb_analysis``: :func:`~pqdflow.analysis.barriers.summarize_neb`;
* ``single_point``: :func:`~pqdflow.workflows.engine.single_point.single_point_calculation`
  (the DFT check of an ML result).

A calculation folder whose ``result.json`` exists is finished: its document is read, not
recomputed (:func:`~pqdflow.documents.results.read_finished`).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from ase import Atoms
from ase.geometry import find_mic

from pqdflow.analysis.barriers import BarrierDoc, summarize_neb
from pqdflow.analysis.binding import compute_binding
from pqdflow.documents.manifest import MANIFEST_FILE, Manifest, ManifestEntry, read_manifest
from pqdflow.documents.plan import BindingSpec, CalcSpec, NebSpec, StudyPlan, jsonable
from pqdflow.documents.results import (
    RESULT_FILE,
    BindingDoc,
    NebDoc,
    RelaxDoc,
    StudyResults,
    read_finished,
    unconverged_names,
)
from pqdflow.errors import (
    CalculationFailed,
    EndpointError,
    EndpointWarning,
    InputError,
    SameStateError,
    StudyError,
    VacancyCascadeError,
)
from pqdflow.fileio import atomic_write_text, folder_lock
from pqdflow.provenance import provenance
from pqdflow.structures.defects import (
    LIGAND_REARRANGEMENT_A,
    check_endpoints,
    final_in_initial_basin,
    ligand_displacement,
    vacancy_occupant,
)
from pqdflow.workflows.backends import Backend
from pqdflow.workflows.study.scheduler import Step, reuse_settings, schedule, step_inputs

__all__ = [
    "assemble_results",
    "execute_step",
    "filled_vacancy_final",
    "final_endpoint_start",
    "prepare_run_folder",
    "relax_calculation",
    "run_neb",
    "start_on_host",
    "step_directory",
]

Definition = Literal["exchange", "interaction"]


def step_directory(step: Step, root: str | Path | None) -> Path | None:
    """Folder of a step: ``root/<calcs|neb>/<name>``, or ``./<name>`` without a root.

    Steps without a folder (binding energies, analyses) give None.
    """
    if step.group is None:
        return None
    return Path(root) / step.group / step.name if root else Path.cwd() / step.name


def final_endpoint_start(
    initial_relaxed: Atoms,
    initial_start: Atoms,
    final_start: Atoms,
    hopping_index: int,
    *,
    radius: float = 4.5,
) -> Atoms:
    """Return a NEB final-endpoint start that matches the relaxed initial endpoint.

    Relaxing the two endpoints independently from a near-cubic host lets each fall into its
    own octahedral-tilt pattern (CsPbX3's tilt modes are soft; the ideal cube is a saddle),
    so the band would also have to rotate octahedra. Instead the final state starts from the
    *relaxed* initial state with only the hopping atom moved: onto the vacancy site of the
    plan, shifted by the mean relaxation displacement of the atoms within ``radius`` Å of
    that site (:func:`~pqdflow.structures.defects.final_in_initial_basin`).

    Parameters
    ----------
    initial_relaxed
        The relaxed initial endpoint.
    initial_start, final_start
        The planned (unrelaxed) endpoints; same atoms, only ``hopping_index`` differs.
    hopping_index
        Index of the hopping atom.
    radius
        Neighbourhood of the vacancy site whose mean displacement is applied (Å).

    Returns
    -------
    ase.Atoms
        Copy of ``initial_relaxed`` (constraints kept) with the hopping atom moved;
        ``info`` from ``final_start``.

    Raises
    ------
    EndpointError
        Endpoints with different atoms, or a hopping index out of range.
    """
    n = len(initial_start)
    same = list(initial_start.numbers) == list(final_start.numbers)
    if not (len(final_start) == n == len(initial_relaxed)) or not same:
        raise EndpointError("NEB endpoints must have the same atoms in the same order")
    if not 0 <= hopping_index < n:
        raise EndpointError(f"hopping_index {hopping_index} is outside 0..{n - 1}")
    out = final_in_initial_basin(initial_relaxed, final_start, hopping_index, shell=radius)
    out.info = dict(final_start.info)
    return out


#: Å: appended atoms closer than this are one group (a ligand), moved rigidly onto the host.
GROUP_BOND_A = 2.0


def start_on_host(
    host: RelaxDoc, planned: Atoms, removed: list[int], *, slab: bool, shell: float = 4.5
) -> Atoms:
    """Return the start of a structure built on a host: the relaxed host, less some atoms.

    ``planned`` is the planned host less the ``removed`` atoms (a vacancy; the surface atoms
    a ligand exchanged), in the host's order, with any further atoms appended (a vacancy
    filler, adsorbed ligands). The host's atoms take their relaxed positions; each appended
    group (atoms within :data:`GROUP_BOND_A` of each other: one ligand) keeps its planned
    geometry, shifted rigidly by the mean relaxation displacement of the host atoms within
    ``shell`` Å of it. A bulk cell takes the relaxed host's cell; a slab keeps its planned
    cell height (the vacuum above ligands) with the host's in-plane vectors.

    Parameters
    ----------
    host
        The relaxed host (pristine NEB host, clean slab).
    planned
        The planned structure; its constraints and ``info`` are kept.
    removed
        Host indices left out of ``planned``.
    slab
        A slab (keep the planned cell height) rather than a bulk cell.
    shell
        Radius (Å) around an appended group whose mean displacement moves it.

    Raises
    ------
    EndpointError
        A host whose atoms, less ``removed``, are not the first atoms of ``planned``.
    """
    relaxed = host.read_structure()
    bad = [i for i in removed if not 0 <= i < len(relaxed)]
    if bad:
        raise EndpointError(
            f"start_from_host: atoms {bad} are outside host {host.name!r} ({len(relaxed)} atoms)"
        )
    del relaxed[sorted(set(removed))]
    m = len(relaxed)
    if len(planned) < m or relaxed.get_chemical_symbols() != planned.get_chemical_symbols()[:m]:
        raise EndpointError(
            f"start_from_host: host {host.name!r} less atoms {sorted(removed)} is not the start "
            "of the planned structure's atoms; plan the study again"
        )
    positions = np.array(planned.positions, dtype=float)
    if len(planned) > m:
        moved, _ = find_mic(relaxed.positions - positions[:m], relaxed.cell, relaxed.pbc)
        for group in _bonded_groups(positions[m:]):
            centre = positions[m + group].mean(axis=0)
            near, _ = find_mic(positions[:m] - centre, relaxed.cell, relaxed.pbc)
            close = np.linalg.norm(near, axis=1) <= shell
            if close.any():
                positions[m + group] += moved[close].mean(axis=0)
    positions[:m] = relaxed.positions
    out = planned.copy()
    cell = np.array(relaxed.cell[:])
    if slab:
        cell[2] = planned.cell[2]  # the planned vacuum (taller above ligands)
    out.set_cell(cell)
    out.set_positions(positions, apply_constraint=False)
    return out


def _bonded_groups(positions: np.ndarray) -> list[np.ndarray]:
    """Index arrays of the connected groups of ``positions`` (links under GROUP_BOND_A)."""
    from scipy.sparse.csgraph import connected_components

    d = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=2)
    _, labels = connected_components(d < GROUP_BOND_A, directed=False)
    return [np.flatnonzero(labels == k) for k in dict.fromkeys(labels.tolist())]


def relax_calculation(
    spec: CalcSpec,
    backend: Backend,
    directory: str | Path,
    *,
    inputs: Mapping[str, Any] | None = None,
) -> RelaxDoc:
    """Relax one planned structure in ``directory`` (or read its finished result).

    Parameters
    ----------
    spec
        The calculation (its ``atoms`` is where the relaxation starts).
    backend
        Any registered backend.
    directory
        Calculation folder.
    inputs
        The record of what determines the result
        (:func:`~pqdflow.workflows.study.scheduler.step_inputs`), stored as
        ``meta["inputs"]``; a finished result is reused only when it matches.

    Raises
    ------
    OverwriteError
        The folder holds a result of another backend or of other inputs.
    """
    directory = Path(directory)
    done = read_finished(directory, RelaxDoc, backend.name, inputs=inputs)
    if done is not None:
        return done
    if inputs is not None:
        spec = dataclasses.replace(spec, meta={**spec.meta, "inputs": dict(inputs)})
    return backend.relax(spec, directory)


def run_neb(
    spec: NebSpec,
    initial_doc: RelaxDoc,
    final_doc: RelaxDoc,
    backend: Backend,
    directory: str | Path,
    *,
    inputs: Mapping[str, Any] | None = None,
) -> NebDoc:
    """Converge one NEB path between relaxed endpoints (or read its finished result).

    Endpoints that relaxed into different tilt basins are rebased: the final endpoint is
    rebuilt in the initial's basin and relaxed as tightly as the others (in
    ``directory/final-rebased``). If they still differ by more than the hop, the band is
    run and flagged (``meta["endpoint_check"]``, :class:`~pqdflow.errors.EndpointWarning`).
    Endpoints whose ligand layers differ (ligand atoms more than
    :data:`~pqdflow.structures.defects.LIGAND_REARRANGEMENT_A` apart) get the higher one
    rebuilt in the lower one's ligand conformation (:func:`_rebase_ligands`,
    ``meta["ligands_rebased"]``); if they still differ, the band is run and flagged
    (``meta["ligand_rearranged_A"]``). Where a second framework atom took the hopping atom's
    site in the relaxed final endpoint (:class:`~pqdflow.errors.VacancyCascadeError`: the
    planned final state is no minimum), neither rebuild is tried (both would start from that
    state); the band is run between the two minima and flagged
    (``meta["endpoint_check"]["cascade"]``).

    ``inputs`` is the record of what determines the band (see :func:`relax_calculation`).

    Raises
    ------
    InputError
        Endpoint documents that do not belong to ``spec``.
    OverwriteError
        The folder holds a band of another backend or of other inputs.
    """
    if (initial_doc.name, final_doc.name) != (spec.initial, spec.final):
        raise InputError(
            f"NEB {spec.name!r} needs endpoints {spec.initial!r} -> {spec.final!r}, "
            f"got {initial_doc.name!r} -> {final_doc.name!r}"
        )
    directory = Path(directory)
    done = read_finished(directory, NebDoc, backend.name, inputs=inputs)
    if done is not None:
        rebased = done.meta.get("final_rebased") is not None
        flagged = done.meta.get("unconverged_inputs")
        if flagged is None:  # a band of an older pqdflow: judge the endpoints it used
            used: list[Any] = [initial_doc, final_doc]
            if rebased:
                used[1] = read_finished(directory / "final-rebased", RelaxDoc, backend.name)
            known = {d.name: d for d in used if d is not None}
            flagged = unconverged_names(list(known), known)
        return dataclasses.replace(done, unconverged_inputs=list(flagged))
    initial = initial_doc.read_structure()
    final = final_doc.read_structure()
    meta: dict[str, Any] = {"hopping_index": spec.hopping_index, **spec.meta}
    if "lattice" in initial_doc.meta:  # the lattice the endpoints actually ran on
        meta["lattice"] = initial_doc.meta["lattice"]
    if inputs is not None:
        meta["inputs"] = dict(inputs)
    filled = final_doc.meta.get("vacancy_filled")
    if filled:
        # the relaxed initial endpoint filled the vacancy itself: no final state, no band
        meta["vacancy_filled"] = dict(filled)
        meta["endpoint_check"] = {
            "passed": False,
            "same_state": True,
            "reason": (
                f"the vacancy is filled in the relaxed initial endpoint by {filled['element']} "
                f"(atom {filled['index']}"
                + (f", {filled['ligand']}" if filled.get("ligand") else "")
                + f") {filled['distance_A']} Å from the site: the hop has no final state"
            ),
        }
        endpoints = {initial_doc.name: initial_doc}
        meta["unconverged_inputs"] = unconverged_names(list(endpoints), endpoints)
        warnings.warn(
            f"NEB {spec.name!r}: {meta['endpoint_check']['reason']} (blocked); no band is "
            "run (meta['vacancy_filled'])",
            EndpointWarning,
            stacklevel=2,
        )
        doc = _one_state_document(spec, initial_doc, final_doc, directory, backend.name, meta)
        return dataclasses.replace(doc, unconverged_inputs=list(meta["unconverged_inputs"]))
    cascade: VacancyCascadeError | None = None
    try:
        check_endpoints(initial, final, hopping_index=spec.hopping_index)
    except VacancyCascadeError as exc:
        # A second atom took the hopping atom's site while the final endpoint relaxed: the
        # planned final state is no minimum. A rebuild in the initial's basin starts from that
        # same state (and one in the other's ligand conformation would put two atoms on one
        # site): run the band between the two minima and flag it.
        cascade = exc
        meta["endpoint_check"] = {
            "passed": False,
            "reason": str(exc),
            "same_state": False,
            "cascade": exc.as_dict(),
        }
        warnings.warn(
            f"NEB {spec.name!r}: {exc}; the band is run between the two minima and flagged "
            "(meta['endpoint_check']['cascade']): its barrier is that of two hops",
            EndpointWarning,
            stacklevel=2,
        )
    except EndpointError as exc:
        # The endpoints relaxed into different tilt basins: a band between them would mix a
        # collective distortion into the hop. Rebuild the final endpoint in the initial's
        # basin and relax it as tightly as the other endpoints.
        start = final_in_initial_basin(initial, final, spec.hopping_index)
        rebase = CalcSpec(
            name=f"{spec.final}-rebased",
            kind=final_doc.kind,  # type: ignore[arg-type]
            atoms=start,
            formula_units=final_doc.formula_units,
            role="neb_final",
            meta={**spec.meta, "rebased_from": spec.final},
        )
        final_doc = relax_calculation(
            rebase,
            backend,
            directory / "final-rebased",
            inputs=None if inputs is None else {**inputs, "step": "rebase"},
        )
        final = final_doc.read_structure()
        meta["final_rebased"] = {"reason": str(exc), "energy": final_doc.energy}
        try:
            check_endpoints(initial, final, hopping_index=spec.hopping_index)
        except EndpointError as again:
            # The rebuilt final endpoint relaxed away too: a real rearrangement on this
            # potential (same atom order by construction), not a bookkeeping error. Run the
            # band, but flag it so the barrier is not read as a clean hop.
            meta["endpoint_check"] = {
                "passed": False,
                "reason": str(again),
                # the hopping atom went back: the final state is no minimum, the hop blocked
                "same_state": isinstance(again, SameStateError),
            }
            if isinstance(again, VacancyCascadeError):  # the rebuilt one relaxed on
                cascade = again
                meta["endpoint_check"]["cascade"] = again.as_dict()
            if isinstance(again, SameStateError):
                endpoints = {initial_doc.name: initial_doc, final_doc.name: final_doc}
                meta["unconverged_inputs"] = unconverged_names(list(endpoints), endpoints)
                warnings.warn(
                    f"NEB {spec.name!r}: the final endpoint relaxed back into the initial "
                    "state (the same state), even when rebuilt in the initial's basin: the hop "
                    "has no final state (blocked); no band is run (meta['endpoint_check'])",
                    EndpointWarning,
                    stacklevel=2,
                )
                doc = _one_state_document(
                    spec, initial_doc, final_doc, directory, backend.name, meta
                )
                return dataclasses.replace(doc, unconverged_inputs=list(meta["unconverged_inputs"]))
            warnings.warn(
                f"NEB {spec.name!r}: {again}, even after rebuilding the final endpoint in "
                "the initial's basin; the band is run and flagged "
                "(meta['endpoint_check']), and its barrier includes that rearrangement",
                EndpointWarning,
                stacklevel=2,
            )
    moved = ligand_displacement(initial, final)
    if moved > LIGAND_REARRANGEMENT_A and cascade is None:
        initial_doc, final_doc, record = _rebase_ligands(
            spec, initial_doc, final_doc, moved, backend, directory, inputs
        )
        meta["ligands_rebased"] = record
        initial, final = initial_doc.read_structure(), final_doc.read_structure()
        moved = ligand_displacement(initial, final)
    if moved > LIGAND_REARRANGEMENT_A:
        # the ligand layer rearranged between the endpoints, even after rebuilding one of
        # them in the other's ligand conformation: the band includes that
        meta["ligand_rearranged_A"] = round(moved, 3)
        tried = "" if cascade else ", even with one rebuilt in the other's ligand conformation"
        warnings.warn(
            f"NEB {spec.name!r}: ligand atoms move up to {moved:.1f} Å between the relaxed "
            f"endpoints{tried}; the barrier includes that rearrangement "
            "(meta['ligand_rearranged_A'])",
            EndpointWarning,
            stacklevel=2,
        )
    endpoints = {initial_doc.name: initial_doc, final_doc.name: final_doc}
    meta["unconverged_inputs"] = unconverged_names(list(endpoints), endpoints)
    doc = backend.neb(spec, initial_doc, final_doc, directory, meta=meta)
    return dataclasses.replace(doc, unconverged_inputs=list(meta["unconverged_inputs"]))


def _rebase_ligands(
    spec: NebSpec,
    initial_doc: RelaxDoc,
    final_doc: RelaxDoc,
    moved: float,
    backend: Backend,
    directory: Path,
    inputs: Mapping[str, Any] | None,
) -> tuple[RelaxDoc, RelaxDoc, dict[str, Any]]:
    """Rebuild the higher endpoint in the lower one's ligand conformation and relax it.

    The final endpoint starts from the relaxed initial one, yet on a ligand-covered surface
    its relaxation can carry the ligand layer into another conformation (measured on the
    control surface of ``make study``, CHGNet: OAm/OAc atoms 7-8 Å away, the final 0.53 eV
    lower, and both bands ran to their force-call budget). A band between two ligand
    conformations mixes that rearrangement into the hop. The higher endpoint is rebuilt from
    the lower one's relaxed geometry with only the hopping atom moved
    (:func:`~pqdflow.structures.defects.final_in_initial_basin`) and relaxed as tightly as
    the endpoints, in ``directory/<initial|final>-ligands``. The rebuilt pair is used when
    its ligand atoms then stay within
    :data:`~pqdflow.structures.defects.LIGAND_REARRANGEMENT_A` (``record["used"]``);
    otherwise the original pair is kept and the band is flagged.

    Returns
    -------
    tuple
        The initial and final documents to run the band between, and the record
        (``meta["ligands_rebased"]``): which endpoint was rebuilt, the energies and the
        ligand displacement before and after.
    """
    side = "initial" if initial_doc.energy > final_doc.energy else "final"
    higher, lower = (initial_doc, final_doc) if side == "initial" else (final_doc, initial_doc)
    planned = higher.read_structure()
    start = final_in_initial_basin(lower.read_structure(), planned, spec.hopping_index)
    start.info = dict(planned.info)
    rebuilt_spec = CalcSpec(
        name=f"{higher.name}-ligands",
        kind=higher.kind,  # type: ignore[arg-type]
        atoms=start,
        formula_units=higher.formula_units,
        role=f"neb_{side}",
        meta={**spec.meta, "ligands_rebased_from": higher.name},
    )
    rebuilt = relax_calculation(
        rebuilt_spec,
        backend,
        directory / f"{side}-ligands",
        inputs=None if inputs is None else {**inputs, "step": f"ligands-{side}"},
    )
    pair = (rebuilt, final_doc) if side == "initial" else (initial_doc, rebuilt)
    after = ligand_displacement(pair[0].read_structure(), pair[1].read_structure())
    try:
        check_endpoints(
            pair[0].read_structure(), pair[1].read_structure(), hopping_index=spec.hopping_index
        )
        reason = ""
    except EndpointError as exc:
        reason = str(exc)
    used = after <= LIGAND_REARRANGEMENT_A and not reason
    record: dict[str, Any] = {
        "endpoint": side,
        "from": lower.name,
        "ligand_moved_before_A": round(moved, 3),
        "ligand_moved_after_A": round(after, 3),
        "energy_before": higher.energy,
        "energy_after": rebuilt.energy,
        "used": used,
    }
    if reason:
        record["endpoint_check"] = reason
    if not used:
        return initial_doc, final_doc, record
    return pair[0], pair[1], record


def _on_relaxed_lattice(spec: CalcSpec, step: Step, bulk: RelaxDoc) -> tuple[CalcSpec, Step]:
    """Put a planned structure (and its NEB start) on the relaxed bulk's lattice constant."""
    from pqdflow.structures.strain import rescale_to_lattice

    lattice = dict(spec.meta["lattice"])
    a = float(abs(np.linalg.det(np.asarray(bulk.cell))) / bulk.formula_units) ** (1.0 / 3.0)
    factor = a / float(lattice["a_planned"])
    lattice.update(a=round(a, 6), scale=round(factor, 6), source=f"{bulk.name} ({bulk.backend})")
    spec = dataclasses.replace(
        spec, atoms=rescale_to_lattice(spec.atoms, factor), meta={**spec.meta, "lattice": lattice}
    )
    if step.start_from is not None:
        start = dataclasses.replace(
            step.start_from, initial_start=rescale_to_lattice(step.start_from.initial_start, factor)
        )
        step = dataclasses.replace(step, start_from=start)
    return spec, dataclasses.replace(step, spec=spec)


def _one_state_document(
    spec: NebSpec,
    initial_doc: RelaxDoc,
    final_doc: RelaxDoc,
    directory: Path,
    backend: str,
    meta: Mapping[str, Any],
) -> NebDoc:
    """Write the NEB document of a hop whose endpoints are one state: no band, not converged.

    The "band" is the two relaxed endpoints (no force call; ``band.extxyz`` holds them);
    barriers are the energy differences of the endpoints. The migration summary reads
    ``meta["endpoint_check"]["same_state"]`` and leaves the hop out as blocked.
    """
    from ase.calculators.singlepoint import SinglePointCalculator
    from ase.geometry import find_mic

    from pqdflow.workflows.engine.relax import write_frame

    directory.mkdir(parents=True, exist_ok=True)
    images = []
    for endpoint in (initial_doc, final_doc):
        image = endpoint.read_structure()
        image.calc = SinglePointCalculator(image, energy=endpoint.energy)
        images.append(image)
    tmp = directory / ".band.extxyz.tmp"
    with tmp.open("w") as handle:
        for image in images:
            write_frame(handle, image)
    tmp.replace(directory / "band.extxyz")
    shift, _ = find_mic(images[1].positions - images[0].positions, images[0].cell, images[0].pbc)
    d_e = final_doc.energy - initial_doc.energy
    forward, reverse = max(d_e, 0.0), max(-d_e, 0.0)
    reason = "the endpoints are one state: the hop has no final state (blocked); no band run"
    coords = [0.0, float(np.linalg.norm(shift))]
    barrier = BarrierDoc(
        energies=[0.0, d_e],
        reaction_coordinate=coords,
        reference="initial_state",
        forward=forward,
        reverse=reverse,
        forward_spline=forward,
        reverse_spline=reverse,
        highest_index=int(d_e > 0),
        spline_method="none",
        notes=[reason],
    )
    doc = NebDoc(
        path=spec.name,
        label=spec.label,
        backend=backend,
        image_energies=[initial_doc.energy, final_doc.energy],
        reaction_coordinate=coords,
        tangential_forces=[0.0, 0.0],
        barrier=barrier.as_dict(),
        Ea_eV=forward,
        Ea_reverse_eV=reverse,
        Ea_spline_eV=forward,
        Ea_reverse_spline_eV=reverse,
        n_images=0,
        climbing_index=None,
        fmax=0.0,
        fmax_climbing=0.0,
        converged=False,
        n_force_calls=0,
        n_steps=0,
        initial=initial_doc.name,
        final=final_doc.name,
        directory=str(directory.resolve()),
        start="not run",
        n_oracle_calls=0,
        stopped_early=True,
        stop_reason=reason,
        meta=dict(meta),
        provenance=provenance(backend=backend),
    )
    doc.write(directory / RESULT_FILE)
    return doc


def execute_step(
    step: Step,
    backend: Backend | None,
    docs: Mapping[str, Any],
    root: str | Path | None = None,
    *,
    definition: Definition = "exchange",
    directory: str | Path | None = None,
) -> RelaxDoc | NebDoc | BindingDoc | dict[str, Any]:
    """Run one step and return its document.

    Parameters
    ----------
    step
        The step (from :func:`~pqdflow.workflows.study.scheduler.schedule`).
    backend
        Any registered backend; only ``relax`` and ``neb`` steps use it (None is fine for
        the others).
    docs
        Documents of the step's parents by name (RelaxDoc, NebDoc).
    root
        Run folder (``root/calcs/<name>``, ``root/neb/<name>``); None: the current folder
        (a FireWorks launch folder).
    definition
        Binding-energy definition of ``binding`` steps.
    directory
        Folder of a ``relax`` / ``neb`` step instead of :func:`step_directory` (e.g. the
        pre-relaxation's work folder).

    Raises
    ------
    CalculationFailed
        A parent's document is missing, or the backend failed.
    InputError
        A step that needs a backend got none; an unbalanced reaction.
    """
    missing = [p for p in step.parents if p not in docs]
    if missing:
        raise CalculationFailed(
            f"{step.kind} {step.name!r}: no result from parent calculations {missing}"
        )
    spec = step.spec
    if isinstance(spec, BindingSpec):
        binding = compute_binding(spec, docs, definition=definition)
        flagged = unconverged_names(list(step.parents), docs)  # the relaxations it used
        return dataclasses.replace(binding, unconverged_inputs=flagged)
    if step.kind == "neb_analysis":
        assert isinstance(spec, NebSpec)
        return summarize_neb(docs[spec.name])
    if backend is None:
        raise InputError(f"{step.kind} {step.name!r} needs a backend")
    directory = Path(directory) if directory is not None else step_directory(step, root)
    assert directory is not None
    # one process computes a folder; another one of the same run (a lookahead worker)
    # waits here and then reads the finished result
    with folder_lock(directory):
        return _execute_in(step, spec, backend, docs, directory)


def _execute_in(
    step: Step,
    spec: CalcSpec | NebSpec,
    backend: Backend,
    docs: Mapping[str, Any],
    directory: Path,
) -> RelaxDoc | NebDoc:
    settings = reuse_settings(backend.describe())
    if step.kind in ("relax", "single_point"):
        settings.pop("neb", None)  # the band recipe does not change a relaxation
    parents = {p: getattr(docs[p], "meta", {}).get("inputs") for p in step.parents}
    inputs = step_inputs(step, settings, parents)
    if isinstance(spec, NebSpec):
        initial, final = docs[spec.initial], docs[spec.final]
        return run_neb(spec, initial, final, backend, directory, inputs=inputs)
    if step.kind == "single_point":
        from pqdflow.workflows.engine.single_point import single_point_calculation

        for key in ("fmax", "endpoint_fmax", "max_steps", "optimizer"):
            settings.pop(key, None)  # relaxation settings do not change a single point
        inputs = step_inputs(step, settings, parents)
        return single_point_calculation(spec, backend, directory, inputs=inputs)
    lattice = spec.meta.get("lattice") or {}
    if lattice.get("from") in docs:
        spec, step = _on_relaxed_lattice(spec, step, docs[lattice["from"]])
    host = spec.meta.get("start_from_host") or {}
    if host.get("host") in docs:
        spec = dataclasses.replace(
            spec,
            atoms=start_on_host(
                docs[host["host"]],
                spec.atoms,
                list(host["removed"]),
                slab=spec.kind in ("slab", "adsorbed"),
            ),
        )
    if step.start_from is not None:
        start = step.start_from
        first = final_endpoint_start(
            docs[start.initial].read_structure(),
            start.initial_start,
            spec.atoms,
            start.hopping_index,
        )
        occupant = vacancy_occupant(first, start.hopping_index)
        if occupant is not None:
            return filled_vacancy_final(
                spec, docs[start.initial], first, occupant, backend.name, directory, inputs
            )
        spec = dataclasses.replace(spec, atoms=first)
    return relax_calculation(spec, backend, directory, inputs=inputs)


def filled_vacancy_final(
    spec: CalcSpec,
    initial_doc: RelaxDoc,
    start: Atoms,
    occupant: tuple[int, float],
    backend: str,
    directory: Path,
    inputs: Mapping[str, Any] | None = None,
) -> RelaxDoc:
    """Write the final endpoint of a hop whose vacancy the relaxed initial endpoint filled.

    Relaxing the initial endpoint moved another atom (a ligand's halide, an oleate O) into
    the vacancy site, the passivation of Fig. 1 of the paper; putting the hopping atom there
    too would stack two atoms (seen: two I 0.96 Å apart, +33 eV on CHGNet). No relaxation is
    run: the document is the relaxed initial endpoint (same structure and energy, no force
    call) with ``meta["vacancy_filled"]`` naming the occupant, and the band
    (:func:`run_neb`) reports the hop as blocked. A finished document is reused.
    """
    done = read_finished(directory, RelaxDoc, backend, inputs=inputs)
    if done is not None:
        return done
    from pqdflow.workflows.engine.relax import write_frame

    index, distance = occupant
    atoms = initial_doc.read_structure()
    owner = next(
        (
            str(record.get("name") or record.get("ligand"))
            for record in start.info.get("ligands", []) or []  # extxyz drops this record
            if index in [int(i) for i in record.get("indices", [])]
        ),
        None,
    )
    filled = {
        "index": int(index),
        "element": str(atoms[index].symbol),
        "distance_A": round(distance, 3),
        "ligand": owner,
        "initial": initial_doc.name,
    }
    directory.mkdir(parents=True, exist_ok=True)
    from ase.calculators.singlepoint import SinglePointCalculator

    atoms.calc = SinglePointCalculator(atoms, energy=initial_doc.energy)
    atoms.info.update(start.info)
    tmp = directory / ".final.extxyz.tmp"
    with tmp.open("w") as handle:
        write_frame(handle, atoms)
    tmp.replace(directory / "final.extxyz")
    meta = {**spec.meta, "vacancy_filled": filled}
    if inputs is not None:
        meta["inputs"] = dict(inputs)
    doc = RelaxDoc(
        name=spec.name,
        backend=backend,
        kind=spec.kind,
        role=spec.role,
        energy=initial_doc.energy,
        formula_units=spec.formula_units,
        energy_per_formula_unit=initial_doc.energy / spec.formula_units,
        fmax=initial_doc.fmax,
        converged=initial_doc.converged,
        n_steps=0,
        n_force_calls=0,
        formula=atoms.get_chemical_formula(),
        cell=np.asarray(atoms.cell).tolist(),
        directory=str(directory.resolve()),
        settings={"not_relaxed": "the vacancy site is occupied in the relaxed initial endpoint"},
        meta=meta,
        provenance=provenance(backend=backend),
    )
    doc.write(directory / RESULT_FILE)
    return doc


def assemble_results(
    plan: StudyPlan,
    docs: Mapping[str, Any],
    backend: str,
    *,
    failed: list[dict[str, str]] | None = None,
    wall_time_s: float = 0.0,
    interrupted: bool = False,
    sessions: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> StudyResults:
    """Return the :class:`~pqdflow.documents.results.StudyResults` of a plan's step documents.

    Parameters
    ----------
    plan
        The study plan.
    docs
        Step name -> document (RelaxDoc, NebDoc, BindingDoc, NEB analysis dict) of every step
        that finished.
    backend
        Backend name.
    failed
        ``{"name", "kind", "error"}`` of every step that failed or was skipped.
    wall_time_s
        Wall time of the run (s), every session of it (see
        :class:`~pqdflow.workflows.study.session.RunSession`).
    interrupted
        The run was stopped by a signal; the results are partial.
    sessions
        Session records of the run folder.
    **extra
        Added to the provenance record.
    """
    steps = schedule(plan)
    by_kind: dict[str, list[Any]] = {"relax": [], "neb": [], "binding": [], "neb_analysis": []}
    for step in steps:
        if step.name in docs:
            by_kind[step.kind].append(docs[step.name])

    def plain(doc: Any) -> dict[str, Any]:
        return dict(doc.as_dict()) if hasattr(doc, "as_dict") else dict(doc)

    missing = [s.name for s in steps if s.name not in docs]
    unconverged = unconverged_names([s.name for s in steps if s.kind in ("relax", "neb")], docs)
    for doc in by_kind["neb"]:  # a rebuilt final endpoint is no step of its own
        unconverged += [n for n in getattr(doc, "unconverged_inputs", []) if n not in unconverged]
    from pqdflow.analysis.formation import halide_potential_limits
    from pqdflow.analysis.migration import summarize_migration

    nebs = [plain(d) for d in by_kind["neb"]]
    relaxed = [d for d in by_kind["relax"] if isinstance(d, RelaxDoc)]
    # formation energies mix references, hosts and endpoints: only one Hamiltonian (the
    # bands' dispersion setting; a reference relaxed with another one is left out and named)
    band_dispersion = next((n.meta.get("dispersion", "none") for n in by_kind["neb"]), "none")
    same = [d for d in relaxed if d.meta.get("dispersion", "none") == band_dispersion]
    limits = halide_potential_limits(
        {d.meta.get("twin_of", d.name): d.energy_per_formula_unit for d in same}
    )
    return StudyResults(
        study=plan.name,
        backend=backend,
        binding=[plain(d) for d in by_kind["binding"]],
        neb=nebs,
        migration=summarize_migration(
            nebs,
            plan.meta.get("hop_networks", {}),
            energies={d.name: d.energy for d in same},
            limits=limits,
            other_dispersion=sorted(
                d.name
                for d in relaxed
                if d not in same and d.name not in {t.meta.get("twin_of") for t in same}
            ),
        ),
        lattice=_lattice(by_kind["relax"]),
        calculations=[plain(d) for d in by_kind["relax"]],
        failed=list(failed or []),
        wall_time_s=round(wall_time_s, 3),
        provenance=provenance(
            neb_analysis=[plain(d) for d in by_kind["neb_analysis"]], study_meta=plan.meta, **extra
        ),
        partial=bool(missing or failed or interrupted),
        interrupted=interrupted,
        missing=missing,
        unconverged=unconverged,
        sessions=list(sessions or []),
    )


def _lattice(relaxed: list[Any]) -> list[dict[str, Any]]:
    """Lattice constant and Bragg peaks of every relaxed study bulk (Ext. Data Fig. 4d)."""
    from pqdflow.analysis.diffraction import lattice_table
    from pqdflow.errors import ParseError

    bulks = []
    for doc in relaxed:
        if (
            isinstance(doc, RelaxDoc)
            and doc.kind == "bulk"
            and doc.role == "model"
            and "x" in doc.meta
        ):
            try:
                bulks.append((float(doc.meta["x"]), doc.read_structure(), doc.formula_units))
            except ParseError:
                continue  # documents without their run folder (e.g. collected elsewhere)
    return lattice_table(bulks)


def prepare_run_folder(
    plan: StudyPlan,
    out: str | Path,
    backend: str,
    settings: Mapping[str, Any] | None = None,
) -> Manifest:
    """Claim ``out`` for one study run: write (or check) its ``manifest.json``.

    The manifest lists every calculation and band folder of the run (``calcs/<name>``,
    ``neb/<name>``) with the plan's reactions and paths, so ``pqdflow report OUT`` reads a run
    folder as it reads a dry-run tree. It records the backend and the plan's fingerprint: a
    run folder holds one study, and a second study (or the same study with other settings or
    another backend) is refused before anything is written.

    Raises
    ------
    StudyError
        ``out`` holds another study or run, or a dry run; the message names the folder and
        what differs.
    """
    out = Path(out)
    fingerprint = plan.fingerprint(backend, reuse_settings(dict(settings or {})))
    run = {"backend": backend, "fingerprint": fingerprint}
    path = out / MANIFEST_FILE
    if path.is_file():
        old = read_manifest(out)
        if not old.run:
            raise StudyError(
                f"{out} holds a dry run (pqdflow inputs) of study {old.study!r}; run into "
                "another folder"
            )
        if old.run.get("fingerprint") != fingerprint:
            what = []
            if old.study != plan.name:
                what.append(f"study {old.study!r}, not {plan.name!r}")
            if old.run.get("backend") != backend:
                what.append(f"backend {old.run.get('backend')!r}, not {backend!r}")
            if not what:
                what.append("the same study name with other structures or settings")
            raise StudyError(
                f"{out} already holds a run of {'; '.join(what)}; a run folder holds one study "
                "with one backend and one set of settings. Use a new --out (or restore the "
                "original study file and settings to resume)."
            )
    entries: list[ManifestEntry] = []
    for step in schedule(plan):
        if step.kind == "relax":
            calc = step.spec
            assert isinstance(calc, CalcSpec)
            entries.append(
                ManifestEntry(
                    name=calc.name,
                    path=f"calcs/{calc.name}",
                    kind=calc.kind,
                    formula_units=int(calc.formula_units),
                    role=calc.role,
                    meta=jsonable(calc.meta),
                )
            )
        elif step.kind == "neb":
            neb = step.spec
            assert isinstance(neb, NebSpec)
            meta = {**jsonable(neb.meta), "label": neb.label, "initial": neb.initial}
            meta |= {"final": neb.final, "n_images": neb.n_images}
            entries.append(ManifestEntry(neb.name, f"neb/{neb.name}", "neb", role="neb", meta=meta))
    manifest = Manifest(
        study=plan.name,
        calculations=entries,
        bindings=list(plan.bindings),
        nebs=list(plan.nebs),
        written=[],
        path=path,
        run=run,
    )
    text = manifest.text()
    if not path.is_file() or path.read_text() != text:
        atomic_write_text(path, text)
    return manifest

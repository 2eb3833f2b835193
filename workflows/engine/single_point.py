"""Single points: one energy (and forces) on a given structure, ending in a :class:`RelaxDoc`.

A single point is a ``single_point`` step of the schedule machinery
(:func:`~pqdflow.workflows.study.steps.execute_step`): the DFT check of an ML screening
result ("ML geometry, DFT energy") runs one per ML-relaxed structure, locally or as one
Firework each. The document is a :class:`~pqdflow.documents.results.RelaxDoc` with no
ionic step (``n_steps = 0``, ``settings["single_point"] = True``), so binding energies are
formed from single points with the same function as from relaxations
(:func:`~pqdflow.analysis.binding.compute_binding`).

Backends that can run one implement :class:`SinglePointBackend` (``single_point(spec,
directory)``); :class:`~pqdflow.workflows.engine.ase_backend.AseBackend` (mock, CHGNet, GPAW)
does.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from pqdflow.documents.plan import CalcSpec
from pqdflow.documents.results import RESULT_FILE, RelaxDoc, read_finished
from pqdflow.errors import BackendError, InputError
from pqdflow.provenance import provenance
from pqdflow.workflows.engine.relax import max_force, write_frame

__all__ = [
    "SinglePointBackend",
    "single_point_calculation",
    "single_point_structure",
]


@runtime_checkable
class SinglePointBackend(Protocol):
    """A backend that can compute one energy on a fixed structure."""

    name: str

    def describe(self) -> dict[str, Any]:
        """Return the settings recorded in provenance (JSON-ready)."""
        ...

    def single_point(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        """Energy and forces of ``spec.atoms`` as given, written into ``directory``."""
        ...


def single_point_structure(
    atoms: Atoms,
    calculator: Calculator,
    directory: str | Path,
    *,
    name: str,
    backend: str,
    kind: str = "slab",
    role: str = "model",
    formula_units: int = 1,
    settings: Mapping[str, Any] | None = None,
    meta: Mapping[str, Any] | None = None,
) -> RelaxDoc:
    """Compute the energy and forces of ``atoms`` (not moved); write and return a RelaxDoc.

    Parameters
    ----------
    atoms
        The structure; not modified.
    calculator
        Any ASE calculator.
    directory
        Calculation folder (created). Receives ``final.extxyz`` (the structure with its
        energy and forces) and, last and atomically, ``result.json``.
    name, backend, kind, role
        Recorded in the document.
    formula_units
        Formula units in the cell (for ``energy_per_formula_unit``).
    settings, meta
        Recorded in the document; ``settings`` gains ``single_point: True`` and
        ``meta`` gains ``cpu_seconds`` (CPU time of this process for the calculation, s).

    Returns
    -------
    RelaxDoc
        ``n_steps = 0``, ``converged = True`` (the energy was computed), ``fmax`` the largest
        force on the free atoms (eV/Å), or -1 when the calculator gives no forces.

    Raises
    ------
    InputError
        An empty structure or ``formula_units`` < 1, before anything is written.
    """
    if len(atoms) == 0:
        raise InputError(f"structure {name!r} has no atoms")
    if formula_units < 1:
        raise InputError(f"formula_units must be >= 1, got {formula_units}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    work = atoms.copy()
    work.calc = calculator
    start = time.process_time()
    energy = float(work.get_potential_energy())
    fmax = max_force(work) if "forces" in calculator.implemented_properties else float("nan")
    cpu = time.process_time() - start
    final_path = directory / "final.extxyz"
    tmp = directory / ".final.extxyz.tmp"
    with tmp.open("w") as handle:
        write_frame(handle, work)
    tmp.replace(final_path)
    doc = RelaxDoc(
        name=name,
        backend=backend,
        kind=kind,
        role=role,
        energy=energy,
        formula_units=int(formula_units),
        energy_per_formula_unit=energy / formula_units,
        fmax=fmax if np.isfinite(fmax) else -1.0,
        converged=True,
        n_steps=0,
        n_force_calls=1,
        formula=work.get_chemical_formula(),
        cell=np.array(work.cell).tolist(),
        directory=str(directory.resolve()),
        trajectory_path="final.extxyz",
        settings={"single_point": True, **dict(settings or {})},
        meta={**dict(meta or {}), "cpu_seconds": round(cpu, 3)},
        provenance=provenance(backend=backend, calculator=type(calculator).__name__),
    )
    doc.write(directory / RESULT_FILE)
    return doc


def single_point_calculation(
    spec: CalcSpec,
    backend: Any,
    directory: str | Path,
    *,
    inputs: Mapping[str, Any] | None = None,
) -> RelaxDoc:
    """Single point of one planned structure in ``directory`` (or read its finished result).

    Parameters
    ----------
    spec
        The structure (``spec.atoms`` as given: an ML-relaxed geometry) with its kind, net
        charge (``spec.charge``) and formula units.
    backend
        A :class:`SinglePointBackend` of the registry (mock, chgnet, gpaw).
    directory
        Calculation folder.
    inputs
        The record of what determines the result
        (:func:`~pqdflow.workflows.study.scheduler.step_inputs`); a finished result is reused
        only when it matches, and refused (:class:`~pqdflow.errors.OverwriteError`) when not.

    Raises
    ------
    BackendError
        A backend that cannot run single points.
    OverwriteError
        The folder holds a result of another backend or of other inputs.
    """
    if not isinstance(backend, SinglePointBackend):
        raise BackendError(
            f"backend {getattr(backend, 'name', backend)!r} cannot run single points here; "
            "use an in-process backend (gpaw, chgnet, mock), or write VASP single points "
            "(pqdflow dft-check --backend vasp-dry)"
        )
    directory = Path(directory)
    done = read_finished(directory, RelaxDoc, backend.name, inputs=inputs)
    if done is not None:
        return done
    if inputs is not None:
        spec = CalcSpec(
            spec.name,
            spec.kind,
            spec.atoms,
            spec.relax_cell,
            spec.formula_units,
            spec.role,
            {**spec.meta, "inputs": dict(inputs)},
        )
    return backend.single_point(spec, directory)

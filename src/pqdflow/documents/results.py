"""Result documents of every backend (JSON round trip, provenance attached).

Every calculation ends in one document written atomically to ``result.json`` in its folder:
:class:`RelaxDoc` (one relaxed structure), :class:`NebDoc` (one band) and
:class:`BindingDoc` (one binding reaction, computed from relax documents). A study ends in
:class:`StudyResults`, written as ``results.json``. Energies are in eV, lengths in Å,
forces in eV/Å. Every document names the backend that produced it; a document produced by
the ``mock`` backend is plumbing, not physics.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from ase import Atoms
from ase.io import read

from pqdflow.errors import OverwriteError, ParseError
from pqdflow.fileio import atomic_write_json

__all__ = [
    "RESULT_FILE",
    "BindingDoc",
    "NebDoc",
    "RelaxDoc",
    "StudyResults",
    "load_doc",
    "read_finished",
    "unconverged_names",
]

#: The document written last, atomically, into every calculation folder: its presence
#: marks the calculation finished.
RESULT_FILE = "result.json"

_D = TypeVar("_D", bound="_Doc")


class _Doc:
    """JSON round trip shared by the documents (dataclasses)."""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (plain types only)."""
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_D], data: dict[str, Any]) -> _D:
        """Inverse of :meth:`as_dict`; unknown keys are ignored (forward compatibility)."""
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})

    def write(self, path: str | Path) -> Path:
        """Write the document as JSON to ``path`` atomically; return the path."""
        path = Path(path)
        atomic_write_json(path, self.as_dict())
        return path

    @classmethod
    def read(cls: type[_D], path: str | Path) -> _D:
        """Read a document written by :meth:`write`.

        Raises
        ------
        ParseError
            If the file is missing, not JSON, or not this kind of document.
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ParseError(path, f"cannot read {cls.__name__} JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("doc_type") != cls.__name__:
            found = data.get("doc_type") if isinstance(data, dict) else type(data).__name__
            raise ParseError(path, f"expected a {cls.__name__}, found {found!r}")
        return cls.from_dict(data)


@dataclass
class RelaxDoc(_Doc):
    """One relaxed structure.

    Attributes
    ----------
    name
        Calculation name (also its folder name).
    backend
        Backend name (``"mock"``, ``"chgnet"``, ``"vasp"``).
    kind, role
        From the :class:`~pqdflow.documents.plan.CalcSpec`.
    settings
        Backend and relaxation settings used (fmax in eV/Å, optimiser, max steps, ...).
    energy
        Final total energy (eV).
    formula_units
        Formula units in the cell.
    energy_per_formula_unit
        ``energy / formula_units`` (eV).
    fmax
        Largest per-atom force norm reached on the free atoms (eV/Å).
    converged
        Whether ``fmax`` met the criterion within the step limit.
    n_steps, n_force_calls
        Optimiser steps and energy/force evaluations.
    formula
        Chemical formula of the cell.
    cell
        Final cell vectors (Å, 3x3).
    structure_path, trajectory_path
        Final structure and trajectory (extxyz), relative to ``directory``.
    directory
        Calculation folder (absolute).
    meta
        The calculation's metadata (termination, ligands, ...).
    provenance
        pqdflow version, time, backend details.
    """

    name: str
    backend: str
    kind: str
    energy: float
    formula_units: int
    energy_per_formula_unit: float
    fmax: float
    converged: bool
    n_steps: int
    n_force_calls: int
    formula: str
    cell: list[list[float]]
    directory: str
    structure_path: str = "final.extxyz"
    trajectory_path: str = "relax.extxyz"
    role: str = "model"
    settings: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    doc_type: str = "RelaxDoc"

    def structure_file(self) -> Path:
        """Absolute path of the final structure."""
        return Path(self.directory) / self.structure_path

    def read_structure(self) -> Atoms:
        """Read the final structure (constraints and info kept).

        Raises
        ------
        ParseError
            If the file is missing or holds no single structure.
        """
        path = self.structure_file()
        try:
            atoms = read(path, format="extxyz")
        except (OSError, ValueError, StopIteration) as exc:
            raise ParseError(path, f"cannot read the relaxed structure: {exc}") from exc
        if not isinstance(atoms, Atoms):
            raise ParseError(path, f"holds {len(atoms)} structures; expected one")
        return atoms


@dataclass
class NebDoc(_Doc):
    """One converged (or not) nudged elastic band.

    Attributes
    ----------
    path
        NEB path name (``NebSpec.name``), e.g. ``"neb-control-VBr"``.
    label
        What is compared (``"bulk"``, ``"control"``, ``"treated"``).
    backend
        Backend name.
    image_energies
        Total energies of all images, endpoints included (eV).
    reaction_coordinate
        Cumulative path length at each image (Å).
    tangential_forces
        Force along the path at each image, endpoints 0 (eV/Å).
    barrier
        :class:`~pqdflow.analysis.barriers.BarrierDoc` as a dict.
    Ea_eV, Ea_reverse_eV
        Forward / reverse barrier from the highest image (the climbing image) (eV).
    Ea_spline_eV, Ea_reverse_spline_eV
        The same from the spline through energies and tangential forces (eV).
    n_images
        Intermediate images.
    climbing_index
        Index of the climbing image in ``image_energies`` (None if no climbing image).
    fmax, fmax_climbing
        Largest per-atom NEB force norm on the non-climbing images and on the climbing
        image at the end (eV/Å).
    converged
        Both criteria met within the step limit.
    n_force_calls
        Image force evaluations of the band (endpoints not included).
    n_steps
        Optimiser steps over all stages.
    initial, final
        Names of the endpoint calculations.
    band_path, trajectory_path
        Final band and band trajectory (extxyz), relative to ``directory``.
    stage_force_calls
        ``n_force_calls`` split by stage (``"saddle"``: the one-image climbing band,
        ``"loose"``, ``"band"``, ``"fire_fallback"``: FIRE finishing a band whose
        quasi-Newton stage stalled).
    start
        How the band was started: ``"saddle-first"`` or ``"interpolated"`` (with the
        reason when the saddle-first start was tried and dropped).
    optimizer
        Band optimiser used (what ``"auto"`` resolved to).
    unconverged_inputs
        Names of the relaxations this band rests on (its endpoints) that did not converge;
        empty when all did. A barrier on an unconverged endpoint is flagged everywhere.
    barrier_tolerance_eV, barrier_error_eV
        The stopping rule's tolerance and its estimated error of the reported barrier (eV;
        None when unknown or the rule was off).
    barrier_confirmed
        Whether the reported climbing-image energy is an energy+force evaluation of the
        barrier's own calculator (the oracle of a surrogate band) at that geometry.
    n_oracle_calls
        Evaluations of that calculator (a plain band: ``n_force_calls``; a surrogate band:
        the expensive oracle's, while ``n_force_calls`` counts the cheap potential's).
    stopped_early, stop_reason
        The band stopped before its stopping rule held (step limit, force-call or oracle
        budget, barrier check), and why.
    barrier_check
        The stopping rule's record (estimates per check, Newton steps, rounds).
    """

    path: str
    label: str
    backend: str
    image_energies: list[float]
    reaction_coordinate: list[float]
    tangential_forces: list[float]
    barrier: dict[str, Any]
    Ea_eV: float
    Ea_reverse_eV: float
    Ea_spline_eV: float
    Ea_reverse_spline_eV: float
    n_images: int
    climbing_index: int | None
    fmax: float
    fmax_climbing: float
    converged: bool
    n_force_calls: int
    n_steps: int
    initial: str
    final: str
    directory: str
    band_path: str = "band.extxyz"
    trajectory_path: str = "neb.extxyz"
    stage_force_calls: dict[str, int] = field(default_factory=dict)
    start: str = "interpolated"
    optimizer: str = ""
    barrier_tolerance_eV: float | None = None
    barrier_error_eV: float | None = None
    barrier_confirmed: bool = False
    n_oracle_calls: int | None = None
    stopped_early: bool = False
    stop_reason: str = ""
    barrier_check: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    unconverged_inputs: list[str] = field(default_factory=list)
    doc_type: str = "NebDoc"


@dataclass
class BindingDoc(_Doc):
    """One binding energy.

    Attributes
    ----------
    name
        Reaction name (``BindingSpec.name``).
    ligand, site
        Labels for tables.
    E_b_eV
        Binding energy (eV); negative means binding is favourable.
    definition
        Definition key (``"exchange"`` or ``"interaction"``).
    definition_text
        The formula in words, with the species used.
    terms
        Each energy used: ``{calc name: {"energy_eV": per formula unit, "coeff": c}}``
        with ``coeff`` positive on the product side.
    balanced
        Whether the reaction conserves atoms.
    all_converged
        Whether every relaxation used converged.
    backend
        Backend of the relax documents.
    unconverged_inputs
        Names of the relaxations used that did not converge (empty when
        ``all_converged``).
    """

    name: str
    ligand: str
    site: str
    E_b_eV: float
    definition: str
    definition_text: str
    terms: dict[str, dict[str, float]]
    balanced: bool
    all_converged: bool
    backend: str
    meta: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    unconverged_inputs: list[str] = field(default_factory=list)
    doc_type: str = "BindingDoc"


@dataclass
class StudyResults(_Doc):
    """Everything a study produced (``results.json``).

    Attributes
    ----------
    study
        Study name.
    backend
        Backend name.
    binding
        One :class:`BindingDoc` dict per reaction (keys include ``ligand``, ``site``,
        ``E_b_eV``, ``definition``).
    neb
        One :class:`NebDoc` dict per path (keys include ``path``, ``label``, ``Ea_eV``,
        ``Ea_reverse_eV``).
    calculations
        One :class:`RelaxDoc` dict per relaxed structure.
    failed
        Paths that could not be computed: ``{"name", "kind", "error"}`` (retried on rerun).
    wall_time_s
        Wall time of the whole run (s): the sum over every recorded session of the run
        folder (``sessions``), resumed ones included. A session killed with SIGKILL cannot
        record its end and is not counted (it is listed with ``wall_time_s`` None).
    partial
        True when the study is not complete: a step failed, was skipped or did not run
        (``missing``), or the run was interrupted.
    interrupted
        The last session was stopped by SIGINT / SIGTERM (rerun the command to resume).
    missing
        Names of the scheduled steps that have no result.
    unconverged
        Names of the relaxations and bands that did not converge; binding energies and
        barriers resting on them name them in their ``unconverged_inputs``.
    sessions
        One record per launcher session: ``started_utc``, ``wall_time_s``, ``outcome``,
        launcher, threads.
    migration
        Per NEB host (``control-x2``, ...): every sampled hop's barrier with its labels, the
        lowest and the transport-limiting barrier
        (:func:`pqdflow.analysis.migration.summarize_migration`).
    lattice
        Per relaxed bulk composition: lattice constant vs Vegard and the Bragg peaks
        (:func:`pqdflow.analysis.diffraction.lattice_table`).
    """

    study: str
    backend: str
    binding: list[dict[str, Any]] = field(default_factory=list)
    neb: list[dict[str, Any]] = field(default_factory=list)
    calculations: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    wall_time_s: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)
    partial: bool = False
    interrupted: bool = False
    missing: list[str] = field(default_factory=list)
    unconverged: list[str] = field(default_factory=list)
    sessions: list[dict[str, Any]] = field(default_factory=list)
    migration: dict[str, Any] = field(default_factory=dict)
    lattice: list[dict[str, Any]] = field(default_factory=list)
    doc_type: str = "StudyResults"

    def binding_docs(self) -> list[BindingDoc]:
        """Return the binding entries as documents."""
        return [BindingDoc.from_dict(b) for b in self.binding]

    def neb_docs(self) -> list[NebDoc]:
        """Return the NEB entries as documents."""
        return [NebDoc.from_dict(n) for n in self.neb]

    def relax_docs(self) -> list[RelaxDoc]:
        """Return the relaxations as documents."""
        return [RelaxDoc.from_dict(c) for c in self.calculations]


_DOC_TYPES: dict[str, type[_Doc]] = {
    "RelaxDoc": RelaxDoc,
    "NebDoc": NebDoc,
    "BindingDoc": BindingDoc,
    "StudyResults": StudyResults,
}


def load_doc(path: str | Path) -> RelaxDoc | NebDoc | BindingDoc | StudyResults:
    """Read any document written by pqdflow, dispatching on its ``doc_type``.

    Raises
    ------
    ParseError
        If the file is unreadable or its ``doc_type`` is unknown.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ParseError(path, f"cannot read document JSON: {exc}") from exc
    kind = data.get("doc_type") if isinstance(data, dict) else None
    if kind not in _DOC_TYPES:
        raise ParseError(path, f"unknown doc_type {kind!r}; known: {sorted(_DOC_TYPES)}")
    return _DOC_TYPES[kind].from_dict(data)  # type: ignore[return-value]


def unconverged_names(names: Sequence[str], docs: Mapping[str, Any]) -> list[str]:
    """Return those of ``names`` whose document in ``docs`` says ``converged`` False.

    A relaxation that stopped at its step limit is such a document; names without a document
    (or whose document has no ``converged``) are not listed.
    """
    out = []
    for name in names:
        doc = docs.get(name)
        flag = doc.get("converged") if isinstance(doc, Mapping) else getattr(doc, "converged", None)
        if flag is False:
            out.append(name)
    return out


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two JSON-like records differ (``a.b: old -> new``)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += _differences(old.get(key), new.get(key), f"{prefix}{key}.")
        return out
    if old != new:
        return [f"{prefix.rstrip('.')}: {old!r} -> {new!r}"]
    return []


def read_finished(
    directory: str | Path,
    cls: type[_D],
    backend: str,
    *,
    inputs: Mapping[str, Any] | None = None,
) -> _D | None:
    """Return the document of a finished calculation in ``directory``, or None.

    A calculation is finished when its :data:`RESULT_FILE` holds a readable document of
    type ``cls``; an unreadable one is treated as unfinished (the calculation is redone).
    With ``inputs`` (the record of what determines the result: structure, settings, backend,
    pqdflow version, see :func:`pqdflow.workflows.study.scheduler.step_inputs`), a document
    is only reused when it was computed from the same record.

    Raises
    ------
    OverwriteError
        The folder holds a result of another backend, or (``inputs`` given) a result of other
        inputs; the message names the folder and every differing setting. Results are never
        mixed or silently reused.
    """
    path = Path(directory) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        doc = cls.read(path)
    except ParseError:
        return None
    found = getattr(doc, "backend", backend)
    if found != backend:
        raise OverwriteError(
            f"{directory} holds a result of backend {found!r}, not {backend!r}; "
            "use another output folder"
        )
    if inputs is not None:
        recorded = getattr(doc, "meta", {}).get("inputs")
        if recorded != dict(inputs):
            changes = _differences(recorded or {}, dict(inputs)) if recorded else []
            what = "; ".join(changes[:6]) if changes else "no inputs record (older pqdflow)"
            raise OverwriteError(
                f"{directory} holds a finished result computed from other inputs ({what}); "
                "it is not reused. Run into a new output folder, or move that folder away "
                "to recompute it."
            )
    return doc

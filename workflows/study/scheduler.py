"""The study's dependency order, once: which step needs which, and where each starts from.

:func:`schedule` turns a :class:`~pqdflow.documents.plan.StudyPlan` into an ordered list of
steps: every relaxation (an NEB final endpoint after its initial endpoint, starting from the
initial's relaxed structure), every band after its two endpoints, every binding energy after
its relaxations and every NEB analysis after its band. The local engine runs the list in
order, the FireWorks builder makes one Firework per step with the parents named here, and the
ML pre-relaxation runs its relaxation steps: the three routes share this order and these
starting structures.

:func:`execute_step` runs one step with a backend, given the documents of its parents; it is
what the local engine and the FireWorks task call.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from ase import Atoms

from pqdflow import __version__
from pqdflow.documents.plan import (
    BindingSpec,
    CalcSpec,
    NebSpec,
    StudyPlan,
    atoms_from_dict,
    atoms_to_dict,
)
from pqdflow.errors import InputError

__all__ = [
    "OPERATIONAL_SETTINGS",
    "STEP_GROUPS",
    "StartFrom",
    "Step",
    "StepKind",
    "analysis_name",
    "fingerprint",
    "reuse_settings",
    "schedule",
    "step_inputs",
]

StepKind = Literal["relax", "neb", "binding", "neb_analysis", "single_point"]

#: Folder group of each step kind inside a run folder (``OUT/<group>/<name>``); steps without
#: a folder (binding energies, analyses) map to None.
STEP_GROUPS: dict[str, str | None] = {
    "relax": "calcs",
    "neb": "neb",
    "binding": None,
    "neb_analysis": None,
    "single_point": "single_points",
}


@dataclass(frozen=True)
class StartFrom:
    """An NEB final endpoint starts from its relaxed initial endpoint.

    Attributes
    ----------
    initial
        Name of the initial endpoint's calculation.
    initial_start
        The planned (unrelaxed) initial endpoint.
    hopping_index
        Index of the hopping halide.
    """

    initial: str
    initial_start: Atoms
    hopping_index: int

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return {
            "initial": self.initial,
            "initial_start": atoms_to_dict(self.initial_start),
            "hopping_index": self.hopping_index,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StartFrom:
        """Inverse of :meth:`as_dict`."""
        return cls(
            str(data["initial"]),
            atoms_from_dict(data["initial_start"]),
            int(data["hopping_index"]),
        )


@dataclass(frozen=True)
class Step:
    """One unit of work of a study.

    Attributes
    ----------
    kind
        ``relax`` (one structure), ``neb`` (one band), ``binding`` (one reaction energy),
        ``neb_analysis`` (the barrier summary of a band) or ``single_point`` (one energy on a
        given structure: the DFT check of an ML result; not part of a study's schedule).
    name
        Unique name: the calculation, NEB or reaction name (``<neb>-analysis`` for an
        analysis).
    parents
        Names of the steps whose documents this step needs.
    spec
        The plan item: :class:`CalcSpec` (``relax``, ``single_point``), :class:`NebSpec`
        (``neb`` and ``neb_analysis``) or :class:`BindingSpec`.
    start_from
        For an NEB final endpoint: the initial endpoint it starts from.
    """

    kind: StepKind
    name: str
    parents: tuple[str, ...]
    spec: CalcSpec | NebSpec | BindingSpec
    start_from: StartFrom | None = None

    @property
    def group(self) -> str | None:
        """Folder group inside a run folder (``calcs``, ``neb``) or None."""
        return STEP_GROUPS[self.kind]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready data (for a Firework's spec)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "parents": list(self.parents),
            "spec": self.spec.as_dict(),
            "start_from": self.start_from.as_dict() if self.start_from else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Step:
        """Inverse of :meth:`as_dict`.

        Raises
        ------
        InputError
            An unknown step kind.
        """
        kind = data["kind"]
        spec: CalcSpec | NebSpec | BindingSpec
        if kind in ("relax", "single_point"):
            spec = CalcSpec.from_dict(data["spec"])
        elif kind in ("neb", "neb_analysis"):
            spec = NebSpec.from_dict(data["spec"])
        elif kind == "binding":
            spec = BindingSpec.from_dict(data["spec"])
        else:
            raise InputError(f"unknown step kind {kind!r}; known: {sorted(STEP_GROUPS)}")
        start = data.get("start_from")
        return cls(
            kind=kind,
            name=str(data["name"]),
            parents=tuple(data.get("parents", ())),
            spec=spec,
            start_from=StartFrom.from_dict(start) if start else None,
        )


def analysis_name(neb: NebSpec) -> str:
    """Name of the analysis step of ``neb``."""
    return f"{neb.name}-analysis"


def schedule(plan: StudyPlan) -> list[Step]:
    """Every step of ``plan`` in an order that respects the dependencies.

    Relaxations come first (an NEB initial endpoint after the pristine host it starts from,
    ``meta["start_from_host"]``; NEB final endpoints after the other relaxations, each after
    and starting from its initial endpoint), then the bands (after both endpoints), the binding
    reactions (after every relaxation they combine) and the NEB analyses (after their band).

    Raises
    ------
    StudyError
        An inconsistent plan (from :meth:`StudyPlan.validate`).
    """
    plan.validate()
    finals = {neb.final: neb for neb in plan.nebs}
    steps: list[Step] = []
    later: list[Step] = []
    names = {c.name for c in plan.calculations}
    for calc in plan.calculations:
        # a structure put on a relaxed bulk lattice runs after that bulk (steps.py)
        lattice = (calc.meta.get("lattice") or {}).get("from")
        on = (lattice,) if lattice in names and lattice != calc.name else ()
        # an NEB initial endpoint that starts from its relaxed pristine host (steps.py)
        host = (calc.meta.get("start_from_host") or {}).get("host")
        if host in names and host != calc.name:
            on = (*on, host)
        neb = finals.get(calc.name)
        if neb is None:
            steps.append(Step("relax", calc.name, on, calc))
            continue
        start = StartFrom(neb.initial, plan.get(neb.initial).atoms, neb.hopping_index)
        later.append(Step("relax", calc.name, (neb.initial, *on), calc, start))
    steps += later
    steps += [Step("neb", n.name, (n.initial, n.final), n) for n in plan.nebs]
    steps += [Step("binding", b.name, tuple(dict.fromkeys(b.parents())), b) for b in plan.bindings]
    steps += [Step("neb_analysis", analysis_name(n), (n.name,), n) for n in plan.nebs]
    return steps


#: Backend settings that say how a calculation is run, not what it computes: changing them
#: never invalidates a finished result.
OPERATIONAL_SETTINGS = frozenset({"vasp_cmd", "gamma_vasp_cmd", "custodian"})


def reuse_settings(description: Mapping[str, Any]) -> dict[str, Any]:
    """Return a backend's description without its operational settings (commands, custodian)."""
    return {k: v for k, v in description.items() if k not in OPERATIONAL_SETTINGS}


def fingerprint(record: Mapping[str, Any]) -> str:
    """Short SHA-256 of a JSON record (16 hex digits)."""
    text = json.dumps(record, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _structure(atoms: Atoms) -> dict[str, Any]:
    data = {
        "numbers": atoms.numbers.tolist(),
        "positions": np.round(atoms.positions, 6).tolist(),
        "cell": np.round(atoms.cell[:], 6).tolist(),
        "pbc": atoms.pbc.tolist(),
        "constraints": [c.todict() for c in atoms.constraints],
    }
    return {
        "formula": atoms.get_chemical_formula(),
        "cell_lengths_A": [round(float(x), 4) for x in atoms.cell.lengths()],
        "sha256": fingerprint(json.loads(json.dumps(data, default=str))),
    }


def step_inputs(
    step: Step,
    backend: Mapping[str, Any],
    parents: Mapping[str, Mapping[str, Any] | None],
) -> dict[str, Any]:
    """Return what determines a relaxation's or band's result: the record a rerun must match.

    Parameters
    ----------
    step
        A ``relax`` or ``neb`` step.
    backend
        The backend's :func:`reuse_settings`.
    parents
        The input records of the step's parents (their documents' ``meta["inputs"]``).

    Returns
    -------
    dict
        ``step``, ``name``, ``structure`` (formula, cell lengths, hash of the planned
        structure; relaxations), ``spec`` (what else of the plan item matters), ``backend``,
        ``pqdflow`` (version) and ``parents`` (fingerprint of each parent's record): a
        result is reused only when this record is the same, and a rerun that differs names
        the differing entries.
    """
    spec = step.spec
    record: dict[str, Any] = {"step": step.kind, "name": step.name}
    if isinstance(spec, CalcSpec):
        record["structure"] = _structure(spec.atoms)
        record["spec"] = {
            "kind": spec.kind,
            "relax_cell": spec.relax_cell,
            "role": spec.role,
            "formula_units": spec.formula_units,
            "charge": spec.charge,
        }
    elif isinstance(spec, NebSpec):
        record["spec"] = {
            "n_images": spec.n_images,
            "hopping_index": spec.hopping_index,
            "charge": spec.charge,
        }
    record["backend"] = dict(backend)
    record["pqdflow"] = __version__
    record["parents"] = {
        name: fingerprint(parents[name] or {}) for name in step.parents if name in parents
    }
    return json.loads(json.dumps(record, default=str))

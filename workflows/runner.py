"""Run a whole study on one machine with any backend, restartably.

Three pure per-calculation functions (the FireWorks tasks call the same ones) and
:func:`run_study` on top:

* :func:`relax_calculation` -- one :class:`~pqdflow.workflows.plan.CalcSpec` -> RelaxDoc
  (NEB endpoints relaxed with the backend's tighter criterion);
* :func:`run_neb` -- one :class:`~pqdflow.workflows.plan.NebSpec` and its relaxed endpoints
  -> NebDoc;
* :func:`compute_binding` -- one :class:`~pqdflow.workflows.plan.BindingSpec` and the relax
  documents -> BindingDoc.

Layout of ``OUT``: ``calcs/<name>/`` and ``neb/<name>/`` (each finished when its
``result.json`` exists: a rerun reads it instead of recomputing), ``results.json``,
``results.csv``, ``binding_energies.png`` and ``neb_profiles.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import sys
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from ase import Atoms
from tqdm import tqdm

from pqdflow.analysis.binding import balance_exchange, binding_energy, composition_of
from pqdflow.errors import (
    CalculationFailed,
    EndpointError,
    EndpointWarning,
    InputError,
    OverwriteError,
    ParseError,
    StudyError,
)
from pqdflow.fileio import atomic_write_text
from pqdflow.provenance import provenance
from pqdflow.structures.defects import check_endpoints, final_in_initial_basin
from pqdflow.workflows.backends import Backend
from pqdflow.workflows.documents import BindingDoc, NebDoc, RelaxDoc, StudyResults
from pqdflow.workflows.plan import BindingSpec, CalcSpec, NebSpec, StudyPlan
from pqdflow.workflows.relax import RESULT_FILE

__all__ = [
    "ENDPOINT_ROLES",
    "compute_binding",
    "final_endpoint_start",
    "format_table",
    "relax_calculation",
    "run_neb",
    "run_study",
]

#: Roles of NEB endpoint calculations (relaxed tighter than other structures).
ENDPOINT_ROLES = frozenset({"neb_initial", "neb_final"})

_Doc = TypeVar("_Doc", RelaxDoc, NebDoc)


def _finished(directory: Path, cls: type[_Doc], backend: str) -> _Doc | None:
    """Return the document of a finished calculation in ``directory``, or None.

    Raises
    ------
    OverwriteError
        If the folder holds a result of another backend (never mixed silently).
    """
    path = directory / RESULT_FILE
    if not path.is_file():
        return None
    try:
        doc = cls.read(path)
    except ParseError:
        return None  # an unreadable result is redone
    if doc.backend != backend:
        raise OverwriteError(
            f"{directory} holds a result of backend {doc.backend!r}, not {backend!r}; "
            "use another output folder"
        )
    return doc


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
    that site (minimum image).

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
    if not (len(final_start) == n == len(initial_relaxed)) or list(initial_start.numbers) != list(
        final_start.numbers
    ):
        raise EndpointError("NEB endpoints must have the same atoms in the same order")
    if not 0 <= hopping_index < n:
        raise EndpointError(f"hopping_index {hopping_index} is outside 0..{n - 1}")
    # the planned endpoints share their framework, so the planned final state carries the
    # vacancy site; the structures builder maps it into the relaxed initial's frame
    out = final_in_initial_basin(initial_relaxed, final_start, hopping_index, shell=radius)
    out.info = dict(final_start.info)
    return out


def relax_calculation(spec: CalcSpec, backend: Backend, directory: str | Path) -> RelaxDoc:
    """Relax one planned structure in ``directory`` (or read its finished result).

    Parameters
    ----------
    spec
        The calculation; ``role`` ``neb_initial``/``neb_final`` asks for a tight relaxation.
    backend
        Any :class:`~pqdflow.workflows.backends.Backend`.
    directory
        Calculation folder.

    Raises
    ------
    OverwriteError
        The folder holds a result of another backend.
    """
    directory = Path(directory)
    done = _finished(directory, RelaxDoc, backend.name)
    if done is not None:
        return done
    return backend.relax(
        spec.atoms,
        directory,
        name=spec.name,
        kind=spec.kind,
        role=spec.role,
        relax_cell=spec.relax_cell,
        formula_units=spec.formula_units,
        tight=spec.role in ENDPOINT_ROLES,
        meta=spec.meta,
    )


def run_neb(
    spec: NebSpec,
    initial_doc: RelaxDoc,
    final_doc: RelaxDoc,
    backend: Backend,
    directory: str | Path,
) -> NebDoc:
    """Converge one NEB path between relaxed endpoints (or read its finished result).

    Parameters
    ----------
    spec
        The path.
    initial_doc, final_doc
        Relax documents of the endpoints; their final structures and energies are used.
    backend
        Any backend.
    directory
        NEB folder.

    Raises
    ------
    InputError
        Endpoint documents that do not belong to ``spec``.
    """
    if (initial_doc.name, final_doc.name) != (spec.initial, spec.final):
        raise InputError(
            f"NEB {spec.name!r} needs endpoints {spec.initial!r} -> {spec.final!r}, "
            f"got {initial_doc.name!r} -> {final_doc.name!r}"
        )
    directory = Path(directory)
    done = _finished(directory, NebDoc, backend.name)
    if done is not None:
        return done
    initial = initial_doc.read_structure()
    final = final_doc.read_structure()
    e_final, final_name = final_doc.energy, spec.final
    meta: dict[str, Any] = {"hopping_index": spec.hopping_index, **spec.meta}
    try:
        check_endpoints(initial, final, hopping_index=spec.hopping_index)
    except EndpointError as exc:
        # The endpoints relaxed into different tilt basins: a band between them would mix a
        # collective distortion into the hop. Rebuild the final endpoint in the initial's
        # basin and relax it as tightly as the other endpoints.
        start = final_in_initial_basin(initial, final, spec.hopping_index)
        rebased = backend.relax(
            start,
            directory / "final-rebased",
            name=f"{spec.final}-rebased",
            kind=final_doc.kind,
            role="neb_final",
            formula_units=final_doc.formula_units,
            tight=True,
            meta={**spec.meta, "rebased_from": spec.final},
        )
        final = rebased.read_structure()
        e_final, final_name = rebased.energy, rebased.name
        meta["final_rebased"] = {"reason": str(exc), "energy": rebased.energy}
        try:
            check_endpoints(initial, final, hopping_index=spec.hopping_index)
        except EndpointError as again:
            # The rebuilt final endpoint relaxed away too: a real rearrangement on this
            # potential (same atom order by construction), not a bookkeeping error. Run the
            # band, but flag it so the barrier is not read as a clean hop.
            meta["endpoint_check"] = {"passed": False, "reason": str(again)}
            warnings.warn(
                f"NEB {spec.name!r}: {again}, even after rebuilding the final endpoint in "
                "the initial's basin; the band is run and flagged "
                "(meta['endpoint_check']), and its barrier includes that rearrangement",
                EndpointWarning,
                stacklevel=2,
            )
    return backend.neb(
        initial,
        final,
        directory,
        path=spec.name,
        label=spec.label,
        n_images=spec.n_images,
        e_initial=initial_doc.energy,
        e_final=e_final,
        initial_name=spec.initial,
        final_name=final_name,
        meta=meta,
    )


def _per_fu(doc: RelaxDoc) -> dict[str, float]:
    return {el: n / doc.formula_units for el, n in composition_of(doc.formula).items()}


def compute_binding(
    spec: BindingSpec,
    docs: Mapping[str, RelaxDoc],
    *,
    definition: str = "exchange",
) -> BindingDoc:
    """Binding energy of one planned reaction from relax documents.

    Parameters
    ----------
    spec
        The reaction (coefficients in formula units).
    docs
        Relax documents by calculation name; must contain every parent of ``spec``.
    definition
        ``"exchange"`` (atom-balanced, checked) or ``"interaction"``; see
        :mod:`pqdflow.analysis.binding`.

    Raises
    ------
    StudyError
        A parent document is missing.
    InputError
        An unbalanced exchange reaction (naming the elements) or an unknown definition.
    """
    missing = [p for p in spec.parents() if p not in docs]
    if missing:
        raise StudyError(f"binding {spec.name!r} lacks relax documents for {missing}")
    ads, slab = docs[spec.adsorbed], docs[spec.slab]
    lig = {n: (docs[n].energy_per_formula_unit, c) for n, c in spec.ligands.items()}
    rel = {n: (docs[n].energy_per_formula_unit, c) for n, c in spec.released.items()}
    if definition not in ("exchange", "interaction"):
        raise InputError(
            f"unknown binding-energy definition {definition!r}; choose 'exchange' or 'interaction'"
        )
    result = binding_energy(
        ads.energy,
        slab.energy,
        lig,
        rel,
        definition="exchange" if definition == "exchange" else "interaction",
    )
    comp_lig = {n: (_per_fu(docs[n]), c) for n, c in spec.ligands.items()}
    comp_rel = {n: (_per_fu(docs[n]), c) for n, c in spec.released.items()}
    try:
        balance_exchange(
            ads.formula,
            slab.formula,
            comp_lig,
            comp_rel if definition == "exchange" else {},
        )
        balanced = True
    except InputError as exc:
        if definition == "exchange":
            raise InputError(f"binding {spec.name!r}: {exc}") from exc
        balanced = False
    used = [docs[p] for p in spec.parents()]
    return BindingDoc(
        name=spec.name,
        ligand=spec.ligand,
        site=spec.site,
        E_b_eV=result.energy,
        definition=result.definition,
        definition_text=result.definition_text,
        terms=result.terms,
        balanced=balanced,
        all_converged=all(d.converged for d in used),
        backend=ads.backend,
        meta=dict(spec.meta),
        provenance=provenance(parents=spec.parents()),
    )


def format_table(results: StudyResults) -> str:
    """Plain-text tables: ligand, site, E_b (eV); NEB path, Ea forward/reverse (eV)."""
    lines: list[str] = []
    if results.binding:
        lines.append(f"{'ligand':<10} {'site':<18} {'E_b (eV)':>9}  converged")
        for b in results.binding:
            lines.append(
                f"{b['ligand']:<10} {b['site']:<18} {b['E_b_eV']:>9.3f}  {b['all_converged']}"
            )
    if results.neb:
        if lines:
            lines.append("")
        lines.append(f"{'NEB path':<22} {'label':<9} {'Ea (eV)':>8} {'Ea rev (eV)':>11}  converged")
        for n in results.neb:
            lines.append(
                f"{n['path']:<22} {n['label']:<9} {n['Ea_eV']:>8.3f} "
                f"{n['Ea_reverse_eV']:>11.3f}  {n['converged']}"
            )
    for fail in results.failed:
        lines.append(f"FAILED {fail['kind']} {fail['name']}: {fail['error']}")
    lines.append(
        f"(backend: {results.backend}"
        + ("; mock numbers are plumbing, not physics)" if results.backend == "mock" else ")")
    )
    return "\n".join(lines)


def _csv(results: StudyResults) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        [
            "type",
            "name",
            "ligand",
            "site",
            "label",
            "E_b_eV",
            "Ea_eV",
            "Ea_reverse_eV",
            "Ea_spline_eV",
            "definition",
            "converged",
            "backend",
        ]
    )
    for b in results.binding:
        writer.writerow(
            [
                "binding",
                b["name"],
                b["ligand"],
                b["site"],
                "",
                f"{b['E_b_eV']:.6f}",
                "",
                "",
                "",
                b["definition"],
                b["all_converged"],
                b["backend"],
            ]
        )
    for n in results.neb:
        writer.writerow(
            [
                "neb",
                n["path"],
                "",
                "",
                n["label"],
                "",
                f"{n['Ea_eV']:.6f}",
                f"{n['Ea_reverse_eV']:.6f}",
                f"{n['Ea_spline_eV']:.6f}",
                "",
                n["converged"],
                n["backend"],
            ]
        )
    return buffer.getvalue()


def _plots(results: StudyResults, out: Path) -> list[str]:
    """Binding bar chart and NEB profiles via :mod:`pqdflow.analysis.plots`; file names."""
    try:
        from pqdflow.analysis import plots
    except ImportError:  # pragma: no cover - the plots module ships with pqdflow
        return []
    written: list[str] = []
    if results.binding:
        entries = [
            {
                "ligand": b["ligand"],
                "E_b_eV": b["E_b_eV"],
                "label": f"{b['ligand']}\n{b['meta'].get('termination', '')}".strip(),
            }
            for b in results.binding
        ]
        written.append(plots.plot_binding_energies(entries, out / "binding_energies.png").name)
    if results.neb:
        profiles = [
            {
                "label": n["label"] or n["path"],
                "reaction_coordinate": n["reaction_coordinate"],
                "energies": n["barrier"]["energies"],
            }
            for n in results.neb
        ]
        written.append(plots.plot_neb_profiles(profiles, out / "neb_profiles.png").name)
    return written


def run_study(
    plan: StudyPlan,
    backend: Backend,
    out: str | Path,
    *,
    progress: bool = True,
    definition: str = "exchange",
    plots: bool = True,
    echo: bool = True,
) -> StudyResults:
    """Run every relaxation, NEB and binding reaction of ``plan`` into ``out``.

    Finished calculations (a ``result.json`` in their folder) are read, not recomputed, so
    an interrupted run continues where it stopped.

    Parameters
    ----------
    plan
        The study plan.
    backend
        Any backend (``get_backend("mock"|"chgnet")``).
    out
        Output folder.
    progress
        Show a tqdm progress bar on stderr.
    definition
        Binding-energy definition (``"exchange"`` or ``"interaction"``).
    plots
        Write ``binding_energies.png`` and ``neb_profiles.png``.
    echo
        Print the result tables to stdout.

    Raises
    ------
    StudyError
        An empty plan (nothing to run), before anything is written.
    """
    if not plan.calculations and not plan.nebs:
        raise StudyError(f"study {plan.name!r} has no calculations to run")
    if definition not in ("exchange", "interaction"):
        raise InputError(
            f"unknown binding-energy definition {definition!r}; choose 'exchange' or 'interaction'"
        )
    plan.validate()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    docs: dict[str, RelaxDoc] = {}
    nebs: list[NebDoc] = []
    failed: list[dict[str, str]] = []
    total = len(plan.calculations) + len(plan.nebs)
    with tqdm(
        total=total, file=sys.stderr, disable=not progress, unit="calc", desc=plan.name
    ) as bar:
        # NEB final endpoints last: each starts from its relaxed initial endpoint
        finals = {n.final: n for n in plan.nebs}
        ordered = [c for c in plan.calculations if c.name not in finals]
        ordered += [c for c in plan.calculations if c.name in finals]
        for spec in ordered:
            bar.set_postfix_str(spec.name)
            if spec.name in finals:
                neb_spec = finals[spec.name]
                first = final_endpoint_start(
                    docs[neb_spec.initial].read_structure(),
                    plan.get(neb_spec.initial).atoms,
                    spec.atoms,
                    neb_spec.hopping_index,
                )
                spec = dataclasses.replace(spec, atoms=first)
            docs[spec.name] = relax_calculation(spec, backend, out / "calcs" / spec.name)
            bar.update()
        for neb_spec in plan.nebs:
            bar.set_postfix_str(neb_spec.name)
            try:
                nebs.append(
                    run_neb(
                        neb_spec,
                        docs[neb_spec.initial],
                        docs[neb_spec.final],
                        backend,
                        out / "neb" / neb_spec.name,
                    )
                )
            except (CalculationFailed, InputError) as exc:
                # one bad path (e.g. endpoints that relaxed apart) must not sink the study;
                # it is reported, and retried by the next run
                failed.append({"name": neb_spec.name, "kind": "neb", "error": str(exc)})
            bar.update()
    bindings = [compute_binding(b, docs, definition=definition) for b in plan.bindings]
    results = StudyResults(
        study=plan.name,
        backend=backend.name,
        binding=[b.as_dict() for b in bindings],
        neb=[n.as_dict() for n in nebs],
        calculations=[d.as_dict() for d in docs.values()],
        failed=failed,
        wall_time_s=round(time.perf_counter() - start, 3),
        provenance=provenance(backend=backend.describe(), study_meta=plan.meta),
    )
    results.write(out / "results.json")
    atomic_write_text(out / "results.csv", _csv(results))
    if plots:
        _plots(results, out)
    if echo:
        print(format_table(results))
    return results

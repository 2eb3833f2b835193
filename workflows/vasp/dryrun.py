"""Local dry run: write every VASP input folder of a study plan, plus a manifest.

``write_study_inputs(plan, out)`` writes one folder per calculation (named after the
calculation, e.g. ``slab-CsX-x3``, ``ads-OAm-CsX-x3``, ``ligand-OAm``, ``ref-HBr``), one folder
per NEB path (``neb-<label>-x<x>`` with ``00`` .. ``NN+1``) and ``manifest.json``. All inputs
are computed and checked in memory first; nothing is written unless every folder can be
written. Re-running with the same plan writes nothing (same hashes, same mtimes). A folder
that holds outputs (OUTCAR, vasprun.xml, image OUTCARs, ...) is never overwritten: if its
inputs are unchanged it is left alone, if they differ the run stops before writing anything
unless ``force``, which moves the old folder aside.

NEB bands here are interpolated (IDPP) between the plan's endpoints: the *unrelaxed* ones,
so that the dry run is complete and inspectable, or the ML pre-relaxed ones when the
``prerelax`` hook (:mod:`pqdflow.workflows.engine.prerelax`) replaced them. On a cluster, the
FireWorks workflow rebuilds each band from the relaxed endpoint CONTCARs before the NEB
runs. A calculation's or NEB's ``meta["prerelax"]`` record is copied into its folder's
``pqdflow_inputs.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ase import Atoms

from pqdflow.documents.manifest import MANIFEST_FILE, Manifest, ManifestEntry
from pqdflow.documents.plan import StudyPlan, jsonable
from pqdflow.errors import OverwriteError, StudyError
from pqdflow.fileio import atomic_write_text
from pqdflow.workflows.vasp.calc_inputs import VaspInputOptions, input_set_for, neb_input_set_for
from pqdflow.workflows.vasp.inputsets import PreparedInputs, prepare_neb_inputs, prepare_vasp_inputs
from pqdflow.workflows.vasp.vaspfiles import INPUT_PROVENANCE_FILE

__all__ = ["build_bands", "write_study_inputs"]


def build_bands(plan: StudyPlan) -> dict[str, list[Atoms]]:
    """Return the starting band (endpoints included) of every NEB of ``plan``.

    Tight IDPP between the plan's (unrelaxed) endpoints, minimum image, via
    :func:`pqdflow.structures.defects.interpolate_band`; keyed by NEB name.
    """
    from pqdflow.structures.defects import interpolate_band

    bands: dict[str, list[Atoms]] = {}
    for neb in plan.nebs:
        initial, final = plan.get(neb.initial).atoms, plan.get(neb.final).atoms
        bands[neb.name] = list(interpolate_band(initial, final, neb.n_images, method="idpp"))
    return bands


def _with_prerelax(
    prepared: PreparedInputs, meta: Mapping[str, Any], **extra: Any
) -> PreparedInputs:
    """Add ``meta["prerelax"]`` (None when absent) and ``extra`` to the provenance record."""
    record = {**prepared.record, "prerelax": jsonable(meta.get("prerelax")), **extra}
    return replace(prepared, record=MappingProxyType(record))


def _refresh_prerelax(directory: Path, prepared: PreparedInputs) -> None:
    """Update the pre-relaxation record (and band origin) of a folder already current.

    The record is not part of the input hash, so a folder whose POSCAR a pre-relaxation
    left unchanged is not rewritten; its provenance must still say what was done.
    """
    path = directory / INPUT_PROVENANCE_FILE
    try:
        current = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    wanted = {k: prepared.record[k] for k in ("prerelax", "band") if k in prepared.record}
    if isinstance(current, dict) and current.get("prerelax") != wanted.get("prerelax"):
        current.update(wanted)
        atomic_write_text(path, json.dumps(current, indent=2, sort_keys=True, default=str) + "\n")


def write_study_inputs(
    plan: StudyPlan,
    out: str | Path,
    *,
    force: bool = False,
    prerelax: Callable[[StudyPlan], StudyPlan] | None = None,
    bands: Mapping[str, Sequence[Atoms]] | None = None,
) -> Manifest:
    """Write the VASP input tree of ``plan`` under ``out`` (the local dry run).

    Parameters
    ----------
    plan
        The study plan (:func:`pqdflow.workflows.study.plan_study`).
    out
        Output folder; created if needed.
    force
        Rewrite folders whose inputs changed even if they hold outputs; old folders are
        moved aside to ``<name>.bak-<timestamp>``, never deleted.
    prerelax
        Hook run on the plan before any input is computed (e.g. a cheap ML pre-relaxation
        that replaces each calculation's starting structure); ``None`` = no pre-relaxation.
    bands
        Starting NEB bands by NEB name (endpoints included, ``n_images + 2`` structures),
        e.g. a band pre-converged with an ML potential; NEBs not listed get
        :func:`build_bands` (IDPP between the plan's endpoints).

    Returns
    -------
    Manifest
        Every folder with its input hash; ``written`` lists the folders written now.

    Raises
    ------
    InputSetError, StudyError
        For invalid inputs, before anything is written.
    OverwriteError
        If folders with outputs would change and ``force`` is False; lists every such
        folder; nothing is written.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise StudyError(f"output path {str(out)!r} exists and is not a folder")
    if prerelax is not None:
        plan = prerelax(plan)
        plan.validate()

    # 1. compute everything in memory
    options = VaspInputOptions.from_plan(plan)
    jobs: list[tuple[ManifestEntry, PreparedInputs]] = []
    for calc in plan.calculations:
        prepared = prepare_vasp_inputs(calc.atoms, input_set_for(calc, options))
        prepared = _with_prerelax(prepared, calc.meta)
        entry = ManifestEntry(
            name=calc.name,
            path=calc.name,
            kind=calc.kind,
            inputs_sha256=prepared.input_sha256,
            formula_units=int(calc.formula_units),
            role=calc.role,
            meta=jsonable(calc.meta),
        )
        jobs.append((entry, prepared))
    given = dict(bands or {})
    supplied = set(given)
    unknown = sorted(set(given) - {neb.name for neb in plan.nebs})
    if unknown:
        raise StudyError(
            f"bands given for unknown NEBs {unknown}; plan NEBs: {[n.name for n in plan.nebs]}"
        )
    missing = [neb for neb in plan.nebs if neb.name not in given]
    if missing:
        given.update(build_bands(StudyPlan(plan.name, plan.calculations, nebs=missing)))
    for neb in plan.nebs:
        images = list(given[neb.name])
        if len(images) != neb.n_images + 2:
            raise StudyError(
                f"band for {neb.name!r} has {len(images)} structures; expected n_images + 2 = "
                f"{neb.n_images + 2}"
            )
        if neb.name in supplied:
            band = "supplied"
        elif "prerelax" in neb.meta:
            band = (
                f"IDPP between the endpoints pre-relaxed with {neb.meta['prerelax'].get('backend')}"
                " (rebuilt from relaxed CONTCARs by the FireWorks workflow)"
            )
        else:
            band = (
                "IDPP between the unrelaxed endpoints (rebuilt from relaxed CONTCARs "
                "by the FireWorks workflow)"
            )
        prepared = _with_prerelax(
            prepare_neb_inputs(images, neb_input_set_for(neb, plan.get(neb.initial).kind, options)),
            neb.meta,
            band=band,
        )
        meta = {
            **jsonable(neb.meta),
            "label": neb.label,
            "initial": neb.initial,
            "final": neb.final,
            "n_images": neb.n_images,
            "band": band,
        }
        entry = ManifestEntry(neb.name, neb.name, "neb", prepared.input_sha256, 1, "neb", meta)
        jobs.append((entry, prepared))
    names = [entry.name for entry, _ in jobs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise StudyError(f"folder names used twice in study {plan.name!r}: {dupes}")
    bad = [n for n in names if n == MANIFEST_FILE or "/" in n or n.startswith(".")]
    if bad:
        raise StudyError(f"calculation names {bad} cannot be folder names")

    # 2. check every target before the first write
    to_write: list[tuple[ManifestEntry, PreparedInputs]] = []
    unchanged: list[tuple[ManifestEntry, PreparedInputs]] = []
    refused: list[str] = []
    for entry, prepared in jobs:
        try:
            if prepared.check(out / entry.path, force=force):
                to_write.append((entry, prepared))
            else:
                unchanged.append((entry, prepared))
        except OverwriteError:
            refused.append(entry.path)
    if refused:
        raise OverwriteError(
            f"{len(refused)} folder(s) under {out} hold calculation outputs and their inputs "
            f"would change: {', '.join(refused)}; nothing was written. Use force=True "
            "(--force) to move them aside and rewrite."
        )

    # 3. write
    written: list[str] = []
    for entry, prepared in to_write:
        if prepared.write(out / entry.path, force=force):
            written.append(entry.name)
    for entry, prepared in unchanged:
        _refresh_prerelax(out / entry.path, prepared)
    manifest = Manifest(
        study=plan.name,
        calculations=[entry for entry, _ in jobs],
        bindings=list(plan.bindings),
        nebs=list(plan.nebs),
        written=written,
        path=out / MANIFEST_FILE,
    )
    text = manifest.text()
    current = manifest.path.read_text() if manifest.path.is_file() else None
    if current != text:
        atomic_write_text(manifest.path, text)
    return manifest

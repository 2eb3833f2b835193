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
``prerelax`` hook (:mod:`pqdflow.workflows.prerelax`) replaced them. On a cluster, the
FireWorks workflow rebuilds each band from the relaxed endpoint CONTCARs before the NEB
runs. A calculation's or NEB's ``meta["prerelax"]`` record is copied into its folder's
``pqdflow_inputs.json``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ase import Atoms

from pqdflow import __version__
from pqdflow.errors import OverwriteError, StudyError
from pqdflow.fileio import atomic_write_text
from pqdflow.workflows.inputsets import (
    PreparedInputs,
    VaspInputSet,
    get_input_set,
    prepare_neb_inputs,
    prepare_vasp_inputs,
)
from pqdflow.workflows.plan import CalcSpec, NebSpec, StudyPlan
from pqdflow.workflows.vaspfiles import INPUT_PROVENANCE_FILE

__all__ = [
    "ENDPOINT_ROLES",
    "MANIFEST_FILE",
    "Manifest",
    "ManifestEntry",
    "build_bands",
    "input_set_for",
    "neb_input_set_for",
    "read_manifest",
    "write_study_inputs",
]

#: File name of the manifest in the output folder.
MANIFEST_FILE = "manifest.json"
#: Calculation roles of NEB endpoints (relaxed tighter, see ``neb_endpoint_ediffg``).
ENDPOINT_ROLES = frozenset({"neb_initial", "neb_final"})


@dataclass(frozen=True)
class ManifestEntry:
    """One written folder.

    Attributes
    ----------
    name
        Calculation (or NEB) name.
    path
        Folder relative to the output folder.
    kind
        ``bulk``, ``slab``, ``molecule``, ``adsorbed`` or ``neb``.
    inputs_sha256
        SHA-256 of the inputs (POTCAR as its spec), see
        :class:`~pqdflow.workflows.inputsets.PreparedInputs`.
    formula_units
        Formula units in the cell (1 for NEB folders).
    role
        ``model``, ``reference``, ``ligand_reference``, ``neb_initial``, ``neb_final``, ``neb``.
    meta
        The plan's metadata for this calculation.
    """

    name: str
    path: str
    kind: str
    inputs_sha256: str
    formula_units: int
    role: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Manifest:
    """What a dry run wrote: the content of ``manifest.json`` plus what changed this time.

    Attributes
    ----------
    study
        Study name.
    calculations
        One entry per folder (calculations first, then NEB folders).
    bindings, nebs
        The plan's binding reactions and NEB paths as dicts.
    written
        Names of the folders written by this call (empty on an unchanged re-run).
    path
        The manifest file.
    """

    study: str
    calculations: list[ManifestEntry]
    bindings: list[dict[str, Any]]
    nebs: list[dict[str, Any]]
    written: list[str]
    path: Path

    def as_dict(self) -> dict[str, Any]:
        """Return the content of ``manifest.json`` (no timestamps: re-runs are identical)."""
        return {
            "study": self.study,
            "pqdflow_version": __version__,
            "calculations": [asdict(c) for c in self.calculations],
            "bindings": self.bindings,
            "nebs": self.nebs,
        }


def _inputs_meta(plan: StudyPlan) -> dict[str, Any]:
    return dict(plan.meta.get("inputs", {}))


def _common(plan: StudyPlan) -> dict[str, Any]:
    opts = _inputs_meta(plan)
    common: dict[str, Any] = {}
    if opts.get("kpoint_density") is not None:
        common["kpoint_density"] = float(opts["kpoint_density"])
    if opts.get("dispersion") is not None:
        common["dispersion"] = opts["dispersion"]
    return common


def input_set_for(plan: StudyPlan, calc: CalcSpec) -> VaspInputSet:
    """Return the input set of one calculation of ``plan``.

    The kind's preset (bulk with ``relax_cell`` -> ISIF 3, else ISIF 2), the study's
    k-point density and dispersion, and the study's INCAR overrides for that kind; NEB
    endpoints get ``EDIFFG = neb_endpoint_ediffg`` unless the study overrides EDIFFG, and the
    study's vacancy charge (NELECT) from ``calc.meta["charge"]``.
    """
    overrides = dict(plan.incar_overrides.get(calc.kind, {}))
    ediffg = _inputs_meta(plan).get("neb_endpoint_ediffg")
    if calc.role in ENDPOINT_ROLES and ediffg is not None and "EDIFFG" not in overrides:
        overrides["EDIFFG"] = float(ediffg)
    return get_input_set(
        calc.kind,
        relax_cell=calc.relax_cell,
        incar_overrides=overrides,
        charge=int(calc.meta.get("charge", 0)),
        **_common(plan),
    )


def neb_input_set_for(plan: StudyPlan, neb: NebSpec) -> VaspInputSet:
    """Return the NEB input set of ``neb``: host from its initial endpoint's kind, VTST switch."""
    host = plan.get(neb.initial).kind
    return get_input_set(
        "neb",
        host="bulk" if host == "bulk" else "slab",
        vtst=bool(_inputs_meta(plan).get("vtst", True)),
        incar_overrides=dict(plan.incar_overrides.get("neb", {})),
        charge=int(neb.meta.get("charge", 0)),
        **_common(plan),
    )


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


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def _with_prerelax(
    prepared: PreparedInputs, meta: Mapping[str, Any], **extra: Any
) -> PreparedInputs:
    """Add ``meta["prerelax"]`` (None when absent) and ``extra`` to the provenance record."""
    record = {**prepared.record, "prerelax": _jsonable(meta.get("prerelax")), **extra}
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
    jobs: list[tuple[ManifestEntry, PreparedInputs]] = []
    for calc in plan.calculations:
        prepared = prepare_vasp_inputs(calc.atoms, input_set_for(plan, calc))
        prepared = _with_prerelax(prepared, calc.meta)
        entry = ManifestEntry(
            name=calc.name,
            path=calc.name,
            kind=calc.kind,
            inputs_sha256=prepared.input_sha256,
            formula_units=int(calc.formula_units),
            role=calc.role,
            meta=_jsonable(calc.meta),
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
            prepare_neb_inputs(images, neb_input_set_for(plan, neb)), neb.meta, band=band
        )
        meta = {
            **_jsonable(neb.meta),
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
        bindings=[_jsonable(asdict(b)) for b in plan.bindings],
        nebs=[_jsonable(asdict(n)) for n in plan.nebs],
        written=written,
        path=out / MANIFEST_FILE,
    )
    text = json.dumps(manifest.as_dict(), indent=2, sort_keys=True) + "\n"
    current = manifest.path.read_text() if manifest.path.is_file() else None
    if current != text:
        atomic_write_text(manifest.path, text)
    return manifest


def read_manifest(out: str | Path) -> Mapping[str, Any]:
    """Read ``manifest.json`` of a dry-run folder.

    Raises
    ------
    StudyError
        If the manifest is missing or not JSON.
    """
    path = Path(out) / MANIFEST_FILE
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError) as exc:
        raise StudyError(f"cannot read the dry-run manifest {path}: {exc}") from exc

"""DFT check of a finished ML run folder: DFT single points on the ML geometries.

For chosen NEB paths (their initial, climbing and final images) and chosen binding reactions
(every calculation of the reaction) of a run folder written by ``pqdflow run``, compute DFT
single points on the ML-relaxed structures and report the DFT barriers and binding energies
next to the ML ones, with ML - DFT (``pqdflow dft-check``).

* :func:`plan_dft_check` reads the run folder (``results.json`` and ``manifest.json``) and
  returns the steps: one ``single_point`` step per structure (the schedule's
  :class:`~pqdflow.workflows.study.scheduler.Step`) and one ``binding`` step per reaction,
  whose parents are the single points of its calculations.
* :func:`run_dft_check` runs them here with
  :func:`~pqdflow.workflows.study.steps.execute_step` (as the local engine does), or reads
  back the single points a FireWorks workflow
  (:func:`pqdflow.workflows.fireworks.dft_check.build_dft_check_workflow`) or VASP
  (:class:`VaspSinglePoints`, ``--backend vasp-dry``) computed, then writes
  ``dft_check.json`` and ``dft_check.md`` into the check folder (default ``RUN/dft_check``).

The DFT binding energy uses :func:`~pqdflow.analysis.binding.compute_binding` with the same
atom balance as the ML one; the barrier comparison is
:func:`~pqdflow.workflows.engine.dft_check.compare_energies`. A finished single point is
reused only when it was computed from the same structure, backend and settings; a folder
holding another check is refused (:class:`~pqdflow.errors.OverwriteError`).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pqdflow.analysis.binding import compute_binding
from pqdflow.documents.manifest import read_manifest
from pqdflow.documents.plan import BindingSpec, CalcSpec, jsonable
from pqdflow.documents.results import RESULT_FILE, BindingDoc, RelaxDoc, StudyResults
from pqdflow.errors import CalculationFailed, InputError, OverwriteError, StudyError
from pqdflow.fileio import atomic_write_json, atomic_write_text
from pqdflow.provenance import provenance
from pqdflow.workflows.engine.dft_check import compare_energies, neb_check_images
from pqdflow.workflows.study.scheduler import Step, reuse_settings
from pqdflow.workflows.study.steps import execute_step, step_directory

__all__ = [
    "CHECK_DIR",
    "DEFAULT_MAX_ATOMS",
    "REPORT_FILE",
    "DftCheckPlan",
    "DftCheckReport",
    "SinglePointPending",
    "VaspSinglePoints",
    "image_step_name",
    "plan_dft_check",
    "run_dft_check",
]

#: Default check folder inside the run folder.
CHECK_DIR = "dft_check"
#: The summary written into the check folder (a table goes next to it as ``dft_check.md``).
REPORT_FILE = "dft_check.json"
#: Largest cell computed on this machine by default: the 39-atom bulk V_Br+ cell takes about
#: 2 CPU-minutes per GPAW single point at Gamma (README); larger cells go to a cluster.
DEFAULT_MAX_ATOMS = 40


class SinglePointPending(CalculationFailed):
    """A single point whose inputs are written but whose outputs are not there yet (VASP)."""


@dataclass(frozen=True)
class DftCheckPlan:
    """What a DFT check of a run folder computes.

    Attributes
    ----------
    run
        The ML run folder.
    ml_backend
        Backend of the ML run (``chgnet``, ``mock``, ...).
    steps
        ``single_point`` steps, then ``binding`` steps (parents: their single points).
    nebs
        NEB name -> ``{"label", "images": [single-point names], "ml_energies": [eV]}``.
    bindings
        Reaction name -> the ML :class:`~pqdflow.documents.results.BindingDoc`.
    ml_energies
        Single-point name -> ML total energy of that structure (eV).
    """

    run: Path
    ml_backend: str
    steps: tuple[Step, ...]
    nebs: Mapping[str, Mapping[str, Any]]
    bindings: Mapping[str, BindingDoc]
    ml_energies: Mapping[str, float]

    def single_points(self) -> list[Step]:
        """Return the ``single_point`` steps."""
        return [s for s in self.steps if s.kind == "single_point"]


def image_step_name(neb: str, label: str) -> str:
    """Name of the single point of one image of a band (``<neb>-<label>-image``)."""
    return f"{neb}-{label}-image"


def _pick(asked: Sequence[str], known: Sequence[str], what: str, option: str) -> list[str]:
    unknown = [n for n in asked if n not in known]
    if unknown:
        raise InputError(
            f"unknown {what} {unknown} ({option}); finished {what}s of this run: {list(known)}"
        )
    return list(dict.fromkeys(asked))


def _in_run(path: str, run: Path, group: str, name: str) -> str:
    """Return the document's folder, or its place in ``run`` if the run folder moved."""
    return path if Path(path).is_dir() else str(run / group / name)


def plan_dft_check(
    run: str | Path, *, nebs: Sequence[str] = (), bindings: Sequence[str] = ()
) -> DftCheckPlan:
    """Return the single points and reactions of a DFT check of the ML run folder ``run``.

    Parameters
    ----------
    run
        A folder written by ``pqdflow run`` (``results.json`` and ``manifest.json``).
    nebs
        NEB path names (``neb-bulk-x2``, ...): single points on the initial, climbing (or
        highest) and final images of each ML band, with the cells' net charge.
    bindings
        Binding reaction names: single points on the ML-relaxed structure of every
        calculation of each reaction.

    Raises
    ------
    StudyError
        ``run`` holds no ``results.json`` or ``manifest.json``.
    InputError
        Nothing chosen, or a name that is not a finished NEB / reaction of the run (the
        message lists the finished ones).
    """
    run = Path(run)
    results_path = run / "results.json"
    if not results_path.is_file():
        raise StudyError(f"{run} holds no results.json; run the ML study first (pqdflow run)")
    results = StudyResults.read(results_path)
    manifest = read_manifest(run)
    neb_docs = {d.path: d for d in results.neb_docs()}
    binding_docs = {d.name: d for d in results.binding_docs()}
    relax_docs = {d.name: d for d in results.relax_docs()}
    if not nebs and not bindings:
        raise InputError(
            f"choose what to check: --neb NAME (of {list(neb_docs)}) and/or --binding NAME "
            f"(of {list(binding_docs)})"
        )
    chosen_nebs = _pick(nebs, list(neb_docs), "NEB", "--neb")
    chosen_bindings = _pick(bindings, list(binding_docs), "binding reaction", "--binding")
    neb_specs = {n.name: n for n in manifest.nebs}
    binding_specs = {b.name: b for b in manifest.bindings}
    steps: dict[str, Step] = {}
    ml: dict[str, float] = {}
    neb_rows: dict[str, dict[str, Any]] = {}
    for name in chosen_nebs:
        doc = neb_docs[name]
        doc = dataclasses.replace(doc, directory=_in_run(doc.directory, run, "neb", name))
        neb_spec = neb_specs[name]
        host = relax_docs[neb_spec.initial].kind if neb_spec.initial in relax_docs else "bulk"
        images, labels, energies = neb_check_images(doc)
        names = [image_step_name(name, label) for label in labels]
        for step_name, atoms, label, energy in zip(names, images, labels, energies, strict=True):
            meta = {
                "charge": neb_spec.charge,
                "neb": name,
                "image": label,
                "ml_backend": doc.backend,
            }
            calc = CalcSpec(step_name, host, atoms, role="neb_image", meta=meta)  # type: ignore[arg-type]
            steps[step_name] = Step("single_point", step_name, (), calc)
            ml[step_name] = float(energy)
        neb_rows[name] = {"label": doc.label, "images": names, "ml_energies": energies}
    reactions: list[Step] = []
    for name in chosen_bindings:
        if name not in binding_specs:
            raise StudyError(
                f"binding {name!r} is not in {run}/manifest.json; rerun pqdflow run into "
                "this folder to rewrite the manifest"
            )
        spec = binding_specs[name]
        for calc_name in dict.fromkeys(spec.parents()):
            if calc_name in steps:
                continue
            if calc_name not in relax_docs:
                raise InputError(f"binding {name!r}: calculation {calc_name!r} did not finish")
            relax = relax_docs[calc_name]
            relax = dataclasses.replace(
                relax, directory=_in_run(relax.directory, run, "calcs", calc_name)
            )
            calc = CalcSpec(
                calc_name,
                relax.kind,  # type: ignore[arg-type]
                relax.read_structure(),
                formula_units=relax.formula_units,
                role=relax.role,
                meta={**jsonable(relax.meta), "ml_backend": relax.backend},
            )
            calc.meta.pop("inputs", None)
            steps[calc_name] = Step("single_point", calc_name, (), calc)
            ml[calc_name] = relax.energy
        reactions.append(Step("binding", name, tuple(dict.fromkeys(spec.parents())), spec))
    return DftCheckPlan(
        run=run,
        ml_backend=results.backend,
        steps=(*steps.values(), *reactions),
        nebs=neb_rows,
        bindings={n: binding_docs[n] for n in chosen_bindings},
        ml_energies=ml,
    )


@dataclass
class DftCheckReport:
    """ML vs DFT barriers and binding energies of a run folder (energies in eV).

    Attributes
    ----------
    run
        The ML run folder.
    ml_backend, backend
        The ML backend and the DFT one (``gpaw``, ``vasp-dry``, ...).
    settings
        The DFT backend's settings.
    nebs
        One row per band: ``name``, ``label`` and the
        :class:`~pqdflow.workflows.engine.dft_check.DftCheckDoc` fields (``ml_barrier``,
        ``dft_barrier``, ``difference`` = ML - DFT, per image energies, CPU seconds).
    bindings
        One row per reaction: ``name``, ``ligand``, ``site``, ``ml_E_b_eV``, ``dft_E_b_eV``,
        ``difference_eV`` (ML - DFT), ``terms`` (ML and DFT energy of each calculation),
        ``balanced``, ``cpu_seconds``.
    pending
        Single points not computed yet (VASP inputs written, outputs not there).
    """

    run: str
    ml_backend: str
    backend: str
    settings: dict[str, Any]
    nebs: list[dict[str, Any]] = field(default_factory=list)
    bindings: list[dict[str, Any]] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(jsonable(dataclasses.asdict(self)))

    def table(self) -> str:
        """Markdown tables: barriers and binding energies, ML, DFT and ML - DFT (eV)."""

        def num(value: Any) -> str:
            return "pending" if value is None else f"{value:+.3f}"

        ml, dft = self.ml_backend, self.backend
        lines = [f"# DFT check of {self.run}: ML {ml}, DFT {dft}", ""]
        if self.nebs:
            lines += [
                f"| NEB | label | ML barrier ({ml}) | DFT barrier ({dft}) | ML - DFT | CPU s |",
                "|---|---|---|---|---|---|",
            ]
            for row in self.nebs:
                lines.append(
                    f"| {row['name']} | {row['label']} | {num(row.get('ml_barrier'))} | "
                    f"{num(row.get('dft_barrier'))} | {num(row.get('difference'))} | "
                    f"{sum(row.get('cpu_seconds') or [0.0]):.0f} |"
                )
            lines.append("")
        if self.bindings:
            lines += [
                f"| binding | ligand | site | ML E_b ({ml}) | DFT E_b ({dft}) | ML - DFT | CPU s |",
                "|---|---|---|---|---|---|---|",
            ]
            for row in self.bindings:
                lines.append(
                    f"| {row['name']} | {row['ligand']} | {row['site']} | "
                    f"{num(row['ml_E_b_eV'])} | {num(row['dft_E_b_eV'])} | "
                    f"{num(row['difference_eV'])} | {row['cpu_seconds']:.0f} |"
                )
            lines.append("")
        if self.pending:
            lines.append(f"pending single points: {', '.join(self.pending)}")
        return "\n".join(lines).rstrip() + "\n"


class VaspSinglePoints:
    """VASP single points written for a cluster and read back when they have run.

    ``single_point`` writes the calculation's VASP inputs (the dry run's input set,
    :func:`~pqdflow.workflows.vasp.calc_inputs.input_set_for`, NELECT of a charged cell
    included, with ``NSW = 0`` and ``IBRION = -1``) into the folder and raises
    :class:`SinglePointPending`; once VASP has run there, the next call parses the outputs
    (:func:`~pqdflow.analysis.vasp.parse_calculation`) into a RelaxDoc.

    Parameters
    ----------
    options
        The study's VASP input options as a dict
        (:meth:`~pqdflow.workflows.vasp.calc_inputs.VaspInputOptions.as_dict`).
    encut
        ENCUT override (eV); ``None`` keeps the presets' 400 eV.
    """

    name = "vasp-dry"

    def __init__(self, options: Mapping[str, Any] | None = None, encut: float | None = None):
        self.options = dict(options or {})
        self.encut = encut

    def describe(self) -> dict[str, Any]:
        """Backend name and settings (JSON-ready)."""
        return {"backend": self.name, "inputs": self.options, "encut": self.encut}

    def single_point(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        """Return the parsed single point, or write its inputs and raise SinglePointPending."""
        from pqdflow.analysis.vasp import parse_calculation
        from pqdflow.workflows.engine.single_point import single_point_structure
        from pqdflow.workflows.vasp.calc_inputs import VaspInputOptions, input_set_for
        from pqdflow.workflows.vasp.inputsets import prepare_vasp_inputs

        input_set = input_set_for(spec, VaspInputOptions.from_dict(self.options))
        extra = {"NSW": 0, "IBRION": -1, **({"ENCUT": self.encut} if self.encut else {})}
        input_set = dataclasses.replace(
            input_set, incar_overrides={**input_set.incar_overrides, **extra}
        )
        if (directory / "OUTCAR").is_file() or (directory / "vasprun.xml").is_file():
            doc = parse_calculation(directory)
            energy = doc.energy_sigma0
            if doc.status == "ok" and energy is not None and doc.converged_electronic:
                from ase.calculators.singlepoint import SinglePointCalculator

                calc = SinglePointCalculator(spec.atoms, energy=float(energy))
                return single_point_structure(
                    spec.atoms,
                    calc,
                    directory,
                    name=spec.name,
                    backend=self.name,
                    kind=spec.kind,
                    role=spec.role,
                    formula_units=spec.formula_units,
                    settings={"incar": jsonable(input_set.incar(spec.atoms)), "vasp": True},
                    meta=spec.meta,
                )
            raise SinglePointPending(
                f"{directory}: VASP single point {spec.name!r} is {doc.status} "
                f"(electronic convergence {doc.converged_electronic})"
            )
        prepare_vasp_inputs(spec.atoms, input_set).write(directory)
        raise SinglePointPending(f"{directory}: VASP inputs written; run VASP there")


def _check_folder(folder: Path, backend: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Return the check summary already in ``folder`` (or {}); refuse another check."""
    path = folder / REPORT_FILE
    if not path.is_file():
        return {}
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if old.get("backend") != backend or old.get("settings") != jsonable(dict(settings)):
        raise OverwriteError(
            f"{folder} holds a DFT check with backend {old.get('backend')!r} and settings "
            f"{old.get('settings')}; it is not mixed with a {backend!r} check of "
            f"{jsonable(dict(settings))}. Use another --check-dir, or move that folder away."
        )
    return dict(old)


def _guard_size(steps: Sequence[Step], root: Path, max_atoms: int | None) -> None:
    if max_atoms is None:
        return
    big = []
    for step in steps:
        folder = step_directory(step, root)
        atoms = getattr(step.spec, "atoms", None)
        if folder is not None and not (folder / RESULT_FILE).is_file() and atoms is not None:
            if len(atoms) > max_atoms:
                big.append(f"{step.name} ({len(atoms)} atoms)")
    if big:
        raise InputError(
            f"{len(big)} single point(s) over the local limit of {max_atoms} atoms: "
            f"{', '.join(big)}. DFT cells of this size belong on a cluster: add the check to a "
            "FireWorks launchpad (pqdflow dft-check ... --launchpad my_launchpad.yaml; GPAW "
            "under MPI, or --backend vasp-dry for VASP single points), then rerun this "
            "command to read the results back; or raise the limit with --max-atoms N"
        )


def run_dft_check(
    run: str | Path,
    backend: Any,
    *,
    nebs: Sequence[str] = (),
    bindings: Sequence[str] = (),
    check_dir: str | Path | None = None,
    max_atoms: int | None = DEFAULT_MAX_ATOMS,
    echo: Callable[[str], None] | None = None,
) -> DftCheckReport:
    """DFT single points on the ML geometries of a run folder; ML vs DFT numbers.

    Parameters
    ----------
    run
        The ML run folder (``pqdflow run``).
    backend
        The DFT backend: a registry backend that runs single points
        (:class:`~pqdflow.workflows.engine.single_point.SinglePointBackend`: ``gpaw``; ``mock``
        as a plumbing stand-in) or :class:`VaspSinglePoints`.
    nebs, bindings
        What to check (see :func:`plan_dft_check`).
    check_dir
        Check folder (default ``RUN/dft_check``): ``single_points/<name>/`` per structure,
        ``dft_check.json`` and ``dft_check.md``.
    max_atoms
        Largest cell computed here (``None``: no limit); finished single points (from
        FireWorks or an earlier run) are read back whatever their size. Not applied to
        :class:`VaspSinglePoints`, which computes nothing here.
    echo
        Called with one progress line per single point.

    Raises
    ------
    InputError
        See :func:`plan_dft_check`; a cell over ``max_atoms`` (naming ``--max-atoms`` and the
        FireWorks route); raised before anything is computed.
    OverwriteError
        The check folder holds a check of another backend or settings, or a single point of
        another structure.
    """
    say = echo or (lambda line: None)
    plan = plan_dft_check(run, nebs=nebs, bindings=bindings)
    root = Path(check_dir) if check_dir is not None else plan.run / CHECK_DIR
    settings = reuse_settings(backend.describe())
    old = _check_folder(root, backend.name, settings)
    points = plan.single_points()
    if not isinstance(backend, VaspSinglePoints):
        _guard_size(points, root, max_atoms)
    root.mkdir(parents=True, exist_ok=True)
    docs: dict[str, RelaxDoc] = {}
    pending: list[str] = []
    for i, step in enumerate(points, 1):
        folder = step_directory(step, root)
        reused = folder is not None and (folder / RESULT_FILE).is_file()
        n_atoms = len(getattr(step.spec, "atoms", []))
        head = f"[{i}/{len(points)}] {step.name} ({n_atoms} atoms, {backend.name})"
        try:
            doc = execute_step(step, backend, docs, root)
        except SinglePointPending as exc:
            pending.append(step.name)
            say(f"{head}: pending ({exc})")
            continue
        assert isinstance(doc, RelaxDoc)
        docs[step.name] = doc
        cpu = float(doc.meta.get("cpu_seconds", 0.0))
        state = "reused" if reused else f"{cpu:.0f} CPU-s"
        say(f"{head}: E = {doc.energy:.4f} eV ({state})")
    report = DftCheckReport(
        run=str(plan.run),
        ml_backend=plan.ml_backend,
        backend=backend.name,
        settings=jsonable(settings),
        pending=pending,
        provenance=provenance(max_atoms=max_atoms),
    )
    for name, row in plan.nebs.items():
        images = row["images"]
        if any(n not in docs for n in images):
            report.nebs.append({"name": name, "label": row["label"], "images": images})
            continue
        check = compare_energies(
            [n.removeprefix(f"{name}-").removesuffix("-image") for n in images],
            row["ml_energies"],
            [docs[n].energy for n in images],
            [float(docs[n].meta.get("cpu_seconds", 0.0)) for n in images],
            calculator=backend.name,
        )
        row_head = {"name": name, "label": row["label"], "images": images}
        report.nebs.append(row_head | check.as_dict())
    steps = {s.name: s for s in plan.steps}
    for step in plan.steps:
        if step.kind != "binding":
            continue
        ml_doc = plan.bindings[step.name]
        spec = step.spec
        assert isinstance(spec, BindingSpec)
        ready = all(p in docs for p in step.parents)
        how: Literal["exchange", "interaction"] = (
            "interaction" if ml_doc.definition == "interaction" else "exchange"
        )
        dft = compute_binding(spec, docs, definition=how) if ready else None
        dft_e = None if dft is None else float(dft.E_b_eV)
        report.bindings.append(
            {
                "name": step.name,
                "ligand": ml_doc.ligand,
                "site": ml_doc.site,
                "definition": ml_doc.definition,
                "ml_E_b_eV": ml_doc.E_b_eV,
                "dft_E_b_eV": dft_e,
                "difference_eV": None if dft_e is None else ml_doc.E_b_eV - dft_e,
                "balanced": None if dft is None else dft.balanced,
                "terms": {
                    p: {
                        "ml_eV": plan.ml_energies[p],
                        "dft_eV": docs[p].energy if p in docs else None,
                        "n_atoms": len(getattr(steps[p].spec, "atoms", [])),
                    }
                    for p in step.parents
                },
                "cpu_seconds": sum(
                    float(docs[p].meta.get("cpu_seconds", 0.0)) for p in step.parents if p in docs
                ),
            }
        )
    _write(report, root, old)
    return report


def _write(report: DftCheckReport, root: Path, old: Mapping[str, Any]) -> None:
    """Write dft_check.json (rows of earlier checks in this folder kept) and dft_check.md."""
    data = report.as_dict()
    for key in ("nebs", "bindings"):
        now = {row["name"] for row in data[key]}
        data[key] = [r for r in old.get(key, []) if r.get("name") not in now] + data[key]
    merged = DftCheckReport(**{k: data[k] for k in data})
    atomic_write_json(root / REPORT_FILE, merged.as_dict())
    atomic_write_text(root / "dft_check.md", merged.table())

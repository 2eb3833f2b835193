"""Reports over a study folder: read every calculation, binding energies, NEB barriers.

:func:`build_report` reads ``DIR/manifest.json`` (written by the dry run and by
``pqdflow run``; :func:`~pqdflow.documents.manifest.read_manifest`), takes each calculation
from its folder (the ``result.json`` document a pqdflow backend wrote, else the VASP outputs
through :func:`~pqdflow.analysis.vasp.parse_calculation`) and each NEB from its folder (the
document, else :func:`~pqdflow.analysis.neb_parse.parse_neb` with the endpoint energies of the
endpoint relaxations), and combines them with
:func:`~pqdflow.analysis.binding.compute_binding` (atom balance checked):

``E_b = E(adsorbed) + sum_i n_i E(released_i) - E(slab) - sum_j m_j E(ligand_j)``

with every energy per formula unit of its calculation (``E / formula_units``, eV). Negative
means the ligand binds. Calculations combined in one quantity must share functional, ENCUT
and POTCAR choice per element (:func:`check_consistency`). Missing or unfinished folders
become rows with their status; they never stop the report.

:func:`~pqdflow.analysis.report.writers.write_report` writes ``report.csv``, ``report.json``,
``report.md`` and the plots.

Hop vibrational analyses (``vib.json``, a :class:`~pqdflow.analysis.rates.HopVibDoc` written
by ``pqdflow vib NEB_DIR``) anywhere under the tree become the ``vibrations`` rows: imaginary
mode counts, saddle-mode/tangent overlap, Vineyard prefactor, Ea, k(300 K) and D(300 K),
with the spectrum picture (``vib_spectrum.png`` next to the document) copied or drawn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pqdflow.analysis.binding import EnergyTerm, compute_binding
from pqdflow.analysis.neb_parse import EnergyKey, parse_neb
from pqdflow.analysis.rates import HopVibDoc
from pqdflow.analysis.vasp import VaspCalcDoc, parse_calculation
from pqdflow.documents.manifest import Manifest, ManifestEntry, read_manifest
from pqdflow.documents.plan import BindingSpec, NebSpec
from pqdflow.documents.results import RESULT_FILE, NebDoc, RelaxDoc
from pqdflow.errors import InputError, ParseError, PqdflowError
from pqdflow.provenance import provenance

__all__ = [
    "VIB_DOC",
    "VIB_SPECTRUM",
    "InconsistentCalculationsError",
    "StudyReport",
    "build_report",
    "check_consistency",
]

#: File names ``pqdflow vib NEB_DIR`` saves into the NEB folder and the report looks for.
VIB_DOC = "vib.json"
VIB_SPECTRUM = "vib_spectrum.png"


class InconsistentCalculationsError(InputError):
    """Calculations combined in one quantity that differ in functional, ENCUT or POTCARs."""


def _potcar_by_element(doc: VaspCalcDoc) -> dict[str, str]:
    out: dict[str, str] = {}
    for titel in doc.parameters.potcar_titels:
        parts = titel.split()
        m = re.match(r"[A-Z][a-z]?", parts[1] if len(parts) > 1 else "")
        if m:
            out[m.group(0)] = titel
    return out


def check_consistency(docs: Mapping[str, VaspCalcDoc | RelaxDoc]) -> None:
    """Check that calculations share backend, functional, ENCUT and every element's POTCAR.

    Parameters
    ----------
    docs
        Name -> parsed VASP calculation or pqdflow relax document; VASP documents without
        parameters (nothing ran) are skipped.

    Raises
    ------
    InconsistentCalculationsError
        Naming each differing setting and which calculation uses which value.
    """
    problems: list[str] = []
    backends = {n: d.backend if isinstance(d, RelaxDoc) else "vasp" for n, d in docs.items()}
    if len(set(backends.values())) > 1:
        problems.append(f"backend differs: {backends}")
    ran = {n: d for n, d in docs.items() if isinstance(d, VaspCalcDoc) and d.parameters.encut}
    for label, get in (
        ("functional", lambda d: d.parameters.functional),
        ("ENCUT (eV)", lambda d: d.parameters.encut),
    ):
        values = {n: get(d) for n, d in ran.items()}
        if len(set(values.values())) > 1:
            problems.append(f"{label} differs: {values}")
    seen: dict[str, dict[str, list[str]]] = {}
    for name, doc in ran.items():
        for element, titel in _potcar_by_element(doc).items():
            seen.setdefault(element, {}).setdefault(titel, []).append(name)
    for element, by_titel in sorted(seen.items()):
        if len(by_titel) > 1:
            problems.append(f"POTCAR for {element} differs: {by_titel}")
    if problems:
        raise InconsistentCalculationsError(
            "calculations combined in one quantity must share backend, functional, ENCUT and "
            "POTCARs; " + "; ".join(problems)
        )


@dataclass
class StudyReport:
    """Results of a whole study folder (energies in eV, forces in eV/Å).

    Attributes
    ----------
    directory
        The folder that was read.
    study
        Study name from the manifest.
    energy_key
        Which VASP energy was used (``energy_sigma0`` by default; pqdflow backends' documents
        hold one energy).
    calculations, bindings, nebs
        One row (dict) per calculation, binding reaction and NEB path.
    vibrations
        One row per hop vibrational analysis (``vib.json``) found under the folder; left out
        of :meth:`as_dict` when empty.
    warnings
        Anything that was skipped or suspicious.
    """

    directory: str
    study: str
    energy_key: str
    calculations: list[dict[str, Any]] = field(default_factory=list)
    bindings: list[dict[str, Any]] = field(default_factory=list)
    nebs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    vibrations: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (no ``vibrations`` key when there are none)."""
        data = asdict(self)
        if not data["vibrations"]:
            del data["vibrations"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyReport:
        """Inverse of :meth:`as_dict`."""
        return cls(**data)


@dataclass
class _Calc:
    """One calculation as read from its folder."""

    entry: ManifestEntry
    doc: VaspCalcDoc | RelaxDoc | None
    note: str = ""

    def term(self, key: EnergyKey) -> EnergyTerm | None:
        doc = self.doc
        if isinstance(doc, RelaxDoc):
            return EnergyTerm.of(doc)
        if doc is None or getattr(doc, key) is None or not doc.structure:
            return None
        return EnergyTerm(
            energy=float(getattr(doc, key)),
            formula=doc.to_atoms().get_chemical_formula(),
            formula_units=int(self.entry.formula_units or 1),
            converged=doc.status == "ok",
            backend="vasp",
        )

    def row(self, key: EnergyKey) -> dict[str, Any]:
        entry, doc = self.entry, self.doc
        fu = int(entry.formula_units or 1)
        row: dict[str, Any] = {
            "name": entry.name,
            "path": entry.path,
            "kind": entry.kind,
            "role": entry.role,
            "formula_units": fu,
            "status": "missing",
            "energy_eV": None,
            "energy_per_fu_eV": None,
            "max_force_eV_per_A": None,
            "n_ionic_steps": 0,
            "converged_ionic": None,
            "functional": None,
            "encut_eV": None,
            "backend": None,
            "error_message": None,
            "note": self.note,
        }
        if isinstance(doc, RelaxDoc):
            row |= {
                "status": "ok" if doc.converged else "unconverged",
                "energy_eV": doc.energy,
                "max_force_eV_per_A": doc.fmax,
                "n_ionic_steps": doc.n_steps,
                "converged_ionic": doc.converged,
                "backend": doc.backend,
            }
        elif doc is not None:
            p = doc.parameters
            row |= {
                "status": doc.status,
                "energy_eV": getattr(doc, key),
                "max_force_eV_per_A": doc.max_force,
                "n_ionic_steps": doc.n_ionic_steps,
                "converged_ionic": doc.converged_ionic,
                "functional": p.functional,
                "encut_eV": p.encut,
                "backend": "vasp",
                "error_message": doc.error_message,
            }
        if row["energy_eV"] is not None:
            row["energy_per_fu_eV"] = row["energy_eV"] / fu
        return row


def _read_calc(folder: Path, entry: ManifestEntry) -> _Calc:
    if not folder.is_dir():
        return _Calc(entry, None, f"folder {folder.name} not found")
    if (folder / RESULT_FILE).is_file():
        try:
            return _Calc(entry, RelaxDoc.read(folder / RESULT_FILE))
        except ParseError as exc:
            return _Calc(entry, None, exc.reason)
    try:
        return _Calc(entry, parse_calculation(folder))
    except ParseError as exc:
        return _Calc(entry, None, exc.reason)


def build_report(
    directory: str | Path, *, energy_key: EnergyKey = "energy_sigma0", strict: bool = True
) -> StudyReport:
    """Read a study folder (``DIR/manifest.json``) into a :class:`StudyReport`.

    Works on a dry-run tree filled by VASP and on a ``pqdflow run`` folder alike: each
    calculation is read from its pqdflow document (``result.json``) when there is one, else
    from the VASP outputs.

    Parameters
    ----------
    directory
        The study folder.
    energy_key
        VASP energy used everywhere: ``energy_sigma0`` (default), ``energy_without_entropy``
        or ``free_energy``.
    strict
        Raise when the calculations of one binding reaction or NEB are inconsistent; when
        False, record the problem in the row's ``status`` (``inconsistent``) instead.

    Raises
    ------
    StudyError
        No readable manifest.
    InconsistentCalculationsError
        (``strict``) calculations combined in one quantity differ in backend, functional,
        ENCUT or POTCARs.
    """
    root = Path(directory)
    manifest = read_manifest(root)
    report = StudyReport(str(root), manifest.study, energy_key)
    report.provenance = provenance(manifest=str(manifest.path))
    calcs = {
        e.name: _read_calc(manifest.folder(e.name), e)
        for e in manifest.calculations
        if e.kind != "neb"
    }
    report.calculations = [c.row(energy_key) for c in calcs.values()]
    for spec in manifest.bindings:
        report.bindings.append(_binding_row(spec, calcs, energy_key, strict))
    for neb in manifest.nebs:
        report.nebs.append(_neb_row(manifest, neb, calcs, energy_key, strict))
    report.vibrations = _vib_rows(root, report.warnings)
    return report


def _binding_row(
    spec: BindingSpec, calcs: Mapping[str, _Calc], key: EnergyKey, strict: bool
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": spec.name,
        "ligand": spec.ligand,
        "site": spec.site,
        "label": spec.ligand,
        "E_b_eV": None,
        "balanced": None,
        "status": "ok",
        "note": "",
        "meta": dict(spec.meta),
    }
    names = list(dict.fromkeys(spec.parents()))
    docs = {n: calcs[n].doc for n in names if n in calcs and calcs[n].doc is not None}
    try:
        check_consistency(docs)  # type: ignore[arg-type]
    except InconsistentCalculationsError as exc:
        if strict:
            raise InconsistentCalculationsError(f"binding {spec.name!r}: {exc}") from exc
        row["status"], row["note"] = "inconsistent", str(exc)
    terms = {n: calcs[n].term(key) for n in names if n in calcs}
    missing = [n for n in names if terms.get(n) is None]
    if missing:
        row["status"], row["note"] = "missing", f"no energy for {missing}"
        return row
    try:
        doc = compute_binding(spec, {n: t for n, t in terms.items() if t is not None})
    except InputError as exc:
        if row["status"] == "ok":
            row["status"], row["note"] = "unbalanced", str(exc)
        else:
            row["note"] += f"; {exc}"
        return row
    row["E_b_eV"], row["balanced"] = doc.E_b_eV, doc.balanced
    if row["status"] == "ok" and not doc.all_converged:
        bad = [n for n in names if not calcs[n].row(key)["status"] == "ok"]
        row["status"], row["note"] = "unconverged", f"not ok: {sorted(bad)}"
    return row


def _vib_rows(root: Path, warnings: list[str]) -> list[dict[str, Any]]:
    """One row per ``vib.json`` (HopVibDoc) under ``root``; anything else is a warning.

    Symlinked folders are not followed (``Path.rglob``), so linked reference trees are not
    crawled.
    """
    rows: list[dict[str, Any]] = []
    for path in sorted(root.rglob(VIB_DOC)):
        rel = path.relative_to(root).as_posix()
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            warnings.append(f"{rel}: unreadable ({exc}); not in the hop-rate table")
            continue
        kind = data.get("doc_type") if isinstance(data, dict) else type(data).__name__
        if kind != "HopVibDoc":
            warnings.append(f"{rel}: doc_type {kind!r} is not 'HopVibDoc'; skipped")
            continue
        try:
            doc = HopVibDoc.from_dict(data)
        except TypeError as exc:
            warnings.append(f"{rel}: not a valid HopVibDoc ({exc}); skipped")
            continue
        spectrum = path.parent / VIB_SPECTRUM
        rows.append(
            {
                "path": rel,
                "label": doc.label,
                "backend": doc.backend,
                "hop_index": doc.hop_index,
                "n_imaginary_initial": doc.n_imaginary_initial,
                "n_imaginary_saddle": doc.n_imaginary_saddle,
                "n_imaginary_final": doc.n_imaginary_final,
                "saddle_mode_tangent_overlap": doc.saddle_mode_tangent_overlap,
                "prefactor_THz": doc.prefactor_THz,
                "Ea_eV": doc.Ea_eV,
                "rate_300K_per_s": doc.rate_300K_per_s,
                "D_300K_cm2_per_s": doc.D_300K_cm2_per_s,
                "is_first_order_saddle": doc.is_first_order_saddle,
                "endpoints_are_minima": doc.endpoints_are_minima,
                "spectrum": spectrum.relative_to(root).as_posix() if spectrum.is_file() else None,
                "notes": list(doc.notes),
            }
        )
    return rows


def _neb_row(
    manifest: Manifest,
    spec: NebSpec,
    calcs: Mapping[str, _Calc],
    key: EnergyKey,
    strict: bool,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": spec.name,
        "label": spec.label,
        "status": "missing",
        "forward_barrier_eV": None,
        "reverse_barrier_eV": None,
        "reference": None,
        "note": "",
    }
    folder = manifest.folder(spec.name)
    if (folder / RESULT_FILE).is_file():
        try:
            done = NebDoc.read(folder / RESULT_FILE)
        except ParseError as exc:
            row["note"] = exc.reason
            return row
        return (
            row
            | _barrier_fields(done.barrier)
            | {
                "status": "ok" if done.converged else "unconverged",
                "backend": done.backend,
            }
        )
    ends = (manifest.folder(spec.initial), manifest.folder(spec.final))
    try:
        neb = parse_neb(folder, endpoint_dirs=ends, energy_key=key)
    except PqdflowError as exc:
        row["note"] = str(exc)
        return row
    images = {f"{spec.name}/{Path(d).name}": parse_calculation(d) for d in neb.image_dirs}
    endpoint_docs = {
        n: calcs[n].doc for n in (spec.initial, spec.final) if n in calcs and calcs[n].doc
    }
    row["status"] = {"ok": "ok", "unconverged": "unconverged", "incomplete": "incomplete"}[
        neb.status
    ]
    try:
        check_consistency({**images, **endpoint_docs})  # type: ignore[dict-item]
    except InconsistentCalculationsError as exc:
        if strict:
            raise InconsistentCalculationsError(f"NEB {spec.name!r}: {exc}") from exc
        row["status"], row["note"] = "inconsistent", str(exc)
    if neb.barrier is not None:
        row |= _barrier_fields(neb.barrier)
        if neb.barrier["reference"] == "image_01":
            note = "barrier relative to image 01"
            row["note"] = f"{row['note']}; {note}" if row["note"] else note
    return row


def _barrier_fields(b: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "forward_barrier_eV": b["forward"],
        "reverse_barrier_eV": b["reverse"],
        "forward_spline_eV": b["forward_spline"],
        "reference": b["reference"],
        "climbing_is_highest": b["climbing_is_highest"],
        "reaction_coordinate": b["reaction_coordinate"],
        "energies": b["energies"],
    }

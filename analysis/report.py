"""Reports over a dry-run / run tree: parse every folder, binding energies, NEB barriers.

:func:`build_report` reads ``DIR/manifest.json`` (written by the dry run, see
:mod:`pqdflow.workflows.dryrun`), parses each calculation folder with
:func:`~pqdflow.analysis.vasp.parse_calculation` and each NEB folder with
:func:`~pqdflow.analysis.neb_parse.parse_neb` (endpoint energies from the endpoint
relaxations), and combines them:

``E_b = E(adsorbed) + sum_i n_i E(released_i) - E(slab) - sum_j m_j E(ligand_j)``

with every energy per formula unit of its calculation (``E / formula_units``, eV). Negative
means the ligand binds. Calculations combined in one quantity must share functional, ENCUT
and POTCAR choice per element (:func:`check_consistency`). Missing or unfinished folders
become rows with their status; they never stop the report.

:func:`write_report` writes ``report.csv``, ``report.json``, ``report.md`` and the plots.

Hop vibrational analyses (``vib.json``, a :class:`~pqdflow.analysis.rates.HopVibDoc` written
by ``pqdflow vib NEB_DIR``) anywhere under the tree become the ``vibrations`` rows: imaginary
mode counts, saddle-mode/tangent overlap, Vineyard prefactor, Ea, k(300 K) and D(300 K),
with the spectrum picture (``vib_spectrum.png`` next to the document) copied or drawn.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pqdflow.analysis.neb_parse import EnergyKey, parse_neb
from pqdflow.analysis.plots import plot_binding_energies, plot_neb_profiles
from pqdflow.analysis.rates import HopVibDoc
from pqdflow.analysis.vasp import VaspCalcDoc, parse_calculation
from pqdflow.errors import InputError, ParseError, PqdflowError, StudyError
from pqdflow.fileio import atomic_write_bytes, atomic_write_text
from pqdflow.provenance import provenance

__all__ = [
    "VIB_DOC",
    "VIB_SPECTRUM",
    "InconsistentCalculationsError",
    "StudyReport",
    "build_report",
    "check_consistency",
    "write_report",
]

MANIFEST = "manifest.json"
#: File names ``pqdflow vib NEB_DIR`` saves into the NEB folder and the report looks for.
VIB_DOC = "vib.json"
VIB_SPECTRUM = "vib_spectrum.png"
SPECTRA_DIR = "vib_spectra"
_CSV_FIELDS = (
    "section",
    "name",
    "label",
    "status",
    "energy_eV",
    "energy_per_fu_eV",
    "E_b_eV",
    "forward_barrier_eV",
    "reverse_barrier_eV",
    "reference",
    "max_force_eV_per_A",
    "n_ionic_steps",
    "functional",
    "encut_eV",
    "note",
)


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


def check_consistency(docs: Mapping[str, VaspCalcDoc]) -> None:
    """Check that calculations share functional, ENCUT and the POTCAR of every element.

    Parameters
    ----------
    docs
        Name -> parsed calculation; documents without parameters (nothing ran) are skipped.

    Raises
    ------
    InconsistentCalculationsError
        Naming each differing setting and which calculation uses which value.
    """
    ran = {n: d for n, d in docs.items() if d.parameters.encut is not None}
    problems: list[str] = []
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
            "calculations combined in one quantity must share functional, ENCUT and POTCARs; "
            + "; ".join(problems)
        )


@dataclass
class StudyReport:
    """Parsed results of a whole tree (energies in eV, forces in eV/Å).

    Attributes
    ----------
    directory
        The tree that was parsed.
    study
        Study name from the manifest.
    energy_key
        Which VASP energy was used (``energy_sigma0`` by default).
    calculations, bindings, nebs
        One row (dict) per calculation, binding reaction and NEB path.
    vibrations
        One row per hop vibrational analysis (``vib.json``) found under the tree; left out
        of :meth:`as_dict` when empty, so trees without one report exactly as before.
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


def _read_manifest(directory: Path) -> dict[str, Any]:
    path = directory / MANIFEST
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StudyError(f"cannot read the manifest {path}: {exc}; run the dry run first") from exc
    if not isinstance(data, dict) or not isinstance(data.get("calculations"), list):
        raise StudyError(f"{path} has no 'calculations' list; is it a pqdflow manifest?")
    return data


def _calc_row(
    entry: Mapping[str, Any], doc: VaspCalcDoc | None, key: str, note: str
) -> dict[str, Any]:
    fu = int(entry.get("formula_units") or 1)
    energy = getattr(doc, key) if doc is not None else None
    p = doc.parameters if doc is not None else None
    return {
        "name": entry["name"],
        "path": entry.get("path", entry["name"]),
        "kind": entry.get("kind"),
        "role": entry.get("role"),
        "formula_units": fu,
        "status": doc.status if doc is not None else "missing",
        "energy_eV": energy,
        "energy_per_fu_eV": None if energy is None else energy / fu,
        "max_force_eV_per_A": doc.max_force if doc is not None else None,
        "n_ionic_steps": doc.n_ionic_steps if doc is not None else 0,
        "converged_ionic": doc.converged_ionic if doc is not None else None,
        "functional": p.functional if p else None,
        "encut_eV": p.encut if p else None,
        "error_message": doc.error_message if doc is not None else None,
        "note": note,
    }


def _binding_energy(
    spec: Mapping[str, Any], per_fu: Mapping[str, float | None]
) -> tuple[float | None, list[str]]:
    """E_b (eV) from per-formula-unit energies; ``None`` and the missing names if incomplete."""
    terms = [(spec["adsorbed"], 1.0), (spec["slab"], -1.0)]
    terms += [(n, float(c)) for n, c in (spec.get("released") or {}).items()]
    terms += [(n, -float(c)) for n, c in (spec.get("ligands") or {}).items()]
    missing = [n for n, _ in terms if per_fu.get(n) is None]
    if missing:
        return None, missing
    return sum(c * float(per_fu[n] or 0.0) for n, c in terms), []


def build_report(
    directory: str | Path, *, energy_key: EnergyKey = "energy_sigma0", strict: bool = True
) -> StudyReport:
    """Parse a dry-run / run tree (``DIR/manifest.json``) into a :class:`StudyReport`.

    Parameters
    ----------
    directory
        The tree written by the dry run (and filled by VASP).
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
        (``strict``) calculations combined in one quantity differ in functional, ENCUT or
        POTCARs.
    """
    root = Path(directory)
    manifest = _read_manifest(root)
    report = StudyReport(str(root), str(manifest.get("study", root.name)), energy_key)
    report.provenance = provenance(manifest=str(root / MANIFEST))
    docs: dict[str, VaspCalcDoc] = {}
    entries = {e["name"]: e for e in manifest["calculations"]}
    for entry in manifest["calculations"]:
        if entry.get("kind") == "neb":
            continue
        folder = root / entry.get("path", entry["name"])
        doc, note = None, ""
        if folder.is_dir():
            try:
                doc = parse_calculation(folder)
                docs[entry["name"]] = doc
            except ParseError as exc:
                note = exc.reason
        else:
            note = f"folder {folder.name} not found"
        report.calculations.append(_calc_row(entry, doc, energy_key, note))
    per_fu = {r["name"]: r["energy_per_fu_eV"] for r in report.calculations}
    ok = {r["name"] for r in report.calculations if r["status"] == "ok"}

    for spec in manifest.get("bindings", []):
        names = [
            spec["adsorbed"],
            spec["slab"],
            *(spec.get("ligands") or {}),
            *(spec.get("released") or {}),
        ]
        row = {
            "name": spec["name"],
            "ligand": spec.get("ligand"),
            "site": spec.get("site"),
            "label": spec.get("ligand"),
            "E_b_eV": None,
            "status": "ok",
            "note": "",
        }
        try:
            check_consistency({n: docs[n] for n in names if n in docs})
        except InconsistentCalculationsError as exc:
            if strict:
                raise InconsistentCalculationsError(f"binding {spec['name']!r}: {exc}") from exc
            row["status"], row["note"] = "inconsistent", str(exc)
        value, missing = _binding_energy(spec, per_fu)
        row["E_b_eV"] = value
        if missing:
            row["status"], row["note"] = "missing", f"no energy for {missing}"
        elif row["status"] == "ok" and not set(names) <= ok:
            row["status"] = "unconverged"
            row["note"] = f"not ok: {sorted(set(names) - ok)}"
        report.bindings.append(row)

    for spec in manifest.get("nebs", []):
        report.nebs.append(_neb_row(root, spec, entries, docs, energy_key, strict))
    report.vibrations = _vib_rows(root, report.warnings)
    return report


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
    root: Path,
    spec: Mapping[str, Any],
    entries: Mapping[str, Mapping[str, Any]],
    docs: Mapping[str, VaspCalcDoc],
    key: EnergyKey,
    strict: bool,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": spec["name"],
        "label": spec.get("label", spec["name"]),
        "status": "missing",
        "forward_barrier_eV": None,
        "reverse_barrier_eV": None,
        "reference": None,
        "note": "",
    }
    folder = root / entries.get(spec["name"], {}).get("path", spec["name"])
    ends = [root / entries.get(spec[k], {}).get("path", spec[k]) for k in ("initial", "final")]
    try:
        neb = parse_neb(folder, endpoint_dirs=(ends[0], ends[1]), energy_key=key)
    except PqdflowError as exc:
        row["note"] = str(exc)
        return row
    images = {f"{spec['name']}/{Path(d).name}": parse_calculation(d) for d in neb.image_dirs}
    combined = {
        **images,
        **{spec[k]: docs[spec[k]] for k in ("initial", "final") if spec[k] in docs},
    }
    row["status"] = {"ok": "ok", "unconverged": "unconverged", "incomplete": "incomplete"}[
        neb.status
    ]
    try:
        check_consistency(combined)
    except InconsistentCalculationsError as exc:
        if strict:
            raise InconsistentCalculationsError(f"NEB {spec['name']!r}: {exc}") from exc
        row["status"], row["note"] = "inconsistent", str(exc)
    if neb.barrier is not None:
        b = neb.barrier
        row |= {
            "forward_barrier_eV": b["forward"],
            "reverse_barrier_eV": b["reverse"],
            "forward_spline_eV": b["forward_spline"],
            "reference": b["reference"],
            "climbing_is_highest": b["climbing_is_highest"],
            "reaction_coordinate": b["reaction_coordinate"],
            "energies": b["energies"],
        }
        if b["reference"] == "image_01":
            row["note"] = (
                row["note"] + "; " if row["note"] else ""
            ) + "barrier relative to image 01"
    return row


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _csv_rows(report: StudyReport) -> list[dict[str, Any]]:
    rows = [{"section": "calculation", "label": r["kind"], **r} for r in report.calculations]
    rows += [{"section": "binding", **r} for r in report.bindings]
    rows += [{"section": "neb", **r} for r in report.nebs]
    return [{k: r.get(k) for k in _CSV_FIELDS} for r in rows]


def _sci(value: float | None) -> str:
    return "" if value is None else f"{value:.3e}"


def _vib_markdown(report: StudyReport, spectra: Mapping[str, str]) -> list[str]:
    head = (
        "hop",
        "label",
        "imaginary (ini/sad/fin)",
        "|overlap|",
        "ν* (THz)",
        "Ea (eV)",
        "k(300 K) (1/s)",
        "D(300 K) (cm²/s)",
        "first-order saddle",
    )
    lines = ["", "## Hop rates (harmonic TST)", ""]
    lines += [
        "k = ν* exp(-Ea/kT) (Vineyard ν* from partial Hessians), D = z k a² / (2d).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in report.vibrations:
        cells = (
            r["path"],
            r["label"],
            f"{r['n_imaginary_initial']}/{r['n_imaginary_saddle']}/{r['n_imaginary_final']}",
            _fmt(r["saddle_mode_tangent_overlap"]),
            _fmt(r["prefactor_THz"]),
            _fmt(r["Ea_eV"]),
            _sci(r["rate_300K_per_s"]),
            _sci(r["D_300K_cm2_per_s"]),
            "yes" if r["is_first_order_saddle"] else "no",
        )
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    for r in report.vibrations:
        if r["path"] in spectra:
            lines += ["", f"![{r['label'] or r['path']} spectrum]({spectra[r['path']]})"]
    return lines


def _markdown(report: StudyReport, spectra: Mapping[str, str] | None = None) -> str:
    def table(head: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return out + ["| " + " | ".join(_fmt(c) for c in r) + " |" for r in rows]

    lines = [f"# Report: {report.study}", "", f"Energies: `{report.energy_key}` (eV).", ""]
    lines += ["## Binding energies", "", "E_b per reaction; negative = binds.", ""]
    lines += table(
        ("reaction", "ligand", "site", "E_b (eV)", "status", "note"),
        [
            (r["name"], r["ligand"], r["site"], r["E_b_eV"], r["status"], r["note"])
            for r in report.bindings
        ],
    )
    lines += ["", "## NEB barriers", ""]
    lines += table(
        ("path", "label", "forward (eV)", "reverse (eV)", "reference", "status", "note"),
        [
            (
                r["name"],
                r["label"],
                r["forward_barrier_eV"],
                r["reverse_barrier_eV"],
                r["reference"],
                r["status"],
                r["note"],
            )
            for r in report.nebs
        ],
    )
    lines += ["", "## Calculations", ""]
    lines += table(
        ("name", "kind", "status", "E (eV)", "E per f.u. (eV)", "max F (eV/Å)", "steps"),
        [
            (
                r["name"],
                r["kind"],
                r["status"],
                r["energy_eV"],
                r["energy_per_fu_eV"],
                r["max_force_eV_per_A"],
                r["n_ionic_steps"],
            )
            for r in report.calculations
        ],
    )
    if report.vibrations:
        lines += _vib_markdown(report, spectra or {})
    if report.warnings:
        lines += ["", "## Warnings", "", *[f"- {w}" for w in report.warnings]]
    return "\n".join(lines) + "\n"


def _spectrum(report: StudyReport, row: Mapping[str, Any], out: Path) -> tuple[Path, str]:
    """Place the hop's spectrum PNG for the report in ``out``; return (path, link).

    A ``vib_spectrum.png`` already inside ``out`` is linked where it is; one outside is
    copied to ``out/vib_spectra/``; a missing one is drawn there from the ``vib.json``.
    """
    root = Path(report.directory)
    if row.get("spectrum"):
        src = root / row["spectrum"]
        try:
            return src, src.resolve().relative_to(out.resolve()).as_posix()
        except ValueError:
            pass
    name = Path(row["path"]).parent.as_posix().replace("/", "__").strip("._") or "hop"
    dest = out / SPECTRA_DIR / f"{name}.png"
    if row.get("spectrum"):
        atomic_write_bytes(dest, (root / row["spectrum"]).read_bytes())
    else:
        from pqdflow.analysis.vibrations import plot_vibrational_spectrum

        doc = HopVibDoc.from_dict(json.loads((root / row["path"]).read_text()))
        tmp = dest.with_name(f".{dest.stem}.tmp.png")
        plot_vibrational_spectrum(doc, tmp)
        tmp.replace(dest)
    return dest, dest.relative_to(out).as_posix()


def write_report(report: StudyReport, out: str | Path, *, plots: bool = True) -> dict[str, Path]:
    """Write ``report.csv``, ``report.json``, ``report.md`` and plots into ``out``.

    Returns
    -------
    dict
        Kind (``csv``, ``json``, ``markdown``, ``binding_plot``, ``neb_plot`` and one
        ``vib_spectrum:<path of vib.json>`` per hop analysis) -> written or linked path.
    """
    out = Path(out)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(_CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(_csv_rows(report))
    written = {
        "csv": out / "report.csv",
        "json": out / "report.json",
        "markdown": out / "report.md",
    }
    atomic_write_text(written["csv"], buffer.getvalue())
    atomic_write_text(
        written["json"], json.dumps(report.as_dict(), indent=2, allow_nan=False) + "\n"
    )
    spectra: dict[str, str] = {}
    for row in report.vibrations if plots else []:
        png, link = _spectrum(report, row, out)
        written[f"vib_spectrum:{row['path']}"] = png
        spectra[row["path"]] = link
    atomic_write_text(written["markdown"], _markdown(report, spectra))
    if plots and report.bindings:
        entries = [
            {
                "ligand": r["ligand"] or r["name"],
                "E_b_eV": r["E_b_eV"],
                "label": f"{r['ligand']} ({r['site']})" if r.get("site") else r["ligand"],
            }
            for r in report.bindings
        ]
        written["binding_plot"] = plot_binding_energies(entries, out / "binding_energies.png")
    profiles = [
        {
            "label": f"{r['label']} ({r['reference']})"
            if r["reference"] == "image_01"
            else r["label"],
            "reaction_coordinate": r["reaction_coordinate"],
            "energies": r["energies"],
        }
        for r in report.nebs
        if r.get("energies")
    ]
    if plots and profiles:
        written["neb_plot"] = plot_neb_profiles(profiles, out / "neb_profiles.png")
    return written

"""Writing results: the tables and plots of a study run and of a study-folder report.

One module for every table pqdflow prints or writes:

* :func:`write_results` / :func:`format_table`: ``results.json``, ``results.csv``, the plain
  tables and the plots of a :class:`~pqdflow.documents.results.StudyResults` (what
  ``pqdflow run`` produces, local engine or FireWorks alike);
* :func:`write_report`: ``report.csv``, ``report.json``, ``report.md`` and the plots of a
  :class:`~pqdflow.analysis.report.tree.StudyReport` (what ``pqdflow report`` produces).

Both draw with :func:`~pqdflow.analysis.plots.plot_binding_energies` and
:func:`~pqdflow.analysis.plots.plot_neb_profiles`.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pqdflow.analysis.migration import hop_cascade
from pqdflow.analysis.plots import composition_label, plot_binding_energies, plot_neb_profiles
from pqdflow.analysis.rates import HopVibDoc
from pqdflow.analysis.report.tree import StudyReport
from pqdflow.documents.results import StudyResults
from pqdflow.fileio import atomic_write_bytes, atomic_write_text

__all__ = ["format_table", "results_csv", "write_report", "write_results"]

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


def _binding_flags(b: Mapping[str, Any]) -> list[str]:
    """Name the unconverged relaxations a binding entry rests on (older documents: flag)."""
    names = list(b.get("unconverged_inputs") or [])
    return names or ([] if b.get("all_converged", True) else ["(a relaxation)"])


def _neb_flags(n: Mapping[str, Any]) -> list[str]:
    """Name what is unconverged about a band: its endpoint relaxations, and the band."""
    names = list(n.get("unconverged_inputs") or [])
    return names + ([] if n.get("converged", True) else ["band"])


def _migration_lines(migration: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per surface: hops, lowest (bound) and transport-limiting barriers, formation range."""

    def num(value: Any) -> str:
        return "-" if value is None else f"{float(value):.3f}"

    lines = [
        f"{'surface':<13} {'hops':>4} {'lowest':>7} {'lowest bound':>12} {'transport':>9} "
        f"{'E_f rich..poor (eV)':>20}"
    ]
    for tag, surf in migration.items():
        hops = surf.get("hops") or []
        rich = [h["E_f_rich_eV"] for h in hops if h.get("E_f_rich_eV") is not None]
        poor = [h["E_f_poor_eV"] for h in hops if h.get("E_f_poor_eV") is not None]
        formation = f"{min(rich):.2f}..{max(poor):.2f}" if rich and poor else "-"
        flat = int(surf.get("n_barrierless") or 0)
        blocked = int(surf.get("n_blocked") or 0)
        notes = [f"{flat} barrierless"] * bool(flat) + [f"{blocked} blocked"] * bool(blocked)
        lines.append(
            f"{tag:<13} {len(hops):>4} {num(surf.get('lowest_eV')):>7} "
            f"{num(surf.get('lowest_bound_eV')):>12} {num(surf.get('transport_limiting_eV')):>9} "
            f"{formation:>20}" + (f"  ({', '.join(notes)})" if notes else "")
        )
    return lines


def format_table(results: StudyResults) -> str:
    """Plain-text tables: ligand, site, E_b (eV); NEB path, Ea forward/reverse (eV).

    A value resting on an unconverged relaxation (or an unconverged band) is marked ``*``
    and its row names the unconverged calculations; a partial run says what is missing.
    """
    lines: list[str] = []
    if results.partial:
        why = "interrupted" if results.interrupted else "incomplete"
        lines.append(
            f"PARTIAL RESULTS ({why}): {len(results.missing)} step(s) without a result"
            + (f": {', '.join(results.missing[:8])}" if results.missing else "")
            + (" ..." if len(results.missing) > 8 else "")
        )
    if results.binding:
        lines.append(f"{'ligand':<10} {'site':<18} {'E_b (eV)':>9}  converged")
        for b in results.binding:
            bad = _binding_flags(b)
            mark = "*" if bad else " "
            state = f"NO: {', '.join(bad)}" if bad else "yes"
            site = str(b["site"])
            meta = b.get("meta") or {}
            if meta.get("channel") == "vacancy_fill":  # in the vacancy vs on top, per surface
                site = f"V{meta.get('vacancy_element', 'X')} fill {meta.get('host', '')}"
            lines.append(f"{b['ligand']:<10} {site:<18} {b['E_b_eV']:>9.3f}{mark} {state}")
    if results.neb:
        if lines:
            lines.append("")
        lines.append(f"{'NEB path':<22} {'label':<9} {'Ea (eV)':>8} {'Ea rev (eV)':>11}  converged")
        for n in results.neb:
            bad = _neb_flags(n)
            mark = "*" if bad else " "
            state = f"NO: {', '.join(bad)}" if bad else "yes"
            cascade = hop_cascade(n)
            if cascade:  # the final endpoint relaxed on: the band crosses two hops
                state += f" (two hops: {cascade} took the site)"
            lines.append(
                f"{n['path']:<22} {n['label']:<9} {n['Ea_eV']:>8.3f}{mark}"
                f"{n['Ea_reverse_eV']:>11.3f}  {state}"
            )
    if results.migration:
        lines += ["", *_migration_lines(results.migration)]
    if any(_binding_flags(b) for b in results.binding) or any(_neb_flags(n) for n in results.neb):
        lines.append("* rests on a relaxation or band that did not converge: read with care")
    for fail in results.failed:
        lines.append(f"FAILED {fail['kind']} {fail['name']}: {fail['error']}")
    lines.append(
        f"(backend: {results.backend}"
        + ("; mock numbers are plumbing, not physics)" if results.backend == "mock" else ")")
    )
    return "\n".join(lines)


def results_csv(results: StudyResults) -> str:
    """``results.csv``: one row per binding reaction and NEB path."""
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
            "unconverged_inputs",
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
                not _binding_flags(b),
                b["backend"],
                ";".join(_binding_flags(b)),
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
                not _neb_flags(n),
                n["backend"],
                ";".join(_neb_flags(n)),
            ]
        )
    return buffer.getvalue()


def _plots(results: StudyResults, out: Path) -> list[str]:
    """Binding bar chart and NEB profiles of a run; the file names written."""
    written: list[str] = []
    about = {"backend": results.backend}
    if results.binding:
        entries = [
            {
                "ligand": b["ligand"],
                "E_b_eV": b["E_b_eV"],
                "label": f"{b['ligand']}\n{b['meta'].get('termination', '')}".strip(),
                "unconverged": bool(_binding_flags(b)),
                "composition": composition_label(b["meta"].get("x")),
            }
            for b in results.binding
        ]
        written.append(plot_binding_energies(entries, out / "binding_energies.png", **about).name)
    if results.neb:
        profiles = [
            {
                "label": n["label"] or n["path"],
                "reaction_coordinate": n["reaction_coordinate"],
                # a band document without barrier energies (a blocked hop of pqdflow before
                # 2026-12-01): its image energies relative to the initial endpoint
                "energies": n["barrier"].get("energies")
                or [e - n["image_energies"][0] for e in n["image_energies"]],
                "tangential_forces": n.get("tangential_forces"),
                "climbing_index": n.get("climbing_index"),
                "unconverged": bool(_neb_flags(n)),
                "composition": composition_label(n["meta"].get("x")),
            }
            for n in results.neb
        ]
        written.append(plot_neb_profiles(profiles, out / "neb_profiles.png", **about).name)
    return written


def write_results(
    results: StudyResults, out: str | Path, *, plots: bool = True, echo: bool = False
) -> Path:
    """Write ``results.json``, ``results.csv`` and (``plots``) the PNGs of a run into ``out``.

    Returns the path of ``results.json``; ``echo`` prints :func:`format_table` to stdout.
    """
    out = Path(out)
    path = results.write(out / "results.json")
    atomic_write_text(out / "results.csv", results_csv(results))
    if plots:
        _plots(results, out)
    if results.migration:  # per-surface hop barriers (pqdflow.analysis.migration)
        from pqdflow.analysis.migration import write_migration

        write_migration(results.migration, out, plot=plots)
    if results.lattice and plots:  # lattice constant vs x and Bragg peaks (Ext. Data Fig. 4d)
        from pqdflow.analysis.diffraction import plot_lattice_and_peaks

        plot_lattice_and_peaks(results.lattice, out / "lattice_xrd.png")
    if echo:
        print(format_table(results))
    return path


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
    backends = {str(r["backend"]) for r in [*report.bindings, *report.nebs] if r.get("backend")}
    backend = ", ".join(sorted(backends)) or "VASP outputs"
    if plots and report.bindings:
        entries = [
            {
                "ligand": r["ligand"] or r["name"],
                "E_b_eV": r["E_b_eV"],
                "label": f"{r['ligand']} ({r['site']})" if r.get("site") else r["ligand"],
                "unconverged": r["status"] == "unconverged",
            }
            for r in report.bindings
        ]
        written["binding_plot"] = plot_binding_energies(
            entries, out / "binding_energies.png", backend=backend
        )
    profiles = [
        {
            "label": f"{r['label']} ({r['reference']})"
            if r["reference"] == "image_01"
            else r["label"],
            "reaction_coordinate": r["reaction_coordinate"],
            "energies": r["energies"],
            "unconverged": r["status"] == "unconverged",
            "climbing_index": r.get("climbing_index"),
            "composition": composition_label(r.get("x")),
        }
        for r in report.nebs
        if r.get("energies")
    ]
    if plots and profiles:
        written["neb_plot"] = plot_neb_profiles(profiles, out / "neb_profiles.png", backend=backend)
    return written

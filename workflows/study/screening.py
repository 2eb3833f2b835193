"""Binding screening of a finished run: site search, Fig. 4c affinities and TMSBr channels.

:func:`binding_screening` reads a run folder (``manifest.json`` and each calculation's
``result.json``) and recomputes every reaction with
:func:`~pqdflow.analysis.binding.compute_binding` twice: as run (with D3(BJ) where the
calculation had it) and with the D3(BJ) energy of each final structure subtracted, i.e.
the backend's own energies at the D3-relaxed geometries (``"none@d3"``, only when some
calculation had D3). It then reports
:func:`~pqdflow.analysis.affinity.summarize_sites`,
:func:`~pqdflow.analysis.affinity.relative_affinities` and
:func:`~pqdflow.analysis.affinity.reaction_energies` for both.
:func:`write_binding_screening` writes them as JSON, a Markdown table and a bar plot.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pqdflow.analysis.affinity import (
    plot_relative_affinities,
    reaction_energies,
    relative_affinities,
    summarize_sites,
)
from pqdflow.analysis.binding import EnergyTerm, compute_binding
from pqdflow.documents.plan import BindingSpec
from pqdflow.documents.results import RelaxDoc
from pqdflow.errors import InputError

__all__ = ["binding_screening", "write_binding_screening"]


def _d3_energy(doc: RelaxDoc) -> float:
    from pqdflow.workflows.engine.dispersion import d3bj_calculator

    atoms = doc.read_structure()
    atoms.calc = d3bj_calculator()
    return float(atoms.get_potential_energy())


def binding_screening(run_dir: str | Path) -> dict[str, Any]:
    """Return the binding screening of a finished run folder (see the module docstring).

    Reactions whose calculations are not all finished are left out and listed under
    ``"missing"``.

    Raises
    ------
    InputError
        When ``run_dir`` has no ``manifest.json``.
    """
    root = Path(run_dir)
    manifest = root / "manifest.json"
    if not manifest.is_file():
        raise InputError(f"{root} has no manifest.json; give a pqdflow run folder")
    data = json.loads(manifest.read_text())
    entries = {e["name"]: e for e in data["calculations"]}
    docs: dict[str, RelaxDoc] = {}
    for name, entry in entries.items():
        result = root / entry["path"] / "result.json"
        if result.is_file():
            docs[name] = RelaxDoc.from_dict(json.loads(result.read_text()))
    plain: dict[str, EnergyTerm] = {}
    for name, doc in docs.items():
        term = EnergyTerm.of(doc)
        if doc.settings.get("dispersion") == "D3(BJ)":
            term = EnergyTerm(
                term.energy - _d3_energy(doc),
                term.formula,
                term.formula_units,
                term.converged,
                term.backend,
            )
        plain[name] = term
    out: dict[str, Any] = {"missing": []}
    bindings: dict[str, list[dict[str, Any]]] = {"as_run": [], "none@d3": []}
    for raw in data["bindings"]:
        spec = BindingSpec.from_dict(raw)
        if any(p not in docs for p in spec.parents()):
            out["missing"].append(spec.name)
            continue
        bindings["as_run"].append(compute_binding(spec, docs).as_dict())
        if any(d.settings.get("dispersion") == "D3(BJ)" for d in docs.values()):
            stripped = compute_binding(spec, plain).as_dict()
            stripped["meta"] = {**stripped["meta"], "dispersion": "none@d3"}
            bindings["none@d3"].append(stripped)
    summaries = [s for docs_ in bindings.values() for s in summarize_sites(docs_)]
    out["sites"] = [s.as_dict() for s in summaries]
    out["relative"] = relative_affinities(summaries)
    out["reactions"] = [r for docs_ in bindings.values() for r in reaction_energies(docs_)]
    return out


def write_binding_screening(run_dir: str | Path, out_dir: str | Path | None = None) -> Path:
    """Write ``binding_screening.json``, ``.md`` and ``relative_affinities.png``.

    Returns
    -------
    Path
        The Markdown file (tables in eV).
    """
    root = Path(run_dir)
    dest = Path(out_dir) if out_dir is not None else root
    dest.mkdir(parents=True, exist_ok=True)
    report = binding_screening(root)
    (dest / "binding_screening.json").write_text(json.dumps(report, indent=2))
    lines = [
        "| ligand | termination | dispersion | lowest E_b | site (index, rotation) | spread | n |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for s in report["sites"]:
        lines.append(
            f"| {s['ligand']} | {s['termination']} | {s['dispersion']} | {s['lowest_eV']:+.3f} "
            f"| {s['site']} ({s['site_index']}, {s['rotation']:g}) | {s['spread_eV']:.3f} "
            f"| {s['n_candidates']} |"
        )
    lines += ["", "| ligand | vs | dispersion | delta E_b | uncertainty | same termination |"]
    lines.append("|---|---|---|---|---|---|")
    for r in report["relative"]:
        lines.append(
            f"| {r['ligand']} | {r['reference']} | {r['dispersion']} | {r['delta_eV']:+.3f} "
            f"| {r['uncertainty_eV']:.3f} | {r['same_termination']} |"
        )
    lines += ["", "| reaction | channel | dispersion | E |", "|---|---|---|---|"]
    for r in report["reactions"]:
        lines.append(f"| {r['reaction']} | {r['channel']} | {r['dispersion']} | {r['E_eV']:+.3f} |")
    md = dest / "binding_screening.md"
    md.write_text("\n".join(lines) + "\n")
    if report["relative"]:
        plot_relative_affinities(report["relative"], dest / "relative_affinities.png")
    return md

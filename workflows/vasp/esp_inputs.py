"""VASP inputs of the ligand ESP maps (Extended Data Fig. 4b), written by the dry run.

A study with ``esp: true`` (the default) gets, next to its calculation folders, one VASP
single point per ligand reference molecule in ``esp/<calculation>/`` with the
``molecule_esp`` preset: ``LVHAR`` writes the electrostatic potential (LOCPOT) and ``LCHARG``
the density (CHGCAR), read into a map by :func:`pqdflow.analysis.esp.read_vasp_esp` and
:func:`pqdflow.analysis.esp.esp_map`. The molecule is the plan's structure (the
pre-relaxed one with ``pqdflow inputs --prerelax``); for the VASP-relaxed geometry, copy the
``CONTCAR`` of the ligand's relaxation over the ESP folder's ``POSCAR`` before running it.
``esp/esp.json`` lists the folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pqdflow.documents.plan import CalcSpec, StudyPlan
from pqdflow.fileio import atomic_write_text
from pqdflow.workflows.vasp.calc_inputs import VaspInputOptions
from pqdflow.workflows.vasp.inputsets import (
    PreparedInputs,
    VaspInputSet,
    get_input_set,
    prepare_vasp_inputs,
)

__all__ = ["ESP_DIR", "esp_input_set_for", "esp_jobs", "study_wants_esp", "write_esp_index"]

#: Folder of the ESP single points inside a dry-run tree.
ESP_DIR = "esp"


def study_wants_esp(plan: StudyPlan) -> bool:
    """Whether the plan's study asks for ligand ESP maps (``esp`` of the study file)."""
    study = plan.meta.get("study")
    return bool(isinstance(study, dict) and study.get("esp", False))


def esp_input_set_for(calc: CalcSpec, options: VaspInputOptions) -> VaspInputSet:
    """Return the ``molecule_esp`` input set of a molecule.

    The study's INCAR overrides of molecules, its dispersion and the molecule's net charge
    (NELECT) apply, as in :func:`~pqdflow.workflows.vasp.calc_inputs.input_set_for`.
    """
    return get_input_set(
        "molecule_esp",
        incar_overrides=dict(options.incar_overrides.get("molecule", {})),
        charge=calc.charge,
        **options._common(calc.meta.get("dispersion")),
    )


def esp_jobs(plan: StudyPlan, options: VaspInputOptions) -> list[tuple[str, PreparedInputs]]:
    """Return ``(folder relative to the tree, prepared inputs)`` of every ESP single point.

    One per ligand reference molecule (``role == "ligand_reference"``), when the study asks
    for ESP maps (:func:`study_wants_esp`); none otherwise. Computed in memory only.
    """
    if not study_wants_esp(plan):
        return []
    return [
        (
            f"{ESP_DIR}/{calc.name}",
            prepare_vasp_inputs(calc.atoms, esp_input_set_for(calc, options)),
        )
        for calc in plan.calculations
        if calc.kind == "molecule" and calc.role == "ligand_reference"
    ]


def write_esp_index(out: str | Path, jobs: list[tuple[str, PreparedInputs]]) -> Path | None:
    """Write ``out/esp/esp.json`` (folders, input hashes, how to read a map); unchanged: kept."""
    if not jobs:
        return None
    index: dict[str, Any] = {
        "read_with": "pqdflow.analysis.esp.read_vasp_esp(LOCPOT, CHGCAR) -> esp_map",
        "folders": {path: prepared.input_sha256 for path, prepared in jobs},
    }
    path = Path(out) / ESP_DIR / "esp.json"
    text = json.dumps(index, indent=2, sort_keys=True) + "\n"
    if not path.is_file() or path.read_text() != text:  # a rerun rewrites nothing
        atomic_write_text(path, text)
    return path

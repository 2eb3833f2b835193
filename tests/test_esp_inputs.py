"""The dry run writes the VASP ESP single points of the ligand molecules (Ext. Data Fig. 4b)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ase.io import read
from pymatgen.io.vasp.inputs import Incar, Kpoints

from pqdflow.errors import OverwriteError
from pqdflow.workflows.study import plan_study, study_from_dict
from pqdflow.workflows.vasp.dryrun import write_study_inputs


def tiny(**extra: object) -> dict[str, object]:
    return {
        "name": "tiny",
        "terminations": ["PbX2"],
        "ligands": {"names": ["TMSBr"], "surfaces": []},
        "neb": {"paths": []},
        "inputs": {"incar": {"molecule": {"ISYM": 0}}},
        **extra,
    }


def test_dry_run_writes_lvhar_lcharg_single_points_of_the_ligands(tmp_path: Path) -> None:
    plan = plan_study(study_from_dict(tiny()))
    assert plan.meta["study"]["esp"] is True  # on by default
    out = tmp_path / "dry"
    manifest = write_study_inputs(plan, out)
    folder = out / "esp" / "ligand-TMSBr"
    incar = Incar.from_file(folder / "INCAR")
    assert (incar["LVHAR"], incar["LCHARG"], incar["NSW"], incar["IBRION"]) == (
        True,
        True,
        0,
        -1,
    )
    assert incar["ENCUT"] == 400.0
    assert incar["ISYM"] == 0  # the study's molecule overrides apply
    assert tuple(Kpoints.from_file(folder / "KPOINTS").kpts[0]) == (1, 1, 1)
    # the same molecule as the ligand's relaxation, same atoms and geometry
    esp_atoms = read(folder / "POSCAR", format="vasp")
    relax_atoms = read(out / "ligand-TMSBr" / "POSCAR", format="vasp")
    assert esp_atoms.get_chemical_formula() == relax_atoms.get_chemical_formula() == "C3H9BrSi"
    assert esp_atoms.get_all_distances() == pytest.approx(relax_atoms.get_all_distances())
    index = json.loads((out / "esp" / "esp.json").read_text())
    assert list(index["folders"]) == ["esp/ligand-TMSBr"]
    # not a calculation of the study: the manifest and the report are unchanged
    assert "esp/ligand-TMSBr" not in [c.path for c in manifest.calculations]
    # rerun: nothing rewritten; outputs there and inputs changed: refused, nothing written
    before = {p: p.stat().st_mtime_ns for p in (out / "esp").rglob("*") if p.is_file()}
    write_study_inputs(plan, out)
    assert {p: p.stat().st_mtime_ns for p in (out / "esp").rglob("*") if p.is_file()} == before
    (folder / "OUTCAR").write_text("finished\n")
    changed = plan_study(study_from_dict(tiny(inputs={"incar": {"molecule": {"ISYM": 2}}})))
    with pytest.raises(OverwriteError, match="esp/ligand-TMSBr"):
        write_study_inputs(changed, out)
    assert Incar.from_file(folder / "INCAR")["ISYM"] == 0


def test_esp_off_writes_no_esp_folder(tmp_path: Path) -> None:
    plan = plan_study(study_from_dict(tiny(esp=False)))
    write_study_inputs(plan, tmp_path / "dry")
    assert not (tmp_path / "dry" / "esp").exists()

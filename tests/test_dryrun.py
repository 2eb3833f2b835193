"""Dry run of a study: folder tree, manifest, read-back, idempotence, outputs never clobbered."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.io import read
from pymatgen.io.vasp.inputs import Incar, Kpoints, Poscar

from pqdflow.documents.plan import StudyPlan
from pqdflow.errors import OverwriteError, StudyError
from pqdflow.fileio import sha256_of_files
from pqdflow.workflows.study import example_study, plan_study, study_from_dict
from pqdflow.workflows.vasp.dryrun import MANIFEST_FILE, build_bands, write_study_inputs

INPUTS = ["INCAR", "KPOINTS", "POSCAR", "POTCAR.spec"]


BULK_NEB = "neb-bulk-x2-VBr-Br-bulk-a"  # the first bulk hop of the default study


@pytest.fixture(scope="module")
def plan() -> StudyPlan:
    # the default study with one named hop per host (all its hops would take minutes of IDPP)
    study = example_study().model_dump(mode="json")
    study["neb"]["formation"] = False  # vacancy formation references: tests/test_formation.py
    study["neb"]["max_depth"] = 1  # top <-> subsurface hops (the full preset's)
    study["neb"]["paths"] = [
        {"host": "bulk", "hops": [BULK_NEB.removeprefix("neb-bulk-x2-")]},
        {"host": "control", "hops": ["VBr0-I1-updown-OAm3.8"]},
        {"host": "treated", "hops": ["VBr0-I1-updown-AnHI3.6"]},
    ]
    return plan_study(study_from_dict(study))


@pytest.fixture(scope="module")
def bands(plan: StudyPlan) -> dict[str, list[Atoms]]:
    return build_bands(plan)


@pytest.fixture(scope="module")
def dry(tmp_path_factory: pytest.TempPathFactory, plan: StudyPlan) -> Path:
    """The default study written once, the way ``pqdflow inputs`` does (bands by IDPP)."""
    out = tmp_path_factory.mktemp("dry") / "out"
    write_study_inputs(plan, out)
    return out


def snapshot(root: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.read_bytes())
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_default_study_writes_36_folders(dry: Path, plan: StudyPlan) -> None:
    manifest = json.loads((dry / MANIFEST_FILE).read_text())
    assert manifest["study"] == "paper"
    entries = manifest["calculations"]
    # 27 calculations + 6 vacancy-fill isomers (Br, I, OAc in a V_Br and on top) + 3 NEBs
    assert len(entries) == 36
    fills = [e for e in entries if e["role"] == "vacancy_fill"]
    assert len(fills) == 6
    for entry in fills:  # both isomers of a reaction with organic ligands carry D3(BJ)
        assert "IVDW = 12" in (dry / entry["path"] / "INCAR").read_text()
    folders = sorted(p.name for p in dry.iterdir() if p.is_dir() and p.name != "esp")
    assert folders == sorted(e["path"] for e in entries)  # esp/: the ligand ESP single points
    kinds = {e["kind"] for e in entries}
    assert kinds == {"bulk", "slab", "molecule", "adsorbed", "neb"}
    for entry in entries:
        assert set(entry) == {
            "name",
            "path",
            "kind",
            "inputs_sha256",
            "formula_units",
            "role",
            "meta",
        }
    assert len(manifest["bindings"]) == 16
    assert [n["label"].split(":")[0] for n in manifest["nebs"]] == ["bulk", "control", "treated"]
    binding = next(b for b in manifest["bindings"] if b["ligand"] == "OAm")
    assert binding["released"] == {"ref-CsBr": 1.0}


def test_manifest_hashes_match_files(dry: Path) -> None:
    manifest = json.loads((dry / MANIFEST_FILE).read_text())
    for entry in manifest["calculations"]:
        folder = dry / entry["path"]
        if entry["kind"] == "neb":
            n = entry["meta"]["n_images"]
            names = ["INCAR", "KPOINTS", "POTCAR.spec"] + [f"{i:02d}/POSCAR" for i in range(n + 2)]
        else:
            names = INPUTS
        assert sha256_of_files(folder, names) == entry["inputs_sha256"], entry["name"]
        record = json.loads((folder / "pqdflow_inputs.json").read_text())
        assert record["input_sha256"] == entry["inputs_sha256"]
        assert "pqdflow_version" in record


def test_every_folder_reads_back_with_pymatgen_and_ase(dry: Path, plan: StudyPlan) -> None:
    for calc in plan.calculations:
        folder = dry / calc.name
        incar = Incar.from_file(folder / "INCAR")
        assert incar["ENCUT"] == 400.0
        assert incar["EDIFF"] == 1e-5
        kpoints = Kpoints.from_file(folder / "KPOINTS")
        poscar = Poscar.from_file(folder / "POSCAR")
        atoms = read(folder / "POSCAR", format="vasp")
        assert len(atoms) == len(poscar.structure) == len(calc.atoms)
        assert sorted(atoms.get_chemical_symbols()) == sorted(calc.atoms.get_chemical_symbols())
        spec = (folder / "POTCAR.spec").read_text().split()
        assert len(spec) == len(poscar.site_symbols)
        assert [s.split("_")[0] for s in spec] == poscar.site_symbols
        grid = tuple(kpoints.kpts[0])
        if calc.kind == "molecule":
            assert grid == (1, 1, 1)
            assert "LDIPOL" not in incar
        elif calc.kind in ("slab", "adsorbed"):
            assert grid == (2, 2, 1)
            assert incar["LDIPOL"] is True
            assert incar["IDIPOL"] == 3
            fixed = {i for i, f in enumerate(poscar.selective_dynamics) if not any(f)}
            n_fixed = len(calc.atoms.constraints[0].get_indices())
            assert len(fixed) == n_fixed > 0
        else:
            assert incar["ISIF"] == (3 if calc.relax_cell else 2)
    for neb in plan.nebs:
        folder = dry / neb.name
        assert Incar.from_file(folder / "INCAR")["IMAGES"] == neb.n_images
        for i in range(neb.n_images + 2):
            poscar = Poscar.from_file(folder / f"{i:02d}" / "POSCAR")
            assert poscar.selective_dynamics is not None or neb.meta["host"] == "bulk"
            assert len(read(folder / f"{i:02d}" / "POSCAR", format="vasp")) == len(
                plan.get(neb.initial).atoms
            )


def test_vacancy_cells_are_charged_closed_shell(dry: Path, plan: StudyPlan) -> None:
    # V_Br+ by default: NELECT = neutral count - 1, an even number (closed shell)
    zval = {"Cs": 9, "Pb": 14, "Br": 7, "I": 7, "C": 4, "H": 1, "N": 5, "O": 6, "Si": 4}
    for neb in plan.nebs:
        atoms = plan.get(neb.initial).atoms
        neutral = sum(zval[s] for s in atoms.get_chemical_symbols())
        assert neutral % 2 == 1  # the neutral vacancy cell is odd-electron
        for folder in (neb.initial, neb.final, neb.name):
            assert Incar.from_file(dry / folder / "INCAR")["NELECT"] == neutral - 1
    assert "NELECT" not in Incar.from_file(dry / "slab-CsX-x3" / "INCAR")


def test_neb_endpoints_relaxed_tighter_and_band_from_endpoints(dry: Path, plan: StudyPlan) -> None:
    control = next(n for n in plan.nebs if n.meta["host"] == "control")
    assert Incar.from_file(dry / control.initial / "INCAR")["EDIFFG"] == -0.01
    assert Incar.from_file(dry / "slab-CsX-x3" / "INCAR")["EDIFFG"] == -0.02
    neb = plan.nebs[1]
    folder = dry / neb.name
    incar = Incar.from_file(folder / "INCAR")
    assert incar["LCLIMB"] is True
    assert incar["IBRION"] == 3
    first = read(folder / "00" / "POSCAR", format="vasp")
    last = read(folder / f"{neb.n_images + 1:02d}" / "POSCAR", format="vasp")
    initial = plan.get(neb.initial).atoms
    final = plan.get(neb.final).atoms
    assert np.isclose(first.get_volume(), initial.get_volume())
    # the written endpoints are the plan's endpoints (grouped by element)
    for written, source in ((first, initial), (last, final)):
        for el in set(source.get_chemical_symbols()):
            a = np.sort(written.positions[written.symbols == el], axis=0)
            b = np.sort(source.positions[source.symbols == el], axis=0)
            assert np.allclose(a, b, atol=1e-6)


def test_rerun_changes_nothing(
    tmp_path: Path, plan: StudyPlan, bands: dict[str, list[Atoms]]
) -> None:
    out = tmp_path / "out"
    first = write_study_inputs(plan, out, bands=bands)
    assert len(first.written) == 36
    before = snapshot(out)
    second = write_study_inputs(plan, out, bands=bands)
    assert second.written == []
    assert snapshot(out) == before
    assert [c.inputs_sha256 for c in second.calculations] == [
        c.inputs_sha256 for c in first.calculations
    ]


def test_supplied_bands_equal_default_bands(
    dry: Path, plan: StudyPlan, bands: dict[str, list[Atoms]], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    manifest = write_study_inputs(plan, out, bands=bands)
    default = json.loads((dry / MANIFEST_FILE).read_text())
    assert [c.inputs_sha256 for c in manifest.calculations] == [
        c["inputs_sha256"] for c in default["calculations"]
    ]


def with_overrides(plan: StudyPlan, kind: str, tags: dict[str, object]) -> StudyPlan:
    return StudyPlan(
        plan.name,
        plan.calculations,
        plan.bindings,
        plan.nebs,
        incar_overrides={**plan.incar_overrides, kind: tags},
        meta=plan.meta,
    )


def test_outputs_untouched_and_nothing_written_on_conflict(
    tmp_path: Path, plan: StudyPlan, bands: dict[str, list[Atoms]]
) -> None:
    out = tmp_path / "out"
    write_study_inputs(plan, out, bands=bands)
    (out / "ads-OAm-CsX-x3" / "OUTCAR").write_text("finished")
    (out / BULK_NEB / "02" / "OUTCAR").write_text("image finished")
    before = snapshot(out)
    # unchanged inputs: folders with outputs are simply left alone
    assert write_study_inputs(plan, out, bands=bands).written == []
    assert snapshot(out) == before
    # changed adsorbed inputs: one adsorbed folder holds outputs -> refuse, write nothing
    changed = with_overrides(plan, "adsorbed", {"ENCUT": 450})
    with pytest.raises(OverwriteError, match="ads-OAm-CsX-x3"):
        write_study_inputs(changed, out, bands=bands)
    assert snapshot(out) == before  # not even the other adsorbed folders were rewritten
    # changed NEB inputs: an image OUTCAR protects the NEB folder
    with pytest.raises(OverwriteError, match=BULK_NEB):
        write_study_inputs(with_overrides(plan, "neb", {"SPRING": -2}), out, bands=bands)
    assert snapshot(out) == before
    # --force: rewritten, the old folder moved aside with its OUTCAR
    manifest = write_study_inputs(changed, out, force=True, bands=bands)
    assert "ads-OAm-CsX-x3" in manifest.written
    assert Incar.from_file(out / "ads-OAm-CsX-x3" / "INCAR")["ENCUT"] == 450.0
    assert not (out / "ads-OAm-CsX-x3" / "OUTCAR").exists()
    backups = list(out.glob("ads-OAm-CsX-x3.bak-*"))
    assert len(backups) == 1
    assert (backups[0] / "OUTCAR").read_text() == "finished"
    assert (out / BULK_NEB / "02" / "OUTCAR").read_text() == "image finished"


def test_prerelax_hook_is_applied(
    tmp_path: Path, plan: StudyPlan, bands: dict[str, list[Atoms]]
) -> None:
    calls: list[str] = []

    def shift_bulk(p: StudyPlan) -> StudyPlan:
        calls.append(p.name)
        calc = p.get("bulk-x3")
        moved = calc.atoms.copy()
        moved.positions[0] += 0.05
        others = [c for c in p.calculations if c.name != "bulk-x3"]
        from dataclasses import replace

        return StudyPlan(
            p.name,
            [replace(calc, atoms=moved), *others],
            p.bindings,
            p.nebs,
            p.incar_overrides,
            p.meta,
        )

    plain = write_study_inputs(plan, tmp_path / "a", bands=bands)
    hooked = write_study_inputs(plan, tmp_path / "b", bands=bands, prerelax=shift_bulk)
    assert calls == ["paper"]
    sha = {c.name: c.inputs_sha256 for c in plain.calculations}
    sha_hooked = {c.name: c.inputs_sha256 for c in hooked.calculations}
    assert sha_hooked["bulk-x3"] != sha["bulk-x3"]
    assert {k: v for k, v in sha_hooked.items() if k != "bulk-x3"} == {
        k: v for k, v in sha.items() if k != "bulk-x3"
    }


def test_bad_band_and_bad_override_write_nothing(
    tmp_path: Path, plan: StudyPlan, bands: dict[str, list[Atoms]]
) -> None:
    out = tmp_path / "out"
    short = {**bands, BULK_NEB: bands[BULK_NEB][:3]}
    with pytest.raises(StudyError, match=BULK_NEB):
        write_study_inputs(plan, out, bands=short)
    with pytest.raises(StudyError, match="neb-nowhere"):
        write_study_inputs(plan, out, bands={"neb-nowhere": []})
    assert not out.exists()


def test_small_study_with_overrides(tmp_path: Path) -> None:
    study = study_from_dict(
        {
            "name": "tiny",
            "terminations": ["PbX2"],
            "ligands": {"names": ["TMSBr"], "surfaces": [], "silyl_channels": False},
            "neb": {"paths": []},
            "inputs": {
                "dispersion": "d3bj",
                "kpoint_density": 40,
                "incar": {"molecule": {"ENCUT": 500}, "slab": {"LASPH": None}},
            },
        }
    )
    out = tmp_path / "tiny"
    manifest = write_study_inputs(plan_study(study), out)
    assert len(manifest.calculations) == 4  # bulk, slab, adsorbed, ligand
    assert Incar.from_file(out / "ligand-TMSBr" / "INCAR")["ENCUT"] == 500.0
    assert Incar.from_file(out / "slab-PbX2-x3" / "INCAR")["ENCUT"] == 400.0
    assert "LASPH" not in Incar.from_file(out / "slab-PbX2-x3" / "INCAR")
    assert Incar.from_file(out / "ads-TMSBr-PbX2-x3" / "INCAR")["LASPH"] is True
    assert Incar.from_file(out / "bulk-x3" / "INCAR")["IVDW"] == 12
    # 40 per 1/Å on the 5.874 Å cell: int(40 / 5.874 + 0.5) = 7
    assert tuple(Kpoints.from_file(out / "bulk-x3" / "KPOINTS").kpts[0]) == (7, 7, 7)
    assert tuple(Kpoints.from_file(out / "slab-PbX2-x3" / "KPOINTS").kpts[0]) == (3, 3, 1)

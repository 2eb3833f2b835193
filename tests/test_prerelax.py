"""ML pre-relaxation before the dry run: geometry, provenance, NEB bands, restart, errors."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from ase import Atoms
from ase.geometry import find_mic
from ase.io import read

from pqdflow.cli import main
from pqdflow.documents.plan import CalcSpec, StudyPlan
from pqdflow.documents.results import RelaxDoc
from pqdflow.errors import BackendError, BackendNotInstalledError, ConvergenceError, OverwriteError
from pqdflow.structures.defects import interpolate_band
from pqdflow.structures.strain import rescale_to_lattice
from pqdflow.workflows.backends import get_backend
from pqdflow.workflows.engine.ase_backend import AseBackend
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.engine.prerelax import (
    MOCK_NOTE,
    PrerelaxWarning,
    prerelax_hook,
    prerelax_plan,
)
from pqdflow.workflows.engine.relax import max_force
from pqdflow.workflows.study import plan_study, study_from_dict
from pqdflow.workflows.vasp.dryrun import Manifest, write_study_inputs
from pqdflow.workflows.vasp.vaspfiles import INPUT_PROVENANCE_FILE

#: Two bulk cells, a clean slab (fixed bottom layers) and one bulk V_Br hop.
SMALL: dict[str, Any] = {
    "name": "small",
    "terminations": ["CsX"],
    "ligands": {"names": [], "surfaces": []},
    "neb": {"formation": False, "paths": [{"host": "bulk", "hops": ["VBr-Br-bulk-a"]}]},
}
FMAX = 0.05
NEB = "neb-bulk-x2-VBr-Br-bulk-a"


class CountingBackend:
    """The mock backend, counting the relaxations it really runs."""

    def __init__(self, **settings: Any) -> None:
        self.inner: AseBackend = get_backend("mock", **settings)
        self.name = self.inner.name
        self.relaxed: list[str] = []

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()

    def relax(self, spec: CalcSpec, directory: Path) -> RelaxDoc:
        self.relaxed.append(spec.name)
        return self.inner.relax(spec, directory)

    def neb(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover - not used here
        raise AssertionError("a pre-relaxation never runs a band")


@pytest.fixture(scope="module")
def plan() -> StudyPlan:
    return plan_study(study_from_dict(SMALL))


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory, plan: StudyPlan) -> Path:
    out = tmp_path_factory.mktemp("plain") / "out"
    write_study_inputs(plan, out)
    return out


@pytest.fixture(scope="module")
def pre(
    tmp_path_factory: pytest.TempPathFactory, plan: StudyPlan
) -> tuple[Path, StudyPlan, Manifest, CountingBackend]:
    """The small study written with a mock pre-relaxation through the dry-run hook."""
    out = tmp_path_factory.mktemp("pre") / "out"
    backend = CountingBackend(fmax=FMAX, endpoint_fmax=FMAX)
    hook = prerelax_hook(backend, workdir=out / ".prerelax")
    seen: list[StudyPlan] = []

    def spy(p: StudyPlan) -> StudyPlan:
        seen.append(hook(p))
        return seen[-1]

    manifest = write_study_inputs(plan, out, prerelax=spy)
    return out, seen[0], manifest, backend


def poscar_atoms(folder: Path, name: str = "POSCAR") -> Atoms:
    atoms = read(folder / name, format="vasp")
    assert isinstance(atoms, Atoms)
    order = json.loads((folder / INPUT_PROVENANCE_FILE).read_text())["poscar_order"]
    if order is None:
        return atoms
    back = np.empty(len(order), dtype=int)
    back[order] = np.arange(len(order))
    return atoms[back]  # undo the species sorting of the POSCAR


def same_geometry(a: Atoms, b: Atoms, tol: float = 1e-5) -> bool:
    if a.get_chemical_symbols() != b.get_chemical_symbols():
        return False
    if not np.allclose(a.cell[:], b.cell[:], atol=tol):
        return False
    disp, _ = find_mic(a.positions - b.positions, a.cell, a.pbc)
    return bool(np.abs(disp).max() < tol)


def test_structures_move_and_inputs_hold_them(
    plan: StudyPlan, plain: Path, pre: tuple[Path, StudyPlan, Manifest, CountingBackend]
) -> None:
    out, relaxed, manifest, _ = pre
    assert len(manifest.calculations) == len(plan.calculations) + len(plan.nebs)
    moved = []
    for calc in relaxed.calculations:
        written, before = poscar_atoms(out / calc.name), poscar_atoms(plain / calc.name)
        if calc.kind == "molecule":  # the input set re-boxes molecules: compare shapes
            assert np.allclose(written.get_all_distances(), calc.atoms.get_all_distances())
            if not np.allclose(written.get_all_distances(), before.get_all_distances()):
                moved.append(calc.name)
            continue
        assert same_geometry(written, calc.atoms), calc.name
        if not same_geometry(written, before):
            moved.append(calc.name)
    # cubic bulk is a mock minimum; every other structure moves
    assert set(moved) >= {
        c.name for c in plan.calculations if c.kind != "bulk" or c.role != "model"
    }


def test_forces_below_fmax_and_constraints_kept(
    plan: StudyPlan, pre: tuple[Path, StudyPlan, Manifest, CountingBackend]
) -> None:
    _, relaxed, _, _ = pre
    for calc in relaxed.calculations:
        start = plan.get(calc.name).atoms
        assert [c.todict() for c in calc.atoms.constraints] == [
            c.todict() for c in start.constraints
        ]
        assert calc.atoms.info == start.info
        atoms = calc.atoms.copy()
        atoms.calc = MockPairCalculator()
        assert max_force(atoms) <= FMAX + 1e-9, calc.name
        fixed = [i for c in start.constraints for i in c.get_indices()]
        if fixed:
            # slabs run on the relaxed bulk lattice (slab.lattice: relaxed): the fixed
            # atoms sit exactly where the rescaled plan structure has them
            scale = calc.atoms.cell[0, 0] / start.cell[0, 0]
            expected = rescale_to_lattice(start, scale) if abs(scale - 1) > 1e-9 else start
            assert np.allclose(calc.atoms.positions[fixed], expected.positions[fixed])


def test_input_plan_is_not_modified(
    plan: StudyPlan, pre: tuple[Path, StudyPlan, Manifest, CountingBackend]
) -> None:
    fresh = plan_study(study_from_dict(SMALL))
    for a, b in zip(plan.calculations, fresh.calculations, strict=True):
        assert np.array_equal(a.atoms.positions, b.atoms.positions)
        assert "prerelax" not in a.meta
    assert all("prerelax" not in n.meta for n in plan.nebs)
    assert pre[1] is not plan


def test_every_folder_records_the_prerelaxation(
    pre: tuple[Path, StudyPlan, Manifest, CountingBackend],
) -> None:
    out, relaxed, manifest, _ = pre
    for entry in manifest.calculations:
        record = json.loads((out / entry.path / INPUT_PROVENANCE_FILE).read_text())["prerelax"]
        assert record == entry.meta["prerelax"], entry.name
        assert record["backend"] == "mock"
        assert record["converged"] is True
        assert record["fmax"] == FMAX
        assert record["description"]["note"] == MOCK_NOTE
        if entry.kind == "neb":
            assert "pre-relaxed" in record["band"]
            assert "pre-relaxed with mock" in entry.meta["band"]
        else:
            assert record["fmax_reached"] <= FMAX
            assert record["steps"] >= 1
            assert np.isfinite(record["energy_eV"])
            assert record["date"]
            assert record["relax_cell"] is relaxed.get(entry.name).relax_cell


def test_neb_band_runs_between_the_relaxed_endpoints(
    plain: Path, pre: tuple[Path, StudyPlan, Manifest, CountingBackend]
) -> None:
    out, relaxed, _, _ = pre
    neb = relaxed.nebs[0]
    initial, final = relaxed.get(neb.initial).atoms, relaxed.get(neb.final).atoms
    assert "relaxed initial endpoint" in relaxed.get(neb.final).meta["prerelax"]["start"]
    last = f"{neb.n_images + 1:02d}"
    folder = out / NEB
    assert same_geometry(poscar_atoms(folder, "00/POSCAR"), initial)
    assert same_geometry(poscar_atoms(folder, f"{last}/POSCAR"), final)
    band = interpolate_band(initial, final, neb.n_images, method="idpp")
    for i in range(1, neb.n_images + 1):
        image = poscar_atoms(folder, f"{i:02d}/POSCAR")
        assert same_geometry(image, band[i], tol=1e-4), i
        assert not same_geometry(image, poscar_atoms(plain / NEB, f"{i:02d}/POSCAR"), tol=1e-4)


def test_rerun_reuses_every_relaxation(
    plan: StudyPlan, pre: tuple[Path, StudyPlan, Manifest, CountingBackend]
) -> None:
    out, _, _, first = pre
    assert sorted(first.relaxed) == sorted(c.name for c in plan.calculations)
    results = sorted((out / ".prerelax").glob(f"*/{'result.json'}"))
    stamps = [p.stat().st_mtime_ns for p in results]
    again = CountingBackend(fmax=FMAX, endpoint_fmax=FMAX)
    manifest = write_study_inputs(
        plan, out, prerelax=prerelax_hook(again, workdir=out / ".prerelax")
    )
    assert again.relaxed == []
    assert manifest.written == []
    assert [p.stat().st_mtime_ns for p in results] == stamps


def test_changed_settings_are_refused_then_forced(plan: StudyPlan, tmp_path: Path) -> None:
    small = StudyPlan("one", [plan.get("slab-CsX-x3")])
    work = tmp_path / "work"
    prerelax_plan(small, "mock", workdir=work, fmax=0.1)
    with pytest.raises(OverwriteError, match="slab-CsX-x3"):
        prerelax_plan(small, "mock", workdir=work, fmax=FMAX)
    assert not list(tmp_path.glob("work/*.bak-*"))
    redone = prerelax_plan(small, "mock", workdir=work, fmax=FMAX, force=True)
    assert redone.calculations[0].meta["prerelax"]["fmax"] == FMAX
    assert len(list(work.glob("slab-CsX-x3.bak-*"))) == 1


def test_unconverged_is_recorded_and_warned(plan: StudyPlan, tmp_path: Path) -> None:
    small = StudyPlan("one", [plan.get("slab-CsX-x3")])
    with pytest.warns(PrerelaxWarning, match="did not converge"):
        used = prerelax_plan(small, "mock", workdir=tmp_path / "a", max_steps=1)
    record = used.calculations[0].meta["prerelax"]
    assert (record["converged"], record["geometry"], record["steps"]) == (False, "relaxed", 1)
    with pytest.warns(PrerelaxWarning):
        kept = prerelax_plan(
            small, "mock", workdir=tmp_path / "a", max_steps=1, unconverged="discard"
        )
    assert np.allclose(kept.calculations[0].atoms.positions, small.calculations[0].atoms.positions)
    with pytest.raises(ConvergenceError, match="slab-CsX-x3"):
        prerelax_plan(small, "mock", workdir=tmp_path / "a", max_steps=1, unconverged="raise")


def test_bad_backend_is_a_typed_error_before_any_file(
    plan: StudyPlan, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(BackendError, match=r"'emt'.*chgnet.*mock"):
        write_study_inputs(plan, tmp_path / "out", prerelax=prerelax_hook("emt", workdir=tmp_path))
    with pytest.raises(BackendError, match="'emt'"):
        prerelax_plan(plan, "emt", workdir=tmp_path / "work")
    monkeypatch.setitem(sys.modules, "chgnet.model", None)  # chgnet not installed
    with pytest.raises(BackendNotInstalledError, match="pip install"):
        prerelax_hook("chgnet", workdir=tmp_path / "work")
    assert list(tmp_path.iterdir()) == []


def test_cli_prerelax_mock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    study = tmp_path / "study.yaml"
    study.write_text(yaml.safe_dump({**SMALL, "neb": {"paths": []}}))  # bulk and one slab
    out = tmp_path / "dry"
    assert main(["inputs", str(study), "--out", str(out), "--prerelax-fmax", "0.1"]) == 2
    assert "--prerelax" in capsys.readouterr().err
    assert not out.exists()
    args = ["inputs", str(study), "--out", str(out), "--prerelax", "mock"]
    assert main([*args, "--prerelax-fmax", "0.08"]) == 0
    captured = capsys.readouterr()
    assert "pre-relaxed with mock: 2/2 converged" in captured.out
    assert "not physics" in captured.out
    assert "prerelax [2/2]" in captured.err
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["calculations"]:
        record = json.loads((out / entry["path"] / INPUT_PROVENANCE_FILE).read_text())
        assert record["prerelax"]["backend"] == "mock"
        assert record["prerelax"]["fmax"] == 0.08
        assert (out / ".prerelax" / entry["name"] / "result.json").is_file()
    assert main([*args[:-1], "emt"]) == 2
    err = capsys.readouterr().err
    assert "unknown backend 'emt'" in err
    assert "mock" in err
    assert "chgnet" in err


@pytest.mark.mlip
def test_chgnet_prerelaxes_cubic_bulk(plan: StudyPlan, tmp_path: Path) -> None:
    pytest.importorskip("chgnet")
    small = StudyPlan("one", [plan.get("bulk-x3")])
    relaxed = prerelax_plan(small, "chgnet", workdir=tmp_path)
    record = relaxed.calculations[0].meta["prerelax"]
    assert record["converged"] is True
    assert record["description"]["model"]["checkpoint"] == "0.3.0"
    assert record["description"]["model"]["package_version"]
    a = relaxed.calculations[0].atoms.cell.lengths()[0]
    assert 5.8 < a < 6.2


def test_provenance_follows_when_the_poscar_does_not_change(
    plan: StudyPlan, tmp_path: Path
) -> None:
    one = StudyPlan("one", [plan.get("slab-CsX-x3")])
    hook = prerelax_hook("mock", workdir=tmp_path / "work")
    relaxed = hook(one).calculations[0]
    # the same geometry without the record: the folder is current, only provenance differs
    bare = StudyPlan("bare", [dataclasses.replace(relaxed, meta=one.calculations[0].meta)])
    out = tmp_path / "out"
    write_study_inputs(bare, out)
    record = out / "slab-CsX-x3" / INPUT_PROVENANCE_FILE
    assert json.loads(record.read_text())["prerelax"] is None
    assert write_study_inputs(one, out, prerelax=hook).written == []
    assert json.loads(record.read_text())["prerelax"]["backend"] == "mock"
    assert write_study_inputs(bare, out).written == []
    assert json.loads(record.read_text())["prerelax"] is None

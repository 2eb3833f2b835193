"""A study plan as a FireWorks Workflow: counts, exact links, names, JSON round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk, molecule
from ase.constraints import FixAtoms
from fireworks import Workflow

from pqdflow.errors import BackendError, InputError
from pqdflow.workflows.fw_tasks import (
    BindingTask,
    NebAnalysisTask,
    NebTask,
    RelaxTask,
    analyse_neb,
    atoms_from_dict,
    calc_from_dict,
    env_chk,
)
from pqdflow.workflows.fw_workflows import build_workflow, plan_fingerprint
from pqdflow.workflows.plan import BindingSpec, CalcSpec, NebSpec, StudyPlan


def _slab() -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((1, 1, 2))
    atoms.center(vacuum=6.0, axis=2)
    atoms.set_constraint(FixAtoms(indices=[0, 1]))
    atoms.info.update({"kind": "slab", "miller": (0, 0, 1)})
    return atoms


def hand_made_plan() -> StudyPlan:
    slab = _slab()
    ads = slab.copy()
    ads += Atoms("H", positions=[[0.0, 0.0, ads.positions[:, 2].max() + 1.5]])
    ligand = molecule("H2")
    ligand.center(vacuum=5.0)
    hop_a, hop_b = slab.copy(), slab.copy()
    hop_b.positions[-1] += [0.9, 0.0, 0.0]
    calcs = [
        CalcSpec("slab-Cu", "slab", slab),
        CalcSpec("ads-H-Cu", "adsorbed", ads),
        CalcSpec("ligand-H2", "molecule", ligand, role="ligand_reference"),
        CalcSpec("bulk-Cu", "bulk", bulk("Cu", "fcc", a=3.6), relax_cell=True, role="reference"),
        CalcSpec("neb-Cu-initial", "slab", hop_a, role="neb_initial"),
        CalcSpec("neb-Cu-final", "slab", hop_b, role="neb_final"),
    ]
    return StudyPlan(
        name="hand",
        calculations=calcs,
        bindings=[
            BindingSpec(
                "binding-H-Cu",
                "H",
                "top",
                "ads-H-Cu",
                "slab-Cu",
                {"ligand-H2": 0.5},
                {"bulk-Cu": 0.0},
            )
        ],
        nebs=[
            NebSpec(
                "neb-Cu", "clean", "neb-Cu-initial", "neb-Cu-final", n_images=3, hopping_index=7
            )
        ],
    )


def _by_name(wf: Workflow) -> dict[str, int]:
    return {fw.name: fw.fw_id for fw in wf.fws}


def _parents(wf: Workflow, fw_id: int) -> set[int]:
    return {p for p, children in wf.links.items() if fw_id in children}


def test_hand_made_plan_graph_is_exact(tmp_path: Path) -> None:
    plan = hand_made_plan()
    wf = build_workflow(plan, "mock", root=tmp_path)
    ids = _by_name(wf)
    assert len(wf.fws) == 6 + 1 + 1 + 1
    relax = {c.name: ids[f"relax/{c.kind}: {c.name}"] for c in plan.calculations}
    binding = ids["binding: binding-H-Cu"]
    neb, analysis = ids["neb: neb-Cu"], ids["neb-analysis: neb-Cu"]
    assert _parents(wf, binding) == {relax[n] for n in plan.bindings[0].parents()}
    assert _parents(wf, neb) == {relax["neb-Cu-initial"], relax["neb-Cu-final"]}
    assert _parents(wf, analysis) == {neb}
    # the NEB final endpoint starts from the relaxed initial one (same tilt basin)
    assert _parents(wf, relax["neb-Cu-final"]) == {relax["neb-Cu-initial"]}
    assert all(_parents(wf, relax[n]) == set() for n in relax if n != "neb-Cu-final")
    final_task = next(fw.tasks[0] for fw in wf.fws if fw.fw_id == relax["neb-Cu-final"])
    assert final_task["start_from"]["initial"] == "neb-Cu-initial"
    assert final_task["start_from"]["hopping_index"] == plan.nebs[0].hopping_index
    # nothing else hangs off the relaxations
    assert set(wf.links[relax["slab-Cu"]]) == {binding}
    assert set(wf.links[relax["neb-Cu-initial"]]) == {neb, relax["neb-Cu-final"]}
    kinds = {fw.name: type(fw.tasks[0]) for fw in wf.fws}
    assert kinds["binding: binding-H-Cu"] is BindingTask
    assert kinds["neb: neb-Cu"] is NebTask
    assert kinds["neb-analysis: neb-Cu"] is NebAnalysisTask
    assert kinds["relax/molecule: ligand-H2"] is RelaxTask
    cats = {fw.name: fw.spec.get("_category") for fw in wf.fws}
    assert cats["neb: neb-Cu"] == "neb"
    assert cats["relax/slab: slab-Cu"] == "relax"
    assert cats["binding: binding-H-Cu"] == "analysis"
    assert wf.metadata["pqdflow_fingerprint"] == plan_fingerprint(plan, "mock")
    assert plan_fingerprint(plan, "mock") != plan_fingerprint(plan, "chgnet")
    assert plan_fingerprint(hand_made_plan(), "mock") == plan_fingerprint(plan, "mock")


def test_round_trip_and_spec_is_plain_json(tmp_path: Path) -> None:
    plan = hand_made_plan()
    wf = build_workflow(
        plan, "vasp", root=tmp_path, backend_options={"custodian": {"max_errors": 3}}
    )
    as_dict = wf.to_dict()
    assert Workflow.from_dict(as_dict).to_dict() == as_dict
    # every spec is plain JSON: no Atoms, numpy arrays or tuples left
    specs = [fw["spec"] for fw in as_dict["fws"]]
    assert json.loads(json.dumps(specs)) == specs
    back = Workflow.from_format(wf.to_format("json"), "json")
    assert [fw["spec"] for fw in back.to_dict()["fws"]] == specs
    task = next(fw.tasks[0] for fw in back.fws if fw.name == "relax/slab: slab-Cu")
    assert isinstance(task, RelaxTask)
    assert task["backend"] == "vasp"
    assert task["backend_options"]["custodian"] == {"max_errors": 3}
    calc = calc_from_dict(task["calc"])
    original = plan.get("slab-Cu")
    assert np.allclose(calc.atoms.positions, original.atoms.positions)
    assert np.allclose(calc.atoms.cell, original.atoms.cell)
    assert calc.atoms.constraints[0].index.tolist() == [0, 1]
    assert calc.atoms.info["miller"] == [0, 0, 1]
    assert (calc.kind, calc.role, calc.relax_cell) == ("slab", "model", False)


def test_categories_can_be_switched_off_and_bad_input_is_refused(tmp_path: Path) -> None:
    plan = hand_made_plan()
    wf = build_workflow(plan, "mock", categories={"neb": "big-nodes"})
    assert {fw.spec.get("_category") for fw in wf.fws} == {None, "big-nodes"}
    root_free = next(fw.tasks[0] for fw in wf.fws if fw.name.startswith("relax/"))
    assert root_free["root"] is None  # the launch directory of each job
    with pytest.raises(
        BackendError, match=r"unknown backend 'castep'; choose one of \['vasp', 'mock', 'chgnet'\]"
    ):
        build_workflow(plan, "castep")
    with pytest.raises(InputError, match="unknown Firework kinds"):
        build_workflow(plan, "mock", categories={"nebs": "x"})


def test_default_study_as_a_workflow() -> None:
    from pqdflow.workflows.study import example_study, plan_study

    plan = plan_study(example_study())
    wf = build_workflow(plan, "vasp")
    n_calc, n_bind, n_neb = len(plan.calculations), len(plan.bindings), len(plan.nebs)
    assert len(wf.fws) == n_calc + n_bind + 2 * n_neb
    ids = _by_name(wf)
    relax = {c.name: ids[f"relax/{c.kind}: {c.name}"] for c in plan.calculations}
    for b in plan.bindings:
        assert _parents(wf, ids[f"binding: {b.name}"]) == {relax[n] for n in b.parents()}
    for n in plan.nebs:
        assert _parents(wf, ids[f"neb: {n.name}"]) == {relax[n.initial], relax[n.final]}
        assert _parents(wf, ids[f"neb-analysis: {n.name}"]) == {ids[f"neb: {n.name}"]}
    back = Workflow.from_format(wf.to_format("json"), "json")
    assert len(back.fws) == len(wf.fws)
    assert back.links == wf.links
    # molecules and periodic cells come back as they went in
    mol = next(fw.tasks[0] for fw in back.fws if fw.name.startswith("relax/molecule"))
    original = plan.get(mol["calc"]["name"]).atoms
    restored = atoms_from_dict(mol["calc"]["atoms"])
    assert restored.get_chemical_formula() == original.get_chemical_formula()
    assert np.allclose(restored.positions, original.positions)


def test_env_chk_reads_the_worker_env() -> None:
    spec = {"_fw_env": {"vasp_cmd": "srun vasp_std"}}
    assert env_chk(">>vasp_cmd<<", spec) == "srun vasp_std"
    assert env_chk(["mpirun", "vasp"], spec) == ["mpirun", "vasp"]
    assert env_chk(">>gamma_vasp_cmd<<", spec, strict=False) is None
    with pytest.raises(BackendError, match=r"my_fworker\.yaml"):
        env_chk(">>gamma_vasp_cmd<<", spec)


def test_neb_analysis_recomputes_the_barrier_from_energies() -> None:
    neb = NebSpec("neb-x", "bulk", "a", "b", n_images=3, hopping_index=0)
    energies = [-10.0, -9.8, -9.6, -9.9, -10.1]
    doc = {
        "path": "neb-x",
        "backend": "mock",
        "image_energies": energies,
        "reaction_coordinate": [0.0, 1.0, 2.0, 3.0, 4.0],
        "tangential_forces": [0.0, 0.1, 0.0, -0.1, 0.0],
        "climbing_index": 2,
        "converged": True,
        "Ea_eV": 0.4,
    }
    out = analyse_neb(neb, doc)
    assert out["Ea_eV"] == pytest.approx(0.4)
    assert out["Ea_reverse_eV"] == pytest.approx(0.5)
    assert out["highest_index"] == 2
    assert out["climbing_is_highest"] is True
    assert out["reported_minus_recomputed_eV"] == pytest.approx(0.0)

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

from pqdflow.analysis.barriers import summarize_neb
from pqdflow.documents.plan import BindingSpec, CalcSpec, NebSpec, StudyPlan, atoms_from_dict
from pqdflow.documents.results import NebDoc
from pqdflow.errors import BackendError, InputError
from pqdflow.workflows.backends import resolve_env
from pqdflow.workflows.fireworks.builder import build_workflow
from pqdflow.workflows.fireworks.tasks import StepTask
from pqdflow.workflows.study.scheduler import Step


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
    neb, analysis = ids["neb: neb-Cu"], ids["neb-analysis: neb-Cu-analysis"]
    assert _parents(wf, binding) == {relax[n] for n in plan.bindings[0].parents()}
    assert _parents(wf, neb) == {relax["neb-Cu-initial"], relax["neb-Cu-final"]}
    assert _parents(wf, analysis) == {neb}
    # the NEB final endpoint starts from the relaxed initial one (same tilt basin)
    assert _parents(wf, relax["neb-Cu-final"]) == {relax["neb-Cu-initial"]}
    assert all(_parents(wf, relax[n]) == set() for n in relax if n != "neb-Cu-final")
    final_task = next(fw.tasks[0] for fw in wf.fws if fw.fw_id == relax["neb-Cu-final"])
    start = Step.from_dict(final_task["step"]).start_from
    assert start is not None
    assert start.initial == "neb-Cu-initial"
    assert start.hopping_index == plan.nebs[0].hopping_index
    # nothing else hangs off the relaxations
    assert set(wf.links[relax["slab-Cu"]]) == {binding}
    assert set(wf.links[relax["neb-Cu-initial"]]) == {neb, relax["neb-Cu-final"]}
    # priority = cost of the dearest chain to an end (small cells: one unit per
    # calculation): the NEB chain goes first
    priority = {fw.fw_id: fw.spec["_priority"] for fw in wf.fws}
    assert priority[relax["neb-Cu-initial"]] == 3  # initial -> final -> band
    assert priority[relax["neb-Cu-final"]] == 2
    assert priority[neb] == 1
    assert priority[analysis] == priority[binding] == 0
    assert priority[relax["slab-Cu"]] == priority[relax["ligand-H2"]] == 1
    assert all(type(fw.tasks[0]) is StepTask for fw in wf.fws)
    kinds = {fw.name: fw.tasks[0]["step"]["kind"] for fw in wf.fws}
    assert kinds["binding: binding-H-Cu"] == "binding"
    assert kinds["neb: neb-Cu"] == "neb"
    assert kinds["neb-analysis: neb-Cu-analysis"] == "neb_analysis"
    assert kinds["relax/molecule: ligand-H2"] == "relax"
    cats = {fw.name: fw.spec.get("_category") for fw in wf.fws}
    assert cats["neb: neb-Cu"] == "neb"
    assert cats["relax/slab: slab-Cu"] == "relax"
    assert cats["binding: binding-H-Cu"] == "analysis"
    assert wf.metadata["pqdflow_fingerprint"] == plan.fingerprint("mock")
    assert plan.fingerprint("mock") != plan.fingerprint("chgnet")
    assert hand_made_plan().fingerprint("mock") == plan.fingerprint("mock")


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
    assert isinstance(task, StepTask)
    assert task["backend"] == "vasp"
    assert task["backend_options"]["custodian"] == {"max_errors": 3}
    # the VASP jobs carry the plan's input options: they write what the dry run writes
    assert task["backend_options"]["inputs"]["neb_endpoint_ediffg"] is None
    calc = Step.from_dict(task["step"]).spec
    assert isinstance(calc, CalcSpec)
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
    with pytest.raises(BackendError, match=r"unknown backend 'castep'.*chgnet.*mock.*vasp"):
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
        analysis = ids[f"neb-analysis: {n.name}-analysis"]
        assert _parents(wf, analysis) == {ids[f"neb: {n.name}"]}
    back = Workflow.from_format(wf.to_format("json"), "json")
    assert len(back.fws) == len(wf.fws)
    assert back.links == wf.links
    # molecules and periodic cells come back as they went in
    mol = next(fw.tasks[0] for fw in back.fws if fw.name.startswith("relax/molecule"))
    original = plan.get(mol["step"]["name"]).atoms
    restored = atoms_from_dict(mol["step"]["spec"]["atoms"])
    assert restored.get_chemical_formula() == original.get_chemical_formula()
    assert np.allclose(restored.positions, original.positions)


def test_resolve_env_reads_the_worker_env() -> None:
    env = {"vasp_cmd": "srun vasp_std"}
    assert resolve_env(">>vasp_cmd<<", env) == "srun vasp_std"
    assert resolve_env(["mpirun", "vasp"], env) == ["mpirun", "vasp"]
    assert resolve_env(">>gamma_vasp_cmd<<", env, strict=False) is None
    with pytest.raises(BackendError, match=r"my_fworker\.yaml"):
        resolve_env(">>gamma_vasp_cmd<<", env)


def test_neb_analysis_recomputes_the_barrier_from_energies() -> None:
    energies = [-10.0, -9.8, -9.6, -9.9, -10.1]
    doc = NebDoc(
        path="neb-x",
        label="bulk",
        backend="mock",
        image_energies=energies,
        reaction_coordinate=[0.0, 1.0, 2.0, 3.0, 4.0],
        tangential_forces=[0.0, 0.1, 0.0, -0.1, 0.0],
        barrier={},
        Ea_eV=0.4,
        Ea_reverse_eV=0.5,
        Ea_spline_eV=0.4,
        Ea_reverse_spline_eV=0.5,
        n_images=3,
        climbing_index=2,
        fmax=0.01,
        fmax_climbing=0.01,
        converged=True,
        n_force_calls=1,
        n_steps=1,
        initial="a",
        final="b",
        directory="x",
    )
    out = summarize_neb(doc)
    assert out["Ea_eV"] == pytest.approx(0.4)
    assert out["Ea_reverse_eV"] == pytest.approx(0.5)
    assert out["highest_index"] == 2
    assert out["climbing_is_highest"] is True
    assert out["reported_minus_recomputed_eV"] == pytest.approx(0.0)


def test_priorities_put_the_ligand_bands_ahead_of_the_one_step_relaxations() -> None:
    """Critical-path order on the default study: a ready ligand band starts before fills."""
    from pqdflow.workflows.fireworks.builder import _chain_costs
    from pqdflow.workflows.study.planner import plan_study
    from pqdflow.workflows.study.scheduler import schedule
    from pqdflow.workflows.study.schema import example_study

    plan = plan_study(example_study())
    steps = schedule(plan)
    cost = _chain_costs(steps)
    kind = {s.name: s.kind for s in steps}
    ligand_bands = [n.name for n in plan.nebs if n.meta["host"] != "bulk"]
    bulk_bands = [n.name for n in plan.nebs if n.meta["host"] == "bulk"]
    # the fills and the binding cells: one relaxation each, then only a reaction energy
    one_step = [
        c.name
        for c in plan.calculations
        if c.role == "vacancy_fill" or (c.role == "model" and c.kind == "adsorbed")
    ]
    assert len(one_step) == 14
    assert min(cost[b] for b in ligand_bands) > max(cost[r] for r in one_step)
    assert min(cost[b] for b in ligand_bands) > max(cost[b] for b in bulk_bands)
    for neb in plan.nebs:  # along a chain the cost only grows towards its start
        assert cost[neb.final] > cost[neb.name] > 0
        assert cost[neb.initial] > cost[neb.final]
        host = plan.get(neb.initial).meta["start_from_host"]["host"]
        assert cost[host] > cost[neb.initial]
    assert all(cost[s] == 0 for s in kind if kind[s] in ("binding", "neb_analysis"))

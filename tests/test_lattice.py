"""Slabs and NEB hosts run on the backend's relaxed bulk lattice."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pqdflow.errors import InputError
from pqdflow.structures.adsorption import build_passivated_surface
from pqdflow.structures.bulk import build_mixed_halide, vegard_a
from pqdflow.structures.slabs import build_slab
from pqdflow.structures.strain import rescale_to_lattice
from pqdflow.workflows.study import plan_study, study_from_dict
from pqdflow.workflows.study.scheduler import schedule


def test_bulk_scales_isotropically() -> None:
    bulk = build_mixed_halide(2.0, (2, 2, 2), seed=0)
    out = rescale_to_lattice(bulk, 1.02)
    assert np.allclose(out.cell.lengths(), bulk.cell.lengths() * 1.02)
    assert np.allclose(out.get_scaled_positions(), bulk.get_scaled_positions())
    assert out.info["lattice_scale"] == 1.02
    with pytest.raises(InputError, match=r"between 0\.8 and 1\.2"):
        rescale_to_lattice(bulk, 1.5)


def test_ligand_slab_keeps_vacuum_and_molecules() -> None:
    slab = build_passivated_surface(build_slab(x=3.0, termination="PbX2"), "control")
    out = rescale_to_lattice(slab, 1.02)
    assert np.allclose(out.cell.lengths()[:2], slab.cell.lengths()[:2] * 1.02)
    lig = [i for r in slab.info["ligands"] for i in r["indices"]]
    inorganic = [i for i in range(len(slab)) if i not in lig]
    # inorganic slab 2 % thicker, vacuum above the ligands unchanged
    thick = np.ptp(slab.positions[inorganic, 2])
    assert np.ptp(out.positions[inorganic, 2]) == pytest.approx(thick * 1.02)
    gap = slab.cell[2, 2] - slab.positions[:, 2].max()
    assert out.cell[2, 2] - out.positions[:, 2].max() == pytest.approx(gap, abs=1e-6)
    # a ligand's heights move rigidly
    dz = out.positions[lig, 2] - slab.positions[lig, 2]
    assert np.allclose(dz, dz[0])
    assert len(out.constraints[0].get_indices()) == len(slab.constraints[0].get_indices())


def test_surfaces_and_endpoints_wait_for_their_bulk() -> None:
    study = study_from_dict(
        {
            "compositions": [3.0],
            "terminations": ["PbX2"],
            "ligands": {"names": [], "surfaces": ["control"]},
            "neb": {"x": 3.0, "paths": [{"host": "clean", "hops": ["VBr0-Br0-inplane"]}]},
        }
    )
    plan = plan_study(study)
    steps = {s.name: s for s in schedule(plan)}
    for name in ("slab-PbX2-x3", "control-PbX2-x3"):
        assert steps[name].parents[0] == "bulk-x3"
        assert plan.get(name).meta["lattice"] == {"from": "bulk-x3", "a_planned": vegard_a(3.0)}
    # the passivated surface also starts from the relaxed clean slab
    assert steps["slab-PbX2-x3"].parents == ("bulk-x3",)
    assert steps["control-PbX2-x3"].parents == ("bulk-x3", "slab-PbX2-x3")
    final = steps[plan.nebs[0].final]
    assert final.parents == (plan.nebs[0].initial, "bulk-x3")
    vegard = study_from_dict({**study.model_dump(mode="json"), "slab": {"lattice": "vegard"}})
    assert schedule(plan_study(vegard))[0].parents == ()
    assert all("lattice" not in c.meta for c in plan_study(vegard).calculations)


def test_mock_run_records_the_relaxed_lattice(tmp_path: Path) -> None:
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.engine.runner import run_study

    study = study_from_dict(
        {
            "compositions": [3.0],
            "terminations": ["PbX2"],
            "slab": {"layers": 3, "fixed_layers": 1},
            "ligands": {"names": [], "surfaces": []},
            "neb": {"paths": []},
        }
    )
    results = run_study(
        plan_study(study), get_backend("mock"), tmp_path, progress=False, echo=False
    )
    docs = {c["name"]: c for c in results.calculations}
    bulk = docs["bulk-x3"]
    a = abs(np.linalg.det(bulk["cell"])) ** (1 / 3)
    lattice = docs["slab-PbX2-x3"]["meta"]["lattice"]
    assert lattice["a"] == pytest.approx(a, abs=1e-5)
    assert lattice["scale"] == pytest.approx(a / vegard_a(3.0), abs=1e-5)
    assert abs(lattice["scale"] - 1) > 1e-3  # the mock's lattice is not the experimental one
    slab_cell = np.asarray(docs["slab-PbX2-x3"]["cell"])
    assert slab_cell[0, 0] == pytest.approx(2 * a, abs=1e-4)  # 2x2 slab on the relaxed a

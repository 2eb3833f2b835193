"""Hop sampling by geometry and the per-surface migration summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from pqdflow.analysis.migration import (
    plot_barrier_vs_ligand_distance,
    summarize_migration,
    transport_limiting_barrier,
)
from pqdflow.errors import InputError, StudyError
from pqdflow.structures.bulk import build_mixed_halide
from pqdflow.structures.hops import hop_network, sample_hops, select_hops
from pqdflow.structures.slabs import build_slab
from pqdflow.workflows.study import plan_study, study_from_dict


# --------------------------------------------------------------- transport-limiting barrier
def test_chain_along_x_percolates_at_its_highest_link() -> None:
    # sites 0-1-2 in a row, 2 -> 0 through the next cell along x: a loop around the cell
    edges = [(0, 1, (0, 0, 0), 0.2), (1, 2, (0, 0, 0), 0.5), (2, 0, (1, 0, 0), 0.3)]
    assert transport_limiting_barrier(3, edges, (0, 1)) == pytest.approx(0.5)


def test_cheap_local_loop_does_not_count() -> None:
    # a cheap closed loop inside the cell (net shift 0) and an expensive wrap-around link
    edges = [
        (0, 1, (0, 0, 0), 0.1),
        (1, 2, (0, 0, 0), 0.1),
        (2, 0, (0, 0, 0), 0.1),
        (2, 3, (0, 0, 0), 0.4),
        (3, 0, (0, 1, 0), 0.9),
    ]
    assert transport_limiting_barrier(4, edges, (0, 1)) == pytest.approx(0.9)


def test_wrap_along_a_non_periodic_axis_is_ignored() -> None:
    edges = [(0, 1, (0, 0, 0), 0.2), (1, 0, (0, 0, 1), 0.3)]
    assert transport_limiting_barrier(2, edges, (0, 1)) is None
    assert transport_limiting_barrier(2, edges, (2,)) == pytest.approx(0.3)


def test_self_image_edge_and_bad_site() -> None:
    assert transport_limiting_barrier(1, [(0, 0, (1, 0, 0), 0.7)]) == pytest.approx(0.7)
    with pytest.raises(InputError, match="outside"):
        transport_limiting_barrier(1, [(0, 3, (0, 0, 0), 0.1)])


# --------------------------------------------------------------------------- hop sampling
@pytest.fixture(scope="module")
def slab() -> Atoms:
    return build_slab(x=3.0, termination="PbX2", seed=0)


def test_pure_bromide_slab_has_two_hop_classes(slab: Atoms) -> None:
    hops = sample_hops(slab)
    assert [h.name for h in hops] == ["VBr0-Br0-inplane", "VBr0-Br1-updown"]
    for hop in hops:
        assert hop.multiplicity > 1  # the 2x2 cell has several equivalent copies
        assert hop.pivot_pb is not None
        assert slab[hop.pivot_pb].symbol == "Pb"
        for v, h, _ in hop.members:
            assert slab.get_distance(v, h, mic=True) == pytest.approx(hop.distance, abs=0.2)
    assert sample_hops(slab, max_depth=0)[0].name == "VBr0-Br0-inplane"
    assert len(sample_hops(slab, max_depth=0)) == 1


def test_names_are_unique_and_stable() -> None:
    host = build_mixed_halide(2.0, (2, 2, 2), seed=0)
    first, again = sample_hops(host), sample_hops(host.copy())
    names = [h.name for h in first]
    assert len(set(names)) == len(names)
    assert [(h.name, h.vacancy_index, h.hop_index) for h in first] == [
        (h.name, h.vacancy_index, h.hop_index) for h in again
    ]
    assert {h.vacancy_element for h in first} == {"Br", "I"}
    assert {h.hop_element for h in first} == {"Br", "I"}


def test_select_by_name_pattern_and_error(slab: Atoms) -> None:
    hops = sample_hops(slab)
    assert [h.name for h in select_hops(hops, ["VBr0-Br1*"], where="w")] == ["VBr0-Br1-updown"]
    with pytest.raises(InputError, match=r"w: no hop 'VBr9'.*available.*VBr0-Br0-inplane"):
        select_hops(hops, ["VBr9"], where="w")
    with pytest.raises(InputError, match=r"'all', 'spread'"):
        select_hops(hops, "some", where="w")


def test_network_of_the_clean_slab_percolates(slab: Atoms) -> None:
    hops = sample_hops(slab)
    net = hop_network(slab, hops)
    assert net["periodic"] == [0, 1]
    barrier = {"VBr0-Br0-inplane": 0.3, "VBr0-Br1-updown": 0.6}
    edges = [(i, j, s, barrier[name]) for i, j, s, name in net["edges"]]
    # in-plane hops alone connect the top layer across the cell
    assert transport_limiting_barrier(len(net["sites"]), edges, net["periodic"]) == 0.3


# ---------------------------------------------------------------- study: names -> atoms
def test_old_index_keys_are_a_clear_error() -> None:
    with pytest.raises(StudyError, match=r"vacancy .*no longer accepted.*hops:"):
        study_from_dict({"neb": {"paths": [{"host": "bulk", "vacancy": 0}]}})
    with pytest.raises(StudyError, match=r"no hop 'VXx'.*available"):
        plan_study(
            study_from_dict(
                {
                    "ligands": {"names": [], "surfaces": []},
                    "neb": {"x": 3.0, "paths": [{"host": "bulk", "hops": ["VXx"]}]},
                }
            )
        )


def test_plan_hop_is_the_named_atoms() -> None:
    study = study_from_dict(
        {
            "ligands": {"names": [], "surfaces": []},
            "neb": {"x": 3.0, "rattle": 0.0, "paths": [{"host": "clean", "hops": "all"}]},
        }
    )
    plan = plan_study(study)
    host = build_slab(x=3.0, termination="PbX2", seed=0)
    by_name = {h.name: h for h in sample_hops(host)}
    assert sorted(n.meta["hop"]["name"] for n in plan.nebs) == sorted(by_name)
    for neb in plan.nebs:
        hop = by_name[neb.meta["hop"]["name"]]
        initial = plan.get(neb.initial).atoms
        k = neb.hopping_index
        # the hopper starts where the named host atom is and the vacancy is the named site
        assert np.allclose(initial.positions[k], host.positions[hop.hop_index])
        assert initial[k].symbol == hop.hop_element
        vac = host.positions[hop.vacancy_index]
        assert np.min(np.linalg.norm(initial.positions - vac, axis=1)) > 1.0
    networks = plan.meta["hop_networks"]
    assert list(networks) == ["clean-x3"]


def test_summary_and_plot(tmp_path: Path, slab: Atoms) -> None:
    hops = sample_hops(slab)
    net = {"host": "clean", "x": 3.0, "hops": [h.labels() for h in hops], **hop_network(slab, hops)}
    nebs = [
        {
            "path": f"neb-{h.name}",
            "Ea_eV": 0.2 + 0.4 * k,
            "Ea_reverse_eV": 0.25 + 0.4 * k,
            "converged": True,
            "meta": {"surface": "clean-x3", "hop": h.labels()},
        }
        for k, h in enumerate(hops)
    ]
    summary = summarize_migration(nebs, {"clean-x3": net})["clean-x3"]
    assert summary["lowest_eV"] == pytest.approx(0.2)
    assert summary["lowest_hop"] == "VBr0-Br0-inplane"
    assert summary["transport_limiting_eV"] == pytest.approx(0.25)  # max(fwd, rev) in-plane
    assert summary["n_sampled"] == summary["n_offered"] == 2
    png = plot_barrier_vs_ligand_distance({"clean-x3": summary}, tmp_path / "m.png")
    assert png.read_bytes().startswith(b"\x89PNG")


def test_a_hop_within_the_noise_both_ways_is_barrierless_not_lowest_bound(slab: Atoms) -> None:
    from pqdflow.analysis.migration import BARRIERLESS_EV

    hops = sample_hops(slab)
    net = {"host": "clean", "x": 3.0, "hops": [h.labels() for h in hops], **hop_network(slab, hops)}
    nebs = [
        {"Ea_eV": 0.004, "Ea_reverse_eV": 0.006, "meta": {"surface": "s", "hop": hops[0].labels()}},
        {"Ea_eV": 0.30, "Ea_reverse_eV": 0.002, "meta": {"surface": "s", "hop": hops[1].labels()}},
    ]
    summary = summarize_migration(nebs, {"s": net})["s"]
    rows = {r["name"]: r for r in summary["hops"]}
    assert rows[hops[0].name]["barrierless"]  # 6 meV both ways < BARRIERLESS_EV
    assert max(0.004, 0.006) < BARRIERLESS_EV
    assert not rows[hops[1].name]["barrierless"]  # 0.30 eV one way is a real barrier
    assert summary["lowest_eV"] == pytest.approx(0.004)
    assert summary["lowest_bound_eV"] == pytest.approx(0.30)
    assert summary["lowest_bound_hop"] == hops[1].name
    assert summary["n_barrierless"] == 1


def test_write_migration_csv(tmp_path: Path, slab: Atoms) -> None:
    from pqdflow.analysis.migration import write_migration

    hops = sample_hops(slab)
    net = {"host": "clean", "x": 3.0, "hops": [h.labels() for h in hops], **hop_network(slab, hops)}
    nebs = [{"Ea_eV": 0.4, "meta": {"surface": "clean-x3", "hop": hops[1].labels()}}]
    summary = summarize_migration(nebs, {"clean-x3": net})
    # top <-> subsurface hops alone zigzag across the cell (each apical subsurface Br shares
    # an octahedron edge with four top-layer Br)
    assert summary["clean-x3"]["transport_limiting_eV"] == pytest.approx(0.4)
    assert summary["clean-x3"]["lowest_eV"] == pytest.approx(0.4)
    text = write_migration(summary, tmp_path, plot=False).read_text()
    assert "clean-x3,VBr0-Br1-updown,Br,0,Br,1,updown" in text
    assert not (tmp_path / "migration_barriers.png").exists()


@pytest.mark.slow
def test_mock_study_samples_every_hop_above_its_endpoints(tmp_path: Path) -> None:
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.engine.runner import run_study

    study = study_from_dict(
        {
            "compositions": [3.0],
            "terminations": ["PbX2"],
            "ligands": {"names": [], "surfaces": []},
            "neb": {
                "x": 2.0,
                "paths": [{"host": "clean", "hops": "nearest", "n_images": 3}],
            },
        }
    )
    plan = plan_study(study)
    results = run_study(plan, get_backend("mock"), tmp_path, progress=False, echo=False)
    assert not results.failed
    assert len(results.neb) == len(plan.nebs) >= 4
    for neb in results.neb:
        energies = np.asarray(neb["image_energies"])
        assert energies[1:-1].min() > min(energies[0], energies[-1]) - 1e-3, neb["path"]
        assert neb["Ea_eV"] > 0.05
    summary = results.migration["clean-x2"]
    assert summary["n_sampled"] == len(plan.nebs)
    assert summary["lowest_eV"] == min(n["Ea_eV"] for n in results.neb)
    assert (tmp_path / "migration.csv").is_file()
    # relaxed bulk lattice per composition with its Bragg peaks (Ext. Data Fig. 4d)
    assert [r["x"] for r in results.lattice] == [0.0, 2.0, 3.0]  # x=0: the CsPbI3 reference
    assert all(r["peaks"] for r in results.lattice)
    assert (tmp_path / "lattice_xrd.png").is_file()
    # vacancy formation energies from the mock's own references (numbers not physics)
    assert set(summary["chemical_potentials"]) == {"Br", "I"}
    for row in summary["hops"]:
        assert row["E_act_rich_eV"] == pytest.approx(row["E_f_rich_eV"] + row["Ea_eV"])
        mu = summary["chemical_potentials"][row["vacancy_element"]]
        shift = row["E_f_rich_eV"] - row["E_f_poor_eV"]
        assert shift == pytest.approx(mu["rich"] - mu["poor"], abs=1e-5)


def test_printed_summary_has_one_line_per_surface_with_its_barriers(slab: Atoms) -> None:
    from pqdflow.analysis.report.writers import format_table
    from pqdflow.documents.results import StudyResults

    hops = sample_hops(slab)
    net = {"host": "clean", "x": 3.0, "hops": [h.labels() for h in hops], **hop_network(slab, hops)}
    nebs = [
        {"Ea_eV": 0.004, "Ea_reverse_eV": 0.006, "meta": {"surface": "s", "hop": hops[0].labels()}},
        {"Ea_eV": 0.31, "Ea_reverse_eV": 0.29, "meta": {"surface": "s", "hop": hops[1].labels()}},
    ]
    results = StudyResults(
        study="t", backend="mock", migration=summarize_migration(nebs, {"s": net})
    )
    lines = format_table(results).splitlines()
    (row,) = [line for line in lines if line.startswith("s ")]
    # surface, 2 hops, lowest 0.004, lowest bound 0.310; the in-plane hop alone connects
    # across the cell, so it limits transport at max(fwd, rev) = 0.006
    assert row.split()[:5] == ["s", "2", "0.004", "0.310", "0.006"]
    assert "(1 barrierless)" in row


def test_a_hop_whose_final_state_went_back_is_blocked_not_a_zero_barrier(
    slab: Atoms, tmp_path: Path
) -> None:
    """Endpoints that relaxed into one state: no edge in the network, not the lowest."""
    hops = sample_hops(slab)
    net = {"host": "clean", "x": 3.0, "hops": [h.labels() for h in hops], **hop_network(slab, hops)}
    same = {"passed": False, "reason": "no atom moves", "same_state": True}
    nebs = [
        {"Ea_eV": 0.45, "Ea_reverse_eV": 0.2, "meta": {"surface": "s", "hop": hops[0].labels()}},
        {
            "Ea_eV": 0.0,
            "Ea_reverse_eV": 0.0,
            "meta": {"surface": "s", "hop": hops[1].labels(), "endpoint_check": same},
        },
    ]
    summary = summarize_migration(nebs, {"s": net})["s"]
    rows = {r["name"]: r for r in summary["hops"]}
    assert rows[hops[1].name]["blocked"]
    assert rows[hops[1].name]["vacancy_filled_by"] is None  # relaxed back, nothing moved in
    assert not rows[hops[1].name]["barrierless"]
    assert not rows[hops[0].name]["blocked"]
    assert summary["lowest_eV"] == pytest.approx(0.45)  # the 0.0 of the blocked hop is no barrier
    assert summary["n_blocked"] == 1
    assert summary["blocked_hops"] == [hops[1].name]
    # in-plane hops alone percolate at their max(fwd, rev); the blocked up-down hop adds no edge
    assert summary["transport_limiting_eV"] == pytest.approx(0.45)
    # a failed check that is not "one state" (a rearrangement) is not a blocked hop
    other = {**nebs[1], "meta": {**nebs[1]["meta"], "endpoint_check": {"passed": False}}}
    again = summarize_migration([nebs[0], other], {"s": net})["s"]
    assert again["n_blocked"] == 0
    assert again["lowest_eV"] == pytest.approx(0.0)
    # a document written before same_state was recorded: the reason says it
    older = {
        "passed": False,
        "reason": "no atom moves between the endpoints; they are the same state",
    }
    old_doc = {**nebs[1], "meta": {**nebs[1]["meta"], "endpoint_check": older}}
    assert summarize_migration([nebs[0], old_doc], {"s": net})["s"]["n_blocked"] == 1
    filled = {"element": "I", "index": 66, "ligand": "AnHI", "distance_A": 0.95}
    by_ligand = {**nebs[1], "meta": {**nebs[1]["meta"], "vacancy_filled": filled}}
    row = summarize_migration([nebs[0], by_ligand], {"s": net})["s"]["hops"]
    assert {r["name"]: r for r in row}[hops[1].name]["vacancy_filled_by"] == "I atom 66 (AnHI)"
    png = plot_barrier_vs_ligand_distance({"s": summary}, tmp_path / "b.png")
    assert png.read_bytes().startswith(b"\x89PNG")

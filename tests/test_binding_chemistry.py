"""Binding chemistry: balanced reactions, no redox references, TMSBr channels, site search, D3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from pqdflow.analysis.affinity import (
    SiteSummary,
    reaction_energies,
    relative_affinities,
    summarize_sites,
)
from pqdflow.documents.plan import StudyPlan
from pqdflow.errors import StudyError, UnbalancedReactionError
from pqdflow.structures.adsorption import place_ligand, placement_candidates
from pqdflow.structures.ligands import (
    build_ligand_reference,
    build_reaction_species,
    build_reference_species,
    register_ligand,
    unregister_ligand,
)
from pqdflow.structures.reactions import Reaction, Species, formal_charge
from pqdflow.structures.slabs import build_slab
from pqdflow.workflows.study import example_study, plan_study, study_from_dict


@pytest.fixture(scope="module")
def plan() -> StudyPlan:
    return plan_study(example_study())


def _species(name: str, atoms: Atoms) -> Species:
    return Species.of(name, atoms)


def test_unbalanced_reaction_is_a_typed_error_naming_the_atoms() -> None:
    tmsbr = _species("TMSBr", build_ligand_reference("TMSBr"))
    acid = _species("acid", build_ligand_reference("OAc"))
    ester = _species("ester", build_reaction_species("tms_ester"))
    hbr = _species("HBr", build_reference_species("HBr"))
    parts = {s.name: s for s in (tmsbr, acid, ester, hbr)}
    ok = Reaction("acid", {"TMSBr": 1, "acid": 1}, {"ester": 1, "HBr": 1}, parts).check()
    assert ok.imbalance() == ({}, 0.0)
    with pytest.raises(UnbalancedReactionError, match=r"Br \+1.*H \+1"):
        Reaction("no HBr", {"TMSBr": 1, "acid": 1}, {"ester": 1}, parts).check()


def test_charge_imbalance_is_named() -> None:
    parts = {"A": Species("A", {"Br": 1}, -1), "B": Species("B", {"Br": 1}, 0)}
    with pytest.raises(UnbalancedReactionError, match=r"charge -1 e"):
        Reaction("oxidation", {"A": 1}, {"B": 1}, parts).check()


def test_formal_charges_are_summed_per_fragment() -> None:
    csx = build_slab(x=3.0, termination="CsX", size=(2, 2), layers=5)
    pbx2 = build_slab(x=3.0, termination="PbX2", size=(2, 2), layers=5)
    assert formal_charge(csx) == formal_charge(pbx2) == 0
    assert formal_charge(place_ligand(csx, "OAm")) == 0  # OAm+ replaces Cs+
    assert formal_charge(place_ligand(csx, "AnHI")) == 0  # C6H5NH3+ and I- replace Cs+, Br-
    assert formal_charge(place_ligand(csx, "TMSBr")) == 1  # neutral TMSBr replaces Br-
    assert formal_charge(place_ligand(pbx2, "TMSBr")) == 0
    assert formal_charge(place_ligand(pbx2, "OAc")) == -1
    assert formal_charge(build_ligand_reference("OAm")) == 0  # ion pair (+1, -1)


def test_every_planned_reaction_is_atom_and_charge_balanced(plan: StudyPlan) -> None:
    calcs = {c.name: c for c in plan.calculations}
    assert plan.bindings
    for spec in plan.bindings:
        parts = {n: Species.of(n, calcs[n].atoms, calcs[n].formula_units) for n in spec.parents()}
        Reaction(
            spec.name, {spec.slab: 1, **spec.ligands}, {spec.adsorbed: 1, **spec.released}, parts
        ).check()
        released = {calcs[n].meta.get("species") for n in spec.released}
        assert not released & {"Br2", "I2"}, spec.name


def test_tmsbr_channels_and_the_labelled_adduct(plan: StudyPlan) -> None:
    channels = {b.meta["channel"]: b for b in plan.bindings}
    assert {"adduct", "surface_exchange", "solution_acid", "solution_amine", "etching"} <= set(
        channels
    )
    adduct = channels["adduct"]
    assert adduct.ligand == "TMSBr"
    assert adduct.meta["termination"] == "PbX2"
    exchange = channels["surface_exchange"]
    assert exchange.slab == "ads-OAc-CsX-x3"
    assert exchange.adsorbed == "slab-CsX-x3"
    assert exchange.released == {"rx-tms_ester": 1.0}
    assert channels["solution_acid"].released == {"ref-HBr": 1.0}


def test_single_ligands_on_every_charge_balanced_termination(plan: StudyPlan) -> None:
    placed = {
        (b.meta["ligand"], b.meta["termination"])
        for b in plan.bindings
        if b.meta.get("channel") in ("binding", "adduct") and "ligand" in b.meta
    }
    # AnHI (cation + iodide) is neutral on both terminations; TMSBr only atop PbX2
    assert ("AnHI", "CsX") in placed
    assert ("AnHI", "PbX2") in placed
    assert ("TMSBr", "PbX2") in placed
    assert ("TMSBr", "CsX") not in placed
    assert any("treated on CsX" in s and "charge" in s for s in plan.meta["skipped"])


def test_user_ligand_never_gets_a_redox_reference(tmp_path: Path) -> None:
    # an X-type ligand (charge -1) that brings its own Br and no H to give HBr with
    xyz = tmp_path / "ch2br.xyz"
    xyz.write_text("4\nbromomethanide\nBr 0 0 0\nC 0 0 1.94\nH 0.93 0 2.45\nH -0.93 0 2.45\n")
    register_ligand("MeBr", xyz, charge=-1, binding_atom=0, site="X_site")
    try:
        data = {
            "ligands": {"names": ["MeBr"], "surfaces": [], "silyl_channels": False},
            "terminations": ["CsX"],
            "neb": {"paths": []},
        }
        # the only balance is 1/2 Br2 (the surface Br- oxidised): refused by default
        with pytest.raises(StudyError, match="allow_redox"):
            plan_study(study_from_dict(data))
        data["ligands"]["allow_redox"] = True  # type: ignore[index]
        plan = plan_study(study_from_dict(data))
        released = {c for b in plan.bindings for c in b.released}
        assert released == {"ref-Br2"}
    finally:
        unregister_ligand("MeBr")


def test_placement_candidates_are_distinct_and_start_with_the_default() -> None:
    slab = build_slab(x=3.0, termination="CsX", size=(2, 2), layers=5)
    found = placement_candidates(slab, "OAm", 3)
    assert len(found) == len(set(found)) == 3
    default = place_ligand(slab, "OAm").info["ligands"][-1]
    assert found[0] == (default["site_index"], default["rotation"])


def _doc(name: str, ligand: str, e: float, termination: str = "CsX", **meta: object) -> dict:
    base = {"ligand": ligand, "termination": termination, "site": "A_pocket", "channel": "binding"}
    return {"name": name, "ligand": ligand, "E_b_eV": e, "meta": {**base, **meta}}


def test_site_search_returns_the_lowest_and_the_spread() -> None:
    docs = [
        _doc("b0", "OAm", -1.0, site_index=0, rotation=0.0),
        _doc("b1", "OAm", -1.4, site_index=1, rotation=90.0),
        _doc("b2", "OAm", -1.1, site_index=0, rotation=180.0),
        _doc("a0", "AnHI", -2.0),
        _doc("a1", "AnHI", -1.5),
        {"name": "r", "ligand": "TMSBr", "E_b_eV": 3.0, "meta": {"channel": "solution_acid"}},
    ]
    summaries = {s.ligand: s for s in summarize_sites(docs)}
    assert summaries["OAm"].lowest_eV == pytest.approx(-1.4)
    assert summaries["OAm"].binding == "b1"
    assert summaries["OAm"].rotation == 90.0
    assert summaries["OAm"].spread_eV == pytest.approx(0.4)
    rows = relative_affinities(summaries.values())
    assert rows[0]["ligand"] == "AnHI"
    assert rows[0]["delta_eV"] == pytest.approx(-0.6)
    assert rows[0]["uncertainty_eV"] == pytest.approx(0.9)
    assert [r["name"] for r in reaction_energies(docs)] == ["r"]


@pytest.mark.slow
def test_site_search_on_the_mock_reports_its_lowest_relaxed_energy(tmp_path: Path) -> None:
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.engine.runner import run_study

    data = {
        "ligands": {"names": ["OAm"], "surfaces": [], "silyl_channels": False, "configurations": 2},
        "terminations": ["CsX"],
        "slab": {"layers": 3, "fixed_layers": 1},
        "neb": {"paths": []},
        "inputs": {"dispersion": "none"},
    }
    plan = plan_study(study_from_dict(data))
    results = run_study(
        plan, get_backend("mock"), tmp_path / "run", progress=False, plots=False, echo=False
    )
    singles = [b for b in results.binding if b["meta"].get("ligand") == "OAm"]
    assert len(singles) == 2
    (summary,) = summarize_sites(results.binding)
    assert isinstance(summary, SiteSummary)
    assert summary.lowest_eV == min(b["E_b_eV"] for b in singles)
    assert summary.n_candidates == 2

    from pqdflow.workflows.study.screening import binding_screening

    report = binding_screening(tmp_path / "run")
    assert report["missing"] == []
    (site,) = report["sites"]
    assert site["lowest_eV"] == pytest.approx(summary.lowest_eV)


def test_d3_is_added_and_recorded() -> None:
    pytest.importorskip("dftd3")
    from ase.build import molecule

    from pqdflow.workflows.engine.calculators import MockPairCalculator
    from pqdflow.workflows.engine.dispersion import (
        d3bj_calculator,
        dispersion_record,
        with_dispersion,
    )

    atoms = molecule("CH3CH2OH")
    atoms.center(vacuum=5.0)
    atoms.calc = MockPairCalculator()
    base = atoms.get_potential_energy()
    atoms.calc = d3bj_calculator()
    d3 = atoms.get_potential_energy()
    assert d3 < 0
    atoms.calc = with_dispersion(MockPairCalculator, "d3bj")()
    assert atoms.get_potential_energy() == pytest.approx(base + d3)
    assert np.abs(atoms.get_forces()).max() > 0
    record = dispersion_record("d3bj")
    assert record["dispersion"] == "D3(BJ)"
    assert record["damping"]["a1"] == pytest.approx(0.4289)
    assert dispersion_record("none") == {"dispersion": "none"}


def test_single_point_uses_the_dispersion_of_its_ml_term(tmp_path: Path) -> None:
    """A DFT-check single point of a D3 term adds D3 too (ML+D3 vs DFT+D3, like for like)."""
    pytest.importorskip("dftd3")
    from ase.build import molecule

    from pqdflow.documents.plan import CalcSpec
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.engine.dispersion import d3bj_calculator

    atoms = molecule("CH3CH2OH")
    atoms.center(vacuum=5.0)
    backend = get_backend("mock")
    docs = {
        mode: backend.single_point(
            CalcSpec(f"sp-{mode}", "molecule", atoms, meta={"dispersion": mode}),
            tmp_path / mode,
        )
        for mode in ("none", "d3bj")
    }
    probe = atoms.copy()
    probe.calc = d3bj_calculator()
    d3 = probe.get_potential_energy()
    assert d3 < 0
    assert docs["d3bj"].energy == pytest.approx(docs["none"].energy + d3)
    assert docs["d3bj"].settings["dispersion"] == "D3(BJ)"
    assert docs["none"].settings["dispersion"] == "none"


def test_auto_dispersion_puts_ivdw_on_every_reaction_calculation(plan: StudyPlan) -> None:
    from pqdflow.workflows.vasp.calc_inputs import VaspInputOptions, input_set_for

    options = VaspInputOptions.from_plan(plan)
    in_reactions = {p for b in plan.bindings for p in b.parents()}
    for calc in plan.calculations:
        incar = input_set_for(calc, options).incar(calc.atoms)
        if calc.name in in_reactions:
            assert incar.get("IVDW") == 12, calc.name
        else:
            assert "IVDW" not in incar, calc.name
    assert all(b.meta["dispersion"] == "d3bj" for b in plan.bindings)


def test_dry_run_writes_every_reaction_calculation(tmp_path: Path) -> None:
    from pymatgen.io.vasp import Incar

    from pqdflow.workflows.vasp.dryrun import write_study_inputs

    study = study_from_dict(
        {
            "name": "channels",
            "ligands": {"names": ["OAm", "OAc", "TMSBr"], "surfaces": []},
            "neb": {"paths": []},
        }
    )
    plan = plan_study(study)
    manifest = write_study_inputs(plan, tmp_path / "dry")
    written = {e.name for e in manifest.calculations}
    assert written == {c.name for c in plan.calculations}
    assert {"rx-tms_ester", "rx-tms_amine", "rx-amine", "ref-HBr"} <= written
    for spec in plan.bindings:
        for name in spec.parents():
            assert Incar.from_file(tmp_path / "dry" / name / "INCAR")["IVDW"] == 12, name
    assert "IVDW" not in Incar.from_file(tmp_path / "dry" / "bulk-x3" / "INCAR")


def test_every_silyl_halide_gets_its_channels_with_its_own_halide() -> None:
    data = {
        "ligands": {"names": ["OAm", "OAc", "TMSBr", "TMSI"], "surfaces": []},
        "terminations": ["CsX", "PbX2"],
        "neb": {"paths": [], "fill": {"fillers": []}},
    }
    plan = plan_study(study_from_dict(data))
    by_silyl: dict[str, dict[str, object]] = {}
    for b in plan.bindings:
        if "silyl" in b.meta:
            by_silyl.setdefault(str(b.meta["silyl"]), {})[str(b.meta["channel"])] = b
    assert set(by_silyl) == {"TMSBr", "TMSI"}
    expected = {"solution_acid", "solution_amine", "surface_exchange", "etching"}
    assert set(by_silyl["TMSBr"]) == expected | {"hbr_capture"}
    assert set(by_silyl["TMSI"]) == expected | {"hi_capture"}
    tmsi = by_silyl["TMSI"]
    assert tmsi["solution_acid"].released == {"ref-HI": 1.0}  # type: ignore[attr-defined]
    assert tmsi["hi_capture"].adsorbed == "rx-ammonium_iodide"  # type: ignore[attr-defined]
    assert "TMSI + RCOOH" in tmsi["solution_acid"].meta["reaction"]  # type: ignore[attr-defined]
    # the oleate's surface site takes the donated iodide: one Br of the clean slab becomes I
    product = plan.get(tmsi["surface_exchange"].adsorbed)  # type: ignore[attr-defined]
    clean = plan.get("slab-CsX-x3")
    diff = [
        (a, b)
        for a, b in zip(
            clean.atoms.get_chemical_symbols(), product.atoms.get_chemical_symbols(), strict=True
        )
        if a != b
    ]
    assert diff == [("Br", "I")]
    assert tmsi["etching"].adsorbed == product.name  # type: ignore[attr-defined]
    # the TMSBr channels keep their names; every reaction was atom- and charge-checked
    assert "reaction-surface_exchange-x3" in {b.name for b in plan.bindings}
    assert "reaction-surface_exchange-TMSI-x3" in {b.name for b in plan.bindings}
    adducts = {b.ligand for b in plan.bindings if b.meta["channel"] == "adduct"}
    assert adducts == {"TMSBr", "TMSI"}
    for b in plan.bindings:
        assert "equation" in b.meta  # set by Reaction.check in add_reaction


def test_solvent_references_put_every_reaction_term_in_vaspsol_and_ml_refuses(
    tmp_path: Path,
) -> None:
    from pymatgen.io.vasp import Incar

    from pqdflow.errors import BackendError
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.engine.runner import run_study
    from pqdflow.workflows.fireworks.builder import build_workflow
    from pqdflow.workflows.vasp.dryrun import write_study_inputs

    data = {
        "name": "solvated",
        "terminations": ["CsX"],
        "ligands": {
            "names": ["OAm"],
            "surfaces": [],
            "references": "solvent",
            "solvent_epsilon": 2.38,
        },
        "slab": {"layers": 3, "fixed_layers": 1},
        "neb": {"paths": [{"host": "bulk", "hops": ["VBr-Br-bulk-a"]}], "formation": False},
    }
    plan = plan_study(study_from_dict(data))
    in_reactions = {n for b in plan.bindings for n in b.parents()}
    assert "ligand-OAm" in in_reactions  # the OAmBr ion pair is a solvated reference
    for calc in plan.calculations:
        solvated = calc.meta.get("solvent") == {"model": "implicit", "epsilon": 2.38}
        assert solvated == (calc.name in in_reactions), calc.name  # NEB cells in vacuum
    dry = tmp_path / "dry"
    write_study_inputs(plan, dry)
    incar = Incar.from_file(dry / "ligand-OAm" / "INCAR")
    assert incar["LSOL"] is True
    assert incar["EB_K"] == pytest.approx(2.38)
    assert incar["TAU"] == 0.0
    assert "LSOL" not in Incar.from_file(dry / "bulk-x2" / "INCAR")
    # backends without a solvent model refuse before anything is written
    out = tmp_path / "run"
    with pytest.raises(BackendError, match="references: gas"):
        run_study(plan, get_backend("mock"), out, progress=False, echo=False, plots=False)
    assert not out.exists()
    with pytest.raises(BackendError, match="vasp"):
        build_workflow(plan, "mock", root=tmp_path / "fw")
    build_workflow(plan, "vasp", root=tmp_path / "fw")  # VASP (VASPsol) takes it
    gas = plan_study(study_from_dict({**data, "ligands": {**data["ligands"], "references": "gas"}}))
    assert not any(c.meta.get("solvent") for c in gas.calculations)

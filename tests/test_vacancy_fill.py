"""Halides and X-type ligands in a surface halide vacancy vs on top (the Fig. 1 mechanism)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pqdflow.errors import InputError, StudyError, UnknownLigandError, UnknownSiteError
from pqdflow.structures.adsorption import is_closed_shell, surface_sites
from pqdflow.structures.bulk import build_mixed_halide
from pqdflow.structures.defects import _layer_from_top
from pqdflow.structures.ligands import build_ligand
from pqdflow.structures.passivation import fill_vacancy, vacancy_fillers
from pqdflow.structures.reactions import formal_charge
from pqdflow.structures.slabs import build_slab
from pqdflow.workflows.study import plan_study, study_from_dict


@pytest.fixture(scope="module")
def slab():
    return build_slab(x=3.0, termination="PbX2", size=(2, 2), layers=3, vacuum=12.0)


def _top_halide(slab) -> int:
    layer = _layer_from_top(slab)
    return next(i for i, s in enumerate(slab.get_chemical_symbols()) if s == "Br" and layer[i] == 0)


def test_fillers_are_the_halides_and_the_anionic_x_ligands() -> None:
    assert vacancy_fillers() == ("Br", "I", "OAc")


@pytest.mark.parametrize("filler", ["Br", "I", "OAc"])
def test_both_isomers_have_the_same_atoms_and_stay_charge_balanced(slab, filler: str) -> None:
    v = _top_halide(slab)
    before = slab.positions.copy()
    inside = fill_vacancy(slab, v, filler, where="vacancy")
    top = fill_vacancy(slab, v, filler, where="on_top")
    assert np.array_equal(slab.positions, before)  # host untouched
    assert inside.get_chemical_symbols() == top.get_chemical_symbols()
    added = 1 if filler in ("Br", "I") else len(build_ligand(filler))
    assert len(inside) == len(slab) - 1 + added
    for atoms in (inside, top):
        assert formal_charge(atoms) == 0
        assert is_closed_shell(atoms)
        assert atoms.info["vacancy_fill"]["vacancy_index"] == v
    # in the vacancy: the binding atom sits on the removed halide's site
    if filler in ("Br", "I"):
        anchor_in, anchor_top = inside.positions[-1], top.positions[-1]
    else:
        rec_in, rec_top = inside.info["ligands"][-1], top.info["ligands"][-1]
        assert rec_in["site"] == "vacancy"
        assert rec_top["site"] == "X_site"
        anchor_in = inside.positions[rec_in["anchor_index"]]
        anchor_top = top.positions[rec_top["anchor_index"]]
    assert np.allclose(anchor_in, slab.positions[v], atol=1e-6)
    # on top: straight above the recorded surface Pb, farther from the vacancy than a bond
    pb = top.info["vacancy_fill"]["pb_index"]
    pb_after = pb - (1 if pb > v else 0)
    lateral = anchor_top[:2] - top.positions[pb_after][:2]
    assert np.linalg.norm(lateral) < 1e-6
    assert anchor_top[2] - top.positions[pb_after][2] > 2.0
    anchor = len(top) - 1 if filler in ("Br", "I") else rec_top["anchor_index"]
    d = top.get_distance(anchor, pb_after)
    assert d > 2.0


def test_bad_requests_are_typed_errors(slab) -> None:
    v = _top_halide(slab)
    with pytest.raises(UnknownLigandError, match="OAm"):
        fill_vacancy(slab, v, "OAm")
    layer = _layer_from_top(slab)
    deep = next(i for i, s in enumerate(slab.get_chemical_symbols()) if s == "Br" and layer[i] > 0)
    with pytest.raises(InputError, match="layer"):
        fill_vacancy(slab, deep, "Br")
    with pytest.raises(InputError, match="slab"):
        fill_vacancy(build_mixed_halide(3.0, (1, 1, 1)), 2, "Br")
    cs = build_slab(x=3.0, termination="CsX", size=(2, 2), layers=3, vacuum=12.0)
    assert all(s.occupant is not None for s in surface_sites(cs)["X_site"])
    with pytest.raises(UnknownSiteError, match="PbX2"):
        fill_vacancy(cs, _top_halide(cs), "I", where="on_top")


def _fill_study(**fill):
    return study_from_dict(
        {
            "compositions": [3.0],
            "terminations": ["PbX2"],
            "ligands": {"names": [], "surfaces": [], "silyl_channels": False},
            "slab": {"layers": 3, "fixed_layers": 1},
            "neb": {"paths": [], "formation": False, "fill": fill},
            "inputs": {"dispersion": "none"},
        }
    )


def test_planned_fill_reactions_are_isomerisations_on_one_site() -> None:
    plan = plan_study(_fill_study(fillers=["Br", "I", "OAc"], hosts=["clean", "control"]))
    fills = [b for b in plan.bindings if b.meta["channel"] == "vacancy_fill"]
    assert [(b.meta["host"], b.ligand) for b in fills] == [
        (h, f) for h in ("clean", "control") for f in ("Br", "I", "OAc")
    ]
    for b in fills:
        assert b.ligands == {}
        assert b.released == {}
        top, inside = plan.get(b.slab), plan.get(b.adsorbed)
        assert top.atoms.get_chemical_symbols() == inside.atoms.get_chemical_symbols()
        assert top.formula_units == inside.formula_units == 1
        assert top.meta["lattice"]["from"] == "bulk-x2"  # on the relaxed NEB lattice
    sites = {b.meta["host"]: b.meta["vacancy_site"] for b in fills}
    assert len({b.meta["vacancy_site"] for b in fills if b.meta["host"] == "control"}) == 1
    assert sites["control"].startswith("VBr")
    assert "bulk-x2" in {c.name for c in plan.calculations}


def test_unknown_filler_is_refused_before_planning_anything() -> None:
    with pytest.raises(StudyError, match="TMSBr"):
        plan_study(_fill_study(fillers=["TMSBr"], hosts=["clean"]))


@pytest.mark.slow
def test_fill_energy_on_the_mock_is_the_isomer_difference(tmp_path: Path) -> None:
    from pqdflow.analysis.affinity import reaction_energies
    from pqdflow.workflows.backends import get_backend
    from pqdflow.workflows.engine.runner import run_study

    plan = plan_study(_fill_study(fillers=["I"], hosts=["clean"]))
    results = run_study(
        plan, get_backend("mock"), tmp_path / "run", progress=False, plots=False, echo=False
    )
    (row,) = [r for r in reaction_energies(results.binding) if r["channel"] == "vacancy_fill"]
    energies = {c["name"]: c["energy"] for c in results.calculations}
    (b,) = [b for b in plan.bindings if b.meta["channel"] == "vacancy_fill"]
    assert row["E_eV"] == pytest.approx(energies[b.adsorbed] - energies[b.slab])
    assert np.isfinite(row["E_eV"])
    assert row["E_eV"] != 0.0

"""Study schema (unknown keys, types, ligands, x, INCAR overrides) and the study plan."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import yaml

from pqdflow.documents.plan import StudyPlan
from pqdflow.errors import (
    CompositionError,
    InputSetError,
    StudyError,
    UnknownLigandError,
)
from pqdflow.workflows.study import (
    Study,
    balance_released,
    example_study,
    example_study_yaml,
    load_study,
    plan_study,
    study_from_dict,
)


@pytest.fixture(scope="module")
def plan() -> StudyPlan:
    return plan_study(example_study())


def write_yaml(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_yaml_is_the_example_study(tmp_path: Path) -> None:
    text = example_study_yaml()
    assert "#" in text  # commented
    path = tmp_path / "study.yaml"
    path.write_text(text)
    assert load_study(path) == example_study()


def test_example_study_is_the_paper_default() -> None:
    study = example_study()
    assert study.compositions == [3.0]
    assert study.ligands.names == ["OAm", "OAc", "AnHI", "TMSBr"]
    assert study.ligands.surfaces == ["control", "treated"]
    assert [p.host for p in study.neb.paths] == ["bulk", "control", "anhi", "treated"]
    assert study.neb.x == 2.0


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({"nmae": "x"}, ["'nmae'", "the top level", "name"]),
        ({"slab": {"layer": 5}}, ["'layer'", "slab", "layers"]),
        ({"ligands": {"name": ["OAm"]}}, ["'name'", "ligands", "names"]),
        ({"inputs": {"incar": {"slob": {}}}}, ["'slob'", "inputs.incar", "slab"]),
        ({"neb": {"paths": [{"host": "bulk", "images": 3}]}}, ["'images'", "neb.paths"]),
    ],
)
def test_unknown_keys_are_errors_naming_the_key(
    tmp_path: Path, data: dict[str, object], words: list[str]
) -> None:
    with pytest.raises(StudyError) as info:
        load_study(write_yaml(tmp_path, data))
    for word in words:
        assert word in str(info.value)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"slab": {"layers": "five"}}, "slab.layers"),
        ({"compositions": "3.0"}, "compositions"),
        ({"inputs": {"vtst": "sometimes"}}, "inputs.vtst"),
        ({"neb": {"paths": [{"host": "moon"}]}}, "neb.paths.0.host"),
        ({"slab": {"vacuum": 5.0}}, "slab.vacuum"),
        ({"name": "my study/1"}, "name"),
    ],
)
def test_wrong_types_name_the_field(data: dict[str, object], field: str) -> None:
    with pytest.raises(StudyError, match=field.replace(".", r"\.")):
        study_from_dict(data)


def test_unknown_ligand() -> None:
    with pytest.raises(UnknownLigandError, match=r"ligands\.names.*'DDAB'"):
        study_from_dict({"ligands": {"names": ["OAm", "DDAB"]}})


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"compositions": [4.0]}, r"compositions\[0\]"),
        ({"compositions": [3.0, 2.9]}, r"compositions\[1\]"),  # 2.9 * 12 f.u. is not whole
        ({"neb": {"x": 2.1}}, r"neb\.x"),
        ({"compositions": [-0.5]}, r"compositions\[0\]"),
    ],
)
def test_impossible_x(data: dict[str, object], field: str) -> None:
    with pytest.raises(CompositionError, match=field):
        study_from_dict(data)


def test_realisable_mixed_x_accepted() -> None:
    # 2x2x3 slab host: 12 formula units, x = 3 - k/12
    assert study_from_dict({"compositions": [2.75]}).compositions == [2.75]


@pytest.mark.parametrize(
    ("incar", "tag"),
    [
        ({"slab": {"ENCUT": "abc"}}, "ENCUT"),
        ({"bulk": {"ISIF": 3.5}}, "ISIF"),
        ({"neb": {"LCLIMB": "yes"}}, "LCLIMB"),
        ({"molecule": {"ENCTU": 500}}, "ENCTU"),
    ],
)
def test_bad_incar_overrides(incar: dict[str, object], tag: str) -> None:
    with pytest.raises(InputSetError, match=rf"inputs\.incar\.\w+: .*{tag}"):
        study_from_dict({"inputs": {"incar": incar}})


def test_incar_overrides_accepted_and_none_removes() -> None:
    study = study_from_dict({"inputs": {"incar": {"slab": {"ENCUT": 450, "LASPH": None}}}})
    assert study.inputs.incar.slab == {"ENCUT": 450.0, "LASPH": None}


def test_load_study_file_errors(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="does not exist"):
        load_study(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(StudyError, match="YAML"):
        load_study(bad)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(StudyError, match="mapping"):
        load_study(listing)


def test_balance_released() -> None:
    species = {
        "CsBr": {"Cs": 1, "Br": 1},
        "HBr": {"H": 1, "Br": 1},
        "Br2": {"Br": 2},
    }
    assert balance_released({"Cs": 5, "Br": 6}, {"Cs": 4, "Br": 5}, species) == {"CsBr": 1.0}
    assert balance_released({"H": 2, "Br": 3}, {"H": 1, "Br": 1}, species) == {
        "HBr": 1.0,
        "Br2": 0.5,
    }
    assert balance_released({"Br": 1}, {"Br": 1}, species) == {}
    with pytest.raises(StudyError, match="Fe"):
        balance_released({"Fe": 1}, {}, species)
    with pytest.raises(StudyError):  # atoms would have to be created
        balance_released({}, {"Br": 1}, species)


def test_default_plan_contents(plan: StudyPlan) -> None:
    names = [c.name for c in plan.calculations]
    n_nebs = len(plan.nebs)
    # + formation energies: 4 pristine hosts, Br2, I2, CsI, CsPbI3 (bulk-x0), Pb metal and
    # ref-CsBr-nod3 (CsBr without D3: ref-CsBr carries D3 for the OAm reaction); + vacancy
    # fills: Br, I, OAc in a V_Br of the control surface and on top (6)
    # one final endpoint per hop; one initial endpoint per vacancy site (hops out of the same
    # vacancy share it: the same rattled host less the same atom)
    n_initials = len({n.initial for n in plan.nebs})
    assert n_initials == len({(n.meta["surface"], n.meta["vacancy_index"]) for n in plan.nebs})
    assert n_initials < n_nebs  # e.g. VBr-Br and VBr-I out of one V_Br
    for neb in plan.nebs:  # each hop's band starts from exactly its own vacancy
        initial = plan.get(neb.initial)
        assert initial.meta["vacancy_index"] == neb.meta["vacancy_index"]
    n_endpoints = n_initials + n_nebs
    assert len(names) == len(set(names)) == 21 + n_endpoints + 10 + 6
    kinds = Counter(c.kind for c in plan.calculations)
    # 2 bulk (x=3, x=2) + CsBr; slabs CsX + PbX2; 4 ligand refs + HBr + amine, TMS ester,
    # TMS amine (TMSBr channels); 5 single (AnHI on both terminations) + control on CsX and
    # PbX2 + treated on PbX2 (not charge-balanced on CsX); two endpoints per sampled hop
    n_bulk_hops = sum(n.meta["host"] == "bulk" for n in plan.nebs)
    assert n_bulk_hops == 3  # VBr-Br, VBr-I, VI-I in CsPbBr2I
    bulk_initials = len({n.initial for n in plan.nebs if n.meta["host"] == "bulk"})
    assert kinds == {
        "bulk": 3 + bulk_initials + n_bulk_hops + 5,
        "slab": 2,
        "molecule": 8 + 2,
        "adsorbed": 8 + n_endpoints - bulk_initials - n_bulk_hops + 3 + 6,
    }
    assert plan.get("bulk-x3").relax_cell
    assert not plan.get(plan.nebs[0].initial).relax_cell
    # 8 bindings + 5 TMSBr / HBr reaction channels + 3 vacancy fills
    assert len(plan.bindings) == 16
    assert [b.ligand for b in plan.bindings if b.meta["channel"] == "vacancy_fill"] == [
        "Br",
        "I",
        "OAc",
    ]
    assert plan.meta["skipped"] == [
        "treated on CsX-x3: fragments sum to formal charge +1 e (not charge-balanced)"
    ]
    assert {b.ligand for b in plan.bindings} == {
        "OAm",
        "OAc",
        "AnHI",
        "TMSBr",
        "HBr",
        "control",
        "treated",
        "Br",
        "I",
    }
    assert [n.meta["host"] for n in plan.nebs] == sorted(
        (n.meta["host"] for n in plan.nebs), key=["bulk", "control", "anhi", "treated"].index
    )
    assert {n.meta["host"] for n in plan.nebs} == {"bulk", "control", "anhi", "treated"}
    # CHGNet-sized: the largest is the control surface with one more oleate in a vacancy
    assert max(len(c.atoms) for c in plan.calculations) <= 95


def test_binding_reactions_are_atom_balanced(plan: StudyPlan) -> None:
    for binding in plan.bindings:
        left: Counter[str] = Counter(plan.get(binding.slab).atoms.get_chemical_symbols())
        right: Counter[str] = Counter(plan.get(binding.adsorbed).atoms.get_chemical_symbols())
        for name, coeff in binding.ligands.items():
            for el, n in Counter(plan.get(name).atoms.get_chemical_symbols()).items():
                left[el] += coeff * n
        for name, coeff in binding.released.items():
            calc = plan.get(name)
            for el, n in Counter(calc.atoms.get_chemical_symbols()).items():
                right[el] += coeff * n / calc.formula_units
        assert {k: v for k, v in left.items() if v} == {k: v for k, v in right.items() if v}, (
            binding.name
        )


def test_binding_structures_are_closed_shell(plan: StudyPlan) -> None:
    # even electron count in every cell of a binding reaction (ISPIN 1 closed shell is valid);
    # TMSBr therefore binds atop an exposed Pb of the PbX2 termination, the others on CsX
    for binding in plan.bindings:
        for name in binding.parents():
            assert plan.get(name).atoms.get_atomic_numbers().sum() % 2 == 0, name
    singles = {
        (b.ligand, b.slab) for b in plan.bindings if b.meta["channel"] in ("binding", "adduct")
    }
    assert singles - {("control", "slab-CsX-x3"), ("control", "slab-PbX2-x3")} == {
        ("OAm", "slab-CsX-x3"),
        ("OAc", "slab-CsX-x3"),
        ("AnHI", "slab-CsX-x3"),
        ("AnHI", "slab-PbX2-x3"),
        ("TMSBr", "slab-PbX2-x3"),
        ("treated", "slab-PbX2-x3"),
    }


def test_ligand_counts_match_placed_ligands(plan: StudyPlan) -> None:
    single = plan.get("ads-OAm-CsX-x3")
    assert [r["name"] for r in single.atoms.info["ligands"]] == ["OAm"]
    binding = next(b for b in plan.bindings if b.ligand == "treated")
    assert binding.ligands == {"ligand-AnHI": 1.0, "ligand-TMSBr": 1.0}


def test_neb_endpoints(plan: StudyPlan) -> None:
    for neb in plan.nebs:
        initial, final = plan.get(neb.initial), plan.get(neb.final)
        assert (initial.role, final.role) == ("neb_initial", "neb_final")
        bulk = neb.meta["host"] == "bulk"
        assert initial.kind == final.kind == ("bulk" if bulk else "adsorbed")
        assert initial.atoms.get_chemical_symbols() == final.atoms.get_chemical_symbols()
        moved = (abs(initial.atoms.positions - final.atoms.positions) > 1e-6).any(axis=1)
        assert moved.nonzero()[0].tolist() == [neb.hopping_index]
        assert initial.atoms[neb.hopping_index].symbol in ("Br", "I")
        assert 3 <= neb.n_images <= 7
        assert initial.meta["x"] == 2.0


def test_n_images_option_and_small_study() -> None:
    study = study_from_dict(
        {
            "ligands": {"names": ["TMSBr"], "surfaces": [], "silyl_channels": False},
            "neb": {
                "formation": False,
                "paths": [{"host": "bulk", "n_images": 3, "hops": ["VBr-I-bulk-a"]}],
            },
        }
    )
    small = plan_study(study)
    assert [n.n_images for n in small.nebs] == [3]
    assert [n.name for n in small.nebs] == ["neb-bulk-x2-VBr-I-bulk-a"]
    assert {c.name for c in small.calculations} == {
        "bulk-x3",
        "bulk-x2",
        "slab-CsX-x3",
        "slab-PbX2-x3",
        "ads-TMSBr-PbX2-x3",  # closed shell only atop an exposed Pb (PbX2)
        "ligand-TMSBr",
        "neb-bulk-x2-VBr-I-bulk-a-initial",
        "neb-bulk-x2-VBr-I-bulk-a-final",
    }


def test_open_shell_only_ligand_is_a_study_error() -> None:
    study = study_from_dict({"terminations": ["CsX"], "ligands": {"names": ["TMSBr"]}})
    with pytest.raises(StudyError, match=r"TMSBr.*charge-balanced.*PbX2"):
        plan_study(study)


def test_study_is_frozen() -> None:
    study = example_study()
    with pytest.raises(ValueError, match="frozen"):
        study.name = "other"  # type: ignore[misc]
    assert isinstance(study, Study)


@pytest.mark.parametrize("text", ["", "\n# only a comment\n", "{}\n", "---\n"])
def test_empty_study_file_is_an_error_not_the_default_study(tmp_path: Path, text: str) -> None:
    path = tmp_path / "study.yaml"
    path.write_text(text)
    with pytest.raises(StudyError, match=r"study\.yaml' is empty.*pqdflow run --example"):
        load_study(path)


def test_formation_references_share_the_bands_dispersion(plan: StudyPlan) -> None:
    """No vacancy formation energy mixes D3 and D3-free energies (``dispersion: auto``)."""
    from pqdflow.analysis.formation import FORMATION_REFERENCES

    bands = {n.meta["dispersion"] for n in plan.nebs}
    assert bands == {"none"}
    assert plan.get("ref-CsBr").meta["dispersion"] == "d3bj"  # released by OAm on CsX
    twins = {c.meta["twin_of"]: c for c in plan.calculations if "twin_of" in c.meta}
    assert set(twins) == {"ref-CsBr"}
    for refs in FORMATION_REFERENCES.values():
        for name in refs:
            used = twins.get(name) or plan.get(name)
            assert used.meta["dispersion"] == "none", name
    for net in plan.meta["hop_networks"].values():
        assert plan.get(net["host_calc"]).meta["dispersion"] == "none"


def test_vacancy_structures_start_from_their_relaxed_host(plan: StudyPlan) -> None:
    """NEB initial endpoints and vacancy fills name the host they start from."""
    hosts = {net["host_calc"] for net in plan.meta["hop_networks"].values()}
    initials = {n.initial for n in plan.nebs}
    fills = [c for c in plan.calculations if c.role == "vacancy_fill"]
    assert fills
    for calc in [plan.get(name) for name in initials] + fills:
        start = calc.meta["start_from_host"]
        assert start["host"] in hosts
        host = plan.get(start["host"]).atoms
        (removed,) = start["removed"]
        assert host[removed].symbol in ("Br", "I")  # a halide vacancy
        m = len(host) - 1
        kept = [i for i in range(len(host)) if i != removed]
        assert calc.atoms.get_chemical_symbols()[:m] == [host[i].symbol for i in kept]
        assert np.abs(calc.atoms.positions[:m] - host.positions[kept]).max() <= 0.5
    # a final endpoint starts from its initial, never from the host
    assert not any("start_from_host" in plan.get(n.final).meta for n in plan.nebs)


def test_adsorbed_binding_cells_start_from_their_clean_slab(plan: StudyPlan) -> None:
    bindings = [b for b in plan.bindings if b.meta.get("channel") == "binding"]
    assert bindings
    for spec in bindings:
        ads, slab = plan.get(spec.adsorbed), plan.get(spec.slab)
        start = ads.meta["start_from_host"]
        assert start["host"] == slab.name
        # the exchanged surface atoms (none where a ligand adds on top of Pb)
        top = slab.atoms.positions[:, 2].max()
        for i in start["removed"]:
            assert slab.atoms[i].symbol in ("Cs", "Br")
            assert slab.atoms.positions[i, 2] > top - 1.0
        n_kept = len(slab.atoms) - len(start["removed"])
        assert set(ads.atoms.get_chemical_symbols()[n_kept:]) & {"C", "N", "H", "O", "Si"}


def test_plan_fingerprint_ignores_reaction_labels_but_not_their_energy_settings() -> None:
    study = study_from_dict(
        {
            "ligands": {"names": ["TMSBr"], "surfaces": []},
            "terminations": ["PbX2"],
            "neb": {"paths": []},
        }
    )
    plan = plan_study(study)
    before = plan.fingerprint("mock")
    plan.bindings[0].meta["channel"] = "renamed label"
    assert plan.fingerprint("mock") == before
    plan.bindings[0].meta["dispersion"] = (
        "none" if plan.bindings[0].meta["dispersion"] != "none" else "d3bj"
    )
    assert plan.fingerprint("mock") != before

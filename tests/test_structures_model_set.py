from __future__ import annotations

from collections import Counter

import pytest

from pqdflow.errors import CompositionError
from pqdflow.structures.defects import check_endpoints
from pqdflow.structures.model_set import MODEL_KINDS, build_model_set


@pytest.fixture(scope="module")
def entries():
    return build_model_set((3.0, 1.5))


def test_model_set_contents(entries) -> None:
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    assert {e.kind for e in entries} == set(MODEL_KINDS)
    for x in ("x3", "x1.5"):
        for term in ("CsX", "PbX2"):
            assert f"slab-{term}-{x}" in names
        for lig in ("OAc", "OAm", "AnHI"):
            assert f"ads-{lig}-CsX-{x}" in names
        assert f"ads-TMSBr-PbX2-{x}" in names  # closed shell only atop an exposed Pb
        for label in ("bulk", "clean", "control", "treated"):
            pairs = [n for n in names if n.startswith(f"neb-{label}-{x}-V")]
            assert pairs
            assert {n.rsplit("-", 1)[1] for n in pairs} == {"initial", "final"}
        assert f"surf-control-CsX-{x}" in names
        assert f"surf-control-PbX2-{x}" in names
        assert f"surf-treated-PbX2-{x}" in names
        assert f"surf-treated-CsX-{x}" not in names  # open shell: TMSBr replacing Br-
    for lig in ("OAc", "OAm", "AnHI", "TMSBr"):
        assert f"mol-{lig}" in names
    by_name = {e.name: e for e in entries}
    assert by_name["surf-treated-PbX2-x3"].ligands == ["AnHI", "TMSBr"]
    # every structure except the vacancy cells (a neutral V_Br is odd-electron) is closed-shell
    for entry in by_name.values():
        if not entry.kind.startswith("neb"):
            assert entry.atoms.get_atomic_numbers().sum() % 2 == 0, entry.name
    assert Counter(by_name["bulk-x1.5"].atoms.get_chemical_symbols())["I"] == 12  # 2x2x2


def test_neb_pairs_correspond(entries) -> None:
    by_name = {e.name: e for e in entries}
    for e in entries:
        if e.kind == "neb_initial":
            final = by_name[e.name.replace("-initial", "-final")]
            k = check_endpoints(e.atoms, final.atoms)
            assert k == e.meta["hopping_index"]
            assert 3 <= e.meta["n_images"] <= 7


def test_vacancy_fill_isomers_on_every_pbx2_host(entries) -> None:
    fills = [e for e in entries if e.name.startswith("fill-")]
    hosts = {e.name.split("-")[1] for e in fills}
    assert hosts == {"anhi", "control", "treated"}  # the PbX2 NEB hosts (clean is CsX)
    by_name = {e.name: e for e in fills}
    for e in fills:
        if e.name.endswith("-vacancy"):
            top = by_name[e.name.removesuffix("-vacancy") + "-ontop"]
            assert e.atoms.get_chemical_symbols() == top.atoms.get_chemical_symbols()
            assert e.meta["vacancy_fill"]["where"] == "vacancy"
            assert top.meta["vacancy_fill"]["where"] == "on_top"
    assert {e.name.split("-")[-2] for e in fills} == {"Br", "I", "OAc"}


def test_bad_x_raises_before_anything() -> None:
    with pytest.raises(CompositionError, match=r"x=4"):
        build_model_set((3.0, 4.0))

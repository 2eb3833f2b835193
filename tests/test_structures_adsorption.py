from __future__ import annotations

import copy
from collections import Counter

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import get_distances

from pqdflow.errors import ClashError, InputError, UnknownLigandError, UnknownSiteError
from pqdflow.structures.adsorption import (
    SURFACE_PRESETS,
    build_passivated_surface,
    place_ligand,
    surface_sites,
)
from pqdflow.structures.slabs import build_slab

FORMAL = {"Cs": 1, "Pb": 2, "Br": -1, "I": -1}


@pytest.fixture(scope="module")
def slabs() -> dict[str, Atoms]:
    return {t: build_slab(termination=t) for t in ("CsX", "PbX2")}


def _top_z(slab: Atoms) -> float:
    return float(slab.positions[:, 2].max())


def _min_contact(atoms: Atoms, ligand: list[int]) -> list[tuple[float, float]]:
    """(distance, limit) of each ligand atom to every other atom, minimum image."""
    others = [i for i in range(len(atoms)) if i not in ligand]
    out = []
    for i in ligand:
        _, d = get_distances(atoms.positions[[i]], atoms.positions[others], atoms.cell, atoms.pbc)
        for j, dist in zip(others, d[0], strict=True):
            limit = 1.2 if "H" in (atoms[i].symbol, atoms[j].symbol) else 1.8
            out.append((float(dist), limit))
        # the ligand's own periodic images (lateral translations)
        for shift in ((1, 0), (0, 1), (1, 1), (1, -1)):
            t = shift[0] * atoms.cell[0] + shift[1] * atoms.cell[1]
            d_img = np.linalg.norm(atoms.positions[ligand] + t - atoms.positions[i], axis=1)
            out.extend((float(x), 1.2) for x in d_img)
    return out


def _assert_clash_free_and_above(ads: Atoms, slab: Atoms) -> None:
    z_top = _top_z(slab)
    for record in ads.info["ligands"]:
        idx = record["indices"]
        assert all(d >= limit for d, limit in _min_contact(ads, idx))
        z = ads.positions[idx, 2]
        assert z.min() >= z_top - 1.0  # nothing pushed into the slab
        assert z.mean() > z_top  # the ligand stands on the surface


@pytest.mark.parametrize("termination", ["CsX", "PbX2"])
@pytest.mark.parametrize("name", ["OAm", "OAc", "AnHI", "TMSBr"])
def test_each_ligand_adsorbed_clash_free_above_surface(
    slabs: dict[str, Atoms], termination: str, name: str
) -> None:
    slab = slabs[termination]
    before = slab.copy()
    info_before = copy.deepcopy(slab.info)
    ads = place_ligand(slab, name)
    _assert_clash_free_and_above(ads, slab)
    # input slab untouched
    assert len(slab) == len(before)
    assert np.array_equal(slab.positions, before.positions)
    assert slab.info == info_before
    (record,) = ads.info["ligands"]
    assert record["name"] == name
    assert ads.info["kind"] == "adsorbed"
    # atom bookkeeping: slab - replaced + ligand atoms
    counts = Counter(ads.get_chemical_symbols())
    expected = Counter(slab.get_chemical_symbols())
    expected.subtract(record["replaced"])
    expected.update(Counter(ads[i].symbol for i in record["indices"]))
    assert counts == +expected


@pytest.mark.parametrize(
    ("name", "replaced"),
    [("OAm", {"Cs": 1}), ("OAc", {"Br": 1}), ("AnHI", {"Cs": 1, "Br": 1}), ("TMSBr", {"Br": 1})],
)
def test_what_each_ligand_replaces_on_csx(
    slabs: dict[str, Atoms], name: str, replaced: dict
) -> None:
    ads = place_ligand(slabs["CsX"], name)
    assert ads.info["ligands"][0]["replaced"] == replaced
    # on PbX2 the sites are empty: nothing is replaced
    assert place_ligand(slabs["PbX2"], name).info["ligands"][0]["replaced"] == {}


@pytest.mark.parametrize("name", ["OAm", "OAc", "AnHI"])
def test_ionic_ligands_keep_csx_slab_neutral(slabs: dict[str, Atoms], name: str) -> None:
    ads = place_ligand(slabs["CsX"], name)
    record = ads.info["ligands"][0]
    lig = set(record["indices"])
    companion = set(record.get("companion_indices", []))
    slab_charge = sum(FORMAL[s] for i, s in enumerate(ads.get_chemical_symbols()) if i not in lig)
    companion_charge = sum(FORMAL[ads[i].symbol] for i in companion)
    assert slab_charge + record["charge"] + companion_charge == 0


@pytest.mark.parametrize("termination", ["CsX", "PbX2"])
@pytest.mark.parametrize("name", ["OAm", "AnHI"])
def test_ammonium_nh_points_at_surface_halides(
    slabs: dict[str, Atoms], termination: str, name: str
) -> None:
    ads = place_ligand(slabs[termination], name)
    record = ads.info["ligands"][0]
    n = record["anchor_index"]
    assert ads[n].symbol == "N"
    # the cation's own atoms; the AnHI iodide counts as a surface halide
    lig = set(record["indices"]) - set(record.get("companion_indices", []))
    hs = [i for i in lig if ads[i].symbol == "H" and ads.get_distance(n, i) < 1.1]
    assert len(hs) == 3
    symbols = ads.get_chemical_symbols()
    halides = [i for i, s in enumerate(symbols) if s in ("Br", "I") and i not in lig]
    vec_x, d_x = get_distances(ads.positions[[n]], ads.positions[halides], ads.cell, ads.pbc)
    near = vec_x[0][d_x[0] < 4.7]
    assert len(near) >= 4
    for h in hs:
        nh = ads.positions[h] - ads.positions[n]
        assert nh[2] < 0.0  # N-H point down, into the surface
        cosines = near @ nh / (np.linalg.norm(near, axis=1) * np.linalg.norm(nh))
        assert np.degrees(np.arccos(cosines.max())) < 35.0


def test_carboxylate_binds_surface_pb(slabs: dict[str, Atoms]) -> None:
    ads = place_ligand(slabs["CsX"], "OAc")
    o = ads.info["ligands"][0]["anchor_index"]
    assert ads[o].symbol == "O"
    pbs = [i for i, s in enumerate(ads.get_chemical_symbols()) if s == "Pb"]
    d = ads.get_distances(o, pbs, mic=True)
    pb = pbs[int(np.argmin(d))]
    assert 2.2 < d.min() < 2.6
    assert ads.positions[o, 2] > ads.positions[pb, 2] + 2.0  # O on top of the Pb


def test_tmsbr_br_on_pb_and_si_above(slabs: dict[str, Atoms]) -> None:
    ads = place_ligand(slabs["CsX"], "TMSBr")
    idx = ads.info["ligands"][0]["indices"]
    br = ads.info["ligands"][0]["anchor_index"]
    si = next(i for i in idx if ads[i].symbol == "Si")
    assert ads[br].symbol == "Br"
    pbs = [i for i, s in enumerate(ads.get_chemical_symbols()) if s == "Pb"]
    assert 2.8 < ads.get_distances(br, pbs, mic=True).min() < 3.2
    assert 2.1 < ads.get_distance(br, si) < 2.4
    assert ads.positions[si, 2] > ads.positions[br, 2] + 2.0
    carbons = [i for i in idx if ads[i].symbol == "C"]
    assert (ads.positions[carbons, 2] > ads.positions[si, 2]).all()


def test_anilinium_iodide_at_neighbouring_x_site(slabs: dict[str, Atoms]) -> None:
    slab = slabs["CsX"]
    ads = place_ligand(slab, "AnHI")
    record = ads.info["ligands"][0]
    (iodide,) = record["companion_indices"]
    assert ads[iodide].symbol == "I"
    n = record["anchor_index"]
    lateral = ads.positions[iodide, :2] - ads.positions[n, :2]
    lateral -= np.round(lateral / slab.cell[0, 0]) * slab.cell[0, 0]
    a = slab.info["a"]
    assert np.linalg.norm(lateral) == pytest.approx(a / np.sqrt(2), abs=0.05)
    pbs = [i for i, s in enumerate(ads.get_chemical_symbols()) if s == "Pb"]
    assert 3.0 < ads.get_distances(iodide, pbs, mic=True).min() < 3.3


@pytest.mark.parametrize("preset", ["control", "treated"])
@pytest.mark.parametrize("termination", ["CsX", "PbX2"])
def test_presets_place_both_ligands_on_separate_sites(
    slabs: dict[str, Atoms], preset: str, termination: str
) -> None:
    surf = build_passivated_surface(slabs[termination], preset)
    names = [r["name"] for r in surf.info["ligands"]]
    assert names == list(SURFACE_PRESETS[preset])
    a, b = (set(r["indices"]) for r in surf.info["ligands"])
    assert not a & b
    assert surf.info["preset"] == preset
    _assert_clash_free_and_above(surf, slabs[termination])
    anchors = [surf.positions[r["anchor_index"]] for r in surf.info["ligands"]]
    _, d = get_distances([anchors[0]], [anchors[1]], surf.cell, surf.pbc)
    assert d[0, 0] > 3.0


def test_full_length_chains_fit(slabs: dict[str, Atoms]) -> None:
    surf = build_passivated_surface(slabs["CsX"], "control", chain_length=18)
    _assert_clash_free_and_above(surf, slabs["CsX"])
    z = surf.positions[:, 2]
    assert surf.cell[2, 2] - np.ptp(z) >= 15.0 - 1e-9  # vacuum kept above the chains


def test_surface_sites_counts(slabs: dict[str, Atoms]) -> None:
    for term in ("CsX", "PbX2"):
        sites = surface_sites(slabs[term])
        assert len(sites["A_pocket"]) == len(sites["X_site"]) == 4
    csx = surface_sites(slabs["CsX"])
    assert {slabs["CsX"][s.occupant].symbol for s in csx["A_pocket"]} == {"Cs"}
    assert all(s.occupant is None for s in surface_sites(slabs["PbX2"])["X_site"])
    # a taken site is no longer offered
    ads = place_ligand(slabs["PbX2"], "TMSBr")
    assert len(surface_sites(ads)["X_site"]) == 3


def test_unknown_site(slabs: dict[str, Atoms]) -> None:
    with pytest.raises(UnknownSiteError, match=r"'bridge'.*A_pocket, X_site"):
        place_ligand(slabs["CsX"], "OAm", site="bridge")
    with pytest.raises(UnknownSiteError, match=r"OAm binds at 'A_pocket'"):
        place_ligand(slabs["CsX"], "OAm", site="X_site")
    with pytest.raises(UnknownSiteError, match=r"index 9.*4 free"):
        place_ligand(slabs["CsX"], "OAm", index=9)


def test_unknown_ligand_in_placement(slabs: dict[str, Atoms]) -> None:
    with pytest.raises(UnknownLigandError, match=r"known ligands"):
        place_ligand(slabs["CsX"], "DDAB")


def test_unknown_preset(slabs: dict[str, Atoms]) -> None:
    with pytest.raises(InputError, match=r"'passivated'.*control, treated"):
        build_passivated_surface(slabs["CsX"], "passivated")


def test_clash_is_an_error(slabs: dict[str, Atoms]) -> None:
    slab = slabs["PbX2"].copy()
    site = surface_sites(slab)["X_site"][0]
    # an adsorbed Cs right where the Si of TMSBr must go, whatever the rotation
    blocker = np.array(site.position) + np.array([0.0, 0.0, 2.2])
    slab.append("Cs")
    slab.positions[-1] = blocker
    slab.info["ligands"] = [
        {"name": "blocker", "site": "X_site", "indices": [len(slab) - 1], "replaced": {}}
    ]
    with pytest.raises(ClashError, match=r"apart; at least 1\.8 Å"):
        place_ligand(slab, "TMSBr", index=0)

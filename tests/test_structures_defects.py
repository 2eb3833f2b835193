from __future__ import annotations

import itertools

import numpy as np
import pytest
from ase import Atoms
from ase.geometry import find_mic

from pqdflow.errors import EndpointError, InputError, SameStateError, VacancyCascadeError
from pqdflow.structures.adsorption import build_passivated_surface
from pqdflow.structures.bulk import CSPBBR3_A, build_mixed_halide
from pqdflow.structures.defects import (
    build_halide_vacancy,
    build_neb_endpoints,
    check_endpoints,
    default_n_images,
    enumerate_halide_hops,
    interpolate_band,
)
from pqdflow.structures.slabs import build_slab, slab_layers

EDGE = CSPBBR3_A / np.sqrt(2)  # octahedron edge, 4.15 Å


def _mic_disp(a: Atoms, b: Atoms) -> np.ndarray:
    return np.linalg.norm(find_mic(b.positions - a.positions, a.cell, a.pbc)[0], axis=1)


@pytest.fixture(scope="module")
def bulk() -> Atoms:
    return build_mixed_halide(3.0, (2, 2, 2))


@pytest.fixture(scope="module")
def slab() -> Atoms:
    return build_slab()


def _fixed(atoms: Atoms) -> set[int]:
    return {int(i) for c in atoms.constraints for i in c.get_indices()}


def test_bulk_vacancy(bulk: Atoms) -> None:
    vac = build_halide_vacancy(bulk, 2)
    assert len(vac) == len(bulk) - 1
    assert vac.get_chemical_symbols().count("Br") == 23
    assert vac.info["vacancy"]["element"] == "Br"
    assert np.allclose(vac.info["vacancy"]["position"], bulk.positions[2])
    with pytest.raises(InputError, match=r"index=0 is not a .*halide"):
        build_halide_vacancy(bulk, 0)  # a Cs


def test_slab_vacancy_in_chosen_layer(slab: Atoms) -> None:
    top = set(slab_layers(slab)[-1].tolist())
    vac = build_halide_vacancy(slab, layer=0)
    assert vac.info["vacancy"]["host_index"] in top
    sub = build_halide_vacancy(slab, layer=1)
    assert sub.info["vacancy"]["host_index"] in set(slab_layers(slab)[-2].tolist())
    assert len(_fixed(vac)) == len(_fixed(slab))  # constraints follow the deletion
    with pytest.raises(InputError, match=r"layer 9"):
        build_halide_vacancy(slab, layer=9)


@pytest.mark.parametrize("rattle", [None, 5])
def test_bulk_endpoints_one_atom_moves_by_hop(bulk: Atoms, rattle: int | None) -> None:
    hop = enumerate_halide_hops(bulk)[0]
    before = bulk.positions.copy()
    initial, final = build_neb_endpoints(
        bulk, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index, rattle=rattle
    )
    assert np.array_equal(bulk.positions, before)  # host untouched
    assert initial.get_chemical_symbols() == final.get_chemical_symbols()
    moved = _mic_disp(initial, final)
    k = initial.info["neb"]["hopping_index"]
    assert np.count_nonzero(moved > 1e-9) == 1
    assert moved[k] > 0
    # the hopping atom ends exactly on the (possibly rattled) vacancy site
    vac = np.array(initial.info["neb"]["vacancy_position"])
    assert np.linalg.norm(find_mic(final.positions[k] - vac, bulk.cell)[0]) < 1e-9
    if rattle is None:
        assert moved[k] == pytest.approx(EDGE, abs=1e-6)
    else:
        assert moved[k] == pytest.approx(EDGE, abs=0.3)
        assert not np.allclose(initial.positions[0], bulk.positions[0])
    assert check_endpoints(initial, final) == k


def test_hop_uses_minimum_image(bulk: Atoms) -> None:
    # vacancy and hopping atom on opposite faces of the cell: the hop must go the short way
    hops = enumerate_halide_hops(bulk)
    v = hops[0].vacancy_index
    from pqdflow.structures.defects import _edge_neighbours

    partners = _edge_neighbours(bulk, v)
    far = [h for h in partners if bulk.get_distance(v, h, mic=False) > 6.0]
    assert far, "expected a neighbour across the periodic boundary"
    initial, final = build_neb_endpoints(bulk, vacancy_index=v, hop_index=far[0])
    k = initial.info["neb"]["hopping_index"]
    assert np.linalg.norm(final.positions[k] - initial.positions[k]) == pytest.approx(
        EDGE, abs=1e-6
    )


def test_non_neighbour_hop_is_rejected(bulk: Atoms) -> None:
    with pytest.raises(InputError, match=r"allowed hop indices"):
        build_neb_endpoints(bulk, vacancy_index=2, hop_index=2 + 5 * 7)


def test_distinct_hops_bulk_and_surface(bulk: Atoms, slab: Atoms) -> None:
    # every edge hop in ideal cubic CsPbBr3 is equivalent
    assert len(enumerate_halide_hops(bulk)) == 1
    hops = enumerate_halide_hops(slab)
    assert all(h.distance == pytest.approx(EDGE, abs=1e-6) for h in hops)
    assert all(h.vacancy_layer in (0, 1) for h in hops)  # near the surface
    pairs = {(h.vacancy_layer, h.hop_layer) for h in hops}
    assert len(pairs) == len(hops)  # one per geometric class on an ideal slab
    assert (0, 1) in pairs
    assert (1, 1) in pairs


def test_surface_endpoints_with_ligands_keep_fixed_atoms_and_records() -> None:
    surf = build_passivated_surface(build_slab(), "treated")
    hop = next(h for h in enumerate_halide_hops(surf) if h.vacancy_layer == 0)
    initial, final = build_neb_endpoints(
        surf, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index, rattle=1
    )
    assert _fixed(initial) == _fixed(final)
    assert len(_fixed(initial)) == len(_fixed(surf))
    moved = _mic_disp(initial, final)
    assert np.count_nonzero(moved > 1e-9) == 1
    # the ligand records still point at the ligand atoms
    for old, new in zip(surf.info["ligands"], initial.info["ligands"], strict=True):
        assert [surf[i].symbol for i in old["indices"]] == [
            initial[i].symbol for i in new["indices"]
        ]
    # fixed atoms are not rattled
    fixed = sorted(_fixed(surf))
    assert np.allclose(initial.positions[fixed], surf.positions[fixed])


def test_endpoints_that_do_not_correspond(bulk: Atoms) -> None:
    hop = enumerate_halide_hops(bulk)[0]
    initial, final = build_neb_endpoints(
        bulk, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index
    )
    with pytest.raises(EndpointError, match=r"39 and 38 atoms"):
        check_endpoints(initial, final[:-1])
    swapped = final.copy()
    order = list(range(len(swapped)))
    order[0], order[1] = 1, 0  # Cs and Pb exchanged
    with pytest.raises(EndpointError, match=r"atom 0 is Cs .* Pb"):
        check_endpoints(initial, swapped[order])
    same_species = final.copy()
    br = [i for i, s in enumerate(final.get_chemical_symbols()) if s == "Br"]
    order = list(range(len(final)))
    order[br[3]], order[br[10]] = br[10], br[3]
    with pytest.raises(EndpointError, match=r"move by more than"):
        check_endpoints(initial, same_species[order])
    # the final state relaxed back into the initial one: its own error (a blocked hop)
    with pytest.raises(SameStateError, match=r"same state"):
        check_endpoints(initial, initial.copy(), hopping_index=hop.hop_index)


def test_a_second_atom_on_the_hopping_atoms_site_is_a_vacancy_cascade(bulk: Atoms) -> None:
    hop = enumerate_halide_hops(bulk)[0]
    initial, final = build_neb_endpoints(
        bulk, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index
    )
    k = initial.info["neb"]["hopping_index"]
    symbols = initial.get_chemical_symbols()
    # the nearest other halide of the hopping atom's species
    gaps = _mic_disp(initial[[k] * len(initial)], initial)
    others = [i for i in np.argsort(gaps) if i != k and symbols[i] == symbols[k]]
    j = int(others[0])
    cascade = final.copy()
    cascade.positions[j] = initial.positions[k] + [0.3, 0.0, 0.0]  # it took the site
    with pytest.raises(VacancyCascadeError, match=rf"{symbols[k]} {j} ends 0.30 Å") as info:
        check_endpoints(initial, cascade)
    assert (info.value.index, info.value.element) == (j, symbols[k])
    assert info.value.distance_A == pytest.approx(0.3, abs=1e-3)
    assert isinstance(info.value, EndpointError)
    # moved as far but elsewhere: not a cascade, the plain mismatch
    elsewhere = final.copy()
    elsewhere.positions[j] = initial.positions[j] + [0.0, 0.0, 2.0]
    with pytest.raises(EndpointError, match=r"framework rearranged, or the two endpoints"):
        check_endpoints(initial, elsewhere)


def test_default_n_images() -> None:
    bulk = build_mixed_halide(3.0, (2, 2, 2))
    hop = enumerate_halide_hops(bulk)[0]
    initial, final = build_neb_endpoints(
        bulk, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index
    )
    assert default_n_images(initial, final) == 5  # 4.15 Å / 0.8 Å per image


def test_interpolate_band_idpp_tight(slab: Atoms) -> None:
    hop = next(h for h in enumerate_halide_hops(slab) if h.vacancy_layer == 0)
    initial, final = build_neb_endpoints(
        slab, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index, rattle=2
    )
    band = interpolate_band(initial, final, 3)
    assert len(band) == 5
    assert np.array_equal(band[0].positions, initial.positions)
    assert np.array_equal(band[-1].positions, final.positions)
    fixed = sorted(_fixed(initial))
    for image in band:
        assert sorted(_fixed(image)) == fixed
        assert np.allclose(image.positions[fixed], initial.positions[fixed])
    assert band[1].info["idpp_fmax"] <= 0.01 + 1e-9
    k = initial.info["neb"]["hopping_index"]
    # the hopping atom advances monotonically along the hop
    progress = [_mic_disp(initial, image)[k] for image in band]
    assert all(b > a for a, b in itertools.pairwise(progress))
    linear = interpolate_band(initial, final, 3, method="linear")
    assert not np.allclose(linear[2].positions, band[2].positions)
    with pytest.raises(InputError, match=r"n_images=0"):
        interpolate_band(initial, final, 0)


def test_relaxed_ligands_may_move_but_framework_may_not() -> None:
    from pqdflow.structures.adsorption import build_passivated_surface

    surface = build_passivated_surface(build_slab(x=3.0, termination="PbX2"), "control")
    hop = enumerate_halide_hops(surface)[0]
    initial, final = build_neb_endpoints(
        surface, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index
    )
    k = check_endpoints(initial, final)
    ligand = [i for r in final.info["ligands"] for i in r["indices"]]
    flopped = final.copy()
    flopped.positions[ligand] += [2.0, 0.0, 0.0]  # chains relaxed into another conformation
    assert check_endpoints(initial, flopped) == k
    # allowed, but measured: the band would include the ligand rearrangement
    from pqdflow.structures.defects import ligand_displacement

    assert ligand_displacement(initial, final) == pytest.approx(0.0, abs=1e-9)
    assert ligand_displacement(initial, flopped) == pytest.approx(2.0, abs=1e-6)
    framework = [i for i in range(len(final)) if i not in ligand and i != k]
    shifted = final.copy()
    shifted.positions[framework[0]] += [2.0, 0.0, 0.0]
    with pytest.raises(EndpointError, match=rf"atoms \[{framework[0]}\] move by more than"):
        check_endpoints(initial, shifted)


def test_final_in_initial_basin_follows_the_initial_tilts() -> None:
    from pqdflow.structures.defects import final_in_initial_basin

    host = build_mixed_halide(3.0, (2, 2, 2))
    hop = enumerate_halide_hops(host)[0]
    initial, final = build_neb_endpoints(
        host, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index
    )
    k = check_endpoints(initial, final)
    # the initial endpoint relaxed into a differently distorted basin: framework shifted
    tilted = initial.copy()
    rng = np.random.default_rng(1)
    tilted.positions += np.array([0.4, -0.3, 0.2]) + rng.normal(0, 0.02, (len(tilted), 3))
    with pytest.raises(EndpointError):
        check_endpoints(tilted, final, max_other_displacement=0.3)
    rebased = final_in_initial_basin(tilted, final, k)
    moved = np.linalg.norm(rebased.positions - tilted.positions, axis=1)
    assert np.flatnonzero(moved > 1e-9).tolist() == [k]
    # the hopping atom lands on the vacancy site carried along with the framework shift
    assert np.allclose(rebased.positions[k], final.positions[k] + [0.4, -0.3, 0.2], atol=0.05)
    assert check_endpoints(tilted, rebased, max_other_displacement=0.3) == k

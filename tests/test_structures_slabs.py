from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest

from pqdflow.errors import GeometryError, UnknownTerminationError
from pqdflow.structures.bulk import build_mixed_halide
from pqdflow.structures.slabs import build_slab, slab_layers


def _layers_by_z(atoms, gap: float = 0.8) -> list[list[int]]:
    order = np.argsort(atoms.positions[:, 2])
    groups = [[int(order[0])]]
    for a, b in itertools.pairwise(order):
        if atoms.positions[b, 2] - atoms.positions[a, 2] > gap:
            groups.append([])
        groups[-1].append(int(b))
    return groups


@pytest.mark.parametrize(
    ("termination", "top"), [("CsX", {"Cs": 4, "Br": 4}), ("PbX2", {"Pb": 4, "Br": 8})]
)
def test_top_layer_composition(termination: str, top: dict[str, int]) -> None:
    slab = build_slab(termination=termination, size=(2, 2), layers=5)
    layers = _layers_by_z(slab)
    assert len(layers) == 5
    assert dict(Counter(slab[i].symbol for i in layers[-1])) == top
    # layers alternate, so the layer below the top has the other termination
    below = Counter(slab[i].symbol for i in layers[-2])
    assert ("Pb" in below) == (termination == "CsX")
    assert slab.info["termination"] == termination
    assert slab.info["miller"] == [0, 0, 1]
    assert slab.info["layers"] == 5


def test_default_slab_is_small_and_neutral() -> None:
    slab = build_slab()
    counts = Counter(slab.get_chemical_symbols())
    assert len(slab) == 48
    # formal charges Cs+ Pb2+ Br-: every CsX and PbX2 layer is neutral
    assert counts["Cs"] + 2 * counts["Pb"] - counts["Br"] == 0


@pytest.mark.parametrize("vacuum", [10.0, 15.0, 22.5])
def test_vacuum_at_least_requested(vacuum: float) -> None:
    slab = build_slab(vacuum=vacuum)
    thickness = np.ptp(slab.positions[:, 2])
    assert slab.cell[2, 2] - thickness >= vacuum - 1e-9
    assert slab.info["vacuum"] == vacuum


@pytest.mark.parametrize(("fixed_layers", "expected"), [(0, 0), (1, 8), (2, 20), (3, 28)])
def test_fixed_atom_count(fixed_layers: int, expected: int) -> None:
    slab = build_slab(termination="CsX", size=(2, 2), layers=5, fixed_layers=fixed_layers)
    fixed = {int(i) for c in slab.constraints for i in c.get_indices()}
    assert len(fixed) == expected  # CsX layer 8 atoms, PbX2 layer 12 atoms
    bottom = {i for layer in _layers_by_z(slab)[:fixed_layers] for i in layer}
    assert fixed == bottom
    assert slab.info["fixed_layers"] == fixed_layers


def test_vacuum_too_small() -> None:
    with pytest.raises(GeometryError, match=r"vacuum=9\.5 .*>= 10"):
        build_slab(vacuum=9.5)


def test_too_few_layers() -> None:
    with pytest.raises(GeometryError, match=r"layers=1.*>= 2"):
        build_slab(layers=1, fixed_layers=0)


def test_unknown_termination() -> None:
    with pytest.raises(UnknownTerminationError, match=r"'Cs'.*CsX, PbX2"):
        build_slab(termination="Cs")


def test_fixed_layers_must_leave_free_layers() -> None:
    with pytest.raises(GeometryError, match=r"fixed_layers=5"):
        build_slab(layers=5, fixed_layers=5)


def test_mixed_slab_deterministic_and_from_bulk() -> None:
    a = build_slab(x=1.5, seed=3)
    b = build_slab(x=1.5, seed=3)
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    assert a.info["n_iodide"] == a.get_chemical_symbols().count("I") > 0
    assert build_slab(x=1.5, seed=4).get_chemical_symbols() != a.get_chemical_symbols()
    # a = Vegard value of x = 1.5
    assert a.cell[0, 0] == pytest.approx(2 * a.info["a"])


def test_slab_from_rattled_host_keeps_positions() -> None:
    host = build_mixed_halide(3.0, (2, 2, 3))
    rng = np.random.default_rng(0)
    host.positions += rng.normal(0, 0.05, host.positions.shape)
    before = host.positions.copy()
    slab = build_slab(host=host, layers=4, termination="PbX2")
    assert np.array_equal(host.positions, before)  # host untouched
    assert len(slab_layers(slab)) == 4
    # lateral coordinates come from the host (modulo the cell)
    lateral = np.sort(np.round(np.mod(slab.positions[:, 0], host.cell[0, 0]), 6))
    assert set(lateral) <= set(np.round(np.mod(host.positions[:, 0], host.cell[0, 0]), 6))

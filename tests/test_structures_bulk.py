from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from pqdflow.errors import CompositionError, PqdflowError
from pqdflow.structures.bulk import (
    CSPBBR3_A,
    CSPBI3_A,
    allowed_x,
    build_bulk,
    build_mixed_halide,
    vegard_a,
)


@pytest.mark.parametrize("x", [0.0, 0.5, 1.0, 1.5, 2.0, 3.0])
def test_exact_iodide_count(x: float) -> None:
    atoms = build_mixed_halide(x, (2, 2, 2))
    counts = Counter(atoms.get_chemical_symbols())
    # 8 formula units: (3 - x) * 8 iodide, x * 8 bromide, 8 Cs, 8 Pb
    assert counts["I"] == round((3 - x) * 8)
    assert counts["Br"] == round(x * 8)
    assert counts["Cs"] == counts["Pb"] == 8
    assert atoms.info["formula_units"] == 8
    assert atoms.info["x"] == x


def test_impossible_x_lists_allowed_values() -> None:
    with pytest.raises(CompositionError, match=r"x=0\.3 .*allowed x: .*0\.375"):
        build_mixed_halide(0.3, (2, 2, 2))
    with pytest.raises(CompositionError, match=r"x=1.5"):
        build_mixed_halide(1.5, (1, 1, 1))  # 1.5 iodide ions on one formula unit


@pytest.mark.parametrize("x", [-0.1, 3.01, float("nan")])
def test_x_outside_range(x: float) -> None:
    with pytest.raises(CompositionError, match=r"\[0, 3\]"):
        build_mixed_halide(x, (2, 2, 2))


def test_errors_share_one_base() -> None:
    assert issubclass(CompositionError, PqdflowError)


def test_allowed_x_grid() -> None:
    assert allowed_x((1, 1, 1)) == [0.0, 1.0, 2.0, 3.0]
    grid = allowed_x((2, 1, 1))
    assert grid[:3] == [0.0, 0.5, 1.0]
    assert grid[-1] == 3.0
    assert len(grid) == 7


def test_vegard_law_endpoints_and_midpoint() -> None:
    assert vegard_a(3.0) == pytest.approx(CSPBBR3_A)
    assert vegard_a(0.0) == pytest.approx(CSPBI3_A)
    assert vegard_a(1.5) == pytest.approx((CSPBBR3_A + CSPBI3_A) / 2)
    # cited cubic lattice constants (Stoumpos 2013; Trots & Myagkota 2008)
    assert 5.8 < CSPBBR3_A < 5.95
    assert 6.2 < CSPBI3_A < 6.35


def test_cubic_cell_geometry() -> None:
    atoms = build_bulk("Br")
    assert atoms.get_chemical_formula() == "Br3CsPb"
    pb = 1
    d = atoms.get_distances(pb, [2, 3, 4], mic=True)
    assert np.allclose(d, CSPBBR3_A / 2)  # Pb-Br bond = a/2
    assert atoms.get_distance(0, 2, mic=True) == pytest.approx(CSPBBR3_A / np.sqrt(2))
    iodide = build_bulk("I", a=6.3)
    assert iodide.cell[0, 0] == pytest.approx(6.3)


def test_seed_determinism() -> None:
    a = build_mixed_halide(1.5, (2, 2, 2), seed=7)
    b = build_mixed_halide(1.5, (2, 2, 2), seed=7)
    c = build_mixed_halide(1.5, (2, 2, 2), seed=8)
    assert a.get_chemical_symbols() == b.get_chemical_symbols()
    assert a.get_chemical_symbols() != c.get_chemical_symbols()
    assert np.array_equal(a.positions, b.positions)


def test_explicit_iodide_indices() -> None:
    atoms = build_mixed_halide(2.0, (2, 1, 1), iodide_indices=[2, 8])
    assert [i for i, s in enumerate(atoms.get_chemical_symbols()) if s == "I"] == [2, 8]
    with pytest.raises(CompositionError, match=r"exactly 2"):
        build_mixed_halide(2.0, (2, 1, 1), iodide_indices=[2])
    with pytest.raises(CompositionError, match=r"not halide sites"):
        build_mixed_halide(2.0, (2, 1, 1), iodide_indices=[0, 2])  # 0 is Cs

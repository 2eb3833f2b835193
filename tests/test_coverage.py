"""The paper's three surfaces on one termination, at a chosen coverage."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from ase import Atoms

from pqdflow.errors import InputError
from pqdflow.structures.adsorption import build_passivated_surface, is_closed_shell
from pqdflow.structures.coverage import build_covered_surface, top_layer_sites
from pqdflow.structures.slabs import build_slab


@pytest.fixture(scope="module")
def slab() -> Atoms:
    return build_slab(x=2.0, termination="PbX2", seed=0)


def test_half_coverage_is_the_two_ligand_preset(slab: Atoms) -> None:
    for model in ("control", "treated"):
        covered = build_covered_surface(slab, model, 0.5)
        preset = build_passivated_surface(slab, model)
        assert covered.get_chemical_symbols() == preset.get_chemical_symbols()
        assert np.allclose(covered.positions, preset.positions)
        assert covered.info["coverage"] == 0.5


@pytest.mark.parametrize(("coverage", "n"), [(0.25, 1), (0.5, 2), (1.0, 4)])
def test_anhi_only_coverage(slab: Atoms, coverage: float, n: int) -> None:
    assert top_layer_sites(slab) == 4
    out = build_covered_surface(slab, "anhi", coverage)
    names = Counter(r["name"] for r in out.info["ligands"])
    assert names == {"AnHI": n}
    assert is_closed_shell(out)


def test_bad_model_and_coverage(slab: Atoms) -> None:
    with pytest.raises(InputError, match=r"unknown surface model 'oleate'.*anhi"):
        build_covered_surface(slab, "oleate")
    with pytest.raises(InputError, match="coverage"):
        build_covered_surface(slab, "anhi", 0.0)

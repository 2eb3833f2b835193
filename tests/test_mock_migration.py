"""The mock pair potential keeps halide-vacancy hops well posed (plumbing, not physics).

Before the halide-halide bond was limited to X2 distances, NEB bands with iodine fell
0.6-5 eV below their relaxed endpoints on the mock and every barrier came out 0.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.optimize import BFGS

from pqdflow.structures.bulk import build_mixed_halide
from pqdflow.structures.defects import build_neb_endpoints, enumerate_halide_hops
from pqdflow.structures.slabs import build_slab
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.engine.neb import NebSettings, run_band

_LOOSE = NebSettings(fmax=0.1, climb_fmax=0.05, max_steps=200)


def _relaxed(atoms: Atoms) -> tuple[Atoms, float]:
    out = atoms.copy()
    out.calc = MockPairCalculator()
    BFGS(out, logfile=None).run(fmax=0.01, steps=2000)
    return out, float(out.get_potential_energy())


def _band_minus_endpoints(host: Atoms, vacancy: str, hopper: str, tmp_path: Path) -> np.ndarray:
    hop = next(h for h in enumerate_halide_hops(host, element=vacancy) if h.hop_element == hopper)
    initial, final = build_neb_endpoints(
        host, vacancy_index=hop.vacancy_index, hop_index=hop.hop_index
    )
    (initial, e_i), (final, e_f) = _relaxed(initial), _relaxed(final)
    doc = run_band(
        initial,
        final,
        MockPairCalculator,
        tmp_path,
        path="hop",
        backend="mock",
        n_images=3,
        e_initial=e_i,
        e_final=e_f,
        settings=_LOOSE,
    )
    return np.asarray(doc.image_energies[1:-1]) - min(e_i, e_f)


def test_iodide_hop_in_mixed_bulk_stays_above_endpoints(tmp_path: Path) -> None:
    host = build_mixed_halide(2.0, (2, 2, 2), seed=0)
    above = _band_minus_endpoints(host, "I", "I", tmp_path)
    assert above.min() > -1e-3
    assert above.max() > 0.1  # a real barrier, not a flat (collapsed) band


@pytest.mark.slow
@pytest.mark.parametrize(
    ("host_kind", "vacancy", "hopper"),
    [("bulk", "Br", "I"), ("bulk", "Br", "Br"), ("slab", "Br", "I"), ("slab", "I", "Br")],
)
def test_hops_with_br_and_i_stay_above_endpoints(
    host_kind: str, vacancy: str, hopper: str, tmp_path: Path
) -> None:
    host = (
        build_mixed_halide(2.0, (2, 2, 2), seed=0)
        if host_kind == "bulk"
        else build_slab(x=2.0, termination="PbX2", seed=0)
    )
    above = _band_minus_endpoints(host, vacancy, hopper, tmp_path)
    assert above.min() > -1e-3
    assert above.max() > 0.1

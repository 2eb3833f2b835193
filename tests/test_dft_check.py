"""DFT check of ML screening: single points on ML images, barrier next to the ML one, restart.

The "ML" band is the mock backend's V_Br band; the "DFT" calculator is the mock pair
potential with other parameters (plumbing: two different energy surfaces, not physics).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator

from pqdflow.documents.plan import CalcSpec, NebSpec
from pqdflow.documents.results import NebDoc
from pqdflow.errors import InputError, ParseError
from pqdflow.structures.bulk import build_bulk
from pqdflow.structures.defects import build_neb_endpoints
from pqdflow.workflows.backends import get_backend
from pqdflow.workflows.engine.calculators import MockPairCalculator
from pqdflow.workflows.engine.dft_check import SUMMARY_FILE, dft_check_images, neb_check_images


def other_surface() -> Calculator:
    return MockPairCalculator(ionic_depth=0.5, repulsion=0.06)


def refuse() -> Calculator:
    raise AssertionError("a finished single point was recomputed")


@pytest.fixture(scope="module")
def mock_band(tmp_path_factory: pytest.TempPathFactory) -> NebDoc:
    backend = get_backend("mock")
    root = tmp_path_factory.mktemp("band")
    host = build_bulk("Br", a=5.945).repeat(2)
    host.rattle(0.03, seed=0)
    br = [i for i, s in enumerate(host.get_chemical_symbols()) if s == "Br"]
    d = host.get_distances(br[0], br, mic=True)
    hop = br[int(np.argmin(np.where(d > 0.1, d, np.inf)))]
    initial, final = build_neb_endpoints(host, vacancy_index=br[0], hop_index=hop)
    ends = [
        backend.relax(CalcSpec(n, "bulk", a, role=role), root / n)
        for n, a, role in (("i", initial, "neb_initial"), ("f", final, "neb_final"))
    ]
    spec = NebSpec("neb-bulk", "bulk", "i", "f", n_images=3, hopping_index=hop)
    return backend.neb(spec, ends[0], ends[1], root / "neb")


def test_dft_check_of_an_ml_band(mock_band: NebDoc, tmp_path: Path) -> None:
    images, labels, ml = neb_check_images(mock_band)
    assert labels == ["initial", "saddle", "final"]
    assert ml[0] == mock_band.image_energies[0]
    assert ml[1] == max(mock_band.image_energies)
    assert ml[2] == mock_band.image_energies[-1]
    doc = dft_check_images(images, other_surface, labels=labels, ml_energies=ml, directory=tmp_path)
    expected = []
    for image in images:
        work = image.copy()
        work.calc = other_surface()
        expected.append(work.get_potential_energy())
    assert doc.dft_energies == pytest.approx(expected)
    assert doc.dft_barrier == pytest.approx(max(expected) - expected[0])
    assert doc.ml_barrier == pytest.approx(mock_band.Ea_eV)
    assert doc.difference == pytest.approx(doc.ml_barrier - doc.dft_barrier)
    assert abs(doc.difference) > 1e-3  # two different surfaces give different barriers
    assert doc.relative_difference[0] == 0.0
    assert doc.calculator == "MockPairCalculator"
    assert min(doc.cpu_seconds) >= 0.0
    assert sum(doc.cpu_seconds) > 0.0
    assert (tmp_path / SUMMARY_FILE).is_file()
    assert "barrier: ML" in doc.table()
    # restart: finished single points are read back, never recomputed
    again = dft_check_images(images, refuse, labels=labels, ml_energies=ml, directory=tmp_path)
    assert again.dft_energies == doc.dft_energies
    assert again.cpu_seconds == [0.0, 0.0, 0.0]


def test_record_of_another_structure_is_refused(mock_band: NebDoc, tmp_path: Path) -> None:
    images, labels, _ = neb_check_images(mock_band)
    dft_check_images(images, other_surface, labels=labels, directory=tmp_path)
    moved = [a.copy() for a in images]
    moved[1].positions[0] += 0.3
    with pytest.raises(InputError, match="another structure"):
        dft_check_images(moved, refuse, labels=labels, directory=tmp_path)
    (tmp_path / "initial.json").write_text("{}")
    with pytest.raises(ParseError, match="single-point record"):
        dft_check_images(images, refuse, labels=labels, directory=tmp_path)


def test_ml_energies_from_attached_results_and_bad_input() -> None:
    images = []
    for shift in (0.0, 0.2, 0.4):
        atoms = Atoms("HBr", positions=[(0, 0, 0), (0, 0, 1.4 + shift)])
        atoms.calc = other_surface()
        atoms.get_potential_energy()
        images.append(atoms)
    ml = [a.calc.results["energy"] for a in images]
    doc = dft_check_images(images, other_surface)
    assert doc.ml_energies == ml
    assert doc.difference == pytest.approx(0.0)  # same surface: ML equals "DFT"
    assert doc.labels == ["image_00", "image_01", "image_02"]
    with pytest.raises(InputError, match="at least 2"):
        dft_check_images(images[:1], other_surface)
    with pytest.raises(InputError, match="labels"):
        dft_check_images(images, other_surface, labels=["a", "a", "b"])
    with pytest.raises(InputError, match="ML energies"):
        dft_check_images(images, other_surface, ml_energies=[0.0])

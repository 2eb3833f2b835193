import numpy as np
import pytest

from pqdflow.analysis.barriers import BarrierDoc, neb_barrier, path_coordinates
from pqdflow.errors import InputError


def test_symmetric_band_forward_equals_reverse():
    s = np.linspace(0, 2.0, 7)
    e = 0.5 * np.sin(np.pi * s / 2.0) ** 2 - 10.0
    f = -np.gradient(e, s)
    doc = neb_barrier(e, s, f, climbing_index=3)
    assert doc.forward == pytest.approx(0.5, abs=1e-12)
    assert doc.reverse == pytest.approx(0.5, abs=1e-12)
    assert doc.forward_spline == pytest.approx(0.5, abs=5e-3)
    assert doc.highest_index == 3
    assert doc.climbing_is_highest is True


def test_spline_finds_maximum_between_images():
    # exact quadratic hump whose top (0.3 eV at s=1.25) falls between images
    s = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5])
    e = 0.3 - 0.192 * (s - 1.25) ** 2
    f = 2 * 0.192 * (s - 1.25)
    doc = neb_barrier(e, s, f)
    assert doc.forward_spline == pytest.approx(0.3 - e[0], abs=1e-6)
    assert doc.forward_spline > doc.forward


def test_climbing_not_highest_is_flagged_and_reference_labelled():
    doc = neb_barrier([0.0, 0.2, 0.1, 0.0], climbing_index=2, reference="image_01")
    assert doc.climbing_is_highest is False
    assert any("not the highest" in n for n in doc.notes)
    assert any("image 01" in n for n in doc.notes)
    assert BarrierDoc.from_dict(doc.as_dict()) == doc


def test_path_coordinates_minimum_image():
    cell = np.eye(3) * 10.0
    pos = [np.array([[9.9, 0, 0]]), np.array([[0.1, 0, 0]])]
    assert path_coordinates(pos, cell)[-1] == pytest.approx(0.2)


@pytest.mark.parametrize("bad", [[1.0], [0.0, float("nan")]])
def test_bad_energies(bad):
    with pytest.raises(InputError):
        neb_barrier(bad)


def test_missing_tangential_force_falls_back_to_cubic_spline():
    doc = neb_barrier(
        np.array([0.0, 0.3, 0.5, 0.3, 0.1]), tangential_forces=[0.0, None, 0.0, 0.1, 0.0]
    )
    assert doc.spline_method == "cubic"
    assert doc.forward == pytest.approx(0.5)
    assert doc.reverse == pytest.approx(0.4)

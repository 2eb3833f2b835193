"""Lattice constant vs x and Bragg peaks (Extended Data Fig. 4d observable)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from pqdflow.analysis.diffraction import (
    bragg_peaks,
    lattice_table,
    plot_lattice_and_peaks,
    xray_wavelength,
)
from pqdflow.errors import InputError
from pqdflow.structures.bulk import CSPBBR3_A, build_bulk, build_mixed_halide


def test_wavelength_of_the_giwaxs_energy() -> None:
    assert xray_wavelength(17.998) == pytest.approx(0.68888, abs=1e-4)
    with pytest.raises(InputError, match="energy_kev"):
        xray_wavelength(0.0)


def test_cubic_cspbbr3_peaks_obey_bragg() -> None:
    atoms = build_bulk("Br")
    peaks = bragg_peaks(atoms)
    first = peaks[0]
    assert sorted(map(abs, first.hkl)) == [0, 0, 1]
    assert first.d == pytest.approx(CSPBBR3_A, abs=1e-3)
    lam = xray_wavelength(17.998)
    for p in peaks:
        assert 2 * p.d * math.sin(math.radians(p.two_theta / 2)) == pytest.approx(lam, rel=1e-4)
        assert p.q == pytest.approx(2 * math.pi / p.d, rel=1e-4)
    assert max(p.intensity for p in peaks) == pytest.approx(100.0)


def test_iodide_shifts_peaks_to_lower_angle(tmp_path: Path) -> None:
    bulks = [
        (3.0, build_bulk("Br"), 1),
        (0.0, build_bulk("I"), 1),
        (2.0, build_mixed_halide(2.0, (2, 2, 2)), 8),
    ]
    rows = lattice_table(bulks)
    assert [r["x"] for r in rows] == [0.0, 2.0, 3.0]
    assert rows[0]["a"] > rows[1]["a"] > rows[2]["a"]
    assert rows[2]["strain_vs_vegard"] == pytest.approx(0.0, abs=1e-4)
    two_theta_100 = [
        next(p["two_theta"] for p in r["peaks"] if abs(p["d"] - r["a"]) < 0.05) for r in rows
    ]
    assert two_theta_100[0] < two_theta_100[1] < two_theta_100[2]
    png = plot_lattice_and_peaks(rows, tmp_path / "xrd.png")
    assert png.read_bytes().startswith(b"\x89PNG")

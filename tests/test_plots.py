from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from pqdflow.analysis.plots import plot_binding_energies, plot_neb_profiles
from pqdflow.errors import InputError


def _non_white_fraction(path: Path) -> float:
    img = imread(path)
    return float(np.mean(np.any(img[..., :3] < 0.95, axis=-1)))


def test_binding_bars_written_and_drawn(tmp_path: Path) -> None:
    out = plot_binding_energies(
        [
            {"ligand": "OAc/OAm", "E_b_eV": -1.2, "label": "control"},
            {"ligand": "AnHI", "E_b_eV": -2.3},
            {"ligand": "TMSBr", "E_b_eV": None},
        ],
        tmp_path / "sub" / "bars.png",
    )
    assert out == tmp_path / "sub" / "bars.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # bars are filled: a real share of the canvas is coloured
    assert _non_white_fraction(out) > 0.05


def test_binding_bars_bigger_values_draw_more(tmp_path: Path) -> None:
    small = plot_binding_energies(
        [{"ligand": "A", "E_b_eV": -0.1}, {"ligand": "B", "E_b_eV": -2.0}], tmp_path / "a.png"
    )
    one = plot_binding_energies(
        [{"ligand": "A", "E_b_eV": -2.0}, {"ligand": "B", "E_b_eV": -2.0}], tmp_path / "b.png"
    )
    assert _non_white_fraction(one) > _non_white_fraction(small)


def test_neb_profiles_written(tmp_path: Path) -> None:
    out = plot_neb_profiles(
        [
            {"label": "control", "reaction_coordinate": [0, 1, 2], "energies": [0, 0.3, 0.0]},
            {
                "label": "treated",
                "reaction_coordinate": [0, 1, 2],
                "energies": [0, 0.5, 0.1],
                "spline": {
                    "s": np.linspace(0, 2, 20),
                    "E": np.sin(np.linspace(0, np.pi, 20)) * 0.5,
                },
            },
        ],
        tmp_path / "neb.png",
    )
    assert out.is_file()
    assert _non_white_fraction(out) > 0.01


@pytest.mark.parametrize(
    "entries",
    [[], [{"ligand": "A"}], [{"E_b_eV": 1.0}], [{"ligand": "A", "E_b_eV": "abc"}]],
)
def test_binding_bad_input(tmp_path: Path, entries: list[dict[str, object]]) -> None:
    with pytest.raises(InputError):
        plot_binding_energies(entries, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    "profiles",
    [
        [],
        [{"label": "a", "energies": [0, 1]}],
        [{"label": "a", "reaction_coordinate": [0, 1, 2], "energies": [0, 1]}],
        [{"label": "a", "reaction_coordinate": [0], "energies": [0]}],
    ],
)
def test_neb_bad_input(tmp_path: Path, profiles: list[dict[str, object]]) -> None:
    with pytest.raises(InputError):
        plot_neb_profiles(profiles, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()

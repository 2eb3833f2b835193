"""NEB parsing on the real NH3 CI-NEB reference (VTST) and trees derived from it in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pqdflow.analysis.neb_parse import NebParseDoc, parse_neb
from pqdflow.errors import InputError, ParseError

NEB = "nh3_inversion_cineb_vtst"
# README, image table: E_wo, E_sigma0, F_TOTEN per image 01..03
E_WO = [-19.50323647, -19.28751515, -19.50323784]
E_SIGMA0 = [-19.49550593, -19.27978461, -19.49550730]
F_TOTEN = [-19.49164066, -19.27591934, -19.49164203]
BARRIER_FROM_01 = 0.21572132


@pytest.fixture
def neb_dir(vasp_reference: Path) -> Path:
    return vasp_reference / NEB


@pytest.mark.parametrize(
    ("key", "expected"),
    [("energy_without_entropy", E_WO), ("energy_sigma0", E_SIGMA0), ("free_energy", F_TOTEN)],
)
def test_nh3_image_energies_and_barrier_from_image_01(
    neb_dir: Path, key: str, expected: list[float]
) -> None:
    doc = parse_neb(neb_dir, energy_key=key)  # type: ignore[arg-type]
    assert doc.energies == pytest.approx(expected, abs=1e-6)
    assert doc.reference == "image_01"
    assert doc.endpoint_source == "missing"
    assert doc.endpoint_energies == [None, None]
    assert any("endpoint energy is missing" in n for n in doc.notes)
    barrier = doc.barrier_doc
    assert barrier is not None
    assert barrier.reference == "image_01"
    assert barrier.forward == pytest.approx(BARRIER_FROM_01, abs=1e-6)
    assert any("image 01" in n for n in barrier.notes)


def test_nh3_climbing_image_forces_and_status(neb_dir: Path) -> None:
    doc = parse_neb(neb_dir)
    assert doc.status == "ok"
    assert doc.image_status == ["ok", "ok", "ok"]
    assert doc.climbing_image == 2
    assert doc.barrier is not None
    assert doc.barrier["climbing_is_highest"] is True
    assert doc.max_forces == pytest.approx([0.010787, 0.005218, 0.008742], abs=1e-5)
    # VTST "projections on to tangent (spring, REAL)" of the last iteration
    assert doc.tangential_forces == pytest.approx([0.00532, -0.000001, -0.007243], abs=1e-9)
    assert doc.barrier["spline_method"] == "hermite"
    # spline through a symmetric band with a converged climbing image: same top as the image
    assert doc.barrier["forward_spline"] == pytest.approx(BARRIER_FROM_01, abs=2e-3)


def test_given_endpoint_energies(neb_dir: Path) -> None:
    doc = parse_neb(neb_dir, endpoint_energies=(-19.60, -19.58))
    assert doc.reference == "initial_state"
    assert doc.endpoint_source == "given"
    assert doc.barrier is not None
    assert doc.barrier["forward"] == pytest.approx(-19.27978461 + 19.60, abs=1e-8)
    assert doc.barrier["reverse"] == pytest.approx(-19.27978461 + 19.58, abs=1e-8)
    assert doc.barrier["climbing_index"] == 2  # band index with the endpoint prepended
    assert len(doc.barrier["reaction_coordinate"]) == 5


def test_endpoint_relaxation_dirs(neb_dir: Path) -> None:
    # any finished calculation folders serve as "relaxations"; here the outer images
    doc = parse_neb(neb_dir, endpoint_dirs=(neb_dir / "01", neb_dir / "03"))
    assert doc.endpoint_source == "relaxations"
    assert doc.endpoint_energies == pytest.approx([E_SIGMA0[0], E_SIGMA0[2]], abs=1e-8)
    assert doc.barrier is not None
    assert doc.barrier["forward"] == pytest.approx(BARRIER_FROM_01, abs=1e-6)


def _band(tmp_path: Path, neb_dir: Path, mapping: dict[str, str | None]) -> Path:
    root = tmp_path / "neb"
    root.mkdir()
    for name, src in mapping.items():
        if src is None:
            (root / name).mkdir()
            continue
        (root / name).symlink_to(neb_dir / src, target_is_directory=True)
    return root


def test_endpoint_folders_with_outputs_win(tmp_path: Path, neb_dir: Path) -> None:
    root = _band(tmp_path, neb_dir, {"00": "01", "01": "01", "02": "02", "03": "03", "04": "03"})
    doc = parse_neb(root, endpoint_energies=(0.0, 0.0))
    assert doc.endpoint_source == "endpoint_folders"
    assert doc.reference == "initial_state"
    assert doc.barrier is not None
    assert doc.barrier["forward"] == pytest.approx(BARRIER_FROM_01, abs=1e-6)


def test_missing_image_is_incomplete(tmp_path: Path, neb_dir: Path) -> None:
    root = _band(tmp_path, neb_dir, {"00": "00", "01": "01", "02": None, "03": "03", "04": "04"})
    doc = parse_neb(root)
    assert doc.status == "incomplete"
    assert doc.image_status[1] == "no_output"
    assert doc.barrier is None
    assert doc.energies[1] is None


def test_tangential_force_from_forces_without_vtst_lines(tmp_path: Path, neb_dir: Path) -> None:
    root = tmp_path / "neb"
    for name in ("00", "01", "02", "03", "04"):
        (root / name).mkdir(parents=True)
        for f in (neb_dir / name).iterdir():
            text = f.read_text()
            if f.name == "OUTCAR":
                text = "".join(
                    line for line in text.splitlines(True) if "NEB: projections" not in line
                )
            (root / name / f.name).write_text(text)
    doc = parse_neb(root)
    vtst = [0.00532, -0.000001, -0.007243]
    for computed, printed, fmax in zip(doc.tangential_forces, vtst, doc.max_forces, strict=True):
        assert computed is not None
        assert fmax is not None
        # a different (central-difference) tangent: same sign, bounded by the force norms
        assert computed * printed >= 0
        assert abs(computed) <= 3 * fmax
    assert any("path tangent" in n for n in doc.notes)


def test_errors(tmp_path: Path, neb_dir: Path) -> None:
    with pytest.raises(ParseError, match="not a folder"):
        parse_neb(tmp_path / "nope")
    with pytest.raises(ParseError, match="numbered image folders"):
        parse_neb(tmp_path)
    with pytest.raises(InputError, match="not both"):
        parse_neb(neb_dir, endpoint_energies=(0.0, 0.0), endpoint_dirs=(tmp_path, tmp_path))
    with pytest.raises(InputError, match="energy_key"):
        parse_neb(neb_dir, energy_key="toten")  # type: ignore[arg-type]


def test_json_round_trip(neb_dir: Path) -> None:
    doc = parse_neb(neb_dir)
    back = NebParseDoc.from_dict(json.loads(json.dumps(doc.as_dict(), allow_nan=False)))
    assert back == doc

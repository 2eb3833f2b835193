"""``pqdflow report`` picks up hop vibrational analyses (``vib.json``) saved by ``pqdflow vib``.

The report test uses the analytic double well of ``test_vibrations`` (ν* and k known in
closed form); the CLI test runs ``pqdflow vib`` on the mock-backend bulk V_Br NEB.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import constants as sc

from pqdflow.analysis.rates import HopVibDoc, hop_vibrations, path_tangent
from pqdflow.analysis.report import VIB_DOC, VIB_SPECTRUM, build_report, write_report
from pqdflow.analysis.vibrations import vibrational_analysis
from pqdflow.cli import main

from .test_vib_neb import run_bulk_hop
from .test_vibrations import A_EV, HALF_L, _double_well_hop, nu_thz


def _double_well_doc() -> tuple[HopVibDoc, float]:
    """The analytic hop and its closed-form prefactor ν* = ν_x(minimum) (THz)."""
    calc, images = _double_well_hop()
    ini, sad, fin = (
        vibrational_analysis(images[i], calc, [0, 1], label=lab)
        for i, lab in ((0, "initial"), (2, "saddle"), (4, "final"))
    )
    doc = hop_vibrations(
        ini,
        sad,
        fin,
        path_tangent(images[1], images[3]),
        hop_index=0,
        hop_length_A=2 * HALF_L,
        label="double-well",
        backend="analytic",
    )
    m = float(images[0].get_masses()[0])
    return doc, nu_thz(8 * A_EV / HALF_L**2, m)


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    root.mkdir()
    manifest = {"study": "vib-demo", "calculations": []}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_vib_json_becomes_a_hop_rate_row(tmp_path: Path) -> None:
    doc, nu_star = _double_well_doc()
    root = _tree(tmp_path)
    neb = root / "neb" / "neb-bulk-VBr"
    neb.mkdir(parents=True)
    (neb / VIB_DOC).write_text(json.dumps(doc.as_dict()))
    (root / "other.json").write_text("{}")  # not named vib.json: ignored
    (root / "neb" / VIB_DOC).write_text(json.dumps({"doc_type": "VibrationalDoc"}))

    report = build_report(root)
    assert len(report.vibrations) == 1
    row = report.vibrations[0]
    assert row["path"] == "neb/neb-bulk-VBr/vib.json"
    assert any("'VibrationalDoc'" in w for w in report.warnings)
    assert (row["n_imaginary_initial"], row["n_imaginary_saddle"]) == (0, 1)
    assert row["n_imaginary_final"] == 0
    assert row["saddle_mode_tangent_overlap"] == pytest.approx(1.0, abs=1e-6)
    assert row["is_first_order_saddle"] is True
    kt = sc.k / sc.e * 300.0
    k300 = nu_star * 1e12 * math.exp(-A_EV / kt)
    assert row["prefactor_THz"] == pytest.approx(nu_star, rel=1e-4)
    assert row["Ea_eV"] == pytest.approx(A_EV, abs=1e-12)
    assert row["rate_300K_per_s"] == pytest.approx(k300, rel=1e-4)
    # D = z k a² / 6, z = 8, a = 2L in cm
    assert row["D_300K_cm2_per_s"] == pytest.approx(
        8 * k300 * (2 * HALF_L * 1e-8) ** 2 / 6, rel=1e-4
    )
    assert row["spectrum"] is None

    out = tmp_path / "out"
    written = write_report(report, out)
    back = json.loads(written["json"].read_text())["vibrations"]
    assert back == report.vibrations
    md = written["markdown"].read_text()
    assert "## Hop rates (harmonic TST)" in md
    line = next(x for x in md.splitlines() if x.startswith("| neb/neb-bulk-VBr/vib.json"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[1:3] == ["double-well", "0/1/0"]
    assert float(cells[4]) == pytest.approx(nu_star, abs=5e-5)
    assert float(cells[5]) == pytest.approx(A_EV, abs=5e-5)
    assert float(cells[6]) == pytest.approx(k300, rel=1e-3)
    assert cells[8] == "yes"
    # no PNG next to vib.json: the spectrum is drawn from the document into the report
    png = written["vib_spectrum:neb/neb-bulk-VBr/vib.json"]
    assert png.parent == out / "vib_spectra"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert f"]({png.relative_to(out).as_posix()})" in md


def test_existing_spectrum_is_linked_in_place_or_copied(tmp_path: Path) -> None:
    doc, _ = _double_well_doc()
    root = _tree(tmp_path)
    neb = root / "hop"
    neb.mkdir()
    (neb / VIB_DOC).write_text(json.dumps(doc.as_dict()))
    (neb / VIB_SPECTRUM).write_bytes(b"\x89PNG fake picture")
    report = build_report(root)
    assert report.vibrations[0]["spectrum"] == "hop/vib_spectrum.png"
    in_place = write_report(report, root)
    assert in_place["vib_spectrum:hop/vib.json"] == root / "hop" / VIB_SPECTRUM
    assert "](hop/vib_spectrum.png)" in in_place["markdown"].read_text()
    elsewhere = write_report(report, tmp_path / "out")
    copy = elsewhere["vib_spectrum:hop/vib.json"]
    assert copy == tmp_path / "out" / "vib_spectra" / "hop.png"
    assert copy.read_bytes() == b"\x89PNG fake picture"


def test_no_vib_json_changes_nothing(tmp_path: Path) -> None:
    report = build_report(_tree(tmp_path))
    assert "vibrations" not in report.as_dict()
    written = write_report(report, tmp_path / "out")
    assert set(written) == {"csv", "json", "markdown"}
    assert "Hop rates" not in written["markdown"].read_text()
    assert "vibrations" not in json.loads(written["json"].read_text())


@pytest.fixture(scope="module")
def mock_neb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_bulk_hop("mock", tmp_path_factory.mktemp("mock-hop"))


def test_cli_vib_saves_doc_and_spectrum_for_the_report(
    mock_neb: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    foreign = mock_neb / VIB_DOC
    foreign.write_text('{"doc_type": "something else"}')
    assert main(["vib", str(mock_neb), "--backend", "mock"]) != 0
    assert "not a HopVibDoc" in capsys.readouterr().err
    assert foreign.read_text() == '{"doc_type": "something else"}'
    foreign.unlink()
    picture = mock_neb / VIB_SPECTRUM
    picture.write_bytes(b"someone's picture")
    assert main(["vib", str(mock_neb), "--backend", "mock"]) != 0
    assert "without a pqdflow vib document" in capsys.readouterr().err
    assert picture.read_bytes() == b"someone's picture"
    picture.unlink()

    assert main(["vib", str(mock_neb), "--backend", "mock", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((mock_neb / VIB_DOC).read_text())
    assert saved == printed
    assert saved["doc_type"] == "HopVibDoc"
    assert (mock_neb / VIB_SPECTRUM).read_bytes()[:4] == b"\x89PNG"
    # a rerun may replace our own document
    assert main(["vib", str(mock_neb), "--backend", "mock", "--temperature", "350"]) == 0
    assert json.loads((mock_neb / VIB_DOC).read_text())["temperature_K"] == 350.0

    # the run tree above the NEB folder reports the hop
    root = mock_neb.parent
    (root / "manifest.json").write_text(json.dumps({"study": "mock", "calculations": []}))
    report = build_report(root)
    (row,) = report.vibrations
    assert row["path"] == f"{mock_neb.name}/{VIB_DOC}"
    assert row["n_imaginary_saddle"] == 1
    assert row["rate_300K_per_s"] == pytest.approx(saved["rate_300K_per_s"], rel=1e-12)
    assert row["spectrum"] == f"{mock_neb.name}/{VIB_SPECTRUM}"

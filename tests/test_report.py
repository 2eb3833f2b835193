"""Report over a manifest tree whose folders link to the real reference calculations."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from pqdflow.analysis.report import (
    InconsistentCalculationsError,
    StudyReport,
    build_report,
    check_consistency,
    write_report,
)
from pqdflow.analysis.vasp import parse_calculation
from pqdflow.cli import main
from pqdflow.errors import InputError, StudyError

# README energies (energy(sigma->0), eV)
E_Y2MG = -102.66489995
E_SI = -10.84671647
E_FES2 = 83.58389062
NH3_BARRIER = 0.21572132


def _tree(tmp_path: Path, ref: Path, *, inconsistent: bool = False) -> Path:
    root = tmp_path / "study"
    root.mkdir()
    links = {
        "ads-A": "y2mg4p2o8_double_relax_168steps",
        "slab": "si_relax_plain_small",
        "lig-A": "si_relax_plain_small",
        "rel-X": "si_relax_plain_small",
        "ads-D": "si_relax_plain_small",
        "rel-Z": "si_relax_plain_small",
        "ads-B": "fes2_slab_relax_truncated_diverging",
        "neb-control": "nh3_inversion_cineb_vtst",
        "ini-treated": "nh3_inversion_cineb_vtst/01",
        "fin-treated": "nh3_inversion_cineb_vtst/03",
        "neb-treated": "nh3_inversion_cineb_vtst",
    }
    if inconsistent:
        links["ads-A"] = "feo_afm_ggau_relax28"  # PBE+U, other functional
    for name, src in links.items():
        (root / name).symlink_to(ref / src, target_is_directory=True)
    calcs: list[dict[str, Any]] = [
        {"name": "ads-A", "path": "ads-A", "kind": "adsorbed", "formula_units": 1},
        {"name": "slab", "path": "slab", "kind": "slab", "formula_units": 1},
        {"name": "lig-A", "path": "lig-A", "kind": "molecule", "formula_units": 2},
        {"name": "rel-X", "path": "rel-X", "kind": "bulk", "formula_units": 2},
        {"name": "ads-D", "path": "ads-D", "kind": "adsorbed", "formula_units": 1},
        {"name": "rel-Z", "path": "rel-Z", "kind": "bulk", "formula_units": 1},
        {"name": "ads-B", "path": "ads-B", "kind": "adsorbed"},
        {"name": "ads-C", "path": "ads-C", "kind": "adsorbed"},  # never written
        {"name": "ini-control", "path": "ini-control", "kind": "slab"},  # never run
        {"name": "fin-control", "path": "fin-control", "kind": "slab"},
        {"name": "ini-treated", "path": "ini-treated", "kind": "slab"},
        {"name": "fin-treated", "path": "fin-treated", "kind": "slab"},
        {"name": "neb-control", "path": "neb-control", "kind": "neb"},
        {"name": "neb-treated", "path": "neb-treated", "kind": "neb"},
    ]
    bindings = [
        {"name": "bind-A", "ligand": "AnHI", "site": "Cs", "adsorbed": "ads-A", "slab": "slab",
         "ligands": {"lig-A": 2.0}, "released": {"rel-X": 1.0}},
        {"name": "bind-B", "ligand": "TMSBr", "site": "Pb", "adsorbed": "ads-B", "slab": "slab",
         "ligands": {"lig-A": 1.0}, "released": {}},
        {"name": "bind-C", "ligand": "OAm", "site": "Cs", "adsorbed": "ads-C", "slab": "slab",
         "ligands": {"lig-A": 1.0}, "released": {}},
        # Si2 + 2 Si (lig-A: Si2 cell of 2 f.u.) -> Si2 + Si2 (rel-Z: 1 f.u.): balanced
        {"name": "bind-D", "ligand": "Si", "site": "top", "adsorbed": "ads-D", "slab": "slab",
         "ligands": {"lig-A": 2.0}, "released": {"rel-Z": 1.0}},
    ]  # fmt: skip
    nebs = [
        {"name": "neb-control", "label": "control", "initial": "ini-control",
         "final": "fin-control", "n_images": 3, "hopping_index": 0},
        {"name": "neb-treated", "label": "treated", "initial": "ini-treated",
         "final": "fin-treated", "n_images": 3, "hopping_index": 0},
    ]  # fmt: skip
    manifest = {"study": "demo", "calculations": calcs, "bindings": bindings, "nebs": nebs}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def test_binding_energies_and_statuses(tmp_path: Path, vasp_reference: Path) -> None:
    report = build_report(_tree(tmp_path, vasp_reference))
    rows = {r["name"]: r for r in report.bindings}
    # E_b = E(ads) + 1 * E(rel-Z)/1 - E(slab) - 2 * E(lig)/2, every term per formula unit:
    # 0 with these energies; without the per-formula-unit division it would be -E_SI
    assert rows["bind-D"]["E_b_eV"] == pytest.approx(0.0, abs=1e-8)
    assert rows["bind-D"]["status"] == "ok"
    assert rows["bind-D"]["balanced"] is True
    # the same atom-balance check as the runner: Y2Mg4P2O8 from Si is no reaction
    assert rows["bind-A"]["E_b_eV"] is None
    assert rows["bind-A"]["status"] == "unbalanced"
    assert "not atom-balanced" in rows["bind-A"]["note"]
    assert "Y:" in rows["bind-A"]["note"]
    assert rows["bind-B"]["status"] == "unbalanced"  # FeS2 from Si
    assert rows["bind-C"]["E_b_eV"] is None
    assert rows["bind-C"]["status"] == "missing"
    calcs = {r["name"]: r for r in report.calculations}
    assert calcs["ads-C"]["status"] == "missing"
    assert calcs["ads-B"]["status"] == "truncated"
    assert calcs["lig-A"]["energy_per_fu_eV"] == pytest.approx(E_SI / 2, abs=1e-8)


def test_neb_rows_control_vs_treated(tmp_path: Path, vasp_reference: Path) -> None:
    report = build_report(_tree(tmp_path, vasp_reference))
    rows = {r["name"]: r for r in report.nebs}
    control, treated = rows["neb-control"], rows["neb-treated"]
    assert control["reference"] == "image_01"
    assert control["forward_barrier_eV"] == pytest.approx(NH3_BARRIER, abs=1e-6)
    assert "image 01" in control["note"]
    assert treated["reference"] == "initial_state"  # endpoint relaxations have energies
    assert treated["forward_barrier_eV"] == pytest.approx(NH3_BARRIER, abs=1e-6)
    assert len(treated["energies"]) == 5
    assert control["status"] == treated["status"] == "ok"


def test_write_report_files(tmp_path: Path, vasp_reference: Path) -> None:
    report = build_report(_tree(tmp_path, vasp_reference))
    out = tmp_path / "out"
    written = write_report(report, out)
    assert set(written) == {"csv", "json", "markdown", "binding_plot", "neb_plot"}
    with written["csv"].open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(report.calculations) + 4 + 2
    bind_d = next(r for r in rows if r["name"] == "bind-D")
    assert float(bind_d["E_b_eV"]) == pytest.approx(0.0, abs=1e-6)
    assert next(r for r in rows if r["name"] == "bind-A")["status"] == "unbalanced"
    back = StudyReport.from_dict(json.loads(written["json"].read_text()))
    assert back.bindings == report.bindings
    md = written["markdown"].read_text()
    assert "| bind-D | Si | top | 0.0000 | ok |" in md
    assert "| bind-A | AnHI | Cs |  | unbalanced |" in md
    for key in ("binding_plot", "neb_plot"):
        assert written[key].read_bytes()[:4] == b"\x89PNG"


def test_inconsistent_functional_is_an_error(tmp_path: Path, vasp_reference: Path) -> None:
    root = _tree(tmp_path, vasp_reference, inconsistent=True)
    with pytest.raises(InconsistentCalculationsError, match="functional differs") as info:
        build_report(root)
    assert isinstance(info.value, InputError)
    assert "PBE+U" in str(info.value)
    assert "bind-A" in str(info.value)
    lenient = build_report(root, strict=False)
    row = next(r for r in lenient.bindings if r["name"] == "bind-A")
    assert row["status"] == "inconsistent"


def test_check_consistency_encut_and_potcar(vasp_reference: Path) -> None:
    si = parse_calculation(vasp_reference / "si_relax_plain_small")
    si300 = parse_calculation(vasp_reference / "si_relax_ionic_unconverged_nsw5")
    with pytest.raises(InconsistentCalculationsError, match="ENCUT"):
        check_consistency({"a": si, "b": si300})
    other = parse_calculation(vasp_reference / "si_relax_plain_small")
    other.parameters.potcar_titels = ["PAW_PBE Si_GW 05Jan2001"]
    with pytest.raises(InconsistentCalculationsError, match="POTCAR for Si"):
        check_consistency({"a": si, "b": other})
    check_consistency(
        {"a": si, "b": parse_calculation(vasp_reference / "y2mg4p2o8_double_relax_168steps")}
    )


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(StudyError, match="manifest"):
        build_report(tmp_path)


def test_cli_report_and_parse(
    tmp_path: Path, vasp_reference: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _tree(tmp_path, vasp_reference)
    assert main(["report", str(root), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "binding bind-C: E_b = n/a [missing]" in out
    assert (tmp_path / "rep" / "report.md").is_file()
    assert not (tmp_path / "rep" / "binding_energies.png").exists()
    assert main(["parse", str(vasp_reference / "mapi_hse06_static"), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["energy_sigma0"] == pytest.approx(-59.87863447, abs=1e-8)
    assert doc["max_force"] is None
    assert main(["parse", str(vasp_reference / "nh3_inversion_cineb_vtst"), "--json"]) == 0
    neb = json.loads(capsys.readouterr().out)
    assert neb["reference"] == "image_01"
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "manifest" in capsys.readouterr().err

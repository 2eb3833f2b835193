"""Parser tests on the real VASP reference outputs (values typed from their README)."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from pqdflow.analysis.vasp import VaspCalcDoc, find_output, parse_calculation, read_error_message
from pqdflow.errors import ParseError, PqdflowError

E_TOL, F_TOL = 1e-6, 1e-5

# case -> expected values from ../shared/vasp_reference/README.md ("Expected values per case")
EXPECTED: dict[str, dict[str, object]] = {
    "feo_afm_ggau_relax28": dict(
        n=28,
        e_wo=-28.21851457,
        e0=-28.21851457,
        f=-28.21851457,
        fmax=0.010745,
        finished=True,
        ionic=True,
        status="ok",
    ),
    "y2mg4p2o8_double_relax_168steps": dict(
        n=25,
        e_wo=-102.66489995,
        e0=-102.66489995,
        f=-102.66489995,
        fmax=0.046122,
        finished=True,
        ionic=True,
        status="ok",
    ),
    "fes2_slab_relax_truncated_diverging": dict(
        n=3,
        e_wo=83.58812407,
        e0=83.58389062,
        f=83.57965717,
        fmax=0.576401,
        finished=False,
        ionic=False,
        status="truncated",
    ),
    "mapi_hse06_static": dict(
        n=1,
        e_wo=-59.87863447,
        e0=-59.87863447,
        f=-59.87863447,
        fmax=None,
        finished=True,
        ionic=None,
        status="ok",
    ),
    "h_on_ir16_slab_relax_smearing": dict(
        n=13,
        e_wo=-130.44824026,
        e0=-130.46616758,
        f=-130.48409490,
        fmax=0.032500,
        fmax_all=1.027639,
        finished=True,
        ionic=True,
        status="ok",
    ),
    "si_relax_ionic_unconverged_nsw5": dict(
        n=5,
        e_wo=-10.53672155,
        e0=-10.53701997,
        f=-10.53731840,
        fmax=2.361912,
        finished=True,
        ionic=False,
        status="unconverged",
    ),
    "si_static_unfinished_killed_in_scf": dict(
        n=0,
        e_wo=None,
        e0=None,
        f=None,
        fmax=None,
        finished=False,
        ionic=None,
        status="truncated",
    ),
    "si_relax_plain_small": dict(
        n=3,
        e_wo=-10.84671647,
        e0=-10.84671647,
        f=-10.84671647,
        fmax=0.0,
        finished=True,
        ionic=True,
        status="ok",
    ),
    "nh3_inversion_cineb_vtst/01": dict(
        n=23,
        e_wo=-19.50323647,
        e0=-19.49550593,
        f=-19.49164066,
        fmax=0.010787,
        finished=True,
        ionic=True,
        status="ok",
    ),
    "nh3_inversion_cineb_vtst/02": dict(
        n=23,
        e_wo=-19.28751515,
        e0=-19.27978461,
        f=-19.27591934,
        fmax=0.005218,
        finished=True,
        ionic=True,
        status="ok",
    ),
    "nh3_inversion_cineb_vtst/03": dict(
        n=23,
        e_wo=-19.50323784,
        e0=-19.49550730,
        f=-19.49164203,
        fmax=0.008742,
        finished=True,
        ionic=True,
        status="ok",
    ),
}


def _close(actual: float | None, expected: object, tol: float) -> bool:
    if expected is None:
        return actual is None
    return actual is not None and abs(actual - float(expected)) <= tol  # type: ignore[arg-type]


@pytest.mark.parametrize("case", sorted(EXPECTED))
def test_reference_case(vasp_reference: Path, case: str) -> None:
    exp = EXPECTED[case]
    doc = parse_calculation(vasp_reference / case)
    assert doc.n_ionic_steps == exp["n"]
    assert _close(doc.energy_without_entropy, exp["e_wo"], E_TOL), doc.energy_without_entropy
    assert _close(doc.energy_sigma0, exp["e0"], E_TOL), doc.energy_sigma0
    assert _close(doc.free_energy, exp["f"], E_TOL), doc.free_energy
    assert _close(doc.max_force, exp["fmax"], F_TOL), doc.max_force
    if "fmax_all" in exp:
        assert _close(doc.max_force_all_atoms, exp["fmax_all"], F_TOL)
    assert doc.finished is exp["finished"]
    assert doc.converged_ionic is exp["ionic"]
    assert doc.status == exp["status"]
    assert doc.parser_version
    assert doc.source_files


def test_feo_flags_and_parameters(vasp_reference: Path) -> None:
    doc = parse_calculation(vasp_reference / "feo_afm_ggau_relax28")
    assert doc.converged_electronic is True
    assert doc.magnetization == pytest.approx(4.0, abs=1e-4)
    p = doc.parameters
    assert (p.functional, p.encut, p.nsw, p.ibrion, p.isif, p.nelm) == (
        "PBE+U",
        520.0,
        99,
        2,
        3,
        100,
    )
    assert p.ediffg == pytest.approx(0.002)
    assert p.potcar_set == ("PAW_PBE Fe 06Sep2000", "PAW_PBE O 08Apr2002")
    assert p.vasp_version is not None
    assert p.vasp_version.startswith("vasp.5.3.5")


def test_run_parameters_come_from_outcar_not_incar(vasp_reference: Path) -> None:
    # INCAR says ISIF=2, the run used ISIF=0 (README)
    doc = parse_calculation(vasp_reference / "h_on_ir16_slab_relax_smearing")
    assert "ISIF = 2" in (
        vasp_reference / "h_on_ir16_slab_relax_smearing/INCAR"
    ).read_text().replace("  ", " ")
    assert doc.parameters.isif == 0
    assert doc.parameters.functional == "RPBE"
    assert doc.parameters.sigma == pytest.approx(0.05)


def test_fes2_energies_by_step_and_no_scf_energy(vasp_reference: Path) -> None:
    doc = parse_calculation(vasp_reference / "fes2_slab_relax_truncated_diverging")
    f_by_step = [s["free_energy"] for s in doc.steps]
    assert f_by_step == pytest.approx([-283.71958190, -284.41221794, 83.57965717], abs=E_TOL)
    e0 = [s["energy_sigma0"] for s in doc.steps]
    assert e0 == pytest.approx([-283.71336160, -284.40970191, 83.58389062], abs=E_TOL)
    assert abs(doc.energy_without_entropy - (-284.8545903)) > 1  # type: ignore[operator]
    assert doc.converged_ionic is False
    # 24 of 48 atoms are free; atom 1 (index 0) carries the largest force
    assert doc.structure is not None
    assert sum(doc.structure["free"]) == 24


def test_mapi_nan_forces_unavailable_and_hse(vasp_reference: Path) -> None:
    doc = parse_calculation(vasp_reference / "mapi_hse06_static")
    assert doc.max_force is None
    assert doc.max_force_all_atoms is None
    assert doc.forces is None
    assert any("NaN" in w for w in doc.warnings)
    assert doc.calc_type == "static"
    assert doc.converged_electronic is True
    assert doc.parameters.functional == "HSE06"
    assert len(doc.parameters.potcar_titels) == 5
    json.dumps(doc.as_dict(), allow_nan=False)  # strict JSON


def test_selective_dynamics_and_to_atoms(vasp_reference: Path) -> None:
    doc = parse_calculation(vasp_reference / "h_on_ir16_slab_relax_smearing")
    atoms = doc.to_atoms()
    assert len(atoms) == 17
    free = [i for i, f in enumerate(doc.structure["free"]) if f]  # type: ignore[index]
    assert free == [0, 9, 10, 11, 12]  # atom 1 (H) and atoms 10-13 (Ir), 1-based
    fixed = atoms.constraints[0].get_indices().tolist()
    assert len(fixed) == 12
    assert 0 not in fixed
    assert doc.structure["source"] == "CONTCAR"  # type: ignore[index]


def test_vasprun_energy_label_quirk_single_file(vasp_reference: Path) -> None:
    doc = parse_calculation(vasp_reference / "h_on_ir16_slab_relax_smearing/vasprun.xml.gz")
    assert doc.source_files == [
        str(vasp_reference / "h_on_ir16_slab_relax_smearing/vasprun.xml.gz")
    ]
    assert doc.energy_without_entropy == pytest.approx(-130.44824026, abs=E_TOL)
    assert doc.energy_sigma0 == pytest.approx(-130.46616758, abs=E_TOL)
    assert doc.free_energy == pytest.approx(-130.48409490, abs=E_TOL)
    assert doc.max_force == pytest.approx(0.032500, abs=F_TOL)
    assert doc.n_ionic_steps == 13
    assert doc.status == "ok"
    assert doc.converged_ionic is True
    assert doc.parameters.isif == 0


@pytest.mark.parametrize(
    ("name", "n", "energy", "fmax"),
    [
        ("OUTCAR.relax1.gz", 168, -102.54467972, 0.040078),
        ("vasprun.xml.relax1.gz", 168, -102.54467972, 0.040077),
        ("OUTCAR.relax2.gz", 25, -102.66489995, 0.046122),
        ("vasprun.xml.relax2.gz", 25, -102.66489995, 0.046122),
    ],
)
def test_double_relaxation_single_files(
    vasp_reference: Path, name: str, n: int, energy: float, fmax: float
) -> None:
    doc = parse_calculation(vasp_reference / "y2mg4p2o8_double_relax_168steps" / name)
    assert doc.n_ionic_steps == n
    for value in (doc.energy_without_entropy, doc.energy_sigma0, doc.free_energy):
        assert value == pytest.approx(energy, abs=E_TOL)
    assert doc.max_force == pytest.approx(fmax, abs=F_TOL)
    assert doc.status == "ok"


def test_folder_picks_last_staged_relaxation(vasp_reference: Path) -> None:
    folder = vasp_reference / "y2mg4p2o8_double_relax_168steps"
    assert find_output(folder, "OUTCAR") == folder / "OUTCAR.relax2.gz"
    doc = parse_calculation(folder)
    assert doc.structure is not None
    assert doc.structure["source"] == "vasprun.xml.relax2.gz"
    assert len(doc.structure["symbols"]) == 16


def test_unfinished_vasprun_and_broken_neb_vasprun(vasp_reference: Path) -> None:
    doc = parse_calculation(vasp_reference / "si_static_unfinished_killed_in_scf/vasprun.xml")
    assert doc.n_ionic_steps == 0
    assert doc.energy_sigma0 is None
    assert doc.status == "truncated"
    # README: several images wrote into this one vasprun.xml at once (26 <calculation>, 33
    # </calculation>): two runs interleaved in one file, so corrupt, not merely cut
    broken = parse_calculation(vasp_reference / "nh3_inversion_cineb_vtst/vasprun.xml")
    assert broken.status == "corrupt"
    assert broken.finished is False
    assert broken.converged_ionic is False
    assert any("malformed XML" in w for w in broken.warnings)
    assert len(broken.corruption) == 1
    assert "well-formed" in broken.corruption[0]


def test_json_round_trip(vasp_reference: Path) -> None:
    doc = parse_calculation(vasp_reference / "si_relax_plain_small")
    data = json.loads(json.dumps(doc.as_dict(), allow_nan=False))
    back = VaspCalcDoc.from_dict(data)
    assert back == doc
    assert back.parameters.potcar_set == ("PAW_PBE Si 05Jan2001",)


# ----------------------------------------------------------------------------- synthetic cases
_HEADER_ONLY_VASPRUN = """<?xml version="1.0" encoding="ISO-8859-1"?>
<modeling>
 <generator>
  <i name="program" type="string">vasp </i>
  <i name="version" type="string">6.3.2 </i>
 </generator>
 <incar>
  <i type="int" name="NSW">    100</i>
  <i type="int" name="IBRION">     2</i>
  <i name="ENCUT">    400.00000000</i>
 </incar>
"""


def test_crashed_run_gives_status_and_message(tmp_path: Path) -> None:
    (tmp_path / "OSZICAR").write_text("")
    (tmp_path / "vasprun.xml").write_text(_HEADER_ONLY_VASPRUN)
    (tmp_path / "vasp.out").write_text(
        " running on   16 total cores\n WARNING: stress and forces are not correct\n"
        " Error EDDDAV: Call to ZHEGV failed. Returncode =   7 1  16\n"
    )
    doc = parse_calculation(tmp_path)
    assert doc.status == "crashed"
    assert doc.error_message is not None
    assert "EDDDAV" in doc.error_message
    assert "WARNING" not in doc.error_message
    assert doc.energy_sigma0 is None
    assert doc.converged_ionic is False
    assert doc.parameters.encut == 400.0
    assert doc.parameters.vasp_version == "6.3.2"


def test_vasp6_error_box(tmp_path: Path) -> None:
    (tmp_path / "stdout").write_text(
        " -----------------------------------------------------------------------------\n"
        "|     EEEEEEE  RRRRRR   RRRRRR   OOOOOOO  RRRRRR      ###     ###     ###      |\n"
        "|     E        R     R  R     R  O     O  R     R     ###     ###     ###      |\n"
        "|                                                                             |\n"
        "|     The requested number of bands is smaller than the number of occupied   |\n"
        "|     states.                                                                 |\n"
        " -----------------------------------------------------------------------------\n"
    )
    msg = read_error_message(tmp_path)
    assert msg is not None
    assert "number of bands is smaller" in msg
    assert "EEEE" not in msg
    assert parse_calculation(tmp_path).status == "crashed"


def test_no_output_folder_and_bad_paths(tmp_path: Path) -> None:
    (tmp_path / "INCAR").write_text("ENCUT = 400\n")
    doc = parse_calculation(tmp_path)
    assert doc.status == "no_output"
    assert doc.n_ionic_steps == 0
    with pytest.raises(ParseError, match="no such file"):
        parse_calculation(tmp_path / "missing")
    (tmp_path / "notes.txt").write_text("hello\n")
    with pytest.raises(ParseError, match="not an OUTCAR") as info:
        parse_calculation(tmp_path / "notes.txt")
    assert isinstance(info.value, PqdflowError)
    assert info.value.path == tmp_path / "notes.txt"
    (tmp_path / "OUTCAR").write_text("")
    with pytest.raises(ParseError, match="empty"):
        parse_calculation(tmp_path / "OUTCAR")
    assert parse_calculation(tmp_path).status == "no_output"


def test_nelm_hit_is_not_converged(vasp_reference: Path, tmp_path: Path) -> None:
    # VASP 5 prints no "aborting loop" line when the SCF loop stops at NELM
    text = (vasp_reference / "si_relax_plain_small/OUTCAR").read_text()
    last = text.rfind("aborting loop because EDIFF is reached")
    (tmp_path / "OUTCAR").write_text(text[:last] + "x" * 10 + text[last + 39 :])
    doc = parse_calculation(tmp_path / "OUTCAR")
    assert doc.converged_electronic is False
    assert doc.status == "unconverged"
    assert doc.steps[0]["scf_converged"] is True
    # vasprun: NELM equal to the SCF count of the last step (4) -> not converged
    xml = (vasp_reference / "si_relax_plain_small/vasprun.xml").read_text()
    xml = re.sub(r'(name="NELM">)\s*100', r"\g<1>4", xml)
    (tmp_path / "vasprun.xml").write_text(xml)
    vdoc = parse_calculation(tmp_path / "vasprun.xml")
    assert vdoc.steps[-1]["n_scf"] == 4
    assert vdoc.converged_electronic is False
    assert vdoc.status == "unconverged"


def test_cut_gzip_stream(vasp_reference: Path, tmp_path: Path) -> None:
    raw = (vasp_reference / "h_on_ir16_slab_relax_smearing/OUTCAR.gz").read_bytes()
    (tmp_path / "OUTCAR.gz").write_bytes(raw[: len(raw) // 2])
    doc = parse_calculation(tmp_path / "OUTCAR.gz")
    assert doc.status == "truncated"
    assert doc.converged_ionic is False
    assert 0 < doc.n_ionic_steps < 13
    assert any("compressed stream" in w for w in doc.warnings)
    # the same bytes decompressed and recompressed whole are read transparently
    (tmp_path / "OUTCAR2").write_bytes(gzip.compress(gzip.decompress(raw)))
    assert parse_calculation(tmp_path / "OUTCAR2").n_ionic_steps == 13

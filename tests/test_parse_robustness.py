"""The parser on real VASP files as clusters and users deliver them.

Every case is built inside the test from the project's real reference outputs
(``../shared/vasp_reference``), changed the way real files get changed or damaged: line
endings converted (a copy through Windows or a zip), recompressed with bzip2/xz, a block of
NUL bytes written over the data (a file system that lost writes), two runs in one file, step
records cut out or swapped, NELM lowered so that steps that printed "EDIFF is reached" are
NELM-limited, and VASP >= 6.4 banners and vasprun.xml energy labels. Each test says how its
case was built; expected values come from the untouched originals (or their README).
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pqdflow.analysis.neb_parse import parse_neb
from pqdflow.analysis.outcar import scan_outcar
from pqdflow.analysis.vasp import VaspCalcDoc, parse_calculation
from pqdflow.errors import ParseError

E_TOL = 1e-6
CASES = [
    "feo_afm_ggau_relax28",
    "fes2_slab_relax_truncated_diverging",
    "h_on_ir16_slab_relax_smearing",
    "mapi_hse06_static",
    "si_relax_ionic_unconverged_nsw5",
    "si_relax_plain_small",
    "si_static_unfinished_killed_in_scf",
    "y2mg4p2o8_double_relax_168steps",
    "nh3_inversion_cineb_vtst/02",
]
_STEP_START = re.compile(rb"^[^\n]*- Iteration +(\d+)\( *1\)", re.M)


def _plain(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


def _copy_tree(src: Path, dst: Path, change: Callable[[bytes], bytes]) -> Path:
    """Copy a case folder, passing every file's (decompressed) bytes through ``change``."""
    for f in sorted(src.rglob("*")):
        target = dst / f.relative_to(src)
        if f.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        data = change(_plain(f))
        target.write_bytes(gzip.compress(data, 1) if f.suffix == ".gz" else data)
    return dst


def _same_document(doc: VaspCalcDoc) -> dict[str, Any]:
    """The document without where it was read from."""
    data = doc.as_dict()
    for key in ("path", "source_files", "provenance"):
        data.pop(key)
    return data


def _steps(text: bytes) -> tuple[bytes, list[bytes]]:
    """An OUTCAR cut into its header and one piece per ionic step (first SCF line onwards)."""
    starts = [m.start() for m in _STEP_START.finditer(text)]
    ends = [*starts[1:], len(text)]
    return text[: starts[0]], [text[a:b] for a, b in zip(starts, ends, strict=True)]


# ----------------------------------------------------------------------------- line endings
@pytest.mark.parametrize("ending", [b"\r\n", b"\r"])
@pytest.mark.parametrize("case", CASES)
def test_line_endings_do_not_change_the_document(
    vasp_reference: Path, tmp_path: Path, case: str, ending: bytes
) -> None:
    """Every file of the case converted to CRLF (Windows) or CR (old Mac) line ends."""
    original = parse_calculation(vasp_reference / case)
    copy = _copy_tree(vasp_reference / case, tmp_path / "c", lambda b: b.replace(b"\n", ending))
    converted = parse_calculation(copy)
    assert _same_document(converted) == _same_document(original)
    assert converted.status == original.status != "corrupt"


def test_crlf_neb_keeps_image_forces(vasp_reference: Path, tmp_path: Path) -> None:
    """The NH3 CI-NEB tree with every file converted to CRLF: forces survive, not only energies."""
    src = vasp_reference / "nh3_inversion_cineb_vtst"
    copy = _copy_tree(src, tmp_path / "neb", lambda b: b.replace(b"\n", b"\r\n"))
    original, converted = parse_neb(src), parse_neb(copy)
    # README image table: max F (TOTAL-FORCE) of images 01..03
    assert converted.max_forces == pytest.approx([0.010787, 0.005218, 0.008742], abs=1e-5)
    assert converted.tangential_forces == original.tangential_forces
    assert None not in converted.tangential_forces
    assert converted.climbing_image == original.climbing_image == 2
    assert converted.barrier == original.barrier
    assert converted.energies == original.energies


def test_streaming_piece_size_does_not_matter(vasp_reference: Path, tmp_path: Path) -> None:
    """The 28-step FeO OUTCAR (CRLF copy) scanned in 4 kB pieces and in one piece."""
    target = tmp_path / "OUTCAR"
    target.write_bytes(
        _plain(vasp_reference / "feo_afm_ggau_relax28/OUTCAR").replace(b"\n", b"\r\n")
    )
    small, whole = scan_outcar(target, piece_bytes=4096), scan_outcar(target)
    assert len(small.steps) == len(whole.steps) == 28
    assert small.steps == whole.steps
    assert small.forces is not None
    assert whole.forces is not None
    assert (small.forces == whole.forces).all()
    assert small.params == whole.params


# ----------------------------------------------------------------------------- compression
@pytest.mark.parametrize(
    ("suffix", "compress"),
    [(".gz", gzip.compress), (".bz2", bz2.compress), (".xz", lzma.compress)],
)
def test_gzip_bzip2_xz(
    vasp_reference: Path, tmp_path: Path, suffix: str, compress: Callable[[bytes], bytes]
) -> None:
    """The Si NSW=5 OUTCAR recompressed; then cut in half; then 64 bytes zeroed inside."""
    src = vasp_reference / "si_relax_ionic_unconverged_nsw5"
    plain = parse_calculation(src / "OUTCAR")
    packed = compress((src / "OUTCAR").read_bytes())
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / f"OUTCAR{suffix}").write_bytes(packed)
    (tmp_path / "no_name").write_bytes(packed)  # recognised by its content
    for doc in (parse_calculation(folder), parse_calculation(tmp_path / "no_name")):
        assert doc.n_ionic_steps == plain.n_ionic_steps == 5
        assert doc.energy_sigma0 == plain.energy_sigma0
        assert doc.max_force == plain.max_force
        assert doc.status == "unconverged"
    cut = tmp_path / f"OUTCAR{suffix}"
    cut.write_bytes(packed[: len(packed) // 2])
    doc = parse_calculation(cut)
    assert doc.status == "truncated"
    assert doc.n_ionic_steps < 5
    assert any("compressed stream ends early" in w for w in doc.warnings)
    damaged = bytearray(packed)
    damaged[len(packed) // 2 : len(packed) // 2 + 64] = bytes(64)
    cut.write_bytes(bytes(damaged))
    doc = parse_calculation(cut)
    assert doc.status == "corrupt"
    assert doc.converged_ionic is False
    assert any("compressed stream is damaged" in r for r in doc.corruption)


# ----------------------------------------------------------------------------- NUL blocks
def _nul_over_middle(src: Path, target: Path, size: int) -> tuple[VaspCalcDoc, int]:
    """Parse ``src`` with ``size`` bytes from its middle overwritten by NULs (same length)."""
    data = _plain(src)
    at = len(data) // 2
    target.write_bytes(data[:at] + bytes(size) + data[at + size :])
    doc = parse_calculation(target)
    assert doc.status == "corrupt"
    assert doc.converged_ionic is False
    assert doc.converged_electronic is not True
    assert any(
        f"{size} NUL bytes in 1 block(s), the first at byte {at}" in r for r in doc.corruption
    )
    return doc, at


def test_nul_block_over_outcar_data(vasp_reference: Path, tmp_path: Path) -> None:
    """64 kB of the FeO OUTCAR, from its middle, overwritten by NUL bytes (same file size)."""
    src = vasp_reference / "feo_afm_ggau_relax28/OUTCAR"
    doc, _ = _nul_over_middle(src, tmp_path / "OUTCAR", 65536)
    assert doc.n_ionic_steps < 28  # the steps written there are gone
    # the steps that lost their records are named, too
    assert any("out of order" in r and "missing" in r for r in doc.corruption)


def test_corrupt_outcar_defers_to_intact_vasprun(vasp_reference: Path, tmp_path: Path) -> None:
    """Si folder whose OUTCAR has 16 kB of NULs over its middle; vasprun.xml untouched."""
    src = vasp_reference / "si_relax_plain_small"
    shutil.copytree(src, tmp_path / "run")
    _nul_over_middle(src / "OUTCAR", tmp_path / "run/OUTCAR", 16384)
    doc, clean = parse_calculation(tmp_path / "run"), parse_calculation(src / "vasprun.xml")
    assert doc.status == "ok"
    assert doc.corruption == []
    assert any(
        "OUTCAR is corrupt: steps and energies are read from vasprun.xml" in w for w in doc.warnings
    )
    assert doc.steps == clean.steps
    assert doc.energy_sigma0 == pytest.approx(-10.84671647, abs=E_TOL)


def test_nul_tail_after_a_crash(vasp_reference: Path, tmp_path: Path) -> None:
    """Si OUTCAR cut after its 2nd step, then 8 kB of NULs (a node died; size kept, data lost)."""
    data = _plain(vasp_reference / "si_relax_plain_small/OUTCAR")
    header, steps = _steps(data)
    (tmp_path / "OUTCAR").write_bytes(header + steps[0] + steps[1] + bytes(8192))
    doc = parse_calculation(tmp_path / "OUTCAR")
    assert doc.status == "corrupt"
    assert doc.finished is False
    assert doc.n_ionic_steps == 2
    assert doc.converged_ionic is False
    reference = parse_calculation(vasp_reference / "si_relax_plain_small/OUTCAR")
    assert doc.steps == reference.steps[:2]  # what was written before the NULs is kept


def test_nul_block_in_vasprun_and_nul_only_file(vasp_reference: Path, tmp_path: Path) -> None:
    """4 kB of NULs over the middle of the Si vasprun.xml; and a file of NUL bytes only."""
    src = vasp_reference / "si_relax_plain_small/vasprun.xml"
    _nul_over_middle(src, tmp_path / "vasprun.xml", 4096)
    (tmp_path / "blank").write_bytes(bytes(10000))
    with pytest.raises(ParseError, match="NUL bytes"):
        parse_calculation(tmp_path / "blank")
    (tmp_path / "run").mkdir()
    (tmp_path / "run/OUTCAR").write_bytes(bytes(10000))
    only_nul = parse_calculation(tmp_path / "run")
    assert only_nul.status == "corrupt"
    assert only_nul.n_ionic_steps == 0


# ----------------------------------------------------------------------------- two runs, disorder
def test_outcar_holding_two_runs(vasp_reference: Path, tmp_path: Path) -> None:
    """Si OUTCAR appended to itself; and Si NSW=5 steps 1-2, the whole 3-step run, steps 3-5."""
    small = _plain(vasp_reference / "si_relax_plain_small/OUTCAR")
    (tmp_path / "appended").mkdir()
    (tmp_path / "appended/OUTCAR").write_bytes(small + small)
    doc = parse_calculation(tmp_path / "appended")
    assert doc.status == "corrupt"
    assert doc.converged_ionic is False
    assert "second VASP run" in doc.corruption[0]
    assert "after the first run had finished" in doc.corruption[0]

    header, steps = _steps(_plain(vasp_reference / "si_relax_ionic_unconverged_nsw5/OUTCAR"))
    mixed = header + b"".join(steps[:2]) + small + b"".join(steps[2:])
    (tmp_path / "interleaved").mkdir()
    (tmp_path / "interleaved/OUTCAR").write_bytes(mixed)
    doc = parse_calculation(tmp_path / "interleaved")
    assert doc.status == "corrupt"
    assert any("runs interleaved" in r for r in doc.corruption)
    assert any("ionic step 1 completes after step 2" in r for r in doc.corruption)


def test_step_records_out_of_order(vasp_reference: Path, tmp_path: Path) -> None:
    """FeO OUTCAR with ionic steps 2 and 3 swapped; and with step 5 cut out."""
    header, steps = _steps(_plain(vasp_reference / "feo_afm_ggau_relax28/OUTCAR"))
    swapped = [steps[0], steps[2], steps[1], *steps[3:]]
    (tmp_path / "OUTCAR").write_bytes(header + b"".join(swapped))
    doc = parse_calculation(tmp_path / "OUTCAR")
    assert doc.status == "corrupt"
    assert doc.corruption == [
        "step records out of order: ionic step 3 completes where step 2 was due (the record of "
        "step 2 is missing); ionic step 2 completes after step 3"
    ]
    assert doc.n_ionic_steps == 28

    (tmp_path / "OUTCAR").write_bytes(header + b"".join(steps[:4] + steps[5:]))
    doc = parse_calculation(tmp_path / "OUTCAR")
    assert doc.status == "corrupt"
    assert doc.n_ionic_steps == 27
    assert "ionic step 6 completes where step 5 was due" in doc.corruption[0]


def test_vasprun_holding_two_runs(vasp_reference: Path, tmp_path: Path) -> None:
    """Si vasprun.xml appended to itself; and cut after its 1st step with the NSW=5 run inside."""
    small = _plain(vasp_reference / "si_relax_plain_small/vasprun.xml")
    (tmp_path / "vasprun.xml").write_bytes(small + small)
    doc = parse_calculation(tmp_path / "vasprun.xml")
    assert doc.status == "corrupt"
    assert doc.n_ionic_steps == 3  # everything before the second document is read
    assert "well-formed" in doc.corruption[0]
    other = _plain(vasp_reference / "si_relax_ionic_unconverged_nsw5/vasprun.xml")
    first = small.index(b"</calculation>") + len(b"</calculation>")
    (tmp_path / "vasprun.xml").write_bytes(small[:first] + other + small[first:])
    doc = parse_calculation(tmp_path / "vasprun.xml")
    assert doc.status == "corrupt"
    assert doc.converged_ionic is False


# ----------------------------------------------------------------------------- NELM per step
def _with_nelm(text: bytes, old: int, new: int) -> bytes:
    """Set NELM in every echo (INCAR, parameter block, vasprun ``<i name="NELM">``)."""
    text, n = re.subn(rb"(NELM\W{1,12}?)\b%d\b" % old, rb"\g<1>%d" % new, text)
    assert n >= 1
    return text


def test_nelm_judged_per_step_outcar(vasp_reference: Path, tmp_path: Path) -> None:
    """Si OUTCAR (SCF loops of 10, 4, 4 iterations, each printing "EDIFF is reached").

    NELM is lowered from 100 to 4: every step then took NELM iterations, so none converged,
    although VASP printed "EDIFF is reached" for each. With NELM = 5 only step 1 did not.
    """
    text = _plain(vasp_reference / "si_relax_plain_small/OUTCAR")
    scf = [max(map(int, re.findall(rb"Iteration +\d+\( *(\d+)\)", s))) for s in _steps(text)[1]]
    assert scf == [10, 4, 4]
    assert text.count(b"aborting loop because EDIFF is reached") == 3
    for nelm, expected, status in ((4, [False] * 3, "unconverged"), (5, [False, True, True], "ok")):
        (tmp_path / "OUTCAR").write_bytes(_with_nelm(text, 100, nelm))
        doc = parse_calculation(tmp_path / "OUTCAR")
        assert doc.parameters.nelm == nelm
        assert [s["scf_converged"] for s in doc.steps] == expected
        assert doc.converged_electronic is expected[-1]
        assert doc.status == status


def test_nelm_judged_per_step_vasprun(vasp_reference: Path, tmp_path: Path) -> None:
    """Si vasprun.xml (scsteps 10, 4, 4) with NELM lowered from 100 to 5."""
    text = _plain(vasp_reference / "si_relax_plain_small/vasprun.xml")
    (tmp_path / "vasprun.xml").write_bytes(_with_nelm(text, 100, 5))
    doc = parse_calculation(tmp_path / "vasprun.xml")
    assert [s["n_scf"] for s in doc.steps] == [10, 4, 4]
    assert [s["scf_converged"] for s in doc.steps] == [False, True, True]
    assert doc.converged_electronic is True


def test_vasprun_nelm_is_the_scf_one(vasp_reference: Path) -> None:
    """VASP 5 vasprun.xml repeats NELM under "response functions" (there 1, the GW loop count).

    The NH3 NEB vasprun.xml has NELM 60 then 1: the SCF limit is the first (the image OUTCARs
    say NELM = 60). Reading the last made every SCF loop "stopped by NELM".
    """
    text = (vasp_reference / "nh3_inversion_cineb_vtst/vasprun.xml").read_bytes()
    assert re.findall(rb'name="NELM">\s*(\d+)', text) == [b"60", b"1"]
    doc = parse_calculation(vasp_reference / "nh3_inversion_cineb_vtst/vasprun.xml")
    assert doc.parameters.nelm == 60
    assert all(s["scf_converged"] for s in doc.steps)


# ----------------------------------------------------------------------------- VASP 6.4 / 6.5
def test_vasp64_vasprun_energy_labels(vasp_reference: Path, tmp_path: Path) -> None:
    """H/Ir16 vasprun.xml (VASP 5.4.1, mislabelled) relabelled as VASP >= 6.4 writes it.

    Each ``<calculation>``'s own ``e_wo_entrp`` / ``e_0_energy`` are set to the values of its
    last ``<scstep>`` (right in every version) and the version to 6.4.2: same energies.
    """
    text = _plain(vasp_reference / "h_on_ir16_slab_relax_smearing/vasprun.xml.gz").decode("latin-1")

    def relabel(calc: re.Match[str]) -> str:
        body = calc.group(0)
        last = body[body.rindex("<scstep>") : body.rindex("</scstep>")]
        own = body.rindex("<energy>")
        for name in ("e_wo_entrp", "e_0_energy"):
            value = re.search(rf'name="{name}">([^<]*)<', last)
            assert value is not None
            tail = re.sub(rf'(name="{name}">)[^<]*<', rf"\g<1>{value.group(1)}<", body[own:])
            body = body[:own] + tail
        return body

    text, n = re.subn(r"<calculation>.*?</calculation>", relabel, text, flags=re.S)
    assert n == 13
    text = re.sub(r'(name="version" type="string">)[^<]*', r"\g<1>6.4.2 ", text)
    (tmp_path / "vasprun.xml").write_text(text, encoding="latin-1")
    doc = parse_calculation(tmp_path / "vasprun.xml")
    assert doc.parameters.vasp_version == "6.4.2"
    assert doc.energy_without_entropy == pytest.approx(-130.44824026, abs=E_TOL)
    assert doc.energy_sigma0 == pytest.approx(-130.46616758, abs=E_TOL)
    assert doc.free_energy == pytest.approx(-130.48409490, abs=E_TOL)


@pytest.mark.parametrize(
    "banner",
    [
        b" vasp.6.4.3 19Mar24 (build Nov 30 2024 18:10:10) complex",
        b" running    4 mpi-ranks, with    1 threads/rank, on    1 nodes\n"
        b" vasp.6.5.1 10Mar25 (build Mar 13 2025 10:03:07) complex",
    ],
)
def test_vasp6_banners(vasp_reference: Path, tmp_path: Path, banner: bytes) -> None:
    """Si OUTCAR, its VASP 5.4.1 banner replaced by a 6.4 / 6.5 one, in a file not named OUTCAR."""
    text = _plain(vasp_reference / "si_relax_plain_small/OUTCAR")
    first = text.index(b"\n")
    (tmp_path / "run.log").write_bytes(banner + text[first:])
    doc = parse_calculation(tmp_path / "run.log")
    assert doc.parameters.vasp_version is not None
    assert doc.parameters.vasp_version == banner.splitlines()[-1].decode().strip()
    assert doc.status == "ok"
    assert doc.energy_sigma0 == pytest.approx(-10.84671647, abs=E_TOL)


def test_reference_cases_are_not_corrupt(vasp_reference: Path) -> None:
    """No false alarm: every real reference calculation is clean and DFT-only."""
    for case in [*CASES, "nh3_inversion_cineb_vtst/01", "nh3_inversion_cineb_vtst/03"]:
        doc = parse_calculation(vasp_reference / case)
        assert doc.corruption == [], case
        assert doc.n_ml_steps == 0
        assert doc.n_dft_steps == doc.n_ionic_steps
        assert doc.energy_kind == ("dft" if doc.n_ionic_steps else None)
    for f in (vasp_reference / "y2mg4p2o8_double_relax_168steps").glob("*.gz"):
        assert parse_calculation(f).corruption == [], f


def test_contcar_of_another_cell_is_ignored_with_a_warning(
    vasp_reference: Path, tmp_path: Path
) -> None:
    """A CONTCAR of other atoms next to real Si outputs (built here: the real Si outputs plus a
    16-atom rock-salt CONTCAR written by ASE) never becomes the final structure."""
    import shutil

    from ase.build import bulk
    from ase.io import write

    folder = tmp_path / "mixed"
    shutil.copytree(vasp_reference / "si_relax_plain_small", folder)
    for f in folder.iterdir():
        f.chmod(0o644)
    write(folder / "CONTCAR", bulk("NaCl", "rocksalt", a=5.6).repeat(2), format="vasp")
    doc = parse_calculation(folder)
    assert doc.structure is not None
    assert doc.structure["symbols"] == ["Si", "Si"]
    assert doc.structure["source"] != "CONTCAR"
    assert any("CONTCAR holds 16 atoms but the outputs 2" in w for w in doc.warnings)

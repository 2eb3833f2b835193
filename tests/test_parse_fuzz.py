"""Fuzz: every reference OUTCAR and vasprun.xml cut, corrupted and line-ending-converted.

* Truncation: each file cut at >= 30 offsets, every second cut in a CRLF copy. A cut file
  must give a typed ParseError or a document whose status is not "ok" and which is never
  ionically converged. Cuts are taken before VASP's end-of-run marker (OUTCAR "General
  timing", vasprun ``</modeling>``), so every cut file is really incomplete.
* Corruption (files up to 2 MB): NUL blocks over the data or after a cut (status
  ``corrupt``, never converged), random bytes replaced, a block written twice, two files
  written into one in alternating blocks. Every variant gives a strict-JSON document or a
  ParseError; no other exception.
* ``pqdflow parse`` on such files, and on an NEB tree with a damaged image, prints a
  document or one error line, never a traceback.
"""

from __future__ import annotations

import gzip
import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from pqdflow.analysis.vasp import VaspCalcDoc, parse_calculation
from pqdflow.cli import main
from pqdflow.errors import ParseError

N_CUTS = 32
SMALL = 2_000_000  # bytes: files the corruption fuzz uses


def _reference_files(root: Path) -> list[Path]:
    files = [*root.rglob("OUTCAR*"), *root.rglob("vasprun.xml*")]
    return sorted(f for f in files if f.is_file())


def _offsets(data: bytes, end_marker: bytes, seed: int) -> list[int]:
    end = data.find(end_marker)
    end = len(data) if end < 0 else end
    rng = random.Random(seed)
    evenly = [end * k // (N_CUTS - 8) for k in range(N_CUTS - 8)]
    return sorted({*evenly, *(rng.randrange(end) for _ in range(8)), 0, 1, max(0, end - 1)})


def test_reference_set_is_complete(vasp_reference: Path) -> None:
    names = {f.name for f in _reference_files(vasp_reference)}
    assert {"OUTCAR", "OUTCAR.gz", "OUTCAR.relax1.gz", "vasprun.xml", "vasprun.xml.gz"} <= names


def test_truncation_fuzz(vasp_reference: Path, tmp_path: Path) -> None:
    results: dict[str, int] = {"docs": 0, "parse_errors": 0}
    for i, src in enumerate(_reference_files(vasp_reference)):
        raw = src.read_bytes()
        data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        is_xml = "vasprun" in src.name
        marker = b"</modeling>" if is_xml else b"General timing"
        cuts = _offsets(data, marker, seed=i)
        assert len(cuts) >= 30, src
        crlf = data.replace(b"\n", b"\r\n")
        target = tmp_path / ("vasprun.xml" if is_xml else "OUTCAR")
        for j, cut in enumerate(cuts):
            if j % 2:  # the same place in a copy with Windows line ends
                target.write_bytes(crlf[: cut + data.count(b"\n", 0, cut)])
            else:
                target.write_bytes(data[:cut])
            try:
                doc = parse_calculation(target)
            except ParseError as exc:
                refused = exc.path
                results["parse_errors"] += 1
                assert refused == target
                continue
            where = f"{src} cut at {cut}/{len(data)}"
            assert doc.status != "ok", where
            assert doc.converged_ionic is not True, where
            assert doc.finished is False, where
            results["docs"] += 1
    # only the empty cuts may be refused; every other cut still gives a partial document
    assert results["docs"] > 10 * results["parse_errors"]


@pytest.mark.parametrize(
    "case", ["h_on_ir16_slab_relax_smearing", "y2mg4p2o8_double_relax_168steps"]
)
def test_truncated_compressed_files(vasp_reference: Path, tmp_path: Path, case: str) -> None:
    for src in sorted((vasp_reference / case).glob("*.gz")):
        raw = src.read_bytes()
        for k in range(1, 6):
            target = tmp_path / src.name
            target.write_bytes(raw[: len(raw) * k // 6])
            doc = parse_calculation(target)
            assert doc.status == "truncated", target
            assert doc.converged_ionic is not True
            assert any("compressed stream" in w for w in doc.warnings)


# ----------------------------------------------------------------------------- corruption
def _nul_over(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    at, size = rng.randrange(len(data) // 4, len(data)), rng.choice((512, 4096, 65536))
    return data[:at] + bytes(size) + data[at + size :], at


def _nul_after_cut(data: bytes, rng: random.Random) -> tuple[bytes, int]:
    at = rng.randrange(len(data) // 4, len(data))
    return data[:at] + bytes(rng.choice((1, 4096))), at


def _bytes_replaced(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(16):
        out[rng.randrange(len(out))] = rng.choice(b"\x00\r\n\xff\xe9<>-=*0123456789 ")
    return bytes(out)


def _block_twice(data: bytes, rng: random.Random) -> bytes:
    a, b = sorted(rng.randrange(len(data)) for _ in range(2))
    return data[:b] + data[a : a + 8192] + data[b:]


def _two_writers(data: bytes, other: bytes) -> bytes:
    """Two runs writing one file, each at its own offsets: 8 kB blocks alternate."""
    n = max(len(data), len(other))
    return b"".join((data, other)[k % 2][i : i + 8192] for k, i in enumerate(range(0, n, 8192)))


def _checked(target: Path) -> VaspCalcDoc | None:
    """Parse; a document must be strict JSON, a refusal a ParseError naming the file."""
    try:
        doc = parse_calculation(target)
    except ParseError as exc:
        refused = exc.path
        assert refused == target
        return None
    json.dumps(doc.as_dict(), allow_nan=False)
    return doc


def test_corruption_fuzz(vasp_reference: Path, tmp_path: Path) -> None:
    files = [f for f in _reference_files(vasp_reference) if len(_decompressed(f)) <= SMALL]
    assert len(files) >= 10
    for i, src in enumerate(files):
        data, rng = _decompressed(src), random.Random(1000 + i)
        target = tmp_path / ("vasprun.xml" if "vasprun" in src.name else "OUTCAR")
        for make in (_nul_over, _nul_after_cut):
            changed, at = make(data, rng)
            target.write_bytes(changed)
            doc = _checked(target)
            where = f"{src} {make.__name__} at {at}"
            assert doc is not None, where
            assert doc.status == "corrupt", where
            assert doc.converged_ionic is False, where
            assert doc.converged_electronic is not True, where
            assert any(f"the first at byte {at}" in r for r in doc.corruption), where
        other = _decompressed(files[(i + 1) % len(files)])
        variants = (_bytes_replaced(data, rng), _block_twice(data, rng), _two_writers(data, other))
        for changed in variants:
            target.write_bytes(changed)
            _checked(target)


def _decompressed(path: Path) -> bytes:
    raw = path.read_bytes()
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw


# ----------------------------------------------------------------------------- CLI
def _cli(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> None:
    """``pqdflow parse PATH``: a document (strict JSON with --json) or one error line."""
    rc = main(["parse", str(path), *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, path
    if rc == 2:
        assert err.startswith("pqdflow parse: error: "), err
        assert err.count("\n") == 1, err
        assert "unexpected parser failure" not in err, err
    else:
        assert rc == 0, (path, rc)
        if "--json" in extra:
            json.loads(out)


def test_cli_never_prints_a_traceback(
    vasp_reference: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(7)
    changes: list[Callable[[bytes], bytes]] = [
        lambda d: d.replace(b"\n", b"\r\n"),
        lambda d: d[: len(d) // 3],
        lambda d: _nul_over(d, rng)[0],
        lambda d: _nul_after_cut(d, rng)[0],
        lambda d: _bytes_replaced(d, rng),
        lambda d: d + d,
        lambda d: bytes(len(d)),
    ]
    for case in ("si_relax_plain_small", "si_static_unfinished_killed_in_scf"):
        for name in ("OUTCAR", "vasprun.xml"):
            data = (vasp_reference / case / name).read_bytes()
            for k, change in enumerate(changes):
                target = tmp_path / f"{case}-{k}" / name
                target.parent.mkdir(exist_ok=True)
                target.write_bytes(change(data))
                _cli(target, capsys, "--json")
                _cli(target.parent, capsys)
    neb = shutil.copytree(vasp_reference / "nh3_inversion_cineb_vtst", tmp_path / "neb")
    for k, change in enumerate(changes):
        image = neb / "02" / "OUTCAR"
        image.write_bytes(
            change((vasp_reference / "nh3_inversion_cineb_vtst/02/OUTCAR").read_bytes())
        )
        _cli(neb, capsys)
        if k == 2:  # the NUL block: the image is named as corrupt
            assert '"corrupt_images": [\n    "02"' in _json_of(neb, capsys)


def _json_of(path: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["parse", str(path), "--json"]) == 0
    return capsys.readouterr().out

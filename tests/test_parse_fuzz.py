"""Truncation fuzz: every reference OUTCAR and vasprun.xml cut at >= 30 offsets.

A cut file must give a typed ParseError or a document whose status is not "ok" and which is
never ionically converged; no other exception is allowed. Cuts are taken before VASP's
end-of-run marker (OUTCAR "General timing", vasprun ``</modeling>``), so every cut file is
really incomplete.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

import pytest

from pqdflow.analysis.vasp import parse_calculation
from pqdflow.errors import ParseError

N_CUTS = 32


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
        target = tmp_path / ("vasprun.xml" if is_xml else "OUTCAR")
        for cut in cuts:
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

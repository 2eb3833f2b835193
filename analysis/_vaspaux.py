"""Small files next to VASP outputs: POSCAR/CONTCAR (selective dynamics), OSZICAR, stdout.

Used by :mod:`pqdflow.analysis.vasp` and :mod:`pqdflow.analysis.neb_parse`; the public
:func:`read_error_message` is re-exported by :mod:`pqdflow.analysis.vasp`.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pqdflow.analysis._vaspio import ScanResult, nan_to_none, num, read_chunks

__all__ = ["read_error_message", "read_poscar", "scan_oszicar"]

_STDOUT_NAMES = ("vasp.out", "stdout", "vasp_output", "vasp.log", "vasp.stdout", "std.out", "OUT")


def read_poscar(
    path: Path,
) -> tuple[list[str] | None, np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(symbols or None, cell, Cartesian positions, free mask or None); None if unreadable."""
    try:
        lines = path.read_text(errors="replace").splitlines()
        scale = float(lines[1].split()[0])
        cell = np.array([[float(x) for x in lines[i].split()[:3]] for i in (2, 3, 4)])
        if scale < 0:  # negative scale = target volume
            scale = (-scale / abs(np.linalg.det(cell))) ** (1 / 3)
        cell *= scale
        row, types = 5, None
        if not lines[5].split()[0].lstrip("+-").isdigit():
            types, row = [t.split("/")[0].split("_")[0] for t in lines[5].split()], 6
        counts = [int(x) for x in lines[row].split() if x.isdigit()]
        row += 1
        selective = lines[row].strip()[:1] in "sS"
        row += int(selective)
        cartesian = lines[row].strip()[:1] in "cCkK"
        body = [lines[row + 1 + k].split() for k in range(sum(counts))]
        pos = np.array([[float(x) for x in r[:3]] for r in body])
    except (ValueError, IndexError, OSError, ZeroDivisionError):
        return None
    if pos.shape != (sum(counts), 3) or not counts:
        return None
    positions = pos * scale if cartesian else pos @ cell
    free = None
    if selective:
        free = np.array([any(f.upper().startswith("T") for f in r[3:6]) for r in body])
    symbols = None
    if types and len(types) == len(counts):
        symbols = [s for s, n in zip(types, counts, strict=True) for _ in range(n)]
    return symbols, cell, positions, free


_ERROR_LINE = re.compile(
    r"^.*(?:\bERROR\b|VERY BAD NEWS|internal error|fatal error|ZBRENT: fatal|BAD TERMINATION"
    r"|Segmentation fault|SIGSEGV|forrtl: severe|not hermitian|LAPACK: Routine|MPI_ABORT"
    r"|DUE TO TIME LIMIT|oom-kill|Out Of Memory|Killed).*$",
    re.M | re.I,
)


def read_error_message(folder: str | Path) -> str | None:
    """VASP's (or the MPI launcher's) error text from the stdout files in ``folder``.

    Looks at ``vasp.out``, ``stdout``, ``vasp_output``, ``vasp.log`` ... and ``slurm-*.out``;
    collects VASP 6 ``ERROR`` boxes and lines naming an error (not warnings).

    Returns
    -------
    str or None
        Up to five distinct error lines joined by `` | ``, or ``None``.
    """
    folder = Path(folder)
    files = [folder / n for n in _STDOUT_NAMES] + sorted(folder.glob("slurm-*.out"))
    found: list[str] = []
    for f in files:
        if not f.is_file():
            continue
        with f.open("rb") as handle:
            handle.seek(max(0, f.stat().st_size - (2 << 20)))
            text = handle.read().decode("utf-8", errors="replace")
        lines = text.splitlines()
        for i, line in enumerate(lines):
            if "EEEEEEE  RRRRRR" in line:  # VASP 6 error box: keep its words, not the banner
                for box in lines[i + 1 : i + 30]:
                    words = box.strip(" |-")
                    if box.strip().startswith("---") and found:
                        break
                    if words and not set(words) <= set("ERO# "):
                        found.append(" ".join(words.split()))
        found += [" ".join(m.group(0).split()) for m in _ERROR_LINE.finditer(text)]
    unique = [s for s in dict.fromkeys(found) if s]
    return " | ".join(unique[:5]) if unique else None


def scan_oszicar(path: Path) -> ScanResult:
    scan = ScanResult(source=path)
    text = b"".join(read_chunks(path, scan))
    for m in re.finditer(rb"^ *(\d+) F= *(\S+) +E0= *(\S+)", text, re.M):
        if int(m.group(1)) != len(scan.steps) + 1 and not scan.corrupt:
            scan.flag_corrupt(
                f"step records out of order: step {int(m.group(1))} follows step {len(scan.steps)}"
            )
        scan.steps.append(
            {
                "kind": None,
                "free_energy": nan_to_none(num(m.group(2))),
                "energy_without_entropy": None,
                "energy_sigma0": nan_to_none(num(m.group(3))),
                "n_scf": None,
                "scf_converged": None,
            }
        )
    if scan.steps:
        scan.problems.append("only OSZICAR was found: energies have 8 digits, completion unknown")
    return scan

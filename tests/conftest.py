"""Shared test fixtures.

* ``shared_dir`` / ``vasp_reference``: the real data in ``../shared`` (never copied into the
  repo); tests that need it skip with a clear reason where the folder is absent.
* A tripwire (autouse): fake ``vasp*``/``mpirun``/``srun`` executables first on PATH that
  record any launch; a test that would have launched real VASP fails.
* No POTCAR library and a non-interactive matplotlib backend in every test.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("PQDFLOW_SHARED_DIR", REPO_ROOT.parent / "shared"))

_TRIPWIRE_NAMES = ("vasp", "vasp_std", "vasp_gam", "vasp_ncl", "mpirun", "srun", "mpiexec")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The project's ``../shared`` folder (paper, VASP reference outputs)."""
    if not SHARED_DIR.is_dir():
        pytest.skip(f"shared data folder {SHARED_DIR} is absent (set PQDFLOW_SHARED_DIR)")
    return SHARED_DIR


@pytest.fixture(scope="session")
def vasp_reference(shared_dir: Path) -> Path:
    """Folder of real VASP outputs documented in its README (``../shared/vasp_reference``)."""
    ref = shared_dir / "vasp_reference"
    if not (ref / "README.md").is_file():
        pytest.skip(f"real VASP reference outputs not found at {ref}")
    return ref


@pytest.fixture(autouse=True)
def _vasp_tripwire(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    bindir = tmp_path_factory.mktemp("tripwire-bin")
    marker = bindir / "LAUNCHED"
    for name in _TRIPWIRE_NAMES:
        exe = bindir / name
        exe.write_text(f'#!/bin/sh\necho "{name} $*" >> "{marker}"\nexit 97\n')
        exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.delenv("PMG_VASP_PSP_DIR", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    yield
    if marker.exists():
        pytest.fail(f"tripwire: a test tried to launch real VASP/MPI: {marker.read_text().strip()}")

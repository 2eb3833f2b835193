"""Defaults a new user meets: the physics backend for ``vib`` and ``run``, an SPDX licence."""

from __future__ import annotations

import tomllib
from pathlib import Path

from pqdflow.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def test_vib_and_run_default_to_chgnet_not_the_mock() -> None:
    parser = build_parser()
    assert parser.parse_args(["vib", "neb"]).backend == "chgnet"
    assert parser.parse_args(["run", "--example", "--out", "o"]).backend == "chgnet"


def test_licence_is_an_spdx_string() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT"  # a TOML table here is deprecated by setuptools

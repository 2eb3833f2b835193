"""Torch thread choice (no oversubscription, settable, recorded) and the one CHGNet warning
that is silenced."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from pqdflow.cli import main
from pqdflow.errors import InputError
from pqdflow.workflows.engine.ase_backend import CHGNET_TENSOR_WARNING, quiet_chgnet
from pqdflow.workflows.engine.threads import (
    DEFAULT_THREADS,
    THREADS_ENV,
    limit_blas_threads,
    resolve_threads,
)


@pytest.mark.parametrize(
    ("threads", "env", "expected"),
    [
        (None, {}, (DEFAULT_THREADS, "default")),
        (None, {"OMP_NUM_THREADS": "4"}, (None, "OMP_NUM_THREADS")),
        (None, {THREADS_ENV: "3", "OMP_NUM_THREADS": "4"}, (3, THREADS_ENV)),
        (2, {THREADS_ENV: "3"}, (2, "--threads")),
    ],
)
def test_thread_choice_precedence(
    threads: int | None, env: dict[str, str], expected: tuple[int | None, str]
) -> None:
    assert resolve_threads(threads, env) == expected
    assert DEFAULT_THREADS == 1  # measured: more threads than free cores is slower


@pytest.mark.parametrize(("threads", "env"), [(0, {}), (None, {THREADS_ENV: "two"})])
def test_bad_thread_count_is_an_error(threads: int | None, env: dict[str, str]) -> None:
    with pytest.raises(InputError, match="threads must be a whole number >= 1"):
        resolve_threads(threads, env)


def test_cli_threads_checked_before_anything_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    assert main(["run", "--example", "--backend", "mock", "--out", str(out), "--threads", "0"]) == 2
    assert "--threads" in capsys.readouterr().err
    assert not out.exists()


def test_blas_threads_capped_with_the_torch_count() -> None:
    """numpy's BLAS (one thread per core by default) is capped at the chosen count."""
    import numpy as np
    from threadpoolctl import threadpool_info, threadpool_limits

    np.linalg.eigh(np.eye(4))  # BLAS loaded
    with threadpool_limits(limits=None):  # restores the original counts afterwards
        assert limit_blas_threads(1) == 1
        blas = [lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"]
        assert blas
        assert set(blas) == {1}
        # None (the caller's OMP_NUM_THREADS rules) changes nothing and reports what is set
        assert limit_blas_threads(None) == 1


class Noisy(Calculator):
    """Emits the CHGNet tensor warning and another one from ``calculate``."""

    implemented_properties: list[str] = ["energy"]  # noqa: RUF012

    def calculate(self, atoms: Any = None, properties: Any = None, changes: Any = all_changes):
        super().calculate(atoms, properties, changes)
        msg = "Converting a tensor with requires_grad=True to a scalar may lead to trouble"
        warnings.warn_explicit(msg, UserWarning, "chgnet/model/model.py", 898, "chgnet.model.model")
        warnings.warn_explicit(msg, UserWarning, "other/place.py", 1, "other.place")
        warnings.warn("something else", UserWarning, stacklevel=1)
        self.results = {"energy": 0.0}


def test_only_chgnets_tensor_warning_is_silenced() -> None:
    atoms = Atoms("H", positions=[[0, 0, 0]])
    atoms.calc = quiet_chgnet(Noisy())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        atoms.get_potential_energy()
    seen = [(str(w.message), w.filename) for w in caught]
    assert ("something else", __file__) in seen  # other warnings still show
    assert any(f == "other/place.py" for _, f in seen)  # the message from elsewhere shows
    assert not any(f == "chgnet/model/model.py" for _, f in seen)  # chgnet's one does not
    assert CHGNET_TENSOR_WARNING.startswith("Converting a tensor")


_PROBE = """
import sys, warnings
from ase.build import bulk
from chgnet.model.dynamics import CHGNetCalculator
from pqdflow.workflows.engine.ase_backend import chgnet_calculator_factory, load_chgnet_model
atoms = bulk("Cu", "fcc", a=3.6)
if sys.argv[1] == "pqdflow":
    atoms.calc = chgnet_calculator_factory()()
else:
    atoms.calc = CHGNetCalculator(model=load_chgnet_model(), use_device="cpu")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    energy = atoms.get_potential_energy()
print(sum("requires_grad" in str(w.message) for w in caught), energy < 0)
"""


@pytest.mark.mlip
@pytest.mark.parametrize(("maker", "expected"), [("pqdflow", "0 True"), ("chgnet", "1 True")])
def test_chgnet_calculator_emits_no_tensor_warning(maker: str, expected: str) -> None:
    """torch warns once per process, so each calculator is probed in a fresh one: CHGNet's
    own calculator warns, pqdflow's does not."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _PROBE, maker],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert done.stdout.strip().splitlines()[-1] == expected

"""The backend registry, settings validation, the protocol, and the optional CHGNet backend."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from ase import Atoms

from pqdflow.documents.plan import CalcSpec
from pqdflow.errors import BackendError, BackendNotInstalledError
from pqdflow.workflows import backends
from pqdflow.workflows.backends import (
    Backend,
    BackendEntry,
    backend_names,
    get_backend,
    register_backend,
)
from pqdflow.workflows.engine import ase_backend
from pqdflow.workflows.engine.ase_backend import AseBackend
from pqdflow.workflows.engine.neb import NebSettings
from pqdflow.workflows.vasp.backend import VaspBackend


def cubic(a: float) -> Atoms:
    h = a / 2
    return Atoms(
        "CsPbBr3",
        positions=[(h, h, h), (0, 0, 0), (h, 0, 0), (0, h, 0), (0, 0, h)],
        cell=np.eye(3) * a,
        pbc=True,
    )


def test_unknown_backend_lists_the_choices() -> None:
    with pytest.raises(BackendError, match=r"'vsap'.*chgnet.*mock.*vasp"):
        get_backend("vsap")


def test_every_backend_resolves_by_name_vasp_included() -> None:
    assert {"mock", "chgnet", "vasp"} <= set(backend_names())
    assert "vasp" not in backend_names(in_process=True)
    vasp = get_backend("vasp")
    assert isinstance(vasp, VaspBackend)
    assert (vasp.vasp_cmd, vasp.gamma_vasp_cmd) == (["vasp_std"], ["vasp_gam"])
    # a worker's env (FireWorks' >>key<< convention) and explicit settings
    worker = get_backend("vasp", env={"vasp_cmd": "srun vasp_std", "gamma_vasp_cmd": "srun g"})
    assert (worker.vasp_cmd, worker.gamma_vasp_cmd) == (["srun", "vasp_std"], ["srun", "g"])
    mine = get_backend("vasp", vasp_cmd="mpirun -n 4 vasp_std", env={"vasp_cmd": "x"})
    assert mine.vasp_cmd == ["mpirun", "-n", "4", "vasp_std"]
    with pytest.raises(BackendError, match="worker's env has no 'my_cmd'"):
        get_backend("vasp", vasp_cmd=">>my_cmd<<")
    with pytest.raises(BackendError, match="vasp_cmdd"):
        get_backend("vasp", vasp_cmdd="vasp_std")


def test_adding_a_backend_is_one_entry(tmp_path: Path) -> None:
    def factory(settings: object, env: object) -> Backend:
        return AseBackend("mock-twin", ase_backend.mock_factory({}))

    register_backend(BackendEntry("mock-twin", factory, "test double", physics=False))
    try:
        assert "mock-twin" in backend_names(in_process=True)
        doc = get_backend("mock-twin").relax(
            CalcSpec("bulk", "bulk", cubic(5.9), relax_cell=True), tmp_path / "bulk"
        )
        assert doc.backend == "mock-twin"
        with pytest.raises(BackendError, match="already registered"):
            register_backend(BackendEntry("mock-twin", factory, "again"))
    finally:
        backends._REGISTRY.pop("mock-twin")


def test_unknown_setting_is_an_error() -> None:
    with pytest.raises(BackendError, match="fmaxx"):
        get_backend("mock", fmaxx=0.01)
    with pytest.raises(BackendError, match="positive"):
        get_backend("mock", fmax=-1.0)
    with pytest.raises(BackendError, match="optimizer"):
        get_backend("mock", optimizer="newton")
    with pytest.raises(BackendError, match="loose_optimizer"):
        get_backend("mock", neb_loose_optimizer="sgd")


def test_settings_reach_the_backend() -> None:
    backend = get_backend("mock", fmax=0.05, neb_fmax=0.1, neb_k=0.2)
    assert isinstance(backend, AseBackend)
    assert backend.settings.fmax == 0.05
    assert backend.settings.neb == NebSettings(fmax=0.1, k=0.2)
    described = backend.describe()
    assert described["backend"] == "mock"
    assert described["neb"]["fmax"] == 0.1


def test_mock_backend_implements_the_protocol(tmp_path: Path) -> None:
    backend = get_backend("mock")
    assert isinstance(backend, Backend)
    doc = backend.relax(CalcSpec("bulk", "bulk", cubic(5.6), relax_cell=True), tmp_path / "bulk")
    assert doc.backend == "mock"
    assert doc.converged
    assert 5.8 < np.mean(np.linalg.norm(doc.cell, axis=1)) < 6.05
    assert (tmp_path / "bulk" / "result.json").is_file()


def test_tight_relaxation_uses_the_endpoint_criterion(tmp_path: Path) -> None:
    backend = get_backend("mock", endpoint_fmax=0.001)
    atoms = cubic(5.95).repeat(2)
    atoms.rattle(0.05, seed=2)
    doc = backend.relax(CalcSpec("ep", "bulk", atoms, role="neb_initial"), tmp_path / "ep")
    assert doc.settings["fmax"] == 0.001
    assert doc.fmax < 0.001


def test_chgnet_missing_gives_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    # an injected import failure: importing chgnet.model now raises ImportError
    monkeypatch.setitem(sys.modules, "chgnet.model", None)
    with pytest.raises(BackendNotInstalledError, match=r"pip install torch==2\.13\.0"):
        get_backend("chgnet")
    with pytest.raises(ImportError):  # also an ImportError for generic handlers
        ase_backend.load_chgnet_model()


@pytest.mark.mlip
def test_chgnet_cubic_lattice_relaxes_to_about_six_angstrom(tmp_path: Path) -> None:
    pytest.importorskip("chgnet")
    backend = get_backend("chgnet")
    spec = CalcSpec("bulk", "bulk", cubic(5.874), relax_cell=True)
    doc = backend.relax(spec, tmp_path / "bulk")
    assert doc.backend == "chgnet"
    assert doc.converged
    lengths = np.linalg.norm(doc.cell, axis=1)
    assert np.all((lengths > 5.9) & (lengths < 6.1))

"""The embedded launchpad: durability after every change, exclusive locking, YAML loading."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import bson.json_util
import pytest
from fireworks import Firework, PyTask, Workflow

from pqdflow.errors import InputError, LaunchpadLockedError
from pqdflow.workflows.fireworks.launchpad import (
    EmbeddedLaunchPad,
    LaunchpadFileLock,
    embedded_store_path,
    launch_rapidfire,
    load_launchpad_file,
    open_embedded_launchpad,
)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _known_pytask(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tell FireWorks where PyTask lives; otherwise it imports every fireworks module
    (its test suite included) to find the class by name."""
    from fireworks.utilities import fw_serializers

    monkeypatch.setitem(
        fw_serializers.SAVED_FW_MODULES, "PyTask", "fireworks.user_objects.firetasks.script_task"
    )


def _chain(n: int) -> Workflow:
    fws = [
        Firework(
            PyTask(func="math.sqrt", args=[float(i * i)], stored_data_varname="root"),
            name=f"sqrt-{i}",
        )
        for i in range(n)
    ]
    return Workflow(fws, links_dict={fws[i]: [fws[i + 1]] for i in range(n - 1)}, name="chain")


def _states(store: Path) -> dict[str, str]:
    lp = EmbeddedLaunchPad(store, readonly=True)
    return {d["name"]: d["state"] for d in lp.fireworks.find({}, {"name": 1, "state": 1})}


def _launch_one(lp: EmbeddedLaunchPad, tmp_path: Path) -> bool:
    cwd = Path.cwd()
    n = launch_rapidfire(lp, tmp_path / "launches", max_launches=1)
    assert Path.cwd() == cwd
    return n == 1


def test_store_created_and_durable_after_each_launch(tmp_path: Path) -> None:
    store = embedded_store_path(tmp_path / "run")
    assert not store.exists()
    with open_embedded_launchpad(store) as lp:
        assert store.is_file()  # created (and reset) on first open
        lp.add_wf(_chain(3))
        # visible to another reader before the launcher closes the store
        assert sorted(_states(store).values()) == ["READY", "WAITING", "WAITING"]
        assert _launch_one(lp, tmp_path)
        on_disk = _states(store)
        assert on_disk["sqrt-0"] == "COMPLETED"
        assert on_disk["sqrt-1"] == "READY"
    # the stored result is in the launches collection of the file
    reader = EmbeddedLaunchPad(store, readonly=True)
    launch = reader.launches.find_one({"state": "COMPLETED"})
    assert launch["action"]["stored_data"]["root"] == pytest.approx(0.0)


def test_readonly_store_refuses_to_save_and_missing_store_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nothing was launched"):
        EmbeddedLaunchPad(tmp_path / "absent.json", readonly=True)
    store = tmp_path / "s.json"
    with open_embedded_launchpad(store):
        pass
    with pytest.raises(InputError, match="read-only"):
        EmbeddedLaunchPad(store, readonly=True).save()


def test_store_file_is_fireworks_mongomock_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FireWorks' own mongomock-persistence reader loads the file pqdflow writes."""
    import mongomock_persistence

    store = tmp_path / "s.json"
    with open_embedded_launchpad(store) as lp:
        lp.add_wf(_chain(2))
    raw = bson.json_util.loads(store.read_text())
    fireworks_docs = [d for _, d in raw["pqdflow"]["fireworks"]["documents"]]
    assert sorted(d["name"] for d in fireworks_docs) == ["sqrt-0", "sqrt-1"]
    # the way FireWorks itself opens a MONGOMOCK_SERVERSTORE_FILE
    monkeypatch.setenv("MONGOMOCK_SERVERSTORE_FILE", str(store))
    server = mongomock_persistence.ServerStore()
    server._finalizer.detach()  # this reader must never write back
    client = mongomock_persistence.MongoClient("localhost", _store=server)
    names = sorted(d["name"] for d in client["pqdflow"]["fireworks"].find({}))
    assert names == ["sqrt-0", "sqrt-1"]


def test_lock_refuses_a_second_holder_in_another_process(tmp_path: Path) -> None:
    store = tmp_path / "s.json"
    ready = tmp_path / "ready"
    holder = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from pqdflow.workflows.fireworks.launchpad import open_embedded_launchpad
        with open_embedded_launchpad({str(store)!r}) as lp:
            Path({str(ready)!r}).write_text("x")
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", holder])
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None, "holder process died"
            assert time.monotonic() < deadline, "holder never took the lock"
            time.sleep(0.05)
        with pytest.raises(
            LaunchpadLockedError, match=rf"in use by another launcher \(host=\S+ pid={proc.pid}"
        ):
            with open_embedded_launchpad(store):
                pass
        with pytest.raises(LaunchpadLockedError, match=r"waited 0\.3 s"):
            LaunchpadFileLock(store).acquire(wait=0.3)
        # kill -9 the holder: the kernel drops the lock, a waiting launcher gets it
        proc.send_signal(signal.SIGKILL)
        with open_embedded_launchpad(store, wait=20) as lp:
            assert lp.fireworks.count_documents({}) == 0
    finally:
        proc.kill()
        proc.wait()


def test_load_launchpad_file_expands_env_and_rejects_unknown_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = REPO / "fw_configs" / "my_launchpad.yaml"
    for var in (
        "PQDFLOW_MONGO_HOST",
        "PQDFLOW_MONGO_USER",
        "PQDFLOW_MONGO_PASSWORD",
        "PQDFLOW_MONGO_PORT",
    ):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(InputError, match="PQDFLOW_MONGO_HOST is not set"):
        load_launchpad_file(template)
    monkeypatch.setenv("PQDFLOW_MONGO_HOST", "db.example.org")
    monkeypatch.setenv("PQDFLOW_MONGO_USER", "alice")
    monkeypatch.setenv("PQDFLOW_MONGO_PASSWORD", "s3cret")
    lp = load_launchpad_file(template)  # pymongo connects lazily: nothing is contacted
    try:
        assert (lp.host, lp.username, lp.password, lp.authsource) == (
            "db.example.org",
            "alice",
            "s3cret",
            "admin",
        )
        assert int(lp.port) == 27017
        assert lp.name == "pqdflow"
    finally:
        lp.connection.close()
    bad = tmp_path / "bad.yaml"
    bad.write_text("host: x\npasword: typo\n")
    with pytest.raises(InputError, match=r"unknown keys \['pasword'\]"):
        load_launchpad_file(bad)
    unsafe = tmp_path / "unsafe.yaml"
    unsafe.write_text("host: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(Exception, match="could not determine a constructor"):
        load_launchpad_file(unsafe)


def test_embedded_launchpad_via_yaml_is_read_only(tmp_path: Path) -> None:
    store = tmp_path / "s.json"
    with open_embedded_launchpad(store) as lp:
        lp.add_wf(_chain(1))
    config = tmp_path / "lp.yaml"
    config.write_text("host: mongomock://localhost\nstore_file: s.json\n")
    lp = load_launchpad_file(config)
    assert isinstance(lp, EmbeddedLaunchPad)
    assert lp.readonly
    assert lp.get_fw_ids(count_only=True) == 1


def test_fw_configs_templates_parse_and_hold_no_secrets() -> None:
    import yaml
    from fireworks import FWorker
    from fireworks.user_objects.queue_adapters.common_adapter import CommonAdapter

    from pqdflow.workflows.vasp.custodian_jobs import parse_command

    configs = REPO / "fw_configs"
    launchpad = yaml.safe_load((configs / "my_launchpad.yaml").read_text())
    for key in ("host", "username", "password"):
        assert str(launchpad[key]).startswith("${PQDFLOW_MONGO_"), key  # from the environment
    worker = FWorker.from_dict(yaml.safe_load((configs / "my_fworker.yaml").read_text()))
    assert parse_command(worker.env["vasp_cmd"])[-1] == "vasp_std"
    assert parse_command(worker.env["gamma_vasp_cmd"])[-1] == "vasp_gam"
    for name, q_type in (("my_qadapter.yaml", "SLURM"), ("my_qadapter_pbs.yaml", "PBS")):
        data = yaml.safe_load((configs / name).read_text())
        assert data.pop("_fw_name") == "CommonAdapter"
        adapter = CommonAdapter.from_dict(data)
        assert adapter.q_type == q_type
        assert "singleshot" in adapter["rocket_launch"]
        script = adapter.get_script_str(str(REPO))
        assert "rlaunch" in script
    text = "\n".join(p.read_text() for p in configs.iterdir() if p.is_file())
    assert "password: ${PQDFLOW_MONGO_PASSWORD}" in text
    for line in text.splitlines():
        stripped = line.split("#")[0]
        if "password" in stripped.lower() and ":" in stripped:
            assert "${" in stripped or "PASSWORD@" in line, line

"""pqdflow's FireWorks path over a real socket, against a MongoDB-wire test server.

The server is SecantusDB (PyPI ``secantusdb``): it speaks MongoDB's wire protocol and
SCRAM-SHA-256, it is not mongod, and it is a GPL test tool kept in its own venv, never a
pqdflow dependency. ``.ci/run`` starts it through ``.ci/mongo_server.sh`` and exports
``PQDFLOW_TEST_MONGO_HOST/PORT/USER/PASSWORD``. Without them, the session starts its own
server through the same script when ``secantusd-py`` is found (on PATH, in this venv, or in
``.ci-venvs/secantusdb``); otherwise these tests skip with the reason.

Every test uses its own database (dropped afterwards), the real template
``fw_configs/my_launchpad.yaml`` with credentials from environment variables, the mock
backend, and FireWorks' own ``rlaunch`` / ``lpad`` for the workers, as on a cluster.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from pqdflow.cli import main
from pqdflow.documents.results import BindingDoc, NebDoc, RelaxDoc, StudyResults
from pqdflow.errors import LaunchpadConnectionError
from pqdflow.workflows.fireworks.builder import collect_docs, workflow_states
from pqdflow.workflows.fireworks.launchpad import load_launchpad_file
from pqdflow.workflows.fireworks.mongo_launchpad import connect_launchpad_file, describe_launchpad
from pqdflow.workflows.fireworks.tasks import DOCS_KEY, doc_to_dict
from pqdflow.workflows.study import example_study_yaml, load_study, plan_study

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "fw_configs" / "my_launchpad.yaml"
SERVER_SCRIPT = REPO / ".ci" / "mongo_server.sh"
BIN = Path(sys.executable).parent
#: A launcher must finish within this (the whole group takes about a minute on 2 idle cores).
LAUNCH_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class MongoWireServer:
    """Where the test server listens and the user the tests log in as (in ``admin``)."""

    host: str
    port: int
    user: str
    password: str

    def client(self) -> Any:
        """A pymongo client logged in as the test user (close it after use)."""
        import pymongo

        return pymongo.MongoClient(
            self.host,
            self.port,
            username=self.user,
            password=self.password,
            authSource="admin",
            serverSelectionTimeoutMS=5000,
        )


def _find_secantusd() -> Path | None:
    for candidate in (
        shutil.which("secantusd-py"),
        BIN / "secantusd-py",
        REPO / ".ci-venvs" / "secantusdb" / "bin" / "secantusd-py",
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoWireServer]:
    """The MongoDB-wire server named by ``PQDFLOW_TEST_MONGO_*``, or one started here."""
    env = os.environ
    if env.get("PQDFLOW_TEST_MONGO_PORT"):
        missing = [v for v in ("USER", "PASSWORD") if not env.get(f"PQDFLOW_TEST_MONGO_{v}")]
        if missing:
            pytest.fail(f"PQDFLOW_TEST_MONGO_PORT is set but not PQDFLOW_TEST_MONGO_{missing[0]}")
        server = MongoWireServer(
            env.get("PQDFLOW_TEST_MONGO_HOST", "127.0.0.1"),
            int(env["PQDFLOW_TEST_MONGO_PORT"]),
            env["PQDFLOW_TEST_MONGO_USER"],
            env["PQDFLOW_TEST_MONGO_PASSWORD"],
        )
        client = server.client()
        try:
            client.admin.command("ping")
        except Exception as exc:  # the variables promise a server: not reaching it is a failure
            pytest.fail(
                f"MongoDB-wire test server {server.host}:{server.port} from "
                f"PQDFLOW_TEST_MONGO_*: {exc}"
            )
        finally:
            client.close()
        yield server
        return
    secantusd = _find_secantusd()
    if secantusd is None:
        pytest.skip(
            "no MongoDB-wire test server: PQDFLOW_TEST_MONGO_PORT is unset and secantusd-py "
            "was not found (run .ci/run, or .ci/mongo_server.sh start DIR and source DIR/env)"
        )
    state = tmp_path_factory.mktemp("mongo-server")
    started = subprocess.run(
        ["bash", str(SERVER_SCRIPT), "start", str(state)],
        env={**env, "SECANTUSD": str(secantusd)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    try:
        if started.returncode != 0:
            pytest.skip(
                f"the MongoDB-wire test server {secantusd} did not start: "
                f"{started.stderr.strip()[-500:]}"
            )
        values = dict(
            re.findall(r"export (PQDFLOW_TEST_MONGO_\w+)=(\S+)", (state / "env").read_text())
        )
        yield MongoWireServer(
            values["PQDFLOW_TEST_MONGO_HOST"],
            int(values["PQDFLOW_TEST_MONGO_PORT"]),
            values["PQDFLOW_TEST_MONGO_USER"],
            values["PQDFLOW_TEST_MONGO_PASSWORD"],
        )
    finally:
        subprocess.run(["bash", str(SERVER_SCRIPT), "stop", str(state)], check=False, timeout=60)


@pytest.fixture(autouse=True)
def _fireworks_log_streams() -> Iterator[None]:
    """Drop FireWorks' ``launchpad`` stream handler after each test.

    FireWorks binds it to the ``sys.stdout`` of the moment it is first created (here pytest's
    per-test capture) and never creates it again, so a later test would log into a closed
    capture. The template's ``strm_lvl: INFO`` makes that handler emit.
    """
    from fireworks.utilities import fw_utilities

    yield
    logger = logging.getLogger("launchpad")
    for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
        logger.removeHandler(handler)
    fw_utilities.PREVIOUS_STREAM_LOGGERS[:] = [
        entry for entry in fw_utilities.PREVIOUS_STREAM_LOGGERS if entry[0] != "launchpad"
    ]


@dataclass(frozen=True)
class ServerLaunchpad:
    """The launchpad template, the environment it reads, and this test's own database."""

    server: MongoWireServer
    template: Path
    db: str

    def render(self, path: Path) -> Path:
        """Write the expanded launchpad for FireWorks' CLIs (what ``envsubst`` gives users)."""
        lp = load_launchpad_file(self.template)
        try:
            lp.to_file(str(path))
        finally:
            lp.connection.close()
        return path


@pytest.fixture
def server_launchpad(
    mongo_server: MongoWireServer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[ServerLaunchpad]:
    """``fw_configs/my_launchpad.yaml`` pointed at a fresh database of the test server."""
    db = f"pqdflow_{request.node.name[5:25]}_{uuid.uuid4().hex[:8]}"
    for var, value in (
        ("PQDFLOW_MONGO_HOST", mongo_server.host),
        ("PQDFLOW_MONGO_PORT", str(mongo_server.port)),
        ("PQDFLOW_MONGO_USER", mongo_server.user),
        ("PQDFLOW_MONGO_PASSWORD", mongo_server.password),
        ("PQDFLOW_MONGO_DB", db),
        ("PQDFLOW_MONGO_AUTHSOURCE", "admin"),
        ("OMP_NUM_THREADS", "1"),  # two launchers share the cores
    ):
        monkeypatch.setenv(var, value)
    yield ServerLaunchpad(mongo_server, TEMPLATE, db)
    client = mongo_server.client()
    try:
        client.drop_database(db)
    finally:
        client.close()


@dataclass(frozen=True)
class SocketStudy:
    """The study file the tests submit, its plan and how many Fireworks it makes."""

    path: Path
    plan: Any

    @property
    def n_fireworks(self) -> int:
        """One per relaxation and binding energy, two per NEB path (band, analysis)."""
        return len(self.plan.calculations) + len(self.plan.bindings) + 2 * len(self.plan.nebs)


@pytest.fixture(scope="module")
def socket_study(tmp_path_factory: pytest.TempPathFactory) -> SocketStudy:
    """The example study trimmed to seconds of mock work: TMSBr binding, the bulk V_Br hop.

    10 Fireworks: 7 relaxations (under a second each on the mock), the TMSBr binding energy,
    the NEB (several seconds: the Firework a launcher is killed in) and its analysis.
    """
    data = yaml.safe_load(example_study_yaml())
    data["name"] = "socket"
    data["terminations"] = ["PbX2"]
    data["ligands"].update(names=["TMSBr"], surfaces=[])
    data["neb"]["paths"] = [{"host": "bulk", "hops": ["VBr-Br-bulk-a"]}]
    data["neb"]["formation"] = False
    data["neb"]["fill"] = {"fillers": []}  # vacancy fills: tests/test_vacancy_fill.py
    path = tmp_path_factory.mktemp("study") / "socket.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return SocketStudy(path, plan_study(load_study(path)))


@pytest.fixture
def report_figures(capsys: pytest.CaptureFixture[str]) -> Callable[[str], None]:
    """Print a test's figures past pytest's capture, so that they show in the CI log."""
    start = time.perf_counter()

    def emit(figures: str) -> None:
        with capsys.disabled():
            print(f"\n[mongo_server] {figures}; {time.perf_counter() - start:.1f} s")

    return emit


def _fworker_file(folder: Path, name: str) -> Path:
    """The fw_configs worker template under another name (to tell launchers apart)."""
    data = yaml.safe_load((REPO / "fw_configs" / "my_fworker.yaml").read_text())
    data["name"] = name
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _rlaunch(rendered: Path, worker: Path, cwd: Path) -> subprocess.Popen[bytes]:
    """``rlaunch rapidfire`` in its own folder, logging to ``cwd/rlaunch.log``."""
    cwd.mkdir(parents=True, exist_ok=True)
    with open(cwd / "rlaunch.log", "wb") as log:
        return subprocess.Popen(
            [
                str(BIN / "rlaunch"),
                "-l",
                str(rendered),
                "-w",
                str(worker),
                "rapidfire",
                "--sleep",
                "1",
            ],
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def _finish(proc: subprocess.Popen[bytes], cwd: Path) -> None:
    try:
        proc.wait(timeout=LAUNCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log = (cwd / "rlaunch.log").read_text(errors="replace")
    assert proc.returncode == 0, f"rlaunch in {cwd} exited {proc.returncode}:\n{log[-3000:]}"


@contextlib.contextmanager
def _server(rendered: Path) -> Iterator[Any]:
    """FireWorks' own LaunchPad on the rendered file, to read what the workers did."""
    from fireworks import LaunchPad

    lp = LaunchPad.from_file(str(rendered))
    try:
        yield lp
    finally:
        lp.connection.close()


def _submit(study: Path, out: Path) -> list[str]:
    return [
        "submit",
        str(study),
        "--backend",
        "mock",
        "--launchpad",
        str(TEMPLATE),
        "--root",
        str(out),
    ]


def collect_results(lp: Any, fw_id: int) -> dict[str, list[dict[str, Any]]]:
    """The stored documents of a workflow grouped by kind, as plain dicts."""
    kinds = {RelaxDoc: "relax", NebDoc: "neb", BindingDoc: "binding"}
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in ("relax", "binding", "neb")}
    out["neb_analysis"] = []
    for doc in collect_docs(lp, fw_id).values():
        out[kinds.get(type(doc), "neb_analysis")].append(doc_to_dict(doc))
    return out


@pytest.mark.mongo_server
def test_submit_then_two_rlaunch_launchers_run_every_firework_once(
    server_launchpad: ServerLaunchpad,
    socket_study: SocketStudy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    report_figures: Callable[[str], None],
) -> None:
    study, plan, n_fws = socket_study.path, socket_study.plan, socket_study.n_fireworks
    out = tmp_path / "run"
    server = server_launchpad.server
    # a database FireWorks never used: submit prepares it, then adds the workflow once
    assert main(_submit(study, out)) == 0
    where = f"{server.host}:{server.port} (database {server_launchpad.db})"
    assert f"added workflow 'pqdflow: socket (mock)': {n_fws} Fireworks" in capsys.readouterr().out
    assert main(_submit(study, out)) == 0
    assert f"is already on {where}" in capsys.readouterr().out

    rendered = server_launchpad.render(tmp_path / "my_launchpad.yaml")
    names = ("launcher-1", "launcher-2")
    launchers = [
        (_rlaunch(rendered, _fworker_file(tmp_path, n), tmp_path / n), tmp_path / n) for n in names
    ]
    try:
        for proc, cwd in launchers:
            _finish(proc, cwd)
    finally:
        for proc, _ in launchers:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    with _server(rendered) as lp:
        fw_id = int(lp.workflows.find_one({})["nodes"][0])
        states = workflow_states(lp, fw_id)
        launches = list(lp.launches.find({}, {"fw_id": 1, "state": 1, "fworker": 1}))
        docs = collect_results(lp, fw_id)
    assert len(states) == n_fws
    assert {r["state"] for r in states} == {"COMPLETED"}
    per_fw = Counter(d["fw_id"] for d in launches)
    duplicates = sum(n - 1 for n in per_fw.values())
    assert sorted(per_fw) == sorted(r["fw_id"] for r in states)  # every Firework ran ...
    assert duplicates == 0  # ... exactly once
    per_launcher = Counter(d["fworker"]["name"] for d in launches)
    assert sorted(per_launcher) == list(names)  # both launchers took work
    # the results stored on the server are complete, one document per calculation
    assert sorted(d["name"] for d in docs["relax"]) == sorted(c.name for c in plan.calculations)
    assert sorted(d["name"] for d in docs["binding"]) == sorted(b.name for b in plan.bindings)
    assert [d["path"] for d in docs["neb"]] == [n.name for n in plan.nebs]
    assert [d["name"] for d in docs["neb_analysis"]] == [n.name for n in plan.nebs]
    for calc in plan.calculations:
        assert (out / "calcs" / calc.name / "result.json").is_file()

    # `pqdflow run --launchpad` resumes the finished workflow: results.json, nothing relaunched
    run = ["run", str(study), "--backend", "mock", "--launchpad", str(TEMPLATE), "--out", str(out)]
    assert main([*run, "--no-progress"]) == 0
    results = StudyResults.read(out / "results.json")
    assert sorted(c["name"] for c in results.calculations) == sorted(
        d["name"] for d in docs["relax"]
    )
    assert {b["name"]: b["E_b_eV"] for b in results.binding} == pytest.approx(
        {d["name"]: d["E_b_eV"] for d in docs["binding"]}, abs=1e-12
    )
    with _server(rendered) as lp:
        assert lp.launches.count_documents({}) == n_fws
    assert main(["status", "--launchpad", str(TEMPLATE)]) == 0
    status = capsys.readouterr().out
    assert f"launchpad: {where}; 1 pqdflow workflow(s)" in status
    assert f"pqdflow: socket (mock): COMPLETED {n_fws} (of {n_fws})" in status
    shares = ", ".join(f"{k}: {v}" for k, v in sorted(per_launcher.items()))
    report_figures(
        f"2 rlaunch launchers ({shares} Fireworks), {n_fws} Fireworks COMPLETED, "
        f"duplicates: {duplicates}"
    )


@pytest.mark.mongo_server
def test_sigkill_mid_firework_is_detected_lost_and_rerun_without_duplicates(
    server_launchpad: ServerLaunchpad,
    socket_study: SocketStudy,
    tmp_path: Path,
    report_figures: Callable[[str], None],
) -> None:
    plan, n_fws = socket_study.plan, socket_study.n_fireworks
    out = tmp_path / "run"
    assert main(_submit(socket_study.path, out)) == 0
    rendered = server_launchpad.render(tmp_path / "my_launchpad.yaml")
    band = out / "neb" / plan.nebs[0].name
    first = tmp_path / "launcher-1"
    proc = _rlaunch(rendered, _fworker_file(tmp_path, "launcher-1"), first)
    try:
        with _server(rendered) as lp:
            neb_id = lp.fireworks.find_one({"name": {"$regex": "^neb: "}}, {"fw_id": 1})["fw_id"]
            deadline = time.monotonic() + LAUNCH_TIMEOUT_S
            while lp.fireworks.find_one({"fw_id": neb_id}, {"state": 1})["state"] != "RUNNING":
                assert proc.poll() is None, (first / "rlaunch.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "the NEB Firework never started"
                time.sleep(0.05)
            time.sleep(1.0)  # inside the band: it takes several seconds on the mock
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # killed mid-Firework: the band has no result, the server still sees it RUNNING
            assert not (band / "result.json").exists()
            assert lp.fireworks.find_one({"fw_id": neb_id})["state"] == "RUNNING"
            done_before = {
                d["fw_id"]: d["launch_id"]
                for d in lp.launches.find({"state": "COMPLETED"}, {"fw_id": 1, "launch_id": 1})
            }
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # FireWorks' recipe for a dead worker (fw_configs/README.md): detect the lost run, rerun it
    lost = subprocess.run(
        [str(BIN / "lpad"), "-l", str(rendered), "detect_lostruns", "--time", "1", "--rerun"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert lost.returncode == 0, lost.stdout + lost.stderr
    found = re.search(r"Lost FireWorks: (\d+)", lost.stdout)
    assert found is not None, lost.stdout
    n_lost = int(found.group(1))
    assert n_lost == 1  # the band the killed launcher held, nothing else
    with _server(rendered) as lp:
        assert lp.fireworks.find_one({"fw_id": neb_id})["state"] == "READY"
    second = tmp_path / "launcher-2"
    _finish(_rlaunch(rendered, _fworker_file(tmp_path, "launcher-2"), second), second)

    with _server(rendered) as lp:
        fw_id = int(lp.workflows.find_one({})["nodes"][0])
        states = workflow_states(lp, fw_id)
        launches = list(lp.launches.find({}, {"fw_id": 1, "state": 1, "launch_id": 1}))
        stored = Counter(
            (d["action"]["stored_data"]["pqdflow_kind"], d["action"]["stored_data"]["pqdflow_name"])
            for d in lp.launches.find({"action.stored_data.pqdflow_doc": {"$exists": True}})
        )
        analysis = lp.fireworks.find_one({"name": {"$regex": "^neb-analysis: "}}, {"spec": 1})
        docs = collect_results(lp, fw_id)
    assert len(states) == n_fws
    assert {r["state"] for r in states} == {"COMPLETED"}
    completed = Counter(d["fw_id"] for d in launches if d["state"] == "COMPLETED")
    duplicates = sum(n - 1 for n in completed.values())
    assert sorted(completed) == sorted(r["fw_id"] for r in states)
    assert duplicates == 0
    # the killed launch is FIZZLED, the rerun COMPLETED; nothing finished before was rerun
    assert sorted(d["state"] for d in launches if d["fw_id"] == neb_id) == ["COMPLETED", "FIZZLED"]
    assert len(launches) == n_fws + 1
    for fw, launch_id in done_before.items():
        assert [d["launch_id"] for d in launches if d["fw_id"] == fw] == [launch_id]
    # every result is stored once (the killed launch stored none), the band reached its
    # analysis once
    assert sum(stored.values()) == n_fws
    assert max(stored.values()) == 1
    assert len(analysis["spec"][DOCS_KEY]) == 1
    assert [d["path"] for d in docs["neb"]] == [plan.nebs[0].name]
    assert sorted(d["name"] for d in docs["relax"]) == sorted(c.name for c in plan.calculations)
    assert (band / "result.json").is_file()
    report_figures(
        f"rlaunch killed with SIGKILL mid-Firework ({plan.nebs[0].name}): lost runs recovered: "
        f"{n_lost}, {n_fws} Fireworks COMPLETED, duplicates: {duplicates}"
    )


@pytest.mark.mongo_server
def test_wrong_password_is_refused_naming_the_launchpad_file(
    server_launchpad: ServerLaunchpad,
    socket_study: SocketStudy,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = server_launchpad.server
    monkeypatch.setenv("PQDFLOW_MONGO_PASSWORD", f"not-{server.password}")
    study = socket_study.path
    out = tmp_path / "run"
    assert main(_submit(study, out)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pqdflow submit: error: launchpad file {TEMPLATE}: ")
    assert f"refused the credentials of user {server.user!r} (authsource 'admin')" in err
    assert "PQDFLOW_MONGO_PASSWORD" in err
    assert "Traceback" not in err
    assert server.password not in err
    assert main(["status", "--launchpad", str(TEMPLATE)]) == 2
    assert "pqdflow status: error: launchpad file" in capsys.readouterr().err
    run = ["run", str(study), "--backend", "mock", "--launchpad", str(TEMPLATE), "--out", str(out)]
    assert main([*run, "--no-progress"]) == 2
    assert "refused the credentials" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written
    client = server.client()
    try:
        assert client[server_launchpad.db].list_collection_names() == []
    finally:
        client.close()


@pytest.mark.mongo_server
def test_submit_refuses_a_database_with_data_but_no_fireworks_counter(
    server_launchpad: ServerLaunchpad,
    socket_study: SocketStudy,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = server_launchpad.server
    client = server.client()
    try:
        client[server_launchpad.db].fireworks.insert_one({"fw_id": 1, "name": "not ours"})
        assert main(_submit(socket_study.path, tmp_path / "run")) == 2
        err = capsys.readouterr().err
        assert f"launchpad file {TEMPLATE}: database " in err
        assert "holds fireworks but no FireWorks id counter" in err
        db = client[server_launchpad.db]
        assert db.fireworks.count_documents({}) == 1  # nothing added, nothing deleted
        assert db.fw_id_assigner.count_documents({}) == 0
    finally:
        client.close()


def test_unreachable_server_is_an_error_naming_the_launchpad_file(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "lp.yaml"
    config.write_text(
        f"host: 127.0.0.1\nport: {port}\nname: pqdflow\nusername: alice\npassword: s3cret\n"
        "mongoclient_kwargs:\n  serverSelectionTimeoutMS: 300\n"
    )
    with pytest.raises(LaunchpadConnectionError) as info:
        connect_launchpad_file(config)
    message = str(info.value)
    assert message.startswith(f"launchpad file {config}: cannot reach the MongoDB server ")
    assert f"127.0.0.1:{port} (database pqdflow)" in message
    assert "s3cret" not in message


def test_describe_launchpad_never_shows_a_password() -> None:
    from fireworks import LaunchPad

    uri = LaunchPad(
        host="mongodb://alice:s3cret@db.example.org:27018/?authSource=admin",
        name="pqdflow",
        uri_mode=True,
    )
    plain = LaunchPad(host="db.example.org", port=27018, name="pq", username="a", password="pw")
    try:  # pymongo connects lazily: nothing is contacted
        assert describe_launchpad(uri) == (
            "mongodb://alice:***@db.example.org:27018/?authSource=admin (database pqdflow)"
        )
        assert describe_launchpad(plain) == "db.example.org:27018 (database pq)"
    finally:
        uri.connection.close()
        plain.connection.close()

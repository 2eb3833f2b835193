#!/usr/bin/env bash
# A test-only MongoDB-wire server on loopback for the `mongo_server` tests.
#
# The server is SecantusDB (PyPI `secantusdb`, command `secantusd-py`): a server that speaks
# MongoDB's wire protocol and SCRAM-SHA-256 auth. It is not mongod. It is GPL-licensed, so it
# lives in its own venv (.ci-venvs/secantusdb, git-ignored) and is never a pqdflow dependency.
#
# usage:
#   .ci/mongo_server.sh start STATE_DIR   venv if needed, a user with a random password, the
#                                         server with --auth on a free 127.0.0.1 port; writes
#                                         STATE_DIR/env (export lines, source it) and
#                                         STATE_DIR/pid
#   .ci/mongo_server.sh stop STATE_DIR    stop that server by its PID and delete its data
#
# STATE_DIR/env sets PQDFLOW_TEST_MONGO_HOST, _PORT, _USER, _PASSWORD (user in "admin").
# SECANTUSD=/path/to/secantusd-py uses that server (its venv's python provisions the user)
# instead of installing one. Exits non-zero, with the server log, when the server cannot start.
set -euo pipefail

cmd=${1:-}
state=${2:-}
if [[ -z "$cmd" || -z "$state" ]]; then
    echo "usage: $0 start|stop STATE_DIR" >&2
    exit 64
fi
repo=$(cd "$(dirname "$0")/.." && pwd)
venv=${PQDFLOW_SECANTUS_VENV:-$repo/.ci-venvs/secantusdb}
spec=${PQDFLOW_SECANTUS_SPEC:-secantusdb==0.7.0b3}

stop_pid() {  # stop_pid PID: SIGTERM, up to 10 s for a clean shutdown, then SIGKILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

if [[ "$cmd" == stop ]]; then
    if [[ -f "$state/pid" ]]; then
        stop_pid "$(cat "$state/pid")"
        rm -f "$state/pid"
    fi
    rm -rf "$state/data"
    exit 0
fi
if [[ "$cmd" != start ]]; then
    echo "$0: unknown command '$cmd' (start or stop)" >&2
    exit 64
fi

server=${SECANTUSD:-}
if [[ -z "$server" ]]; then
    server=$venv/bin/secantusd-py
    if [[ ! -x "$server" ]]; then
        echo "$0: installing $spec into $venv (test-only tool, own venv)" >&2
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q "$spec" >&2
    fi
fi
py=$(dirname "$server")/python  # the server's venv has pymongo (a secantusdb dependency)
mkdir -p "$state"
log=$state/server.log
: > "$log"

# wait_for PORT [USER PASSWORD] [create]: until the server answers (authenticated when a user
# is given); with "create", add that user to "admin" first (server started without --auth)
wait_for() {
    "$py" - "$@" <<'PY'
import sys
import time

import pymongo
from pymongo.errors import PyMongoError

port, args = int(sys.argv[1]), sys.argv[2:]
create = args[-1:] == ["create"]
user, password = (args[0], args[1]) if len(args) >= 2 else (None, None)
auth = {} if create or user is None else {"username": user, "password": password, "authSource": "admin"}
client = pymongo.MongoClient("127.0.0.1", port, serverSelectionTimeoutMS=500, **auth)
deadline = time.monotonic() + 60
while True:
    try:
        client.admin.command("ping")
        break
    except PyMongoError as exc:
        if time.monotonic() > deadline:
            sys.exit(f"server on 127.0.0.1:{port} not ready after 60 s: {exc}")
        time.sleep(0.1)
if create:
    client.admin.command(
        "createUser", user, pwd=password, roles=["readWriteAnyDatabase", "dbAdminAnyDatabase"]
    )
PY
}

port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
user=pqdflow-ci
password=$("$py" -c 'import secrets; print(secrets.token_hex(16))')
rm -rf "$state/data"
run_server() {  # run_server [--auth]: start in the background, PID into $state/pid
    "$server" --host 127.0.0.1 --port "$port" --storage-path "$state/data" --standalone \
        --log-level WARNING "$@" >> "$log" 2>&1 < /dev/null &
    echo $! > "$state/pid"
}
fail() {
    echo "$0: $1; server log:" >&2
    tail -n 20 "$log" >&2
    [[ -f "$state/pid" ]] && stop_pid "$(cat "$state/pid")"
    rm -f "$state/pid"
    exit 1
}

# users can only be created on a server without auth: provision, restart with --auth
run_server
wait_for "$port" "$user" "$password" create || fail "could not create the test user"
stop_pid "$(cat "$state/pid")"
run_server --auth
wait_for "$port" "$user" "$password" || fail "server with --auth did not accept the test user"

umask 077
cat > "$state/env" <<EOF
export PQDFLOW_TEST_MONGO_HOST=127.0.0.1
export PQDFLOW_TEST_MONGO_PORT=$port
export PQDFLOW_TEST_MONGO_USER=$user
export PQDFLOW_TEST_MONGO_PASSWORD=$password
EOF
echo "$0: MongoDB-wire test server (SecantusDB) on 127.0.0.1:$port, pid $(cat "$state/pid")" >&2

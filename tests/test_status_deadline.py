"""Deliverable 8: `status` and the console answer quickly whatever is down: a refused port, or a
server that accepts connections and never answers (hung), for the ledger's database, MLflow
and the broker. Timings are printed (run with -s), never asserted: the machine is shared."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
PASSWORD = "Sup3rSecretPw"


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nothing listens there once closed


@contextlib.contextmanager
def hung_server():
    """A port that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        server.close()


@contextlib.contextmanager
def bad_port(kind: str):
    if kind == "refused":
        yield refused_port()
    else:
        with hung_server() as port:
            yield port


def urls(port: int) -> dict[str, str]:
    return {"DRIFTCTL_LEDGER__URL": f"postgresql://driftctl:{PASSWORD}@127.0.0.1:{port}/ledger",
            "DRIFTCTL_MLFLOW__TRACKING_URI": f"http://driftctl:{PASSWORD}@127.0.0.1:{port}",
            "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}"}


def assert_unknown(report: dict, parts: list[str]) -> None:
    for part in parts:
        assert isinstance(report["unknown"].get(part), str) and report["unknown"][part], (part, report["unknown"])
    assert report["health"] == "unknown"
    assert PASSWORD not in json.dumps(report)


@pytest.mark.parametrize("kind", ["refused", "hung"])
def test_status_cli_answers_with_everything_down(kind, home):
    with bad_port(kind) as port:
        env = {**os.environ, "PYTHONPATH": ROOT, **urls(port)}
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "driftctl", "status", "--json"], capture_output=True,
                              text=True, env=env, timeout=30)
        took = time.monotonic() - started
    print(f"\nstatus --json, ledger + MLflow + broker {kind}: {took:.2f} s (process start included)")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert_unknown(report, ["champion", "ledger", "broker"])
    assert report["champion"] is None and report["broker"]["reachable"] is False
    assert PASSWORD not in done.stdout + done.stderr


@pytest.mark.parametrize("kind", ["refused", "hung"])
@pytest.mark.parametrize("part", ["ledger", "mlflow", "broker"])
def test_collect_status_with_one_part_down(part, kind, home, monkeypatch):
    from driftctl.app.status import answer_quickly, collect_status
    from driftctl.settings import Settings

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    answer_quickly()
    with bad_port(kind) as port:
        name = {"ledger": "DRIFTCTL_LEDGER__URL", "mlflow": "DRIFTCTL_MLFLOW__TRACKING_URI",
                "broker": "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS"}[part]
        monkeypatch.setenv(name, urls(port)[name])
        started = time.monotonic()
        report = collect_status(Settings())
        took = time.monotonic() - started
    print(f"\ncollect_status, {part} {kind}: {took:.2f} s; {report['unknown']}")
    assert_unknown(report, [{"mlflow": "champion"}.get(part, part)])
    if kind == "hung" and part != "mlflow":  # MLflow's own timeout may answer first; the others are cut off
        why = report["unknown"][{"mlflow": "champion"}.get(part, part)]
        assert "no answer" in why or "timeout" in why.lower(), why


@pytest.mark.parametrize("kind", ["refused", "hung"])
def test_console_api_status_answers_with_everything_down(kind, home, monkeypatch):
    from driftctl.app.console import ConsoleServer
    from driftctl.settings import Settings

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    with bad_port(kind) as port:
        for name, value in urls(port).items():
            monkeypatch.setenv(name, value)
        server = ConsoleServer(Settings(), "127.0.0.1", 0).start()
        try:
            started = time.monotonic()
            with urllib.request.urlopen(f"{server.url}api/status", timeout=20) as answer:
                report = json.loads(answer.read())
            took = time.monotonic() - started
        finally:
            server.stop()
    print(f"\nconsole /api/status, everything {kind}: {took:.2f} s")
    assert_unknown(report, ["champion", "ledger", "broker"])


def test_champion_read_without_importing_mlflow_rest_and_sqlite(home, tmp_path):
    """The fast paths agree with what MLflow stores: its REST answer, its SQLite tables."""
    import base64
    import http.server
    import sqlite3

    from driftctl.app.status import Champion, _read_mlflow
    from driftctl.settings import Settings

    seen = []

    class Fake(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append((self.path, self.headers.get("Authorization")))
            if "name=known" in self.path:
                body, code = {"model_version": {"name": "known", "version": "4", "run_id": "r4"}}, 200
            else:
                body, code = {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "no such model"}, 404
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://me:{PASSWORD}@127.0.0.1:{server.server_address[1]}"
        assert _read_mlflow(Settings(mlflow={"tracking_uri": uri, "model_name": "known"})) == Champion("known", 4, "r4")
        assert _read_mlflow(Settings(mlflow={"tracking_uri": uri, "model_name": "other"})) is None
    finally:
        server.shutdown()
    assert seen[0][0] == "/api/2.0/mlflow/registered-models/alias?name=known&alias=champion"
    assert seen[0][1] == "Basic " + base64.b64encode(f"me:{PASSWORD}".encode()).decode()

    db = tmp_path / "mlflow.db"  # MLflow 3's two tables, as its migrations leave them
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE registered_model_aliases (alias VARCHAR(256) NOT NULL, version INTEGER NOT NULL, "
                     "name VARCHAR(256) NOT NULL, workspace VARCHAR(63) DEFAULT 'default' NOT NULL)")
        conn.execute("CREATE TABLE model_versions (name VARCHAR(256) NOT NULL, version INTEGER NOT NULL, "
                     "run_id VARCHAR(32), workspace VARCHAR(63) DEFAULT 'default' NOT NULL)")
        conn.execute("INSERT INTO registered_model_aliases (alias, version, name) VALUES ('champion', 2, 'm')")
        conn.executemany("INSERT INTO model_versions (name, version, run_id) VALUES (?, ?, ?)",
                         [("m", 1, "r1"), ("m", 2, "r2")])
    settings = Settings(mlflow={"tracking_uri": f"sqlite:///{db}", "model_name": "m"})
    assert _read_mlflow(settings) == Champion("m", 2, "r2")
    assert _read_mlflow(Settings(mlflow={"tracking_uri": f"sqlite:///{tmp_path / 'none.db'}"})) is None
    assert not (tmp_path / "none.db").exists()  # status never creates MLflow's store

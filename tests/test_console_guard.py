"""Deliverable 10: the console answers loopback Host names only (DNS rebinding), and off loopback
it needs a token that every request carries; the CLI refuses `--host 0.0.0.0` without one."""

import http.client
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
TOKEN = "t0ken-for-the-console"


def get(server, path, host=None, headers=None):
    port = server.server_address[1]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_host=True)
        if host is not None:
            conn.putheader("Host", host)
        for name, value in (headers or {}).items():
            conn.putheader(name, value)
        conn.endheaders()
        answer = conn.getresponse()
        return answer.status, answer.read().decode(), dict(answer.getheaders())
    finally:
        conn.close()


@pytest.fixture
def loopback(home):
    from driftctl.app.console import ConsoleServer
    from driftctl.settings import Settings

    server = ConsoleServer(Settings(), "127.0.0.1", 0).start()
    yield server
    server.stop()


def test_host_header_must_name_loopback(loopback):
    port = loopback.server_address[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "localhost", "LOCALHOST:1"):
        assert get(loopback, "/healthz", host)[0] == 200, host
    for host in (f"evil.example:{port}", "evil.example", f"localhost.evil.example:{port}", f"192.168.1.7:{port}",
                 "", None):
        status, body, _ = get(loopback, "/api/status", host)
        assert status == 403 and "loopback" in body, host
    assert get(loopback, "/api/status", f"localhost:{port}")[0] == 200


def test_token_required_when_set_and_carried_by_query_header_or_cookie(home):
    from driftctl.app.console import TOKEN_COOKIE, ConsoleServer
    from driftctl.settings import Settings

    server = ConsoleServer(Settings(), "127.0.0.1", 0, token=TOKEN).start()
    try:
        assert get(server, "/api/status", "localhost")[0] == 403
        assert get(server, "/api/status?token=wrong", "localhost")[0] == 403
        assert get(server, "/healthz", "anything")[0] == 200  # says nothing
        status, _, headers = get(server, f"/?token={TOKEN}", "console.example.org:8765")
        assert status == 200 and f"{TOKEN_COOKIE}={TOKEN}" in headers.get("Set-Cookie", "")
        assert "HttpOnly" in headers["Set-Cookie"] and "SameSite=Strict" in headers["Set-Cookie"]
        assert get(server, "/api/status", "console.example.org", {"X-Driftctl-Token": TOKEN})[0] == 200
        assert get(server, "/api/status", "console.example.org", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
        assert get(server, "/api/status", "console.example.org", {"Cookie": f"{TOKEN_COOKIE}={TOKEN}"})[0] == 200
    finally:
        server.stop()


def test_non_loopback_host_needs_a_token(home, monkeypatch):
    from driftctl.app.console import ConsoleServer
    from driftctl.settings import Settings

    with pytest.raises(ValueError, match="needs a token"):
        ConsoleServer(Settings(), "0.0.0.0", 0)
    monkeypatch.setenv("DRIFTCTL_CONSOLE__TOKEN", TOKEN)
    server = ConsoleServer(Settings(), "0.0.0.0", 0).start()
    try:
        assert get(server, "/api/status", "10.1.2.3:8765")[0] == 403
        assert get(server, f"/api/status?token={TOKEN}", "10.1.2.3:8765")[0] == 200
    finally:
        server.stop()


def test_cli_refuses_a_non_loopback_host_without_a_token(home):
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("DRIFTCTL_CONSOLE__TOKEN", None)
    done = subprocess.run([sys.executable, "-m", "driftctl", "console", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("driftctl: error: --host 0.0.0.0 is not loopback"), done.stderr

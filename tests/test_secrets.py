"""Deliverable 9: a password planted in the ledger URL, the MLflow URI and the SASL settings is
never printed: not by status (JSON and terminal), not by a failing registry call, not in a log
line, a ledger reason, an MLflow tag, nor in any file driftctl writes under its home."""

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[1])
PASSWORD = "Planted-Pw-7f3a9c"


def refused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_sasl_password_is_a_secret():
    from driftctl.settings import KafkaSettings

    kafka = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="me",
                          sasl_password=PASSWORD)
    assert PASSWORD not in repr(kafka) + str(kafka) + kafka.model_dump_json()
    assert kafka.client_options()["sasl_plain_password"] == PASSWORD  # the client, and only it, gets it


def test_mask_url():
    from driftctl.settings import mask_url

    assert mask_url(f"postgresql+psycopg://me:{PASSWORD}@db:5432/x") == "postgresql+psycopg://me:***@db:5432/x"
    assert mask_url(f"at http://u:{PASSWORD}@h:5000/api and https://v:{PASSWORD}@k/") == \
        "at http://u:***@h:5000/api and https://v:***@k/"
    assert mask_url("sqlite:////tmp/a.db http://host:5000/x") == "sqlite:////tmp/a.db http://host:5000/x"


def test_registry_error_ledger_reason_and_log_lines_are_masked(home, monkeypatch, caplog):
    from driftctl.runtime.logs import MaskSecrets
    from driftctl.settings import Settings
    from driftctl.stores.ledger import Ledger
    from training.registry import Registry, RegistryError

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    uri = f"http://driftctl:{PASSWORD}@127.0.0.1:{refused_port()}"
    with pytest.raises(RegistryError) as failed:
        Registry(uri, "m", "e").champion()
    assert PASSWORD not in str(failed.value) and "driftctl:***@127.0.0.1" in str(failed.value)

    ledger = Ledger(Settings().ledger_url)
    ledger.append("failure", reason=f"retrain failed: cannot reach {uri}", payload={"uri": uri})
    entry = ledger.entries()[0]
    ledger.close()
    assert PASSWORD not in entry.reason + json.dumps(entry.payload)

    handler = logging.StreamHandler()
    handler.addFilter(MaskSecrets())
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "cannot reach %s", (uri,), None)
    assert handler.filter(record) and PASSWORD not in record.getMessage()


def test_nothing_driftctl_writes_holds_the_password(home):
    port = refused_port()
    env = {**os.environ, "PYTHONPATH": ROOT,
           "DRIFTCTL_LEDGER__URL": f"postgresql://driftctl:{PASSWORD}@127.0.0.1:{port}/ledger",
           "DRIFTCTL_MLFLOW__TRACKING_URI": f"http://driftctl:{PASSWORD}@127.0.0.1:{port}",
           "DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
           "DRIFTCTL_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DRIFTCTL_KAFKA__SASL_MECHANISM": "PLAIN",
           "DRIFTCTL_KAFKA__SASL_USERNAME": "driftctl", "DRIFTCTL_KAFKA__SASL_PASSWORD": PASSWORD,
           "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "2"}
    # The registry calls fail on MLflow only when the ledger answers: a second round on the home's SQLite ledger.
    registry_only = {k: v for k, v in env.items() if k != "DRIFTCTL_LEDGER__URL"}
    outputs = []
    for args, where in ((["status", "--json"], env), (["status"], env), (["history", "--json"], env),
                        (["rollback"], env), (["rollback"], registry_only), (["--debug", "rollback"], registry_only),
                        (["status", "--json"], registry_only)):
        done = subprocess.run([sys.executable, "-m", "driftctl", *args], capture_output=True, text=True, env=where,
                              timeout=120, cwd=home.parent)
        outputs.append((args, done.stdout + done.stderr))
    for args, text in outputs:
        assert PASSWORD not in text, (args, text[-2000:])
    assert "driftctl:***@" in outputs[0][1]  # the URL is shown, masked
    assert "driftctl: error: MLflow at http://driftctl:***@127.0.0.1" in outputs[4][1]  # the failing registry call
    assert "RegistryError: MLflow at http://driftctl:***@" in outputs[5][1]  # and its whole traceback
    for path in home.parent.rglob("*"):
        if path.is_file():
            assert PASSWORD.encode() not in path.read_bytes(), path


def test_every_line_the_cli_prints_is_masked():
    import io

    from driftctl.app.cli import _MaskedStream

    out = io.StringIO()
    stream = _MaskedStream(out)
    print(f"MLflow UI at http://me:{PASSWORD}@mlflow:5000/", file=stream)
    assert out.getvalue() == "MLflow UI at http://me:***@mlflow:5000/\n" and stream.getvalue() == out.getvalue()

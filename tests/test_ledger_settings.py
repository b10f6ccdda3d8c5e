import pytest
from pydantic import ValidationError

from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger


def test_ledger_is_append_only_history(tmp_path):
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger.append("promotion", model_name="m", model_version=1, reason="bootstrap")
    ledger.append("promotion", model_name="m", model_version=2, event_id="drift-1", reason="drift",
                  payload={"run_id": "abc"})
    latest = ledger.last_promotion("m", 2)
    assert latest.event_id == "drift-1" and latest.payload == {"run_id": "abc"}
    assert [e.model_version for e in ledger.entries("promotion")] == [2, 1]
    assert ledger.last_promotion("m", 3) is None
    with pytest.raises(ValueError, match="valid kinds"):
        ledger.append("gossip")


def test_settings_from_environment_nested(monkeypatch, tmp_path):
    monkeypatch.setenv("DRIFTCTL_HOME", str(tmp_path))
    monkeypatch.setenv("DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS", "kafka:9092")
    monkeypatch.setenv("DRIFTCTL_KAFKA__PARTITIONS", "6")
    monkeypatch.setenv("DRIFTCTL_LEDGER__URL", "postgresql://localhost/driftctl")
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "kafka:9092" and settings.kafka.partitions == 6
    assert settings.ledger_url == "postgresql+psycopg://localhost/driftctl"  # psycopg 3, the installed driver
    assert settings.mlflow_uri == f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_settings_from_yaml_file(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "driftctl.yaml").write_text("drift:\n  warmup: 500\nmlflow:\n  model_name: fraud\n")
    settings = Settings()
    assert settings.drift.warmup == 500 and settings.mlflow.model_name == "fraud"
    assert settings.home == (tmp_path / ".driftctl").resolve()


def test_bad_setting_is_rejected(monkeypatch):
    monkeypatch.setenv("DRIFTCTL_KAFKA__PARTITIONS", "0")
    with pytest.raises(ValidationError):
        Settings()

"""The monitor's memory stays bounded: a sliding window of labelled positions (retrain windows
come from the newest kept) and join state capped in bytes as well as in count. Fed through its
own dispatch, as its poll loop does; a real ledger on SQLite."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from driftctl.messages import Label
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.codec import encode_label, encode_telemetry
from serving.monitor import Monitor
from serving.synthetic import iot_stream


def monitor(settings: Settings, tmp_path) -> Monitor:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    return Monitor(settings, "127.0.0.1:1", None, ledger, lambda w, t: {"promoted": False},  # type: ignore[arg-type]
                   threading.Event())


def message(offset: int, value: bytes) -> SimpleNamespace:
    return SimpleNamespace(partition=0, offset=offset, value=value)


def test_positions_slide_and_windows_come_from_the_newest_kept(tmp_path):
    settings = Settings(home=tmp_path)
    settings.retrain.positions_kept = 1_000
    mon = monitor(settings, tmp_path)
    topics = settings.kafka.topics
    for r in iot_stream(3_000, drift_at=10**9):
        mon._dispatch(topics.telemetry, message(r.seq, encode_telemetry(r.record)))
        mon._dispatch(topics.labels, message(r.seq, encode_label(Label(id=r.record["id"], ts=r.record["ts"],
                                                                       label=r.label))))
    assert mon.labelled == 3_000 and len(mon._positions) == 1_000
    window = mon.window(2_500, 3_000)
    assert window.positions == (2_500, 3_000) and window.telemetry == {0: (2_500, 3_000)}
    clipped = mon.window(0, 3_000)  # asks for more than is kept: the newest 1,000
    assert clipped.positions == (2_000, 3_000) and clipped.labels == {0: (2_000, 3_000)}
    mon.ledger.close()


def test_join_state_is_capped_in_bytes(tmp_path):
    settings = Settings(home=tmp_path)
    settings.serving.join_max_bytes = 20_000
    mon = monitor(settings, tmp_path)
    sizes = []
    for r in iot_stream(2_000, drift_at=10**9):  # telemetry whose labels never come
        value = encode_telemetry(r.record)
        sizes.append(len(value))
        mon._dispatch(settings.kafka.topics.telemetry, message(r.seq, value))
        assert mon._pending_bytes <= 20_000
    assert mon._pending_bytes == sum(state["bytes"] for state in mon._pending.values())
    assert len(mon._pending) < 20_000 / min(sizes) + 1 < 2_000  # the count cap (200,000) never bit
    mon.ledger.close()

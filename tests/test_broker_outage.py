"""No record lost on a failed send: the broker goes away in the middle of a scorer's batch,
long enough for the batch's sends to fail, and comes back on the same port. Every record is
scored once or more; none is skipped. Real broker (behind tests/faultproxy.py, which stands for a
broker restart that keeps its data), real MLflow store, the scorer's own loop."""

from __future__ import annotations

import logging
import threading

import orjson
import pytest

from driftctl.runtime.broker import EmbeddedBroker, ensure_topics, free_loopback_port
from driftctl.runtime.stack import configure_environment
from driftctl.settings import Settings
from serving.kafka_io import read_topic
from serving.scorer import Scorer
from tests.faultproxy import FaultProxy
from tests.streams import produce, readings
from tests.test_trust import fitted, register
from tests.waiting import wait_for
from training.registry import Registry

pytestmark = pytest.mark.integration

RECORDS = 6_000


def test_the_broker_going_away_mid_batch_loses_no_record(home, caplog):
    caplog.set_level(logging.ERROR, logger="serving.scorer")
    settings = Settings()
    settings.kafka.send_timeout = 3.0  # sends in flight fail during the outage (default 120 s)
    settings.serving.batch_size = 200
    configure_environment(settings)
    registry = Registry.from_settings(settings)
    model, frame, labels = fitted()
    registry.move_champion(register(registry, model, frame, labels), "champion for the outage test")

    port = free_loopback_port()
    with EmbeddedBroker(advertised_port=port) as broker:
        proxy = FaultProxy(port, ("127.0.0.1", broker.port)).start()
        bootstrap = f"127.0.0.1:{port}"
        ensure_topics(bootstrap, settings.kafka)
        sent = readings(0, RECORDS, drift_at=10**9)
        produce(bootstrap, settings, sent)
        stop, cut = threading.Event(), threading.Event()
        scorer = Scorer(settings, bootstrap, registry, stop)
        score = scorer._score

        def cut_then_score(*args):
            """Once 1,000 records are scored, the broker goes away in the middle of a polled batch,
            before this partition's predictions are sent (those of the partitions before it may be
            acknowledged already); it is back on the same port 8 s later."""
            if scorer.scored >= 1_000 and not cut.is_set():
                cut.set()
                proxy.stop()
                threading.Timer(8.0, proxy.start).start()
            return score(*args)

        scorer._score = cut_then_score
        thread = threading.Thread(target=scorer.run, daemon=True)
        thread.start()
        try:
            wait_for(cut.is_set, 120, lambda: f"1,000 records scored ({scorer.scored})")
            wait_for(lambda: any("read again" in r.getMessage() for r in caplog.records), 60,
                     "a send to fail and its batch to be given back")
            predictions = read_topic(
                bootstrap, settings.kafka, settings.kafka.topics.predictions, timeout=240,
                until=lambda got: len({orjson.loads(m.value)["id"] for m in got}) >= RECORDS)
        finally:
            stop.set()
            thread.join(30)
            proxy.stop()
    scored = {orjson.loads(m.value)["id"] for m in predictions}
    missing = {r.record["id"] for r in sent} - scored
    assert not missing, f"{len(missing)} of {RECORDS} records never scored, e.g. {sorted(missing)[:5]}"
    assert len(predictions) >= RECORDS  # once or more each
    print(f"broker away mid-batch: {RECORDS} records, {len(scored)} scored, {len(missing)} lost, "
          f"{len(predictions) - len(scored)} predictions repeated (the batches read again)")
    assert thread.is_alive() is False

"""`driftctl bench`: one scorer's end-to-end throughput beside the raw limit, same run.

Both loops consume the same preloaded topic, decode each record, encode a prediction-
sized message, produce it and wait for the acknowledgement; the raw loop has no model.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import resource
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from driftctl.messages import Prediction
from driftctl.runtime.broker import ensure_topics
from driftctl.runtime.machine import describe as describe_machine
from driftctl.settings import KafkaSettings, LedgerSettings, MlflowSettings, PrefectSettings, Settings, Topics
from serving.codec import decode_label, decode_telemetry, encode_prediction
from serving.kafka_io import make_group_consumer, make_producer
from serving.producer import publish
from serving.scorer import Scorer
from serving.synthetic import iot_stream
from training.datasets import to_frame
from training.evaluate import Evaluation
from training.recipes import make_classifier
from training.registry import Registry

if TYPE_CHECKING:
    from kafka import KafkaConsumer, KafkaProducer

    from serving.scorer import Batch


BENCH_MARK = ".driftctl-bench-home"


@contextlib.contextmanager
def bench_home(settings: Settings) -> Iterator[Settings]:
    """`settings` in a throwaway home: its own MLflow store, ledger, heartbeats and audit log, and no
    Prefect server. The benchmark registers a champion of its own and moves its alias: never in the
    user's registry, ledger or status. Kafka stays the configured cluster (on topics of its own)."""
    if (settings.home / BENCH_MARK).exists():
        yield settings
        return
    with tempfile.TemporaryDirectory(prefix="driftctl-bench-") as tmp:
        home = Path(tmp)
        (home / BENCH_MARK).touch()
        yield settings.model_copy(update={
            "home": home, "mlflow": MlflowSettings(model_name=settings.mlflow.model_name),
            "ledger": LedgerSettings(), "prefect": PrefectSettings()})


def _bench_topics() -> Topics:
    run = uuid.uuid4().hex[:8]
    return Topics(**{name: f"bench-{run}.{name}" for name in Topics.model_fields})


def _champion(registry: Registry) -> None:
    readings = list(iot_stream(2000, drift_at=10**9))
    frame = to_frame(r.record["features"] for r in readings)
    labels = pd.Series([r.label for r in readings])
    _, version = registry.record_candidate(
        model=make_classifier().fit(frame, labels), frame=frame, labels=labels,
        evaluation=Evaluation(1.0, None, 0.0, 0, True, "benchmark champion"), params={}, tags={},
        reference_rows=100, training_seconds=0.0, promote=True)
    assert version is not None  # promote=True registers a version
    registry.move_champion(version, "benchmark champion")


def _drain(consumer: KafkaConsumer, producer: KafkaProducer, records: int,
           handle: Callable[[Batch, KafkaProducer], int], timeout: float = 600) -> dict:
    """Poll, handle, flush, commit until `records` telemetry records are acknowledged.
    Latency per record: from the poll that returned it to its acknowledgement."""
    latencies: list[float] = []
    done, first_poll = 0, None
    deadline = time.monotonic() + timeout
    while done < records and time.monotonic() < deadline:
        polled = time.perf_counter()
        batch = consumer.poll(timeout_ms=100, max_records=2000)
        if not batch:
            continue
        first_poll = first_poll or polled
        n = handle(batch, producer)
        producer.flush()
        consumer.commit()
        acked = time.perf_counter()
        latencies.extend([acked - polled] * n)
        done += n
    seconds = time.perf_counter() - (first_poll or time.perf_counter())
    return {"records": done, "seconds": seconds, "rps": done / seconds if seconds else 0.0,
            "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else None,
            "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else None}


def _offered_load(settings: Settings, bootstrap: str, scorer: Scorer, topics: Topics, rate: float,
                  seconds: float = 10.0) -> dict:
    """Records offered at `rate` while the scorer runs: latency from append to acknowledgement."""
    records = int(rate * seconds)
    start = 10**9  # fresh ids, past the preloaded ones
    consumer = make_group_consumer(bootstrap, settings.kafka, f"bench-load-{uuid.uuid4().hex[:6]}",
                                   auto_offset_reset="latest")
    consumer.subscribe([topics.telemetry, topics.labels])
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    consumer.poll(timeout_ms=100)
    # The load comes from another process, as it would in production: not from this one's GIL.
    sender = multiprocessing.get_context("spawn").Process(
        target=_produce_load, args=(bootstrap, settings.kafka, records, rate, start), daemon=True)
    out = make_producer(bootstrap, settings.kafka)
    latencies: list[float] = []
    sender.start()
    done, deadline = 0, time.monotonic() + seconds * 6
    while done < records and time.monotonic() < deadline:
        batch = consumer.poll(timeout_ms=50, max_records=2000)
        if not batch:
            continue
        appended = [m.timestamp / 1000.0 for tp, ms in batch.items() if tp.topic == topics.telemetry for m in ms]
        scorer.process(batch, out)
        consumer.commit()
        acked = time.time()
        latencies.extend(acked - t for t in appended)
        done += len(appended)
    sender.join(seconds * 6)
    out.close()
    consumer.close()
    return {"rate": rate, "records": done, "p50_ms": round(float(np.percentile(latencies, 50)) * 1000, 2),
            "p99_ms": round(float(np.percentile(latencies, 99)) * 1000, 2)}


def _produce_load(bootstrap: str, kafka: KafkaSettings, records: int, rate: float, start: int) -> None:
    # The settings object itself (pickled): its JSON would carry the SASL password as **********.
    producer = make_producer(bootstrap, kafka)
    readings = (r for r in iot_stream(records, drift_at=10**12, seed=7)
                if not r.record.update({"id": f"load-{start + r.seq}"}))
    publish(producer, kafka.topics, readings, rate=rate, label_delay=300)
    producer.close()


def run_bench(settings: Settings, bootstrap: str, records: int,
              progress: Callable[[str, int, int], None] = lambda *a: None, rate: float = 10_000) -> dict:
    with bench_home(settings) as scratch:  # a no-op when the caller already gave one
        return _run_bench(scratch, bootstrap, records, progress, rate)


def _run_bench(settings: Settings, bootstrap: str, records: int,
               progress: Callable[[str, int, int], None], rate: float) -> dict:
    topics = _bench_topics()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topics": topics})})
    ensure_topics(bootstrap, settings.kafka)
    registry = Registry.from_settings(settings)
    _champion(registry)
    champion = registry.champion()
    assert champion is not None  # _champion just moved the alias to its version
    lineage = champion.as_dict()
    producer = make_producer(bootstrap, settings.kafka, linger_ms=20, batch_size=256 * 1024)
    progress("preloading", 0, records)
    publish(producer, topics, iot_stream(records, drift_at=records // 2), rate=None, label_delay=300,
            on_record=lambda n: progress("preloading", n, records) if n % 5000 == 0 else None)
    producer.close()

    def raw(batch: Batch, out: KafkaProducer) -> int:
        n = 0
        for tp, messages in batch.items():
            if tp.topic != topics.telemetry:
                for message in messages:
                    decode_label(message.value)  # the same consumption as the scorer's, no learning
                continue
            for message in messages:
                record = decode_telemetry(message.value)
                prediction: Prediction = {
                    "id": record["id"], "ts": record["ts"], "prediction": 0, "proba": {"0": 1.0, "1": 0.0},
                    "model": lineage, "online": {"prediction": 0, "n_learned": 0}, "served": "champion",
                    "scorer": "raw", "scored_at": 0.0, "source": {"partition": tp.partition, "offset": message.offset}}
                out.send(topics.predictions, key=message.key, value=encode_prediction(prediction))
                n += 1
        return n

    threadpool_limits(limits=1, user_api="openmp")  # as Scorer.run does
    stop = threading.Event()
    scorer = Scorer(settings, bootstrap, registry, stop)
    champion = registry.champion()
    assert champion is not None  # `_champion` moved the alias
    scorer.current = registry.load(champion.version)

    def scored(batch: Batch, out: KafkaProducer) -> int:
        before = scorer.scored + scorer.dead_letters
        scorer.process(batch, out)
        return scorer.scored + scorer.dead_letters - before

    results = {}
    for name, handle, group in (("raw", raw, f"bench-raw-{uuid.uuid4().hex[:6]}"),
                                ("pipeline", scored, f"bench-scorer-{uuid.uuid4().hex[:6]}")):
        progress(f"{name} loop", 0, records)
        consumer = make_group_consumer(bootstrap, settings.kafka, group)
        consumer.subscribe([topics.telemetry, topics.labels])
        out = make_producer(bootstrap, settings.kafka, linger_ms=5, batch_size=256 * 1024)
        try:
            results[name] = _drain(consumer, out, records, handle)
        finally:
            consumer.close()
            out.close()
    progress("offered load", 0, 1)
    offered = _offered_load(settings, bootstrap, scorer, topics, rate)
    scorer.audit.close()
    pipeline, limit = results["pipeline"], results["raw"]
    return {
        "records": records,
        "pipeline_rps": round(pipeline["rps"], 1),
        "limit_rps": round(limit["rps"], 1),
        "ratio": round(pipeline["rps"] / limit["rps"], 3) if limit["rps"] else None,
        "p50_ms": round(pipeline["p50_ms"], 2),
        "p99_ms": round(pipeline["p99_ms"], 2),
        "limit_p99_ms": round(limit["p99_ms"], 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "offered_load": offered,
        "n_learned": scorer.n_learned,
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }



def to_json(result: dict) -> str:
    return json.dumps(result, indent=2)

"""CPU per record of the scorer's and the monitor's per-record paths, without a broker.

The records are the bench's (`serving.synthetic.iot_stream`, labels 300 records late), made
into kafka-python `ConsumerRecord`s and handed to `Scorer.process` in polls of `--batch`
records, and to the monitor's `_dispatch` (telemetry, labels and the scorer's predictions)
in the same order. The producer is a stand-in that acknowledges every send at once: this
measures the stages' own Python, not the client (`driftctl bench` measures both on the
broker). A second copy of the tree (`--baseline DIR`) runs interleaved in a child process
for a ratio in the same machine state.

`--broker` sends the scorer's predictions for real (a KafkaProducer on an embedded broker, each
poll flushed and acknowledged as `Scorer.process` does): the client's own Python in the measure.

    PYTHONPATH=. python benchmarks/hotpath.py [--records N] [--repeats R] [--profile scorer|monitor] [--broker]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


class _Acked:
    def get(self, timeout: float | None = None) -> None:
        return None

    def is_done(self) -> bool:
        return True

    succeeded = staticmethod(lambda: True)
    failed = staticmethod(lambda: False)
    exception = None


class StandInProducer:
    """Takes sends and acknowledges them at once; keeps the predictions for the monitor."""

    def __init__(self, keep: str) -> None:
        self.keep = keep
        self.kept: list[tuple[bytes, bytes]] = []

    def send(self, topic: str, key: bytes | None = None, value: bytes | None = None,
             timestamp_ms: int | None = None) -> _Acked:
        if topic == self.keep and key is not None and value is not None:
            self.kept.append((key, value))
        return _Acked()

    def flush(self, timeout: float | None = None) -> None:
        return None


def _records(n: int, topics: Any) -> list[tuple[str, Any]]:
    """(topic, ConsumerRecord) in the order a consumer of both topics would meet them (labels 300 late)."""
    from kafka.consumer.fetcher import ConsumerRecord

    from serving.codec import encode_label, encode_telemetry
    from serving.synthetic import iot_stream

    out: list[tuple[str, Any]] = []
    offsets = {topics.telemetry: 0, topics.labels: 0}
    pending: list[Any] = []

    def add(topic: str, key: bytes, value: bytes, ts: float) -> None:
        offset = offsets[topic]
        offsets[topic] += 1
        out.append((topic, ConsumerRecord(topic, 0, 0, offset, int(ts * 1000), 0, key, value, [], None,
                                          len(key), len(value), -1)))

    for reading in iot_stream(n, drift_at=n // 2):
        add(topics.telemetry, reading.device.encode(), encode_telemetry(reading.record), time.time())
        pending.append(reading)
        if len(pending) > 300:
            r = pending.pop(0)
            add(topics.labels, r.device.encode(), encode_label({"id": r.record["id"], "ts": r.record["ts"],
                                                                "label": r.label}), time.time())
    return out


def _batches(records: list[tuple[str, Any]], size: int) -> list[dict[Any, list[Any]]]:
    from kafka import TopicPartition

    batches = []
    for i in range(0, len(records), size):
        batch: dict[Any, list[Any]] = {}
        for topic, message in records[i:i + size]:
            batch.setdefault(TopicPartition(topic, 0), []).append(message)
        batches.append(batch)
    return batches


def run(n_records: int, batch_size: int, repeats: int, profile: str | None,
        scorer_only: bool = False, broker: bool = False) -> dict[str, Any]:
    import gc

    import pandas as pd
    from threadpoolctl import threadpool_limits

    from drift.watch import DriftWatch
    from driftctl.settings import Settings
    from serving.monitor import Monitor
    from serving.scorer import Scorer, freeze_heap
    from serving.synthetic import iot_stream
    from training.compiled import compile_verified
    from training.datasets import FeatureSchema, to_frame
    from training.recipes import make_classifier
    from training.registry import LoadedModel, ModelRef

    threadpool_limits(limits=1, user_api="openmp")
    gc_time: list[float] = []
    gc_began = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:  # the collector's own time, as the bench measured it
        if phase == "start":
            gc_began[0] = time.perf_counter()
        else:
            gc_time.append(time.perf_counter() - gc_began[0])

    gc.callbacks.append(on_gc)
    home = Path(tempfile.mkdtemp(prefix="driftctl-hotpath-"))
    settings = Settings(home=home)
    topics = settings.kafka.topics
    readings = list(iot_stream(2000, drift_at=10**9))
    frame = to_frame(r.record["features"] for r in readings)
    model = make_classifier().fit(frame, pd.Series([r.label for r in readings]))
    schema = FeatureSchema.from_frame(frame)
    loaded = LoadedModel(ModelRef("hotpath", 1, "run"), model, schema, 0.9, compile_verified(model, schema))
    records = _records(n_records, topics)
    batches = _batches(records, batch_size)
    result: dict[str, Any] = {"records": sum(1 for t, _ in records if t == topics.telemetry),
                              "scorer_us": [], "monitor_us": []}
    embedded = None
    if broker:  # predictions sent for real (the client's own cost in the measure), on an embedded broker
        from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
        from serving.kafka_io import make_producer
        embedded = EmbeddedBroker().start()
        ensure_topics(embedded.bootstrap_servers, settings.kafka)
        scorer_only = True
    for _ in range(repeats):
        scorer = Scorer(settings, "unused:9092", None, threading.Event())  # type: ignore[arg-type]  # no registry
        scorer.current = loaded
        scorer.start_learner()
        out: Any = StandInProducer(topics.predictions)
        if embedded is not None:
            out = make_producer(embedded.bootstrap_servers, settings.kafka)
            out.send(topics.predictions, key=b"warm", value=b"{}")  # metadata and connection before the clock
            out.flush()
        freeze_heap()
        profiler = cProfile.Profile() if profile == "scorer" else None
        gc_time.clear()
        started = time.process_time()
        if profiler:
            profiler.enable()
        for batch in batches:
            scorer.process(batch, out)
        if profiler:
            profiler.disable()
        result["scorer_us"].append((time.process_time() - started) * 1e6 / result["records"])
        result.setdefault("scorer_gc_us", []).append(sum(gc_time) * 1e6 / result["records"])
        scorer.close_learner()
        scorer.audit.close()
        if embedded is not None:
            out.close()
        if profiler:
            _print(profiler)
        if scorer_only:
            continue
        # The monitor meets the predictions after their records (as it would, a poll later).
        from kafka.consumer.fetcher import ConsumerRecord
        predictions = [(topics.predictions,
                        ConsumerRecord(topics.predictions, 0, 0, i, 0, 0, k, v, [], None, len(k), len(v), -1))
                       for i, (k, v) in enumerate(out.kept)]
        # Each prediction 50 telemetry records after its own (a poll later, as on the broker).
        merged: list[tuple[str, Any]] = []
        t = 0
        for item in records:
            merged.append(item)
            if item[0] == topics.telemetry:
                t += 1
                if t > 50:
                    merged.append(predictions[t - 51])
        merged.extend(predictions[max(t - 50, 0):])
        from driftctl.stores.ledger import Ledger
        ledger = Ledger.from_settings(settings)
        monitor = Monitor(settings, "unused:9092", None, ledger,  # type: ignore[arg-type]  # no registry
                          lambda w, t: {}, threading.Event())
        monitor.champion = loaded.ref
        monitor.schema = schema
        monitor._producer = out
        monitor.watch = DriftWatch(settings.drift)
        reference = [{str(k): v for k, v in row.items()} for row in frame.head(500).to_dict("records")]
        monitor.watch.on_champion(loaded.ref.as_dict(), reference)
        gc.collect()
        profiler = cProfile.Profile() if profile == "monitor" else None
        gc_time.clear()
        started = time.process_time()
        if profiler:
            profiler.enable()
        for topic, message in merged:
            monitor._dispatch_safely(topic, message)
        if profiler:
            profiler.disable()
        result["monitor_us"].append((time.process_time() - started) * 1e6 / result["records"])
        result.setdefault("monitor_gc_us", []).append(sum(gc_time) * 1e6 / result["records"])
        ledger.close()
        if profiler:
            _print(profiler)
        result["monitor_joined"] = monitor.labelled
    if embedded is not None:
        embedded.stop()
    return result


def _print(profiler: cProfile.Profile) -> None:
    """The profile's top functions (SORT=cumulative, TOP=40 to change what is shown)."""
    pstats.Stats(profiler).sort_stats(os.environ.get("SORT", "tottime")).print_stats(int(os.environ.get("TOP", "25")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", choices=["scorer", "monitor"])
    parser.add_argument("--scorer-only", action="store_true", help="measure the scorer only (no monitor)")
    parser.add_argument("--broker", action="store_true",
                        help="send the predictions for real to an embedded broker (implies --scorer-only)")
    parser.add_argument("--baseline", help="another tree to run interleaved (its PYTHONPATH)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child or args.profile:
        print(json.dumps(run(args.records, args.batch, args.repeats, args.profile, args.scorer_only, args.broker)))
        return
    trees = {"this": os.getcwd(), **({"baseline": args.baseline} if args.baseline else {})}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
    for _ in range(args.repeats):
        for name, tree in trees.items():  # interleaved: both see the same machine state
            env = {**os.environ, "PYTHONPATH": tree}
            done = subprocess.run([sys.executable, __file__, "--child", "--records", str(args.records),
                                   "--batch", str(args.batch), "--repeats", "1",
                                   *(["--scorer-only"] if args.scorer_only or args.broker else []),
                                   *(["--broker"] if args.broker else [])],
                                  env=env, cwd=tree, capture_output=True, text=True, check=True)
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    summary = {}
    stages = ["scorer"] if args.scorer_only or args.broker else ["scorer", "monitor"]
    for name, results in runs.items():
        summary[name] = {stage: sorted(round(r[f"{stage}_us"][0], 2) for r in results)
                         for stage in stages + [f"{s}_gc" for s in stages]}
    if "baseline" in summary:
        for stage in stages:
            this, base = summary["this"][stage], summary["baseline"][stage]
            summary[f"{stage}_ratio_median"] = round(base[len(base) // 2] / this[len(this) // 2], 3)
    print(json.dumps({"load_average": os.getloadavg(), **summary}, indent=1))


if __name__ == "__main__":
    main()

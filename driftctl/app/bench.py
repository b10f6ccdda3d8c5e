"""`driftctl bench`: one scorer's end-to-end throughput beside the raw limit, same run.

Both loops consume the same preloaded topic, decode each record, encode a prediction-
sized message, produce it and wait for the acknowledgement; the raw loop has no model.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
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
from serving.scorer import Scorer, freeze_heap
from serving.synthetic import iot_stream
from training.datasets import to_frame
from training.evaluate import Evaluation
from training.recipes import make_classifier
from training.registry import Registry

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

    from kafka import KafkaConsumer, KafkaProducer

    from driftctl.messages import RetrainTrigger, TrainingWindow
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
           handle: Callable[[Batch, KafkaProducer], int], labels: str, timeout: float = 600) -> dict:
    """Poll, handle, flush, commit until `records` telemetry records are acknowledged and their
    `records` labels read: every loop consumes the same messages (kafka-python hands a topic's
    fetched records over in runs, so a loop stopped at the last telemetry record may have read
    few labels). Latency per record: from the poll that returned it to its acknowledgement."""
    latencies: list[float] = []
    done, labelled, first_poll = 0, 0, None
    deadline = time.monotonic() + timeout
    cpu_started = time.process_time()  # this process's CPU, its client threads included: steadier than wall time
    while (done < records or labelled < records) and time.monotonic() < deadline:
        polled = time.perf_counter()
        batch = consumer.poll(timeout_ms=100, max_records=2000)
        if not batch:
            continue
        first_poll = first_poll or polled
        labelled += sum(len(messages) for tp, messages in batch.items() if tp.topic == labels)
        n = handle(batch, producer)
        producer.flush()
        consumer.commit()
        acked = time.perf_counter()
        latencies.extend([acked - polled] * n)
        done += n
    seconds = time.perf_counter() - (first_poll or time.perf_counter())
    cpu = time.process_time() - cpu_started
    return {"records": done, "seconds": seconds, "rps": done / seconds if seconds else 0.0,
            "cpu_us": cpu * 1e6 / done if done else None,
            "p50_ms": float(np.percentile(latencies, 50) * 1000) if latencies else None,
            "p99_ms": float(np.percentile(latencies, 99) * 1000) if latencies else None}


def _offered_load(settings: Settings, bootstrap: str, scorer: Scorer, topics: Topics, rate: float,
                  seconds: float = 10.0, linger_ms: int = 5) -> dict:
    """Records offered at `rate` while the scorer runs: latency from append to acknowledgement.
    The consumer is the scorer's (`ServingSettings.fetch_max_wait_ms`); the load's producer lingers
    `linger_ms` as a client's would."""
    records = int(rate * seconds)
    start = 10**9  # fresh ids, past the preloaded ones
    consumer = make_group_consumer(bootstrap, settings.kafka, f"bench-load-{uuid.uuid4().hex[:6]}",
                                   auto_offset_reset="latest", fetch_max_wait_ms=settings.serving.fetch_max_wait_ms)
    consumer.subscribe([topics.telemetry, topics.labels])
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    consumer.poll(timeout_ms=100)
    # The load comes from another process, as it would in production: not from this one's GIL.
    sender = multiprocessing.get_context("spawn").Process(
        target=_produce_load, args=(bootstrap, settings.kafka, records, rate, start, linger_ms), daemon=True)
    out = make_producer(bootstrap, settings.kafka)
    latencies: list[float] = []
    waited: list[float] = []  # per record: from its append until the poll that returned it
    phases: list[tuple[float, float, float, float]] = []  # per poll with records: poll, process, ack wait, commit
    learner_pid = scorer.start_learner()
    learner_before, cpu_before = _cpu_seconds(learner_pid), time.process_time()
    sender.start()
    done, deadline = 0, time.monotonic() + seconds * 6
    while done < records and time.monotonic() < deadline:
        polling = time.time()
        batch = consumer.poll(timeout_ms=50, max_records=2000)
        if not batch:
            continue
        polled = time.time()
        appended = [m.timestamp / 1000.0 for tp, ms in batch.items() if tp.topic == topics.telemetry for m in ms]
        scorer.process(batch, out)
        processed = time.time()
        consumer.commit()
        acked = time.time()
        latencies.extend(acked - t for t in appended)
        waited.extend(polled - t for t in appended)
        phases.append((polled - polling, processed - polled, scorer.ack_wait, acked - processed))
        done += len(appended)
    cpu = time.process_time() - cpu_before  # the scoring loop and its client threads
    learner_cpu = (after - learner_before if learner_before is not None
                   and (after := _cpu_seconds(learner_pid)) is not None else None)
    sender.join(seconds * 6)
    out.close()
    consumer.close()
    parts = np.array(phases).reshape(-1, 4)
    return {"rate": rate, "records": done, "p50_ms": _ms(latencies, 50), "p99_ms": _ms(latencies, 99),
            # Where the latency goes (p50 / p99 in ms): the wait before the poll that returned a record
            # (producer linger, broker, fetch, the loop coming round), then each poll's own phases.
            "parts_ms": {"append_to_poll": [_ms(waited, 50), _ms(waited, 99)],
                         **{name: [_ms(parts[:, i], 50), _ms(parts[:, i], 99)] for i, name in
                            enumerate(("poll", "process", "ack_wait", "commit"))},
                         "polls": len(phases)},
            # CPU per record while offered: this process (scoring loop, kafka-python's threads), the learner's
            "cpu_us_per_record": {"scorer": _rounded(cpu * 1e6 / done if done else None),
                                  "learner": _rounded(learner_cpu * 1e6 / done if done and learner_cpu else None)}}


def _ms(seconds: list[float] | np.ndarray, q: float) -> float | None:
    return round(float(np.percentile(seconds, q)) * 1000, 2) if len(seconds) else None


SUSTAINED_LINGER_MS = 20


def _produce_load(bootstrap: str, kafka: KafkaSettings, records: int, rate: float, start: int,
                  linger_ms: int = 5) -> None:
    # The settings object itself (pickled): its JSON would carry the SASL password as **********.
    producer = make_producer(bootstrap, kafka, linger_ms=linger_ms)
    readings = (r for r in iot_stream(records, drift_at=10**12, seed=7)
                if not r.record.update({"id": f"load-{start + r.seq}"}))
    publish(producer, kafka.topics, readings, rate=rate, label_delay=300)
    producer.close()


def _count_load(bootstrap: str, kafka: KafkaSettings, records: int, rate: float, sent: Synchronized[int]) -> None:
    """The sustained run's producer: `records` at `rate`, labels 300 records late, counted as it goes.
    Its batches linger 20 ms, not 5: a hand-over every 5 ms cost the sender thread about as much CPU as
    making the records (43 against 29 us a record at 10,000/s, same-run A/B), on a host where every
    stage of the loop shares two cores. The latency runs keep 5 ms."""
    producer = make_producer(bootstrap, kafka, linger_ms=SUSTAINED_LINGER_MS)

    def count(n: int) -> None:
        if n % 500 == 0:
            sent.value = n

    sent.value = publish(producer, kafka.topics, iot_stream(records, drift_at=10**12, seed=11), rate=rate,
                         label_delay=300, on_record=count)
    producer.close()


def _peak_rss_mb(pid: int | None) -> float | None:
    """A live process's peak resident set (Linux /proc; None elsewhere)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    hwm = next((line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")), None)
    return round(int(hwm) / 1024, 1) if hwm else None


def _child_pids(pid: int | None) -> list[int]:
    """A live process's children (Linux /proc; [] elsewhere): the scorer's learner process."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _cpu_seconds(pid: int | None) -> float | None:
    """A live process's CPU time, user + system (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sustained(settings: Settings, bootstrap: str, rate: float, seconds: float,
              progress: Callable[[str, int, int], None] = lambda *a: None) -> dict:
    """The whole loop at `rate` for `seconds`: a producer process, a scorer process (scoring, online
    learning, audit) and a monitor (drift detectors on the labelled stream), on topics and groups of
    their own. Lag per stage is counted, not read from the broker (Tansu's end offsets are low by up
    to a batch): records produced minus records the scorer finished, minus telemetry records the
    monitor read (it reads the labels and predictions too; `labelled_by_monitor` counts the joins)."""
    from driftctl.stores.ledger import Ledger
    from serving.monitor import Monitor
    from serving.scorer import run_scorer_process

    run = uuid.uuid4().hex[:6]
    kafka = settings.kafka.model_copy(update={"topics": _bench_topics(), "scorer_group": f"bench-scorers-{run}",
                                              "monitor_group": f"bench-monitor-{run}"})
    settings = settings.model_copy(update={"kafka": kafka})
    ensure_topics(bootstrap, kafka)
    registry = Registry.from_settings(settings)
    spawn = multiprocessing.get_context("spawn")
    stats, scorer_stop, sent = spawn.Array("q", 4), spawn.Event(), spawn.Value("q", 0)
    scorer = spawn.Process(target=run_scorer_process, name="bench-scorer", daemon=True,
                           args=(settings.model_dump_json(), bootstrap, stats, scorer_stop))
    ledger = Ledger.from_settings(settings)
    stop = threading.Event()

    def no_retrain(window: TrainingWindow, trigger: RetrainTrigger) -> dict:
        return {"promoted": False, "skipped": True, "reason": "benchmark: no retrain"}

    monitor = Monitor(settings, bootstrap, registry, ledger, no_retrain, stop, name=f"bench-monitor-{run}")
    monitor_cpu: list[float] = []

    def run_monitor() -> None:
        try:
            monitor.run()
        finally:
            monitor_cpu.append(time.thread_time())  # this thread's CPU: the monitor's own cost

    monitor_thread = threading.Thread(target=run_monitor, name="bench-monitor", daemon=True)
    scorer.start()
    monitor_thread.start()
    deadline = time.monotonic() + 120
    while stats[3] == 0 and time.monotonic() < deadline:  # the scorer serves the champion, its group joined
        time.sleep(0.2)
    time.sleep(3.0)  # the monitor's group join (a few seconds on Tansu)
    records = int(rate * seconds)
    producer = spawn.Process(target=_count_load, args=(bootstrap, kafka, records, rate, sent), daemon=True)
    samples: list[tuple[float, int, int]] = []  # (t, scorer lag, monitor lag)
    produced_at: list[tuple[float, int]] = []  # (t, records produced by then)
    started = time.monotonic()
    producer.start()
    peak_scorer = None
    cpu_before = _cpu_seconds(scorer.pid)
    learner_pids = _child_pids(scorer.pid)  # started by the scorer's first batch (learner = process)
    learner_before = {pid: _cpu_seconds(pid) or 0.0 for pid in learner_pids}
    cpu: dict[str, float | None] = {"scorer": None, "producer": None, "learner": None}
    try:
        while producer.is_alive() or not samples:
            time.sleep(1.0)
            produced = sent.value
            produced_at.append((time.monotonic() - started, produced))
            samples.append((time.monotonic() - started, max(produced - stats[0] - stats[1], 0),
                            max(produced - monitor.telemetry_seen, 0)))
            progress("sustained load", int(samples[-1][0]), int(seconds))
            peak_scorer = _peak_rss_mb(scorer.pid) or peak_scorer
            learner_pids = learner_pids or _child_pids(scorer.pid)
            learner_cpu = [(c - learner_before.get(pid, 0.0)) for pid in learner_pids
                           if (c := _cpu_seconds(pid)) is not None]
            cpu = {"scorer": _cpu_seconds(scorer.pid) or cpu["scorer"],
                   "producer": _cpu_seconds(producer.pid) or cpu["producer"],
                   "learner": sum(learner_cpu) if learner_cpu else cpu["learner"]}
            if time.monotonic() - started > seconds * 3 + 60:
                break
        elapsed = time.monotonic() - started
        produced = sent.value
    finally:
        producer.join(10)
        if producer.is_alive():
            producer.kill()
        scorer_stop.set()
        stop.set()
        scorer.join(30)
        if scorer.is_alive():
            scorer.kill()
        monitor_thread.join(30)
        ledger.close()
    scored = int(stats[0])

    def per_record(seconds: float | None, n: int) -> float | None:
        return round(seconds * 1e6 / n, 1) if seconds is not None and n else None

    times = [t for t, _, _ in samples]
    lags = np.array([max(a, b) for _, a, b in samples], dtype=float)
    producing = [n for _, n in produced_at]
    start = min(10.0, seconds / 5)  # past the first seconds' start-up
    slope = lag_growth(times, [max(a, b) for _, a, b in samples], producing, records, start)
    by_stage = {name: _rounded(lag_growth(times, [s[i] for s in samples], producing, records, start))
                for i, name in ((1, "scorer"), (2, "monitor"))}
    return {"rate": rate, "seconds": round(elapsed, 1), "produced": produced,
            "achieved_rate": round(produced / elapsed, 1) if elapsed else None,
            "scored": scored, "seen_by_monitor": monitor.telemetry_seen, "labelled_by_monitor": monitor.labelled,
            "max_lag": int(lags.max()) if len(lags) else None,
            "max_lag_scorer": max(a for _, a, _ in samples), "max_lag_monitor": max(b for _, _, b in samples),
            "final_lag": int(lags[-1]) if len(lags) else None,
            "lag_growth_per_s": round(slope, 1) if slope is not None else None,
            "lag_growth_per_s_by_stage": by_stage,
            "scorer_peak_rss_mb": peak_scorer,
            # CPU per record of each stage while it ran (the scorer's start-up taken out): per-core rates.
            "cpu_us_per_record": {
                "scorer": per_record(cpu["scorer"] - cpu_before if cpu["scorer"] and cpu_before else None, scored),
                # the scorer's learner process (learner = process), per record scored: predict + learn
                "learner": per_record(cpu["learner"], scored),
                # per telemetry record it read (and the label and prediction that go with it)
                "monitor": per_record(monitor_cpu[0] if monitor_cpu else None, monitor.telemetry_seen),
                "producer": per_record(cpu["producer"], produced)}}


def lag_growth(times: list[float], lags: list[float], produced: list[int], records: int,
               start: float) -> float | None:
    """Records/s by which the lag grows while the load is offered: the least-squares slope of the
    samples from `start` s on, up to the last one taken while the producer was still short of its
    `records` (after that the lag can only fall, and the tail's flat or falling samples pulled the
    slope down by an amount that depended on how long the producer took to close). None with
    fewer than three such samples."""
    keep = [i for i, t in enumerate(times) if t >= start and produced[i] < records]
    if len(keep) < 3:
        return None
    t = np.array([times[i] for i in keep])
    y = np.array([lags[i] for i in keep], dtype=float)
    if np.ptp(t) == 0:
        return None
    return float(np.polyfit(t, y, 1)[0])


def run_bench(settings: Settings, bootstrap: str, records: int,
              progress: Callable[[str, int, int], None] = lambda *a: None, rate: float = 10_000,
              sustained_seconds: float = 60.0, sustained_rate: float = 10_000, offered_only: bool = False) -> dict:
    with bench_home(settings) as scratch:  # a no-op when the caller already gave one
        if offered_only:
            return _run_offered_only(scratch, bootstrap, rate, progress)
        return _run_bench(scratch, bootstrap, records, progress, rate, sustained_seconds, sustained_rate)


def _run_offered_only(settings: Settings, bootstrap: str, rate: float,
                      progress: Callable[[str, int, int], None]) -> dict:
    """Only the latency run at `rate` offered, against the same scorer as the whole bench's (champion,
    learner process), in a minute instead of several: for A/B of the settings that move latency. Its
    online learner has not learned the throughput loops' records first."""
    topics = _bench_topics()
    settings = settings.model_copy(update={"kafka": settings.kafka.model_copy(update={"topics": topics})})
    ensure_topics(bootstrap, settings.kafka)
    registry = Registry.from_settings(settings)
    _champion(registry)
    champion = registry.champion()
    assert champion is not None  # `_champion` moved the alias
    threadpool_limits(limits=1, user_api="openmp")  # as Scorer.run does
    scorer = Scorer(settings, bootstrap, registry, threading.Event())
    scorer.current = registry.load(champion.version)
    freeze_heap()
    progress("offered load", 0, 1)
    try:
        offered = _offered_load(settings, bootstrap, scorer, topics, rate)
    finally:
        scorer.close_learner()
        scorer.audit.close()
    return {"offered_load": offered, "machine": describe_machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _run_bench(settings: Settings, bootstrap: str, records: int,
               progress: Callable[[str, int, int], None], rate: float, sustained_seconds: float,
               sustained_rate: float) -> dict:
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
    champion = registry.champion()
    assert champion is not None  # `_champion` moved the alias
    loaded = registry.load(champion.version)

    def make_scorer(learner: str) -> Scorer:
        serving = settings.serving.model_copy(update={"learner": learner})
        made = Scorer(settings.model_copy(update={"serving": serving}), bootstrap, registry, stop)
        made.current = loaded
        return made

    # The default (the online learner in its own process) and, in the same run, the learner inline in
    # the scoring loop: before and after taking learning off the scoring path.
    scorers = {"pipeline": make_scorer("process"), "pipeline_inline": make_scorer("inline")}
    scorer = scorers["pipeline"]
    freeze_heap()  # as Scorer.run does once its champion serves; the raw loop gains as much

    def scoring(which: Scorer) -> Callable[[Batch, KafkaProducer], int]:
        def scored(batch: Batch, out: KafkaProducer) -> int:
            before = which.scored + which.dead_letters
            which.process(batch, out)
            return which.scored + which.dead_letters - before
        return scored

    results, learner_cpu = {}, None
    for name, handle in (("raw", raw), ("pipeline", scoring(scorers["pipeline"])),
                         ("pipeline_inline", scoring(scorers["pipeline_inline"]))):
        progress(f"{name} loop", 0, records)
        consumer = make_group_consumer(bootstrap, settings.kafka, f"bench-{name}-{uuid.uuid4().hex[:6]}")
        consumer.subscribe([topics.telemetry, topics.labels])
        out = make_producer(bootstrap, settings.kafka, linger_ms=5, batch_size=256 * 1024)
        learner_pid = learner_before = None
        if name == "pipeline":  # its learner process started and loaded: its CPU from here on is per record
            learner_pid = scorer.start_learner()
            learner_before = _cpu_seconds(learner_pid)
        try:
            results[name] = _drain(consumer, out, records, handle, topics.labels)
        finally:
            consumer.close()
            out.close()
        if learner_before is not None and (after := _cpu_seconds(learner_pid)) is not None:
            learner_cpu = (after - learner_before) * 1e6 / results[name]["records"]
    scorers["pipeline_inline"].audit.close()
    progress("offered load", 0, 1)
    offered = _offered_load(settings, bootstrap, scorer, topics, rate)
    scorer.close_learner()
    scorer.audit.close()
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the sustained run's monitor
    whole = None
    if sustained_seconds > 0:
        progress("sustained load", 0, int(sustained_seconds))
        whole = sustained(settings, bootstrap, sustained_rate, sustained_seconds, progress)
    pipeline, limit, inline = results["pipeline"], results["raw"], results["pipeline_inline"]
    return {
        "records": records,
        "pipeline_rps": round(pipeline["rps"], 1),
        "limit_rps": round(limit["rps"], 1),
        "ratio": round(pipeline["rps"] / limit["rps"], 3) if limit["rps"] else None,
        "p50_ms": round(pipeline["p50_ms"], 2),
        "p99_ms": round(pipeline["p99_ms"], 2),
        "limit_p99_ms": round(limit["p99_ms"], 2),
        # CPU per record of each loop in this process: on a shared machine a steadier ratio than the rates'.
        # The learner process's CPU is on the other core: reported beside, not in, the scorer's.
        "cpu_us_per_record": {"pipeline": _rounded(pipeline["cpu_us"]), "raw": _rounded(limit["cpu_us"]),
                              "learner_process": _rounded(learner_cpu),
                              "pipeline_inline": _rounded(inline["cpu_us"])},
        "cpu_ratio": round(limit["cpu_us"] / pipeline["cpu_us"], 3) if pipeline["cpu_us"] else None,
        # the online learner inline in the scoring loop (ServingSettings.learner = "inline"), same run
        "inline": {"pipeline_rps": round(inline["rps"], 1),
                   "ratio": round(inline["rps"] / limit["rps"], 3) if limit["rps"] else None,
                   "cpu_ratio": round(limit["cpu_us"] / inline["cpu_us"], 3) if inline["cpu_us"] else None,
                   "p99_ms": round(inline["p99_ms"], 2)},
        "peak_rss_mb": round(peak_rss, 1),
        "offered_load": offered,
        "sustained": whole,
        "n_learned": scorer.n_learned,
        "machine": describe_machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }



def _rounded(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2)

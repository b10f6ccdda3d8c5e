"""The monitor's memory stays bounded: a sliding window of labelled positions (retrain windows
come from the newest kept) and join state capped in bytes as well as in count. Fed through its
own dispatch, as its poll loop does; a real ledger on SQLite."""

from __future__ import annotations

import gc
import itertools
import random
import threading
import tracemalloc
from collections import deque
from types import SimpleNamespace

from drift.watch import DriftWatch, Observation, PositionRuns
from driftctl.messages import Label
from driftctl.settings import DriftSettings, Settings
from driftctl.stores.ledger import Ledger
from serving.codec import decode_telemetry, encode_label, encode_prediction, encode_telemetry
from serving.monitor import Monitor
from serving.synthetic import iot_stream
from training.registry import ModelRef


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


def test_the_error_positions_keep_only_adwin_s_window_and_map_its_cut_as_before():
    """The watch maps ADWIN's cut (an error-stream index) to a labelled position. It kept one entry
    per label for as long as a champion served (the soak's monitor grew by it); now only those a
    later cut can reach. The map is checked against a full one kept here."""
    watch = DriftWatch(DriftSettings(accuracy_gap=False, prediction_drift=False, change_from_detector=True,
                                     min_train_rows=200, cooldown=0))
    watch.on_champion({"version": 1}, None, labelled=0)
    rng, full, cuts, longest = random.Random(3), [], [], 0
    labelled = 0
    for i in range(60_000):
        labelled += 1 + (i % 7 == 0)  # some labelled records are not observed (in-sample, another version)
        full.append(labelled)
        accuracy = 0.95 if (i // 15_000) % 2 == 0 else 0.7  # three changes of the error rate
        step = watch.observe(Observation(champion_right=rng.random() < accuracy), index=i, labelled=labelled)
        for event in step.events:
            if "adwin_change_at_labelled" in event.evidence:
                cuts.append(event.evidence["adwin_change_at_labelled"])
                detector = watch.error_detector
                assert event.evidence["adwin_change_at_labelled"] == full[min(detector.change_at, len(full) - 1)]
        longest = max(longest, watch._error_positions.runs)
        detector = watch.error_detector
        # Nothing a later cut can reach (n_seen - width on) was dropped, and nothing else lost.
        assert watch._error_positions.first <= detector.n_seen - detector.width
        assert len(watch._error_positions) == detector.n_seen
    assert len(cuts) >= 2  # the changes were found, their cuts mapped as by the full map
    # A run per label skipped (a seventh of them); the stable stretches (15,000 labels) dropped behind ADWIN.
    assert longest < 60_000 / 7 / 2


def test_consecutive_labelled_positions_are_one_run_however_many():
    runs = PositionRuns()
    for labelled in range(5, 100_005):
        runs.append(labelled)
    assert (runs.runs, len(runs), runs[0], runs[99_999]) == (1, 100_000, 5, 100_004)
    runs.append(200_000)  # a gap: labels not observed
    runs.append(200_001)
    assert (runs.runs, runs[99_999], runs[100_000], runs[100_001]) == (2, 100_004, 200_000, 200_001)
    runs.drop_before(100_001)
    assert (runs.runs, runs.first, runs[100_001], list(runs)) == (1, 100_000, 200_001, [200_000, 200_001])


def test_the_monitor_s_state_is_the_same_size_after_2n_records_as_after_n(tmp_path):
    """With a champion serving and every side of each record arriving (telemetry, its prediction,
    its label 300 records later), the monitor's memory is its windows and caps: what it holds after
    N records is what it holds after 2N. Measured with tracemalloc over the monitor's own dispatch
    (a real SQLite ledger); the caps set small, so that N fills them."""
    settings = Settings(home=tmp_path)
    settings.serving.join_max_records = 1_000
    settings.retrain.positions_kept = settings.retrain.scheduled_rows = 1_000
    mon = monitor(settings, tmp_path)
    mon._producer = SimpleNamespace(send=lambda *a, **k: None)  # type: ignore[assignment]
    champion = ModelRef("m", 1, "r")
    mon.champion = champion
    mon.watch.on_champion(champion.as_dict(), [r.record["features"] for r in iot_stream(1_000, drift_at=10**9,
                                                                                       seed=7)])
    topics, rng = settings.kafka.topics, random.Random(0)
    stream = iot_stream(None, drift_at=10**9)
    late: deque = deque()

    def feed(n: int) -> None:
        for r in itertools.islice(stream, n):
            record = r.record
            served = r.label if rng.random() < 0.9 else 1 - r.label
            prediction = {"id": record["id"], "ts": record["ts"], "prediction": served, "proba": {"0": .3, "1": .7},
                          "model": {"name": "m", "version": 1, "run_id": "r"}, "champion": {"prediction": served},
                          "online": {"prediction": r.label, "n_learned": r.seq, "renewals": 0},
                          "served_by": "champion", "confidence": 0.7, "scorer": "s", "scored_at": record["ts"]}
            mon._dispatch(topics.telemetry, message(r.seq, encode_telemetry(record)))
            mon._dispatch(topics.predictions, message(r.seq, encode_prediction(prediction)))  # type: ignore[arg-type]
            late.append(r)
            if len(late) > 300:
                o = late.popleft()
                mon._dispatch(topics.labels, message(o.seq, encode_label(Label(id=o.record["id"], ts=o.record["ts"],
                                                                             label=o.label))))
            mon.records.flush()

    n = 12_000
    feed(2_000)  # imports, first windows, caches
    gc.collect()
    tracemalloc.start()
    try:
        feed(n)
        gc.collect()
        after_n, map_n = tracemalloc.get_traced_memory()[0], mon.watch._error_positions.nbytes
        feed(n)
        gc.collect()
        after_2n, map_2n = tracemalloc.get_traced_memory()[0], mon.watch._error_positions.nbytes
    finally:
        tracemalloc.stop()
    assert mon.labelled == 2_000 + 2 * n - 300 and mon.joined_predictions == mon.labelled
    assert len(mon._done) == 1_000 and len(mon._positions) == 1_000 and len(mon._pending) <= 301
    # The watch's error-position map is runs of consecutive labels: a label a record is one run,
    # however wide ADWIN's window grows (it was 8 bytes a label). Anything gaining an object per
    # record costs 30-150 bytes a record (the finished ids uncapped: ~150). Left for noise, 8 bytes a
    # record: windows still filling (the gap detector's 500 pairs), objects from free lists made
    # before tracing (measured: ~3.5).
    assert map_2n - map_n <= 64
    assert (after_2n - after_n) - (map_2n - map_n) < 8 * n, (after_n, after_2n, map_n, map_2n)
    mon.ledger.close()


def test_a_drift_that_lasts_keeps_only_the_newest_events_and_decisions(tmp_path):
    """Features far from the champion's reference for the whole stream: the data-drift check fires
    every window, for as long as the drift lasts. The monitor keeps the newest
    `serving.monitor_history` events and decisions (the ledger has them all), not one per window."""
    settings = Settings(home=tmp_path)
    settings.serving.monitor_history = 5
    mon = monitor(settings, tmp_path)
    sent: list = []
    mon._producer = SimpleNamespace(send=lambda topic, **k: sent.append(topic))  # type: ignore[assignment]
    champion = ModelRef("m", 1, "r")
    mon.champion = champion
    mon.watch.on_champion(champion.as_dict(), [r.record["features"] for r in iot_stream(1_000, drift_at=10**9,
                                                                                       seed=7)])
    window = settings.drift.data_window
    for r in iot_stream(20 * window, drift_at=0):  # drifted from the first record on
        mon._dispatch(settings.kafka.topics.telemetry, message(r.seq, encode_telemetry(r.record)))
    fired = sent.count(settings.kafka.topics.drift_events)
    assert fired >= 15  # an event (nearly) every window, each sent on its topic
    assert len(mon.events) == 5 and len(mon.decisions) <= 5
    assert mon.events[-1].index == max(e.index for e in mon.events) > 15 * window  # the newest kept
    mon._executor.shutdown(wait=True)
    mon.records.flush(now=True)
    mon.ledger.close()


def test_the_position_ring_gives_the_rows_a_deque_of_tuples_gave():
    """The labelled positions are kept in columns of machine numbers (no Python object per record);
    any span of the newest kept reads as it did from a deque of tuples, across the ring's wrap."""
    from serving.monitor import PositionRing

    ring, reference, rng = PositionRing(1_000), deque(maxlen=1_000), random.Random(5)
    for n in range(3_517):
        row = (n % 3, 10_000_000_000 + n, n % 2, 7 * n, 1_795_798_611.25 + n)
        ring.append(*row)
        reference.append(row)
        if n % 97 == 0 or n > 3_500:
            start = rng.randrange(0, len(reference))
            end = rng.randrange(start, len(reference) + 1)
            assert len(ring) == len(reference)
            # the columns the monitor's checkpoints read: the same rows, a column at a time
            assert list(zip(*ring.columns(start, end), strict=True)) == list(itertools.islice(reference, start, end))
    assert list(zip(*ring.columns(0, 10_000), strict=True)) == list(reference)
    for start in range(0, 1_001, 50):  # every alignment against the wrap, and the empty spans
        for end in (start, start + 1, 1_000, 1_001):
            assert (list(zip(*ring.columns(start, end), strict=True))
                    == list(itertools.islice(reference, start, min(max(end, start), len(reference)))))


def test_a_record_waiting_in_the_join_is_compact_and_counted_as_held(tmp_path):
    """A scorer far behind leaves labelled records waiting for their prediction (~100,000 in the
    2M soak). Each held its decoded features and a dict of ten keys: ~1 KB of Python objects where
    join_max_bytes counted its ~0.2 KB of messages. Now it holds its telemetry as received (decoded
    again when joined) in a dict of five keys, and the cap counts the entry, not just its messages.
    The features decoded at the join are those of the telemetry."""
    settings = Settings(home=tmp_path)
    mon = monitor(settings, tmp_path)
    mon.watch.observe = lambda *a, **k: SimpleNamespace(events=(), decisions=())  # the detectors' windows apart
    mon.champion = ModelRef("m", 1, "r")
    topics = settings.kafka.topics
    warm, n = 2_000, 3_000  # the warm-up fills what is bounded anyway (the archive's rows, the recent window)
    readings = list(iot_stream(warm + n, drift_at=10**9))
    for r in readings[:warm]:
        mon._dispatch(topics.telemetry, message(r.seq, encode_telemetry(r.record)))
        mon._dispatch(topics.labels, message(r.seq, encode_label(Label(id=r.record["id"], ts=r.record["ts"],
                                                                       label=r.label))))
    gc.collect()
    tracemalloc.start()
    before, counted = tracemalloc.get_traced_memory()[0], mon._pending_bytes
    for r in readings[warm:]:  # bytes of their own size, as the consumer's (orjson's own keep a 4 KB buffer)
        mon._dispatch(topics.telemetry, message(r.seq, bytes(memoryview(encode_telemetry(r.record)))))
        mon._dispatch(topics.labels, message(r.seq, bytes(memoryview(encode_label(
            Label(id=r.record["id"], ts=r.record["ts"], label=r.label))))))
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(mon._pending) == warm + n and mon.labelled == warm + n
    assert held < 1.25 * (mon._pending_bytes - counted)  # was ~4.9 times what the cap counted
    assert held / n < 750  # was ~990 bytes a record
    last = readings[-1]
    position, raw, label = mon._labelled_rows[-1]  # the telemetry as received: decoded only when judged
    assert (position, decode_telemetry(raw)["features"], label) == (warm + n - 1, last.record["features"], last.label)
    for r in readings:  # the predictions come: every waiting record joins
        prediction = {"id": r.record["id"], "ts": r.record["ts"], "prediction": r.label, "proba": {str(r.label): 1.0},
                      "model": {"name": "m", "version": 1, "run_id": "r"}, "scored_at": r.record["ts"]}
        mon._dispatch(topics.predictions, message(r.seq, encode_prediction(prediction)))  # type: ignore[arg-type]
    assert mon.joined_predictions == warm + n and not mon._pending and mon._pending_bytes == 0
    mon.ledger.close()

"""The monitor's join goes on joining when a side lags by more than it holds (issue 11, the soak):
labels read far behind or far ahead of their telemetry (one partition's fetch far ahead of
another's), predictions far behind (a scorer lagging). Evicting the oldest entry alone stalled it
for good: every partner came for an entry just evicted. Fed through the monitor's own dispatch, as
its poll loop does; a real ledger on SQLite."""

from __future__ import annotations

import itertools
import threading
from types import SimpleNamespace

from driftctl.messages import Label
from driftctl.settings import Settings
from driftctl.stores.ledger import Ledger
from serving.codec import encode_label, encode_prediction, encode_telemetry
from serving.monitor import Monitor
from serving.synthetic import iot_stream

RECORDS, CAP = 24_000, 1_000


def make_monitor(tmp_path) -> tuple[Monitor, Settings]:
    settings = Settings(home=tmp_path)
    settings.serving.join_max_records = CAP
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}")
    mon = Monitor(settings, "127.0.0.1:1", None, ledger, lambda w, t: {"promoted": False},  # type: ignore[arg-type]
                  threading.Event())
    return mon, settings


def messages(settings: Settings):
    topics = settings.kafka.topics
    for r in iot_stream(RECORDS, drift_at=10**9):
        record = r.record
        prediction = {"id": record["id"], "ts": record["ts"], "prediction": r.label, "proba": {str(r.label): 1.0},
                      "model": {"name": "m", "version": 1, "run_id": "r"}, "scored_at": record["ts"]}
        yield (
            (topics.telemetry, encode_telemetry(record)),
            (topics.labels, encode_label(Label(id=record["id"], ts=record["ts"], label=r.label))),
            (topics.predictions, encode_prediction(prediction)),  # type: ignore[arg-type]
        )


def feed(mon: Monitor, settings: Settings, lag: dict[str, int], drop: set[str] = frozenset()) -> list[tuple]:
    """Each step dispatches record i's telemetry and the labels and predictions `lag` records behind
    (negative: ahead). Returns (labelled, labels joined to predictions) at each quarter."""
    stream = list(messages(settings))
    order = {"telemetry": 0, "labels": 1, "predictions": 2}
    shift = -min(0, *lag.values())
    quarters = []
    for step in range(RECORDS + max(lag.values()) + shift):
        for side, at in order.items():
            i = step - lag.get(side, 0) - shift
            if side not in drop and 0 <= i < RECORDS:
                topic, value = stream[i][at]
                mon._dispatch(topic, SimpleNamespace(partition=0, offset=i, value=value))
        assert len(mon._pending) <= CAP
        if step and step % (RECORDS // 4) == 0:
            quarters.append((mon.labelled, mon.joined_predictions))
    quarters.append((mon.labelled, mon.joined_predictions))
    return quarters


def gains(quarters: list[tuple]) -> list[tuple]:
    """What each stretch between two quarter marks added; [2]: the stream's last quarter."""
    return [(b[0] - a[0], b[1] - a[1]) for a, b in itertools.pairwise(quarters)]


def test_labels_far_behind_their_telemetry_still_join(tmp_path):
    mon, settings = make_monitor(tmp_path)
    quarters = feed(mon, settings, {"labels": 3 * CAP, "predictions": 3 * CAP})
    last = gains(quarters)[2]
    assert last[0] > 0.05 * RECORDS / 4 and last[1] > 0.05 * RECORDS / 4, quarters
    join = mon.join_vitals()
    assert join["evicted"] > 0 and join["records"]["near_misses"] > 0 and join["records"]["skipped"] > 0
    assert join["records"]["share"] < 1
    mon.ledger.close()


def test_labels_read_far_ahead_of_their_telemetry_still_join(tmp_path):
    mon, settings = make_monitor(tmp_path)
    quarters = feed(mon, settings, {"labels": -3 * CAP, "predictions": 0})
    assert gains(quarters)[2][0] > 0.05 * RECORDS / 4, quarters
    assert mon.join_vitals()["records"]["near_misses"] > 0
    mon.ledger.close()


def test_a_scorer_far_behind_still_has_its_predictions_judged(tmp_path):
    """Labels on time: every record is labelled (training windows, the policy's counts); the
    predictions, far behind, are still joined to labels on a share of the records."""
    mon, settings = make_monitor(tmp_path)
    quarters = feed(mon, settings, {"labels": 300, "predictions": 3 * CAP})
    assert mon.labelled == RECORDS
    assert gains(quarters)[2][1] > 0.05 * RECORDS / 4, quarters
    assert mon.join_vitals()["awaiting_prediction"]["near_misses"] > 0
    mon.ledger.close()


def test_no_scorer_at_all_costs_no_labelled_record(tmp_path):
    """Predictions that never come (no champion yet, a scorer down) are not a lag: nothing is
    sampled away, and every record is labelled."""
    mon, settings = make_monitor(tmp_path)
    feed(mon, settings, {"labels": 300, "predictions": 0}, drop={"predictions"})
    assert mon.labelled == RECORDS
    join = mon.join_vitals()
    assert join["records"]["skipped"] == 0 and join["awaiting_prediction"]["skipped"] == 0
    assert join["evicted"] > 0  # the caps still held
    mon.ledger.close()


def test_redelivered_sides_are_counted_once(tmp_path):
    mon, settings = make_monitor(tmp_path)
    (telemetry, label, prediction), = list(messages(settings))[:1]
    for topic, value in (telemetry, telemetry, label, prediction, label, telemetry, prediction):
        mon._dispatch(topic, SimpleNamespace(partition=0, offset=0, value=value))
    assert (mon.telemetry_seen, mon.labelled, mon.joined_predictions) == (1, 1, 1)
    mon.ledger.close()


def test_the_scorers_join_goes_on_learning_when_labels_lag_beyond_it():
    """The scorer's learner join (serving.joiner.LabelJoiner): labels 3x its cap behind their
    records joined none before; now a share of them, and the near misses are counted."""
    from serving.joiner import LabelJoiner

    joiner = LabelJoiner(max_records=CAP, clock=lambda: 0.0)
    joined = []
    for i in range(RECORDS + 3 * CAP):
        if i < RECORDS:
            joiner.add_record(f"r{i}", i)
        if i >= 3 * CAP and joiner.add_label(f"r{i - 3 * CAP}", 1) is not None:
            joined.append(i - 3 * CAP)
    last_quarter = [i for i in joined if i >= 3 * RECORDS // 4]
    assert len(last_quarter) > 0.05 * RECORDS / 4, len(joined)
    assert joiner.admission.near_misses > 0 and joiner.orphans > 0 and len(joiner) <= 2 * CAP


def test_the_labels_of_dead_lettered_records_wait_for_nothing():
    """The scorer dead-letters invalid records: their labels would wait for a record that never
    comes, and their eviction must not read as a lag (it would sample the valid records away)."""
    from serving.joiner import LabelJoiner

    joiner = LabelJoiner(max_records=CAP, clock=lambda: 0.0)
    learned = 0
    for i in range(RECORDS + 300):
        if i < RECORDS:
            if i % 2:
                joiner.never(f"r{i}")  # half the stream is invalid
            else:
                joiner.add_record(f"r{i}", i)
        if i >= 300:
            learned += joiner.add_label(f"r{i - 300}", 1) is not None
    assert learned == RECORDS // 2 and len(joiner) == 0
    assert joiner.admission.share == 1.0 and joiner.admission.skipped == 0


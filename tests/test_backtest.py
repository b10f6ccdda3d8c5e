"""`driftctl backtest`: prequential replay on small generated tables, and the CLI contract."""

import json

import numpy as np
import pandas as pd
import pytest

from drift.backtest import BacktestError, parse_policy, prepare, run_backtest
from driftctl.settings import DriftSettings, ServingSettings

KEYS = {"rows", "warmup", "policy", "accuracy", "retrains", "drift_events", "promotions", "seconds", "served",
        "estimated_accuracy"}


def table(n=8000, drift_at=4000, seed=0):
    """A stream with numbers, an integer-coded zone, a non-ASCII string category, missing values,
    ids and event times; the concept flips at `drift_at` (P(y|x) changes, P(x) does not)."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    colour = rng.choice(["grün", "rouge", "синий"], size=n)
    zone = rng.integers(1, 5, size=n)
    before = (x1 > 0) ^ (colour == "grün")
    after = (x1 < 0) ^ (colour == "grün")
    label = np.where(np.arange(n) < drift_at, before, after)
    frame = pd.DataFrame({"event_time": pd.date_range("2026-01-01", periods=n, freq="s").astype(str),
                          "record": [f"r{i:05d}" for i in range(n)], "x1": x1, "x2": x2, "zone": zone,
                          "colour": colour, "label": np.where(label, "fault", "ok")})
    frame.loc[frame.index % 11 == 0, "x2"] = np.nan
    frame.loc[frame.index % 13 == 0, "colour"] = None
    return frame


def split(frame):
    features, labels, ids, _ = prepare(frame, "label", time_col="event_time", id_col="record")
    return features, labels, ids


def settings():
    # The first try (first_train_rows, on by default) is below min_train_rows here: off, these tests are about the rest.
    return DriftSettings(min_train_rows=600, cooldown=500, first_train_rows=None)


def test_drift_beats_static_on_a_drifting_stream():
    features, labels, ids = split(table())
    static = run_backtest(features, labels, policy="static", warmup=1000, settings=settings())
    drift = run_backtest(features, labels, policy="drift", warmup=1000, settings=settings(), ids=ids)
    assert static.retrains == 0 and static.drift_events == []
    assert drift.accuracy > static.accuracy + 0.2
    concept = [e for e in drift.drift_events if e["detector"] == "error-adwin"]
    assert concept and 4000 <= concept[0]["index"] < 4400  # after the drift, within 400 records
    assert concept[0]["record_id"] == f"r{concept[0]['index']:05d}"
    assert [p["version"] for p in drift.promotions] == [2]
    assert drift.promotions[0]["index"] >= concept[0]["index"] + 600  # waited for min_train_rows labels
    # One drift, one incident: every event of it, before and after the retrain, carries the same id.
    assert drift.incidents == len({e["incident"] for e in drift.drift_events}) >= 1
    assert drift.incidents < len(drift.drift_events) or len(drift.drift_events) == 1


def test_stationary_stream_raises_no_retrain():
    features, labels, _ = split(table(drift_at=10**9))
    result = run_backtest(features, labels, policy="drift", warmup=1000, settings=settings())
    assert result.retrains == 0 and result.drift_events == [] and result.accuracy > 0.95


def test_label_delay_delays_detection_and_training():
    features, labels, _ = split(table())
    prompt = run_backtest(features, labels, policy="drift", warmup=1000, settings=settings())
    late = run_backtest(features, labels, policy="drift", warmup=1000, label_delay=300, settings=settings())
    first = lambda r: r.drift_events[0]["index"]  # noqa: E731
    assert first(late) >= first(prompt) + 250
    # A provisional champion once the warmup records are scored, v1 when their labels are in.
    assert [d["index"] for d in late.decisions[:2]] == [1000 - 1, 1000 + 300 - 1]
    assert late.accuracy < prompt.accuracy


@pytest.mark.parametrize("policy, retrains", [("periodic:1500", 4), ("online", 0)])
def test_other_policies(policy, retrains):
    features, labels, _ = split(table())
    result = run_backtest(features, labels, policy=policy, warmup=1000, settings=settings())
    assert result.retrains == retrains and result.policy == policy
    assert result.accuracy > 0.75  # both recover from the flip, unlike static


def test_time_column_orders_the_replay():
    frame = table()
    shuffled = frame.sample(frac=1, random_state=1)
    a = run_backtest(*split(frame)[:2], policy="drift", warmup=1000, settings=settings())
    b = run_backtest(*split(shuffled)[:2], policy="drift", warmup=1000, settings=settings())
    assert a.accuracy == b.accuracy and [e["index"] for e in a.drift_events] == [e["index"] for e in b.drift_events]


def test_prepare_keeps_types_and_drops_unlabelled_rows():
    frame = table(500)
    frame.loc[[3, 4], "label"] = None
    features, labels, ids, dropped = prepare(frame, "label", drop=["x2"], time_col="event_time", id_col="record")
    assert dropped == 2 and len(features) == len(labels) == len(ids) == 498
    assert list(features.columns) == ["colour", "x1", "zone"]
    assert features["colour"].dtype == object and features["zone"].dtype == float
    assert features["colour"].isna().sum() == (frame["colour"].isna() & frame["label"].notna()).sum()


@pytest.mark.parametrize("kwargs, message", [({"target": "nope"}, "unknown target 'nope'"),
                                             ({"target": "label", "drop": ["zz"]}, "cannot drop unknown column"),
                                             ({"target": "label", "time_col": "when"}, "unknown time column")])
def test_prepare_rejects_unknown_columns(kwargs, message):
    with pytest.raises(BacktestError, match=message):
        prepare(table(200), **kwargs)


@pytest.mark.parametrize("text", ["weekly", "periodic:", "periodic:0", "periodic:-5", "periodic:x"])
def test_bad_policy_strings(text):
    with pytest.raises(ValueError, match="policy"):
        parse_policy(text)


def test_too_short_a_table_is_an_error():
    features, labels, _ = split(table(500))
    with pytest.raises(BacktestError, match="nothing left to test"):
        run_backtest(features, labels, warmup=400, label_delay=200)


# -- the CLI (in this process: tests/conftest.py `cli`; tests/test_cli.py runs a real one) ----

def driftctl(cli, *args, cwd):
    env = {"DRIFTCTL_DRIFT__MIN_TRAIN_ROWS": "600", "DRIFTCTL_DRIFT__COOLDOWN": "500"}
    return cli("backtest", *args, env=env, cwd=cwd)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_cli_writes_the_contract_json(tmp_path, suffix, cli):
    data = tmp_path / f"stream.{suffix}"
    frame = table()
    frame.to_csv(data, index=False) if suffix == "csv" else frame.to_parquet(data)
    out = tmp_path / "out.json"
    done = driftctl(cli, str(data), "--target", "label", "--time-col", "event_time", "--id-col", "record",
                    "--drop", "x2", "--warmup", "1000", "--label-delay", "50", "--json", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert set(result) >= KEYS
    assert result["rows"] == 8000 and result["warmup"] == 1000 and result["policy"] == "drift"
    assert "x2" not in result["features"] and "colour" in result["features"]
    assert all({"index", "detector"} <= set(e) for e in result["drift_events"]) and result["drift_events"]
    assert result["retrains"] >= 1 and 0.5 < result["accuracy"] <= 1
    assert set(result["served"]) == {"champion", "online", "blend"}
    assert sum(result["served"].values()) == result["rows"] - result["warmup"]
    assert 0.5 < result["estimated_accuracy"] <= 1


def test_served_and_estimated_accuracy():
    """Every record after warmup is served by one source; the label-free estimate lands near the
    realised accuracy on a stationary stream (its calibration is learned from the labels)."""
    features, labels, _ = split(table(drift_at=10**9))
    best = run_backtest(features, labels, policy="drift", warmup=1000, settings=settings())
    assert sum(best.served.values()) == len(features) - 1000
    assert abs(best.estimated_accuracy - best.accuracy) < 0.03
    champion = run_backtest(features, labels, policy="drift", warmup=1000, settings=settings(),
                            serving=ServingSettings(serve="champion"))
    assert champion.served == {"champion": len(features) - 1000, "online": 0, "blend": 0}
    online = run_backtest(features, labels, policy="online", warmup=1000, settings=settings())
    assert online.served["online"] == len(features) - 1000 and online.estimated_accuracy is not None


def test_serving_the_best_recovers_while_the_retrain_waits():
    """After the flip the champion is wrong until the retrain; the online learner (adaptive tree
    here) relearns sooner, so serving the best serves it and beats the champion-only policy."""
    features, labels, _ = split(table(n=12000, drift_at=4000))
    slow = DriftSettings(min_train_rows=3000, cooldown=500, accuracy_gap=False)
    serving = ServingSettings(online_learner="hoeffding-adaptive-tree")
    best = run_backtest(features, labels, policy="drift", warmup=1000, settings=slow, serving=serving)
    champion = run_backtest(features, labels, policy="drift", warmup=1000, settings=slow,
                            serving=serving.model_copy(update={"serve": "champion"}))
    assert best.served["online"] + best.served["blend"] > 0
    assert best.accuracy > champion.accuracy


def test_archive_reinstates_an_earlier_champion_without_training():
    """A concept returns: with `archive` on, the champion of that concept comes back (no retrain)."""
    rng = np.random.default_rng(3)
    n = 16000
    x = rng.normal(size=(n, 2))
    flipped = (np.arange(n) // 5000) % 2 == 1  # A, B, A, B
    y = np.where(flipped, x[:, 0] < 0, x[:, 0] > 0).astype(int)
    frame = pd.DataFrame(x, columns=["a", "b"])
    quick = dict(min_train_rows=600, cooldown=500, accuracy_gap=False)
    archived = run_backtest(frame, pd.Series(y), warmup=1000, settings=DriftSettings(**quick, archive=True),
                            serving=ServingSettings(serve="champion"))
    assert any(p.get("reinstated") for p in archived.promotions)
    plain = run_backtest(frame, pd.Series(y), warmup=1000, settings=DriftSettings(**quick, archive=False),
                         serving=ServingSettings(serve="champion"))
    assert archived.retrains < plain.retrains


def test_cli_prints_json_to_stdout_for_every_policy(tmp_path, cli):
    data = tmp_path / "stream.csv"
    table(4000, drift_at=2000).to_csv(data, index=False)
    for policy in ("drift", "static", "periodic:1000", "online"):
        done = driftctl(cli, str(data), "--target", "label", "--time-col", "event_time", "--id-col", "record",
                        "--policy", policy, "--warmup", "500", "--json", "-", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["policy"] == policy


@pytest.mark.parametrize("args, code, words", [
    (["missing.csv", "--target", "label"], 1, "no such file"),
    (["stream.csv", "--target", "nope"], 1, "unknown target 'nope'"),
    (["stream.csv", "--target", "label", "--policy", "weekly"], 2, "valid policies"),
    (["stream.csv", "--target", "label", "--warmup", "5"], 2, "--warmup"),
    (["stream.csv"], 2, "--target"),
])
def test_cli_bad_input_is_one_line_and_non_zero(tmp_path, args, code, words, cli):
    table(300).to_csv(tmp_path / "stream.csv", index=False)
    done = driftctl(cli, *args, cwd=tmp_path)
    assert done.returncode == code
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("driftctl: error:") and words in lines[0], done.stderr



def stagger(n=10_000, at=4_000):
    """River's STAGGER (three categorical features coded as integers), concept 0 then concept 2."""
    import itertools

    from river.datasets import synth

    rows = list(itertools.chain(itertools.islice(synth.STAGGER(classification_function=0, seed=1), at),
                                itertools.islice(synth.STAGGER(classification_function=2, seed=2), n - at)))
    return pd.DataFrame([x for x, _ in rows]), pd.Series([int(y) for _, y in rows])


@pytest.mark.parametrize("delay", [0, 500])
def test_the_default_online_learner_renews_and_serves_before_the_retrain(delay):
    """The concept changes and the retrain waits for 3,000 labels: the plain Hoeffding tree keeps
    the old concept's splits, the default (a renewing tree, pooled) restarts on the new concept and serves
    sooner; with labels 500 records late the serving rule starts it from its own accuracy
    instead of judging it by the old tree's predictions still waiting for labels. (The 50/50 blend:
    with labels at once the stacked blend of the stale champion and the plain tree recovers as well.)"""
    features, labels = stagger()
    slow = DriftSettings(min_train_rows=3000, cooldown=500, accuracy_gap=False)
    mean = ServingSettings(serve_blend="mean")
    renewing = run_backtest(features, labels, policy="drift", warmup=1000, settings=slow, label_delay=delay,
                            serving=mean)
    plain = run_backtest(features, labels, policy="drift", warmup=1000, settings=slow, label_delay=delay,
                         serving=mean.model_copy(update={"online_learner": "hoeffding-tree"}))
    assert ServingSettings().online_learner == "renewing-tree-pool-window"
    assert renewing.served["online"] > plain.served["online"]
    assert renewing.accuracy > plain.accuracy + 0.03


def test_a_stacked_blend_is_learned_and_judged_by_the_same_rule():
    """The stacked blend (`serve_blend`, the default): the backtest asks the serving rule for the
    blend and teaches it each label; the blend it serves is the learned one, judged with champion
    and online learner."""
    from drift.backtest import Backtest

    features, labels, _ = split(table(n=8000, drift_at=4000))
    backtest = Backtest(features, labels, policy="drift", warmup=1000, settings=settings(), label_delay=100)
    assert ServingSettings().serve_blend == "stacked"  # the default
    result = backtest.run()
    stacked = backtest.rule.stacked
    assert stacked is not None and stacked.weights != [1.0, 1.0]  # learned from the labels
    assert sum(result.served.values()) == len(features) - 1000
    blended = [t for t in range(1000, len(features)) if backtest.served_by[t] == 2]
    assert all(backtest.served[t] == backtest.blend_pred[t] for t in blended)
    assert all(x is None for x in backtest.blend_x[:len(features) - 100])  # learned and let go once labelled


def test_labels_late_a_provisional_champion_serves_until_the_warmup_labels_are_in():
    """`drift.policy.Bootstrap`: with labels 400 records late, once 1,000 records are scored a provisional
    champion learns the 600 labels in and serves until the 1,000th label brings the full v1; static and
    drift make the same two bootstrap fits and count neither as a retrain. Labels at once: the v1 alone."""
    from drift.backtest import Backtest

    features, labels, _ = split(table(drift_at=10**9))
    for policy in ("static", "drift"):
        # The renewing tree alone as the online learner: the gap is measured against a learner as weak as
        # River's own tree after 600 labels (the default pool is already at ~0.83 there).
        late = {rows: Backtest(features, labels, policy=policy, warmup=1000, label_delay=400,
                               settings=settings().model_copy(update={"early_champion_rows": rows}),
                               serving=ServingSettings(online_learner="renewing-hoeffding-tree"))
                for rows in (500, None)}
        results = {rows: backtest.run() for rows, backtest in late.items()}
        boots = [(d["index"], d["window"]) for d in results[500].decisions if d["reason"].startswith("bootstrap")]
        assert boots == [(999, [0, 600]), (1399, [0, 1000])]
        assert results[500].retrains == results[None].retrains == 0
        gap = slice(1000, 1400)
        assert (late[None].served_by[gap] == 1).all()  # the online learner alone, before
        assert late[500].right[gap].mean() > late[None].right[gap].mean() + 0.2
    prompt = run_backtest(features, labels, policy="static", warmup=1000, settings=settings())
    boots = [(d["index"], d["window"]) for d in prompt.decisions if d["reason"].startswith("bootstrap")]
    assert boots == [(999, [0, 1000])]


def test_the_replay_runs_with_the_objects_before_it_frozen_out_of_the_gc():
    """What exists before a replay stays out of the garbage collector's passes while it runs (its full
    passes walked it all); after it, the GC is as it was, and a caller's own freeze is kept."""
    import gc

    features, labels, _ = split(table(n=3000, drift_at=1500))
    seen: list[int] = []
    was_frozen = gc.get_freeze_count() > 0  # an in-process scorer of an earlier test freezes its heap
    gc.unfreeze()
    try:
        _check_the_replays_freeze(features, labels, seen)
    finally:
        if was_frozen:
            gc.freeze()


def _check_the_replays_freeze(features, labels, seen: list[int]) -> None:
    import gc

    assert gc.get_freeze_count() == 0
    first = run_backtest(features, labels, warmup=1000, settings=settings(),
                         progress=lambda done, n: seen.append(gc.get_freeze_count()))
    assert seen and min(seen) > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()  # the caller's: left alone, neither unfrozen nor frozen again
    try:
        frozen = gc.get_freeze_count()
        seen.clear()
        again = run_backtest(features, labels, warmup=1000, settings=settings(),
                             progress=lambda done, n: seen.append(gc.get_freeze_count()))
        # (frozen objects freed meanwhile leave the count: it may only shrink)
        assert 0 < gc.get_freeze_count() <= frozen and max(seen) <= frozen
    finally:
        gc.unfreeze()
    assert (again.accuracy, again.retrains, again.served) == (first.accuracy, first.retrains, first.served)


def test_on_probation_a_retrained_champion_that_loses_to_the_one_it_replaced_gives_way():
    """The concept flips at 3,000 and back at 4,700: the champion retrained on the flipped concept (promoted at
    4,515) is wrong where the one it replaced is right on the records it scores; on probation (DriftSettings.
    probation) the replaced one returns after gap_window of them, without training, and no second retrain
    follows; without probation the stale champion serves until a retrain."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7000, 2))
    at = np.arange(7000)
    y = np.where((at >= 3000) & (at < 4700), x[:, 0] < 0, x[:, 0] > 0).astype(int)
    frame = pd.DataFrame(x, columns=["a", "b"])
    off = run_backtest(frame, pd.Series(y), warmup=1000, settings=DriftSettings(probation=False))
    on = run_backtest(frame, pd.Series(y), warmup=1000, settings=DriftSettings(probation=True))
    assert [p["decision_reason"] for p in off.promotions if p.get("reinstated")] == []
    back = [p for p in on.promotions if p["decision_reason"] == "probation"]
    assert [(p["index"], p["version"]) for p in back] == [(5015, 1)]
    assert back[0]["challenger_accuracy"] > back[0]["champion_accuracy"] + 0.2
    assert on.retrains == 1 < off.retrains
    assert on.accuracy > off.accuracy

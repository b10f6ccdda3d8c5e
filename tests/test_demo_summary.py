"""The demo's summary in the ledger's terms, without a stack: a provisional champion, the full bootstrap
one, a drift's first try and full window (the decision defaults), and what the timings measure."""

from types import SimpleNamespace

from driftctl.app.demo import _Observed, bootstrap_holds, summarize
from driftctl.settings import DriftSettings, Settings, StreamSettings
from driftctl.stores.ledger import Ledger
from serving.synthetic import iot_stream


def test_the_stream_holds_for_each_bootstrap_champion_the_policy_makes():
    assert bootstrap_holds(Settings()) == (2000, 2300)  # labels late: the provisional one, then the full one
    assert bootstrap_holds(Settings(drift=DriftSettings(early_champion_rows=None))) == (2300,)
    assert bootstrap_holds(Settings(stream=StreamSettings(label_delay=0))) == (2000,)  # labels at once: no stand-in


def _at(seq: int) -> float:
    return 1000.0 + seq * 0.01


def test_the_summary_names_each_retrain_and_times_the_drifts_first_promotion(tmp_path):
    settings = Settings(home=tmp_path, stream=StreamSettings(records=1000, drift_at=500, label_delay=50),
                        drift=DriftSettings(warmup=200, min_train_rows=300, first_train_rows=100))
    ledger = Ledger(settings.ledger_url)

    def retrain(version: int, decision: str, decided: int, window: tuple[int, int], rows: int | None = None,
                **trigger) -> None:
        ledger.append("decision", payload={"id": decision, "action": "retrain", "at": _at(decided)})
        ledger.append("promotion", model_version=version, payload={
            "run_id": f"run-{version}", "window": {"positions": list(window)}, "evaluation": {"rows": rows},
            "trigger": {"decision_id": decision, "kind": "drift", **trigger}})

    retrain(1, "d1", 0, (0, 150), kind="bootstrap", provisional=True)
    retrain(2, "d2", 0, (0, 200), kind="bootstrap")
    retrain(3, "d3", 600, (520, 640), incident="i1")  # a first try: fewer rows than min_train_rows
    # The full window, 300 rows since the change, and the champion's rows as another candidate: 200 won.
    retrain(4, "d4", 760, (0, 820), incident="i1", candidates=[300, 200, 820], rows=200)
    ledger.append("rejection", payload={"trigger": {"decision_id": "d5", "kind": "drift", "incident": "i2"}})
    ledger.close()

    def version(seq: int) -> int:
        return 1 if seq < 200 else 2 if seq < 650 else 3 if seq < 800 else 4

    predictions = []
    for r in iot_stream(1000, drift_at=500, devices=settings.stream.devices, seed=settings.stream.seed):
        right = r.label if r.seq < 500 or version(r.seq) > 2 else not r.label  # the drift fools v1 and v2
        model = {"version": version(r.seq), "run_id": f"run-{version(r.seq)}"}
        predictions.append({"id": r.record["id"], "model": model,
                            "scored_at": _at(r.seq), "prediction": right, "champion": {"prediction": right},
                            "online": {"prediction": r.label}})
    # Fired at record 520 while the scorer, lagging, was at record 400 (the monitor reads the telemetry itself).
    event = SimpleNamespace(id="e1", detector="data-ks", kind="data", statistic=1.0, threshold=0.5,
                            incident="i1", at=_at(400), window={"record_id": predictions[520]["id"]})
    result = summarize(settings, 1000, predictions, _Observed([event], []), 0, 1.0)

    assert [(s["role"], s["version"], s["rows"]) for s in result.bootstrap] == [("provisional", 1, 150),
                                                                              ("bootstrap", 2, 200)]
    # The drift's incident only: a later one's rejected challenger (i2) is not its story.
    assert [(s["role"], s["version"], s["rows"], s["served"]) for s in result.retrains] == [
        ("first try", 3, 120, 150), ("full window", 4, 200, 200)]
    assert (result.champion_before_drift, result.champion_after_drift, result.retrain_run_id) == (2, 4, "run-4")
    assert result.accuracy_before_drift == 1.0 and result.accuracy_after_drift == 0.0
    assert result.accuracy_after_promotion == 1.0 and result.detected_at == 520
    # From the first try's decision (record 600) to the first record it scored (650), not the full window's.
    assert result.decision_to_serving_s == 0.5
    # What v1 and v2 scored from the detection (record 520) until the first try served (650); by the clock
    # (from record 400 on) the records before the drift the scorer was late with would count too.
    assert result.records_on_stale_champion == 130

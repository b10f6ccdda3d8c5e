import pytest

from drift.policy import DriftPolicy
from driftctl.messages import Action, DriftEvent


def event(kind="concept", index=100):
    return DriftEvent(detector="error-adwin" if kind == "concept" else "data-ks", kind=kind, index=index,
                      statistic=0.3, threshold=0.1)


def test_waits_for_enough_rows_after_the_change_then_retrains_once():
    policy = DriftPolicy(min_train_rows=100, data_persistence=2, cooldown=0)
    assert policy.on_event(event(), change_at=500, labelled=510).action is Action.ALERT
    assert policy.on_labelled(599) is None
    decision = policy.on_labelled(600)
    assert decision.action is Action.RETRAIN and decision.window == (500, 600)
    # One retrain in flight: further events hold, no second retrain.
    assert policy.on_event(event(), change_at=600, labelled=610).action is Action.HOLD
    assert policy.on_labelled(900) is None


def test_storm_of_events_yields_one_retrain():
    policy = DriftPolicy(min_train_rows=10, cooldown=0)
    decisions = []
    for i in range(100):
        policy.on_event(event(index=i), change_at=0, labelled=i)
        decisions.append(policy.on_labelled(i))
    retrains = [d for d in decisions if d is not None and d.action is Action.RETRAIN]
    assert len(retrains) == 1
    assert len(retrains[0].event_ids) == 11  # every event that confirmed it is named


def test_data_drift_needs_persistence():
    policy = DriftPolicy(min_train_rows=10, data_persistence=2, cooldown=0)
    assert policy.on_data_window(event("data"), labelled=50).action is Action.HOLD
    assert policy.on_data_window(None, labelled=60) is None  # streak broken
    assert policy.on_data_window(event("data"), labelled=70).action is Action.HOLD
    assert policy.on_data_window(event("data"), labelled=80).action is Action.ALERT
    assert policy.on_labelled(90).window == (80, 90)


def test_cooldown_after_promotion_and_none_after_rejection():
    policy = DriftPolicy(min_train_rows=10, cooldown=100)
    policy.on_event(event(), change_at=0, labelled=0)
    assert policy.on_labelled(10).action is Action.RETRAIN
    policy.on_retrain_finished(promoted=True, labelled=20)
    assert policy.on_event(event(), change_at=50, labelled=50).action is Action.HOLD
    assert policy.on_event(event(), change_at=120, labelled=120).action is Action.ALERT
    assert policy.on_labelled(130).action is Action.RETRAIN
    policy.on_retrain_finished(promoted=False, labelled=140)
    assert policy.on_event(event(), change_at=141, labelled=141).action is Action.ALERT


@pytest.mark.parametrize("kwargs", [{"min_train_rows": 0}, {"data_persistence": 0}, {"cooldown": -1}])
def test_rejects_bad_options(kwargs):
    with pytest.raises(ValueError):
        DriftPolicy(**kwargs)


def test_event_round_trips_through_json():
    original = event()
    assert DriftEvent.from_json(original.to_json()) == original


def test_each_window_detector_keeps_its_own_streak():
    policy = DriftPolicy(min_train_rows=10, data_persistence=2, cooldown=0)
    prediction = DriftEvent(detector="prediction-drift", kind="prediction", index=1, statistic=0.0, threshold=1e-4)
    assert policy.on_data_window(event("data"), labelled=10).action is Action.HOLD
    # A quiet prediction window does not break the data detector's streak...
    assert policy.on_data_window(None, labelled=10, detector="prediction-drift") is None
    assert policy.on_data_window(prediction, labelled=20).action is Action.HOLD
    # ...and the data detector's second drifting window in a row acts.
    assert policy.on_data_window(event("data"), labelled=30).action is Action.ALERT
    assert policy.data_streaks == {"data-ks": 2, "prediction-drift": 1}


def test_drift_during_the_cooldown_is_deferred_not_lost():
    policy = DriftPolicy(min_train_rows=10, cooldown=100)
    policy.on_event(event(), change_at=0, labelled=0)
    assert policy.on_labelled(10).action is Action.RETRAIN
    policy.on_retrain_finished(promoted=True, labelled=10)  # cooldown until 110
    held = policy.on_event(event(index=7), change_at=40, labelled=40)
    assert held.action is Action.HOLD and "deferred" in held.reason
    assert all(policy.on_labelled(n) is None for n in range(41, 110))
    released = policy.on_labelled(110)
    assert released.action is Action.ALERT and released.event_ids == held.event_ids
    retrain = policy.on_labelled(111)  # 71 rows since the change at 40: enough
    assert retrain.action is Action.RETRAIN and retrain.window == (40, 111)


def test_events_while_a_retrain_is_in_flight_are_not_deferred():
    policy = DriftPolicy(min_train_rows=10, cooldown=0)
    policy.on_event(event(), change_at=0, labelled=0)
    assert policy.on_labelled(10).action is Action.RETRAIN
    assert policy.on_event(event(), change_at=12, labelled=12).action is Action.HOLD
    policy.on_retrain_finished(promoted=False, labelled=20)
    assert policy.on_labelled(40) is None  # the in-flight retrain answered that event


def test_one_drift_is_one_incident_from_the_alert_through_the_cooldown():
    policy = DriftPolicy(min_train_rows=100, data_persistence=2, cooldown=500)
    first = policy.on_event(event(index=1000), change_at=1000, labelled=1000)
    incident = first.incident
    assert incident and incident.startswith("incident-") and policy.open_incident == incident
    # A storm while collecting, the retrain, events while it is in flight: all the same incident.
    storm = [policy.on_event(event(index=1000 + i), change_at=1000 + i, labelled=1000 + i) for i in range(1, 20)]
    retrain = policy.on_labelled(1100)
    held = policy.on_event(event(index=1150), change_at=1150, labelled=1150)
    assert {d.incident for d in [*storm, retrain, held]} == {incident}
    # Promoted from a window ending at 1100: the cooldown runs to 1600; a drift in it is deferred, same incident.
    policy.on_retrain_finished(promoted=True, labelled=1300, window_end=1100)
    deferred = policy.on_event(event(index=1400), change_at=1400, labelled=1400)
    assert deferred.action is Action.HOLD and deferred.incident == incident
    released = policy.on_labelled(1600)
    assert released.action is Action.ALERT and released.incident == incident  # keep retraining: same drift
    again = policy.on_labelled(1700)
    assert again.action is Action.RETRAIN and again.incident == incident
    policy.on_retrain_finished(promoted=False, labelled=1700)
    assert policy.open_incident is None
    # Idle again: the next drift is a new incident.
    later = policy.on_event(event(index=5000), change_at=5000, labelled=5000)
    assert later.incident not in (None, incident)


def test_a_cooldown_that_ends_quietly_closes_the_incident():
    policy = DriftPolicy(min_train_rows=10, cooldown=100)
    incident = policy.on_event(event(), change_at=0, labelled=0).incident
    policy.on_labelled(10)
    policy.on_retrain_finished(promoted=True, labelled=10)
    policy.on_labelled(50)
    assert policy.open_incident == incident  # cooling down: still being acted on
    policy.on_labelled(110)
    assert policy.open_incident is None
    assert policy.on_event(event(), change_at=120, labelled=120).incident != incident


def test_a_data_window_that_does_not_persist_is_an_incident_of_its_own():
    policy = DriftPolicy(min_train_rows=10, data_persistence=2, cooldown=0)
    blip = policy.on_data_window(event(kind="data"), labelled=100)
    assert blip.action is Action.HOLD and policy.open_incident == blip.incident
    policy.on_data_window(None, labelled=200, detector="data-ks")  # the next window is clean
    assert policy.open_incident is None
    first = policy.on_data_window(event(kind="data"), labelled=300)
    second = policy.on_data_window(event(kind="data"), labelled=400)
    assert second.action is Action.ALERT and first.incident == second.incident != blip.incident


def test_retrains_that_buy_nothing_over_the_served_predictions_back_off_and_one_that_pays_resets():
    policy = DriftPolicy(min_train_rows=100, cooldown=500, pay=0.02, backoff_max=2)
    # A retrain that bought less than `pay` over what was served: the next drift waits a cooldown...
    policy.on_event(event(), change_at=1000, labelled=1010)
    assert policy.on_labelled(1100).action is Action.RETRAIN
    policy.on_retrain_finished(promoted=False, labelled=1100, bought=0.01)
    decision = policy.on_event(event(), change_at=1200, labelled=1210)
    assert decision.action is Action.HOLD and "backing off" in decision.reason  # deferred, not lost
    assert policy.on_labelled(1599) is None
    assert policy.on_labelled(1600).action is Action.ALERT  # the deferred drift, released
    assert policy.on_labelled(1600).action is Action.RETRAIN  # 100 rows since its change at 1200 are in
    # ... twice in a row twice as long, and no longer than cooldown x 2^backoff_max.
    policy.on_retrain_finished(promoted=True, labelled=1600, bought=-0.05)
    assert policy.backoff_until == 2600
    for _ in range(3):
        policy.on_retrain_finished(promoted=False, labelled=1600, bought=0.0)
    assert policy.backoff_until == 1600 + 500 * 4
    # One that paid: the next drift is acted on as without `pay` (only the promotion's cooldown).
    policy.on_retrain_finished(promoted=True, labelled=1600, bought=0.03)
    assert policy.backoff_until == 0 and policy.unpaid == 0
    assert policy.on_event(event(), change_at=2100, labelled=2110).action is Action.ALERT


def test_without_pay_what_a_retrain_bought_changes_nothing():
    policy = DriftPolicy(min_train_rows=100, cooldown=500)
    policy.on_retrain_finished(promoted=False, labelled=1100, bought=-0.5)
    assert policy.backoff_until == 0
    assert policy.on_event(event(), change_at=1200, labelled=1210).action is Action.ALERT


def test_a_first_try_is_not_counted_against_what_retrains_buy():
    policy = DriftPolicy(min_train_rows=1000, cooldown=500, first_train_rows=100, pay=0.02)
    policy.on_event(event(), change_at=1000, labelled=1010)
    first = policy.on_labelled(1100)
    assert first.action is Action.RETRAIN and first.window == (1000, 1100)
    policy.on_retrain_finished(promoted=False, labelled=1100, bought=-0.2)  # lost on its 30 holdout rows
    assert policy.unpaid == 0 and policy.backoff_until == 0
    assert policy.on_labelled(2000).window == (1000, 2000)  # the full window follows, as without `pay`


def test_with_pay_realised_two_promotions_in_a_row_that_did_not_realise_their_gain_distrust_the_gate():
    policy = DriftPolicy(min_train_rows=100, cooldown=500, pay=0.02, backoff_max=3, pay_realised=True)
    # The gate claimed each pays; once serving, neither beat the online learner.
    policy.on_retrain_finished(promoted=True, labelled=1100, bought=0.15)
    policy.paid(-0.03, 1600, realised=True)
    assert policy.unpaid == 1 and policy.backoff_until == 1600 + 500  # one: as without pay_realised
    policy.on_retrain_finished(promoted=True, labelled=2100, bought=0.15)
    assert policy.unpaid == 0  # the gate is still trusted
    policy.paid(-0.03, 2600, realised=True)
    assert policy.unpaid == 2 and policy.backoff_until == 2600 + 500 * 4  # two: both counted, the wait doubled
    # Distrusted, a gate win no longer resets the back-off; only a realised gain does.
    policy.on_retrain_finished(promoted=True, labelled=7100, bought=0.15)
    assert policy.unpaid == 2 and policy.backoff_until == 4600
    policy.paid(-0.03, 7600, realised=True)
    assert policy.unpaid == 3 and policy.backoff_until == 7600 + 500 * 8
    policy.paid(0.05, 9000, realised=True)
    assert policy.unpaid == 0 and policy.backoff_until == 0 and policy.lied == 0


def test_with_pay_realised_a_promotion_that_claimed_nothing_breaks_the_row():
    policy = DriftPolicy(min_train_rows=100, cooldown=500, pay=0.02, pay_realised=True)
    policy.on_retrain_finished(promoted=True, labelled=1100, bought=0.15)
    policy.paid(-0.03, 1600, realised=True)
    policy.on_retrain_finished(promoted=True, labelled=2100, bought=0.0)  # judged at the gate, as ever
    policy.on_retrain_finished(promoted=True, labelled=4100, bought=0.15)
    policy.paid(-0.03, 4600, realised=True)
    assert policy.lied == 1 and policy.backoff_until == 4600 + 500

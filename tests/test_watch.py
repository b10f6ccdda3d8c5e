"""DriftWatch, the one decision engine, with the decision options of issue 10: no broker."""

import random

import pytest

from drift.watch import DriftWatch, Observation
from driftctl.messages import Action
from driftctl.settings import DriftSettings

# The policy's own window (candidate_windows widens a decision's window to hold its candidates).
QUIET = {"accuracy_gap": False, "prediction_drift": False, "min_train_rows": 200, "cooldown": 0,
         "candidate_windows": False, "first_train_rows": None, "first_train_gap": None, "first_then_full": False,
         "archive": False}


def replay(watch, accuracy, n, *, start=1, rng=None, promote=True, on_retrain=None):
    """Feed `n` labelled outcomes (champion right with probability `accuracy(labelled)`); run every
    retrain the watch asks for at once, promoted. Returns the retrain windows."""
    rng = rng or random.Random(0)
    windows = []
    for labelled in range(start, start + n):
        right = rng.random() < accuracy(labelled)
        step = watch.observe(Observation(champion_right=right), index=labelled, labelled=labelled)
        decisions = [*step.decisions, watch.on_labelled(labelled)]
        for decision in decisions:
            if decision is not None and decision.action is Action.RETRAIN:
                windows.append(decision.window)
                if promote:
                    watch.on_champion({"version": len(windows) + 1}, None, trained_on=decision.window,
                                      labelled=labelled)
                watch.retrain_finished(promoted=promote, labelled=labelled)
                if on_retrain:
                    on_retrain(decision)
    return windows


def drop_at(change):
    return lambda labelled: 0.95 if labelled < change else 0.6


def test_defaults_run_the_gap_detector_and_no_regrow():
    watch = DriftWatch(DriftSettings())
    assert watch.needs_online and watch.gap_detector is not None
    assert not watch.policy.regrow and watch.policy.max_train_rows is None


def test_one_retrain_per_drift_without_regrow():
    watch = DriftWatch(DriftSettings(**QUIET))
    watch.on_champion({"version": 1}, None, trained_on=(0, 500), labelled=500)
    windows = replay(watch, drop_at(3000), 9000, start=501)
    assert len(windows) == 1 and windows[0][1] - windows[0][0] == 200


def test_regrow_retrains_as_the_window_since_the_change_doubles():
    watch = DriftWatch(DriftSettings(**QUIET, regrow=True, max_train_rows=2000))
    watch.on_champion({"version": 1}, None, trained_on=(0, 500), labelled=500)
    windows = replay(watch, drop_at(3000), 9000, start=501)
    start = windows[0][0]
    assert len(windows) >= 3 and all(w[0] == start for w in windows[:3])
    sizes = [end - begin for begin, end in windows]
    assert sizes[:3] == [200, 400, 800]  # each window twice the last, from the same change
    assert max(sizes) <= 2000  # then capped at max_train_rows


def test_regrow_stops_when_a_challenger_loses():
    watch = DriftWatch(DriftSettings(**QUIET, regrow=True))
    watch.on_champion({"version": 1}, None, trained_on=(0, 500), labelled=500)
    windows = replay(watch, drop_at(3000), 9000, start=501, promote=False)
    assert len(windows) == 1


def test_change_from_detector_starts_the_window_earlier():
    fired = DriftWatch(DriftSettings(**QUIET))
    cut = DriftWatch(DriftSettings(**QUIET, change_from_detector=True))
    for watch in (fired, cut):
        watch.on_champion({"version": 1}, None, trained_on=(0, 500), labelled=500)
    late, early = (replay(w, drop_at(3000), 6000, start=501)[0] for w in (fired, cut))
    # Earlier, never before the champion began serving. ADWIN's cut lies well before the real
    # change (3000): its oldest buckets are coarse, so the window holds old-concept rows too.
    assert 500 <= early[0] < late[0]


def test_covariate_drift_keeps_the_champions_rows():
    settings = DriftSettings(**QUIET, data_window=100, keep_old_on_covariate=True)
    rng = random.Random(4)
    for keep in (True, False):
        watch = DriftWatch(settings.model_copy(update={"keep_old_on_covariate": keep}))
        watch.on_champion({"version": 1}, [{"x": rng.gauss(0, 1)} for _ in range(500)], trained_on=(0, 500),
                          labelled=500)
        windows = []
        for labelled in range(501, 2000):
            x = {"x": rng.gauss(0 if labelled < 1000 else 3, 1)}
            steps = [watch.observe(Observation(features=x), index=labelled, labelled=labelled),
                     watch.observe(Observation(champion_right=True), index=labelled, labelled=labelled)]
            decisions = [d for s in steps for d in s.decisions] + [watch.on_labelled(labelled)]
            windows += [d.window for d in decisions if d is not None and d.action is Action.RETRAIN]
            if windows:
                break
        assert windows, keep
        assert (windows[0][0] == 0) is keep  # kept: from the champion's own first row


def test_archive_is_judged_once_after_a_concept_drift():
    watch = DriftWatch(DriftSettings(**{**QUIET, "min_train_rows": 5000, "archive": True}, archive_probe=100))
    watch.on_champion({"version": 1}, None, trained_on=(0, 500), labelled=500)
    rng, due = random.Random(5), []
    for labelled in range(501, 6000):
        right = rng.random() < drop_at(3000)(labelled)
        watch.observe(Observation(champion_right=right), index=labelled, labelled=labelled)
        probe = watch.archive_due(labelled)
        if probe is not None:
            due.append((labelled, probe))
    assert len(due) == 1
    labelled, (start, end) = due[0]
    assert end == labelled and end - start == 100 and start >= 3000


def test_vitals_carry_the_label_free_estimate():
    watch = DriftWatch(DriftSettings(data_window=100))
    assert "estimated_accuracy" not in watch.vitals()
    for _ in range(500):
        watch.served_label("champion", 0.9, True)
    for _ in range(100):
        watch.served("champion", 0.9)
    assert watch.vitals()["estimated_accuracy"] > 0.95
    watch.on_champion({"version": 2}, None)  # a new champion: its calibration starts afresh
    assert watch.estimate.expect("champion", 0.9) == 0.9


def test_a_renewed_online_learner_starts_from_its_raw_confidence():
    watch = DriftWatch(DriftSettings(data_window=100))
    for _ in range(500):
        watch.served_label("online", 0.9, False)  # the old tree: confident and wrong
        watch.served_label("champion", 0.9, True)
    assert watch.estimate.expect("online", 0.9) < 0.2
    watch.online_renewed()  # a fresh tree serves: the old tree's map says nothing of it
    assert watch.estimate.expect("online", 0.9) == 0.9
    assert watch.estimate.expect("champion", 0.9) > 0.95  # the champion's map is kept


def _retrain_windows(settings, online_after, holdout=None):
    """Champion right 95% of the time, then 60% from labelled record 3000; the online learner right
    with probability `online_after` after the change (as the champion before). Retrains not promoted."""
    watch = DriftWatch(settings)
    watch.on_champion({"version": 1}, None, labelled=0, holdout=holdout)
    rng, windows = random.Random(3), []
    for labelled in range(1, 6000):
        champion = rng.random() < (0.95 if labelled < 3000 else 0.6)
        online = rng.random() < (0.95 if labelled < 3000 else online_after)
        step = watch.observe(Observation(champion_right=champion, online_right=online), index=labelled,
                             labelled=labelled)
        for decision in [*step.decisions, watch.on_labelled(labelled)]:
            if decision is not None and decision.action is Action.RETRAIN:
                windows.append(decision.window)
                watch.retrain_finished(promoted=False, labelled=labelled)
    return windows


def test_early_retrain_once_the_online_learner_has_overtaken_the_champion():
    settings = {**QUIET, "min_train_rows": 1500, "early_train_rows": 300}
    early = _retrain_windows(DriftSettings(**settings), online_after=0.95)
    start, end = early[0]
    assert start >= 3000 and end - start == 300  # the old concept is gone: 300 rows suffice
    # The online learner no better than the champion: no evidence, the full 1,500 rows.
    late = _retrain_windows(DriftSettings(**settings), online_after=0.6)
    assert late[0][1] - late[0][0] == 1500
    # Off (the default): the full 1,500 rows even when the online learner leads.
    off = _retrain_windows(DriftSettings(**{**settings, "early_train_rows": None}), online_after=0.95)
    assert off[0][1] - off[0][0] == 1500


def test_a_champion_wrong_from_its_first_label_is_caught_by_the_holdout_test_only():
    """The blind spot of the error-rate ADWIN: the concept changed between the champion's training
    window and its first labels, so its live errors have no better regime to compare with. The
    holdout test (live accuracy against the holdout's, both samples) fires; ADWIN does not."""
    def fired(settings, holdout):
        watch = DriftWatch(DriftSettings(**QUIET, **settings))
        watch.on_champion({"version": 1}, None, labelled=0, holdout=holdout)
        rng, events = random.Random(1), []
        for labelled in range(1, 2001):
            step = watch.observe(Observation(champion_right=rng.random() < 0.65), index=labelled, labelled=labelled)
            events += [(e.detector, labelled) for e in step.events]
        return events

    assert fired({}, (0.93, 600)) == []
    assert fired({"holdout_gap": True}, None) == []  # no holdout known: silent
    events = fired({"holdout_gap": True}, (0.93, 600))
    assert [d for d, _ in events] == ["holdout-gap"] and events[0][1] <= 100
    assert fired({"holdout_gap": True}, (0.66, 600)) == []  # as good as its holdout said: no alarm


def test_candidate_windows_ride_on_the_retrain_decision():
    watch = DriftWatch(DriftSettings(**{**QUIET, "min_train_rows": 1000, "candidate_windows": True}))
    watch.on_champion({"version": 1}, None, trained_on=(0, 2000), labelled=2000)
    decisions = []
    replay(watch, drop_at(4000), 4000, start=2001, on_retrain=decisions.append)
    start, end = decisions[0].window
    # The policy's 1,000 rows since the change; the newest half of the 700 before its 300-row holdout
    # (300 + 350); the champion's rows plus the new ones: a window that holds all three.
    assert decisions[0].candidates == (1000, 650, end) and start == 0


def test_a_first_try_that_loses_waits_for_min_train_rows():
    # Not promoted: the first try at 300 rows since the change, then the full 1,500, then nothing more.
    windows = _retrain_windows(DriftSettings(**{**QUIET, "min_train_rows": 1500, "first_train_rows": 300}),
                               online_after=0.6)
    assert [end - start for start, end in windows] == [300, 1500] and windows[0][0] == windows[1][0] >= 3000


def test_a_gated_first_try_only_when_champion_and_online_learner_both_fell():
    """first_train_gap: the first try at 300 rows only when, on the labels since the change, the champion
    and the online learner are both 0.10 below the champion's holdout accuracy (0.95); else 1,500 rows."""
    settings = DriftSettings(**{**QUIET, "min_train_rows": 1500, "first_train_rows": 300, "first_train_gap": 0.1})
    fell = _retrain_windows(settings, online_after=0.6, holdout=(0.95, 600))
    assert [end - start for start, end in fell] == [300, 1500]  # the first try lost: the full window follows
    online_serves = _retrain_windows(settings, online_after=0.95, holdout=(0.95, 600))
    assert [end - start for start, end in online_serves] == [1500]
    unknown = _retrain_windows(settings, online_after=0.6)  # no holdout accuracy known: no first try
    assert [end - start for start, end in unknown] == [1500]


def test_the_first_try_can_be_gated_on_the_champion_alone():
    """first_train_fall="champion": the champion's fall alone earns the first try, even while the online
    learner still serves well (a covariate shift into a region the champion never saw)."""
    settings = DriftSettings(**{**QUIET, "min_train_rows": 1500, "first_train_rows": 300, "first_train_gap": 0.1},
                             first_train_fall="champion")
    online_serves = _retrain_windows(settings, online_after=0.95, holdout=(0.95, 600))
    assert [end - start for start, end in online_serves] == [300, 1500]


def test_regrow_when_stale_waits_for_the_online_learner_to_lead():
    def windows(online):
        watch = DriftWatch(DriftSettings(**QUIET, regrow=True, regrow_when_stale=True))
        watch.on_champion({"version": 1}, None, trained_on=(0, 500), labelled=500)
        rng, out = random.Random(5), []
        for labelled in range(501, 6000):
            step = watch.observe(Observation(champion_right=rng.random() < (0.95 if labelled < 3000 else 0.6),
                                             online_right=rng.random() < online), index=labelled, labelled=labelled)
            for decision in [*step.decisions, watch.on_labelled(labelled)]:
                if decision is not None and decision.action is Action.RETRAIN:
                    out.append(decision.window)
                    watch.on_champion({"version": len(out) + 1}, None, trained_on=decision.window, labelled=labelled)
                    watch.retrain_finished(promoted=True, labelled=labelled)
        return out

    # The champion stays at 0.6 after its retrain: regrow while an online learner at 0.9 leads it...
    assert len(windows(0.9)) >= 3
    # ...and not while the online learner is no better (the retrain after the drift only).
    assert len(windows(0.6)) == 1


def test_a_first_try_must_win_significantly_and_a_full_retrain_by_the_margin():
    decisions = []
    watch = DriftWatch(DriftSettings(**{**QUIET, "min_train_rows": 1500, "first_train_rows": 300}, first_train_z=3.0))
    watch.on_champion({"version": 1}, None, labelled=0)
    replay(watch, drop_at(3000), 6000, promote=False, on_retrain=decisions.append)
    assert [(d.window[1] - d.window[0], d.promote_z) for d in decisions] == [(300, 3.0), (1500, None)]


def _archive_verdict(online_after):
    """A concept drift at 3000; the online learner right with probability `online_after` after it.
    The archived champion (version 1) is right on 90% of the probe's records, the serving one on 60%."""
    watch = DriftWatch(DriftSettings(**{**QUIET, "min_train_rows": 5000, "archive": True}, archive_probe=200,
                                     archive_online_z=3.0))
    watch.on_champion({"version": 2}, None, trained_on=(0, 500), labelled=500)
    rng = random.Random(7)
    for labelled in range(501, 6000):
        champion = rng.random() < drop_at(3000)(labelled)
        online = rng.random() < (0.95 if labelled < 3000 else online_after)
        watch.observe(Observation(champion_right=champion, online_right=online), index=labelled, labelled=labelled)
        probe = watch.archive_due(labelled)
        if probe is not None:
            positions = range(*probe)
            archived = [rng.random() < 0.9 for _ in positions]
            champion_right = [rng.random() < 0.6 for _ in positions]
            assert set(watch.probe_online) == set(positions)  # the online learner's outcomes on the same records
            return watch.archive_verdict(positions, champion_right, [(1, archived)], watch.probe_online)
    raise AssertionError("no probe came due")


def test_an_archived_champion_returns_only_when_it_also_beats_the_online_learner():
    back = _archive_verdict(online_after=0.6)
    assert back["reinstate"] and back["to"] == 1 and back["online_accuracy"] < 0.7
    # The online learner as good as the archived champion on the same records: no reinstatement (a
    # retrain follows); the margin over the serving champion alone would have brought it back.
    kept = _archive_verdict(online_after=0.9)
    assert not kept["reinstate"] and kept["accuracy"] > kept["champion_accuracy"] + 0.05


def test_a_first_try_that_won_is_challenged_once_by_the_full_window():
    def windows(full):
        watch = DriftWatch(DriftSettings(**{**QUIET, "min_train_rows": 1500, "cooldown": 2000, "first_train_rows": 300,
                                            "first_then_full": full}))
        watch.on_champion({"version": 1}, None, labelled=0)
        return replay(watch, drop_at(3000), 8000)  # every retrain promoted

    first, full = windows(True)  # the full window since the same change, past the cooldown; then no more
    assert full[0] == first[0] >= 3000 and full[1] - full[0] == 1500 and first[1] - first[0] == 300
    assert len(windows(False)) == 1  # off: the first try's champion stays


def test_the_archive_is_looked_at_every_archive_every_labels_until_the_probe_ends():
    def looks(every):
        watch = DriftWatch(DriftSettings(**{**QUIET, "min_train_rows": 5000, "archive": True}, archive_probe=300,
                                         archive_every=every))
        watch.on_champion({"version": 1}, None, trained_on=(0, 500), labelled=500)
        rng, due = random.Random(5), []
        for labelled in range(501, 6000):
            right = rng.random() < drop_at(3000)(labelled)
            online = rng.random() < 0.8
            watch.observe(Observation(champion_right=right, online_right=online), index=labelled, labelled=labelled)
            probe = watch.archive_due(labelled)
            if probe is not None:
                assert set(watch.probe_online) == set(range(*probe))  # every look holds all the rows so far
                due.append(probe)
        return due

    once, every = looks(None), looks(100)
    assert [end - start for start, end in once] == [300]
    assert [end - start for start, end in every] == [100, 200, 300]
    assert {start for start, _ in every} == {once[0][0]}  # all from the change


def test_an_archived_champion_far_below_its_holdout_is_a_stopgap_and_the_retrain_still_follows():
    def retrains(stopgap):
        watch = DriftWatch(DriftSettings(**{**QUIET, "min_train_rows": 1000, "archive": True}, archive_probe=200,
                                         archive_stopgap=stopgap))
        watch.on_champion({"version": 2}, None, trained_on=(0, 500), labelled=500)
        rng, windows, verdicts = random.Random(7), [], []
        for labelled in range(501, 6000):
            watch.observe(Observation(champion_right=rng.random() < drop_at(3000)(labelled)), index=labelled,
                          labelled=labelled)
            probe = watch.archive_due(labelled)
            if probe is not None:
                positions = range(*probe)
                archived = [rng.random() < 0.7 for _ in positions]  # better than the champion, far below 0.95
                verdict = watch.archive_verdict(positions, [rng.random() < 0.5 for _ in positions], [(1, archived)],
                                                None, {1: 0.95})
                verdicts.append(verdict)
                assert verdict["reinstate"] and not verdict["answers"]
                watch.on_champion({"version": 1}, None, labelled=labelled)
                watch.reinstated(labelled=labelled, answers=verdict["answers"])
            decision = watch.on_labelled(labelled)
            if decision is not None and decision.action is Action.RETRAIN:
                windows.append(decision.window)
                watch.retrain_finished(promoted=False, labelled=labelled)
        assert len(verdicts) == 1
        return windows

    assert retrains(False) == []  # the reinstatement answered the change
    (start, end), = retrains(True)  # a stopgap: the retrain since the change follows as planned
    assert start >= 3000 and end - start == 1000


def _observe_generic(watch, observation, *, index, labelled, context=None):
    """`DriftWatch.observe` as it was before `observe_label` and `observe_record` (round 9): each
    detector of the bank reads its part of the observation, by the generic `read`/`observe`/`update`."""
    from drift.watch import Step

    step, o = Step(), observation
    if o.champion_right is None:
        bank = [d for d in (watch.data_detector, watch.prediction_detector) if d is not None]
    else:
        watch._error_positions.append(labelled)
        if not len(watch._error_positions) & 1023:
            watch._trim_error_positions()
        if watch.settings.early_train_rows is not None and o.online_right is not None:
            watch._count_overtake(o.champion_right, o.online_right, labelled)
        if watch.settings.first_train_gap is not None:
            watch._count_fall(o.champion_right, o.online_right, labelled)
        if watch.settings.regrow_when_stale and o.online_right is not None:
            watch._recent.append((o.champion_right, o.online_right))
        probe = watch.probe
        if probe is not None and o.online_right is not None and probe[0] < labelled <= probe[1]:
            watch._probe_online[labelled - 1] = o.online_right
        bank = ([d for d in (watch.error_detector, watch.gap_detector, watch.holdout_detector) if d is not None]
                if o.features is None and o.prediction is None else watch.detectors)
    for detector in bank:
        x = detector.read(o)
        if x is None:
            detector.observe(o)
        else:
            detector.update(x)
        if detector.windowed:
            if x is None or not detector.window_ended:
                continue
            event = watch._event(detector, index, labelled, context) if detector.drift_detected else None
            if event is not None:
                step.events.append(event)
            keep_from = watch.trained_on[0] if watch.settings.keep_old_on_covariate and watch.trained_on else None
            decision = watch.policy.on_data_window(event, labelled=labelled, detector=detector.name,
                                                   keep_from=keep_from)
        elif detector.drift_detected:
            event = watch._event(detector, index, labelled, context)
            step.events.append(event)
            change_at = labelled
            if watch.settings.change_from_detector and "adwin_change_at_labelled" in event.evidence:
                change_at = max(watch.since, min(labelled, event.evidence["adwin_change_at_labelled"]))
            if watch.settings.archive and watch.probe is None:
                watch.probe = (change_at, change_at + watch.settings.archive_probe)
                watch._probe_next = change_at + (watch.settings.archive_every or watch.settings.archive_probe)
                watch._probe_online = {}
            decision = watch.policy.on_event(event, change_at=change_at, labelled=labelled)
        else:
            continue
        if decision is not None:
            step.decisions.append(decision)
    return step


def test_the_label_and_record_paths_are_the_generic_bank_loop():
    """`observe_label`, `observe_record` and `observe` (which calls them) against the generic loop over the
    bank, on twin watches: the same events, decisions, flags and state, whatever an observation holds."""
    settings = DriftSettings(data_window=100, min_train_rows=400, cooldown=0, archive=True, archive_probe=150,
                             holdout_gap=True, early_train_rows=300, change_from_detector=True,
                             keep_old_on_covariate=True, regrow=True, regrow_when_stale=True,
                             gap_window=200, gap_every=20)
    rng = random.Random(11)
    reference = [{"x": rng.gauss(0, 1), "c": rng.choice("ab")} for _ in range(300)]
    twins = [DriftWatch(settings), DriftWatch(settings)]
    for watch in twins:
        watch.on_champion({"version": 1}, reference, trained_on=(0, 300), labelled=300, holdout=(0.95, 200))

    def plain(step):
        events = [e.model_dump(exclude={"id", "at", "incident", "model"}) for e in step.events] if step else []
        decisions = ([d.model_dump(exclude={"id", "at", "incident", "event_ids"}) for d in step.decisions]
                     if step else [])
        return events, decisions

    def state(watch):
        return ([(d.name, d.drift_detected, d.n_seen) for d in watch.detectors], list(watch._error_positions),
                watch._fall, watch._online_only, watch._champion_only, list(watch._recent), watch.probe,
                watch._probe_online, watch.vitals()["detectors"], watch.policy.change_at, watch.policy.in_flight)

    fired = set()
    for labelled in range(301, 4000):
        shift = 2.0 if labelled > 1500 else 0.0
        x = {"x": rng.gauss(shift, 1), "c": rng.choice("ab")}
        champion_right = rng.random() < (0.95 if labelled < 2500 else 0.55)
        online_right = None if rng.random() < 0.1 else rng.random() < (0.9 if labelled < 2500 else 0.8)
        prediction, score = rng.choice("ab"), rng.uniform(0.5, 1) if labelled < 3500 else rng.uniform(0.9, 1)
        kind = rng.random()
        observations = ([Observation(features=x, prediction=prediction, score=score),
                         Observation(champion_right=champion_right, online_right=online_right)] if kind < 0.8 else
                        [Observation(features=x), Observation(prediction=prediction, score=score),
                         Observation(champion_right=champion_right)] if kind < 0.9 else
                        [Observation(features=x, champion_right=champion_right, online_right=online_right)])
        steps = [[], []]
        for o in observations:
            steps[0].append(plain(_observe_generic(twins[0], o, index=labelled, labelled=labelled,
                                                   context={"at": labelled})))
            watch = twins[1]
            if o.champion_right is not None and o.features is None:
                step = watch.observe_label(o.champion_right, o.online_right, index=labelled, labelled=labelled,
                                           context={"at": labelled})
            elif o.champion_right is None and rng.random() < 0.5:
                step = watch.observe_record(o.features, o.prediction, o.score, index=labelled, labelled=labelled,
                                            context={"at": labelled})
            else:
                step = watch.observe(o, index=labelled, labelled=labelled, context={"at": labelled})
            steps[1].append(plain(step))
        assert steps[0] == steps[1], labelled
        fired |= {event["detector"] for events, _ in steps[0] for event in events}
        decisions = []
        for watch in twins:
            due = watch.archive_due(labelled)
            decision = watch.on_labelled(labelled)
            decisions.append((due, None if decision is None else decision.model_dump(exclude={"id", "at", "incident",
                                                                                              "event_ids"})))
            if decision is not None and decision.action is Action.RETRAIN:
                watch.on_champion({"version": 2}, reference, trained_on=decision.window, labelled=labelled,
                                  holdout=(0.9, 100))
                watch.retrain_finished(promoted=True, labelled=labelled)
        assert decisions[0] == decisions[1], labelled
        assert state(twins[0]) == state(twins[1]), labelled
    assert fired == {"error-adwin", "accuracy-gap", "holdout-gap", "data-ks", "prediction-drift"}  # all had a say


def test_what_a_retrain_bought_is_its_holdout_accuracy_over_the_served_predictions_on_the_same_rows():
    watch = DriftWatch(DriftSettings(retrain_pay=0.02))
    for position in range(1000):
        watch.served_outcome(position, position % 4 != 0)  # 75 % right, the same on every stretch
    assert watch.bought(0.80, (700, 1000)) == pytest.approx(0.05)
    assert watch.bought(0.70, (700, 1000)) == pytest.approx(-0.05)
    assert watch.bought(0.80, (900, 1300)) is None  # fewer than half of its holdout rows seen served
    # Off: nothing is kept, nothing is known.
    off = DriftWatch(DriftSettings(retrain_pay=None))
    off.served_outcome(0, True)
    assert off.bought(0.9, (0, 1)) is None


def test_a_retrain_that_won_is_judged_again_once_its_champion_serves():
    settings = DriftSettings(retrain_pay=0.02, gap_window=100, cooldown=500)
    watch = DriftWatch(settings)
    watch.retrain_finished(promoted=True, labelled=1000, bought=0.05)  # it beat the served predictions
    assert watch.policy.unpaid == 0
    # Its champion's first 100 labels: served right as often as the online learner alone (it adds nothing).
    for position in range(1000, 1100):
        watch.served_outcome(position, position % 2 == 0, position % 2 == 0, current=True)
    assert watch.policy.unpaid == 1 and watch.policy.backoff_until == 1100 + 500
    # One that adds over the online learner once serving resets the back-off.
    watch.retrain_finished(promoted=True, labelled=2000, bought=0.05)
    for position in range(2000, 2100):
        watch.served_outcome(position, True, position % 2 == 0, current=True)
    assert watch.policy.unpaid == 0 and watch.policy.backoff_until == 0


def _covariate_windows(fall, *, online_after=0.95, moved=True):
    """A covariate shift at labelled record 3000: the feature jumps from U(0,1) to U(2,3) (when `moved`),
    the champion falls from 0.95 to 0.6, the online learner to `online_after`. Every retrain is promoted
    (its reference then the new features'). Returns the retrain windows."""
    settings = DriftSettings(**{**QUIET, "min_train_rows": 1500, "first_train_rows": 300, "first_train_gap": 0.1,
                                "first_then_full": True, "data_window": 200}, first_train_fall=fall)
    rng = random.Random(4)
    reference = [{"x": rng.random()} for _ in range(500)]
    watch = DriftWatch(settings)
    watch.on_champion({"version": 1}, reference, labelled=0, holdout=(0.95, 600))
    windows = []
    for labelled in range(1, 6000):
        after = labelled >= 3000
        x = {"x": rng.random() + (2 if after and moved else 0)}
        step = watch.observe(Observation(features=x, champion_right=rng.random() < (0.6 if after else 0.95),
                                         online_right=rng.random() < (online_after if after else 0.95)),
                             index=labelled, labelled=labelled)
        for decision in [*step.decisions, watch.on_labelled(labelled)]:
            if decision is not None and decision.action is Action.RETRAIN:
                windows.append(decision.window)
                now = [{"x": r["x"] + (2 if moved else 0)} for r in reference]  # trained on the new rows too
                watch.on_champion({"version": len(windows) + 1}, now, trained_on=decision.window,
                                  labelled=labelled, holdout=(0.95, 600))
                watch.retrain_finished(promoted=True, labelled=labelled)
                break
    return windows


def test_a_covariate_first_try_needs_the_features_to_have_moved():
    """first_train_fall="covariate": the champion's fall earns a first try while the online learner still
    serves only when a data-drift window closed around the change (then the full window challenges it,
    first_then_full)."""
    assert [end - start for start, end in _covariate_windows("covariate")] == [300, 1500]
    assert [end - start for start, end in _covariate_windows("covariate", moved=False)] == [1500]
    assert [end - start for start, end in _covariate_windows("both")] == [1500]


def test_a_retrain_the_champion_survived_rebases_the_data_detector_on_the_shifted_features():
    rng = random.Random(3)
    watch = DriftWatch(DriftSettings(**{**QUIET, "data_window": 200}))
    watch.on_champion({"version": 1}, [{"x": rng.gauss(0, 1)} for _ in range(500)])

    def shifted(n, start):
        fired = 0
        for k in range(start, start + n):
            step = watch.observe(Observation(features={"x": rng.gauss(3, 1)}), index=k, labelled=0)
            fired += sum(e.kind == "data" for e in step.events)
        return fired

    assert shifted(400, 0) > 0  # the shift is seen against the champion's training rows
    watch.retrain_finished(promoted=False, labelled=0)  # a challenger on the new rows did not beat it
    assert shifted(1_000, 400) == 0  # the shifted features are the reference now: no alarm again


@pytest.mark.parametrize(("accuracy", "retrains"), [(0.95, 0), (0.80, 1)])
def test_a_covariate_drift_is_held_while_the_champion_keeps_its_holdout_accuracy(accuracy, retrains):
    """covariate_hold: the features move at 1,000 and no labelled detector fires; with the champion as accurate
    on the labels since as its holdout (0.95) promised, the drift is held (no retrain, the moved features the
    reference); 0.80 is more than retrain_pay below it: the retrain goes ahead."""
    rng = random.Random(5)
    watch = DriftWatch(DriftSettings(**{**QUIET, "data_window": 100, "covariate_hold": True}))
    watch.on_champion({"version": 1}, [{"x": rng.gauss(0, 1)} for _ in range(500)], trained_on=(0, 500),
                      labelled=500, holdout=(0.95, 150))
    decisions = []
    for labelled in range(501, 3000):
        x = {"x": rng.gauss(0 if labelled < 1000 else 3, 1)}
        right = rng.random() < (0.95 if labelled < 1000 else accuracy)
        steps = [watch.observe(Observation(features=x), index=labelled, labelled=labelled),
                 watch.observe(Observation(champion_right=right), index=labelled, labelled=labelled)]
        decisions += [d for s in steps for d in s.decisions] + [watch.on_labelled(labelled)]
        if any(d is not None and d.action is Action.RETRAIN for d in decisions):
            watch.retrain_finished(promoted=False, labelled=labelled)
    assert sum(d is not None and d.action is Action.RETRAIN for d in decisions) == retrains
    held = [d for d in decisions if d is not None and d.reason.startswith("covariate drift held")]
    assert len(held) == 1 - retrains
    if held:  # the moved features are the reference now: the data detector stays quiet
        assert not [d for d in decisions[decisions.index(held[0]) + 1:] if d is not None]

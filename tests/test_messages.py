"""Every message round-trips through its one serialize/parse pair, refuses a version it
cannot read and names a missing field; the bytes on the topics stay what they were."""

import json

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from driftctl.messages import (
    Action,
    DeadLetter,
    Decision,
    DriftEvent,
    InvalidMessage,
    Label,
    ModelUpdate,
    Prediction,
    RetrainTrigger,
    Telemetry,
    TrainingWindow,
)
from serving.codec import (
    InvalidRecord,
    dead_letter,
    decode_label,
    decode_prediction,
    decode_telemetry,
    encode_label,
    encode_prediction,
    encode_telemetry,
)

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)  # orjson refuses lone surrogates
names = text.filter(bool)
finite = st.floats(allow_nan=False, allow_infinity=False)
ints = st.integers(-(2**63), 2**63 - 1)
scalars = st.one_of(st.none(), st.booleans(), ints, finite, text)
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3), max_leaves=8)
json_objects = st.dictionaries(text, json_values, max_size=4)
offsets = st.integers(0, 2**40)

telemetry = st.builds(Telemetry, id=names, ts=finite, features=st.dictionaries(
    text, st.one_of(st.none(), ints, finite, text), min_size=1, max_size=5))
labels = st.builds(Label, id=names, ts=finite, label=st.one_of(st.booleans(), ints, finite, names))
lineage = st.fixed_dictionaries({"name": names, "version": st.integers(1, 10**6), "run_id": names})
predictions = st.builds(Prediction, id=names, ts=finite, prediction=scalars, model=lineage) | st.builds(
    Prediction, id=names, ts=finite, prediction=scalars, model=lineage,
    proba=st.none() | st.dictionaries(text, finite, max_size=3),
    online=st.fixed_dictionaries({"prediction": scalars, "n_learned": st.integers(0, 10**9)}),
    served=st.sampled_from(["champion", "online"]), scorer=names, scored_at=finite,
    source=st.fixed_dictionaries({"partition": st.integers(0, 1000), "offset": offsets}))

updates = st.builds(ModelUpdate, name=names, version=st.integers(1, 10**6), run_id=names, reason=text,
                    event_ids=st.lists(names, max_size=3).map(tuple), decision_id=st.none() | names,
                    previous_version=st.none() | st.integers(1, 10**6), promoted_at=finite, rollback=st.booleans())
drift_events = st.builds(DriftEvent, id=names, detector=names, kind=st.sampled_from(["concept", "data"]),
                         index=st.integers(0, 10**9), statistic=finite, threshold=finite, window=json_objects,
                         evidence=json_objects, model=json_objects, at=finite)
decisions = st.builds(Decision, id=names, action=st.sampled_from(Action), reason=text,
                      event_ids=st.lists(names, max_size=3).map(tuple),
                      window=st.none() | st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)), at=finite,
                      promote_z=st.none() | st.floats(0.5, 5.0))
triggers = st.builds(RetrainTrigger, decision_id=names, kind=st.sampled_from(["drift", "bootstrap", "schedule"]),
                     reason=text, event_ids=st.lists(names, max_size=3).map(tuple),
                     evidence=st.lists(drift_events, max_size=2).map(tuple), promote_z=st.none() | st.floats(0.5, 5.0))
spans = st.dictionaries(st.integers(0, 64), st.tuples(offsets, offsets), min_size=1, max_size=3)
windows = st.builds(TrainingWindow, bootstrap_servers=names, telemetry_topic=names, labels_topic=names,
                    telemetry=spans, labels=spans, positions=st.tuples(offsets, offsets),
                    first_ts=st.none() | finite, last_ts=st.none() | finite)


# -- the per-record messages: codec's pair ------------------------------------------------------
@given(telemetry)
def test_telemetry_round_trips(value):
    assert decode_telemetry(encode_telemetry(value)) == value


@given(labels)
def test_label_round_trips(value):
    assert decode_label(encode_label(value)) == value


@given(predictions)
def test_prediction_round_trips(value):
    assert decode_prediction(encode_prediction(value)) == value


GOOD = {
    "telemetry": (decode_telemetry, {"id": "r1", "ts": 1.5, "features": {"a": 1.0}}),
    "label": (decode_label, {"id": "r1", "ts": 1.5, "label": 1}),
    "prediction": (decode_prediction, {"id": "r1", "ts": 1.5, "prediction": 1, "proba": None,
                                       "model": {"name": "m", "version": 2, "run_id": "abc"}}),
}


@pytest.mark.parametrize("kind", GOOD)
def test_a_record_of_another_version_is_refused_and_version_1_is_read(kind):
    decode, good = GOOD[kind]
    assert decode(orjson.dumps({**good, "schema_version": 1})) == {**good, "schema_version": 1}
    with pytest.raises(InvalidRecord, match="schema_version 2 is not readable here; this reader reads 1"):
        decode(orjson.dumps({**good, "schema_version": 2}))


@pytest.mark.parametrize("kind, field, reason", [
    ("telemetry", "id", "no id"), ("telemetry", "ts", "'ts'"), ("telemetry", "features", "'features'"),
    ("label", "label", "no label"), ("prediction", "prediction", "no prediction"),
    ("prediction", "model", "'model' must be an object with an integer 'version'"),
])
def test_a_record_missing_a_field_is_refused_with_a_reason(kind, field, reason):
    decode, good = GOOD[kind]
    with pytest.raises(InvalidRecord, match=reason):
        decode(orjson.dumps({k: v for k, v in good.items() if k != field}))


def test_a_prediction_without_an_integer_model_version_is_refused():
    _, good = GOOD["prediction"]
    for model in ({"name": "m"}, {"version": "2"}, {"version": True}, "m"):
        with pytest.raises(InvalidRecord, match="integer 'version'"):
            decode_prediction(orjson.dumps({**good, "model": model}))


def test_dead_letter_carries_exactly_its_fields():
    keys = set(json.loads(dead_letter("why", "t", 0, 7, b"x")))
    assert DeadLetter.__required_keys__ <= keys <= DeadLetter.__required_keys__ | DeadLetter.__optional_keys__


# -- the control messages: to_json / from_json ----------------------------------------------------
@given(updates)
def test_model_update_round_trips(value):
    assert ModelUpdate.from_json(value.to_json()) == value


@given(drift_events)
def test_drift_event_round_trips(value):
    assert DriftEvent.from_json(value.to_json()) == value


@given(decisions)
def test_decision_round_trips(value):
    assert Decision.from_json(value.to_json()) == value


@given(triggers)
def test_retrain_trigger_round_trips(value):
    assert RetrainTrigger.from_json(value.to_json()) == value
    assert RetrainTrigger.model_validate(value.model_dump(mode="json")) == value  # as the ledger and Prefect hold it


@given(windows)
def test_training_window_round_trips(value):
    assert TrainingWindow.from_json(value.to_json()) == value
    assert TrainingWindow.model_validate(value.model_dump(mode="json")) == value


EXAMPLES = [
    ModelUpdate(name="m", version=2, run_id="abc"),
    DriftEvent(detector="error-adwin", kind="concept", index=10, statistic=0.3, threshold=0.05),
    Decision(action=Action.RETRAIN, reason="drift"),
    RetrainTrigger(decision_id="decision-1"),
    TrainingWindow(bootstrap_servers="b", telemetry_topic="t", labels_topic="l", telemetry={0: (0, 5)},
                   labels={0: (0, 5)}, positions=(0, 5)),
]
REQUIRED = {ModelUpdate: "version", DriftEvent: "detector", Decision: "action", RetrainTrigger: None,
            TrainingWindow: "telemetry"}


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: type(m).__name__)
def test_a_message_of_another_version_is_refused_clearly(message):
    raw = json.loads(message.to_json())
    assert raw["schema_version"] == 1
    with pytest.raises(InvalidMessage, match=f"bad {type(message).__name__}: schema_version: .*version 2 is not "
                                             "readable here; this reader reads version 1"):
        type(message).from_json(json.dumps({**raw, "schema_version": 2}))


@pytest.mark.parametrize("message", [m for m in EXAMPLES if REQUIRED[type(m)]], ids=lambda m: type(m).__name__)
def test_a_message_missing_a_field_names_it(message):
    field = REQUIRED[type(message)]
    raw = {k: v for k, v in json.loads(message.to_json()).items() if k != field}
    with pytest.raises(InvalidMessage, match=f"bad {type(message).__name__}: {field}: Field required"):
        type(message).from_json(json.dumps(raw))


@pytest.mark.parametrize("raw, reason", [(None, "empty message"), (b"\xff", "Invalid JSON"),
                                         (b"[1]", "Input should be an object")])
def test_a_message_that_is_not_one_says_why(raw, reason):
    with pytest.raises(InvalidMessage, match=reason):
        ModelUpdate.from_json(raw)


# -- the wire stays as it was -----------------------------------------------------------------------
def test_a_promotion_is_byte_for_byte_what_the_retrain_flow_wrote_before():
    before = {"schema_version": 1, "name": "m", "version": 2, "run_id": "abc", "reason": "drift",
              "event_ids": ["drift-1"], "decision_id": "decision-1", "previous_version": 1,
              "promoted_at": 1767225600.125}
    update = ModelUpdate(name="m", version=2, run_id="abc", reason="drift", event_ids=("drift-1",),
                         decision_id="decision-1", previous_version=1, promoted_at=1767225600.125)
    assert update.to_json() == orjson.dumps(before)


def test_a_rollback_carries_the_keys_the_rollback_command_wrote_before():
    before = {"schema_version": 1, "name": "m", "version": 1, "run_id": "abc", "reason": "manual", "rollback": True,
              "previous_version": 2, "promoted_at": 1767225600.5, "event_ids": [], "decision_id": None}
    update = ModelUpdate(name="m", version=1, run_id="abc", reason="manual", rollback=True, previous_version=2,
                         promoted_at=1767225600.5)
    assert json.loads(update.to_json()) == before


def test_an_update_written_without_version_or_reason_is_still_read():
    update = ModelUpdate.from_json(b'{"name": "m", "version": 3, "run_id": "abc", "promoted_at": 1.0}')
    assert (update.version, update.reason, update.rollback, update.previous_version) == (3, "", False, None)


def test_a_trigger_as_the_monitor_wrote_it_before_is_read():
    event = DriftEvent(detector="error-adwin", kind="concept", index=10, statistic=0.3, threshold=0.05)
    before = {"decision_id": "decision-1", "event_ids": [event.id], "reason": "drift", "kind": "drift",
              "evidence": [event.model_dump(mode="json")]}
    trigger = RetrainTrigger.model_validate(before)
    assert trigger.evidence == (event,) and trigger.first_event == event.id
    added = ("schema_version", "incident", "candidates", "promote_z", "provisional")  # written since: unset here
    assert {k: v for k, v in trigger.model_dump(mode="json").items() if k not in added} == before


def test_a_trigger_without_a_decision_gets_one():
    assert RetrainTrigger().decision_id.startswith("decision-") and RetrainTrigger().first_event is None


def test_a_window_needs_labelled_records():
    with pytest.raises(ValueError, match="no labelled records"):
        TrainingWindow.from_positions([], bootstrap_servers="b", telemetry_topic="t", labels_topic="l",
                                      positions=(0, 0))


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**9), st.integers(0, 3), st.integers(0, 10**9),
                          st.floats(0, 2e9)), min_size=1, max_size=60))
def test_a_window_spans_each_partitions_smallest_to_largest_offset(rows):
    window = TrainingWindow.from_positions(rows, bootstrap_servers="b", telemetry_topic="t", labels_topic="l",
                                           positions=(5, 5 + len(rows)))

    def spans(pairs):
        out: dict[int, tuple[int, int]] = {}
        for partition, offset in pairs:
            low, high = out.get(partition, (offset, offset + 1))
            out[partition] = (min(low, offset), max(high, offset + 1))
        return out

    assert window.telemetry == spans((r[0], r[1]) for r in rows)
    assert window.labels == spans((r[2], r[3]) for r in rows)
    assert (window.first_ts, window.last_ts) == (min(r[4] for r in rows), max(r[4] for r in rows))
    assert window.positions == (5, 5 + len(rows))

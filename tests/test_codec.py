import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.codec import InvalidRecord, check_features, dead_letter, decode_label, decode_telemetry, encode
from training.datasets import FeatureSchema

SCHEMA = FeatureSchema(numeric=("a", "b"), categorical={"site": ("nord", "süd")})

GOOD = {"id": "r1", "ts": 1.5, "features": {"a": 1.0, "b": "x", "c": None}}


def test_good_record_decodes():
    assert decode_telemetry(encode(GOOD)) == GOOD


@pytest.mark.parametrize("raw, reason", [
    (b"\xff\xfe", "not JSON"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"ts": 1, "features": {"a": 1}}', "no id"),
    (b'{"id": "", "ts": 1, "features": {"a": 1}}', "no id"),
    (b'{"id": "r", "ts": "yesterday", "features": {"a": 1}}', "'ts'"),
    (b'{"id": "r", "ts": 1, "features": []}', "'features'"),
    (b'{"id": "r", "ts": 1, "features": {"a": [1]}}', "feature 'a' has type list"),
    (b'{"id": "r", "ts": 1, "features": {"a": ' + b"1" * 400 + b'}}', "not finite"),
    (b'{"id": "r", "ts": 1, "features": {"a": ' + b"[" * 5000 + b"]" * 5000 + b'}}', "nested too deeply"),
    (b'{"id": "\\ud800", "ts": 1, "features": {"a": 1}}', "lone surrogate"),
    (b'{"id": "r", "ts": 1, "features": {"a": NaN}}', "not finite"),
    (b'{"id": "r", "ts": 1, "features": {"a": Infinity}}', "not finite"),
    (None, "empty"),
])
def test_bad_records_are_rejected_with_a_reason(raw, reason):
    with pytest.raises(InvalidRecord, match=reason):
        decode_telemetry(raw)


@pytest.mark.parametrize("features, reason", [
    ({"a": 1, "site": "nord"}, "missing feature 'b' \\(absent"),
    ({"a": 1, "b": None, "site": "nord"}, "missing feature 'b' \\(null"),
    ({"a": 1, "b": 2, "site": "nord", "z": 3}, "unexpected features: z"),
    ({"a": "1", "b": 2, "site": "nord"}, "should be a number"),
    ({"a": 1, "b": 2, "site": "west"}, "unseen category 'west'"),
])
def test_schema_violations_are_rejected(features, reason):
    with pytest.raises(InvalidRecord, match=reason):
        check_features(features, SCHEMA, "reject")


def test_impute_policy_passes_missing_values_on_as_null():
    assert check_features({"a": 1, "site": "süd"}, SCHEMA, "impute") == {"a": 1, "b": None, "site": "süd"}
    with pytest.raises(InvalidRecord, match="unseen category"):
        check_features({"a": 1, "site": "øst"}, SCHEMA, "impute")


def test_oversized_message_is_rejected():
    with pytest.raises(InvalidRecord, match="oversized"):
        decode_telemetry(encode({**GOOD, "pad": "x" * 1000}), max_bytes=500)


def test_label_needs_a_value():
    with pytest.raises(InvalidRecord, match="no label"):
        decode_label(b'{"id": "r", "ts": 1}')
    assert decode_label(b'{"id": "r", "ts": 1, "label": 0}')["label"] == 0


def test_dead_letter_keeps_source_and_raw_text():
    letter = json.loads(dead_letter("not JSON", "t", 2, 41, b"\xffoops"))
    assert letter["error"] == "not JSON" and letter["topic"] == "t"
    assert (letter["partition"], letter["offset"]) == (2, 41)
    assert letter["raw"].endswith("oops")


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_another_exception(raw):
    with contextlib.suppress(InvalidRecord):
        decode_telemetry(raw)


def test_a_json_boolean_is_a_feature():
    from serving.codec import decode_telemetry

    record = decode_telemetry(b'{"id": "r", "ts": 1, "features": {"a": true, "b": false, "c": 2}}')
    assert record["features"] == {"a": 1, "b": 0, "c": 2}


@pytest.mark.parametrize("label", [b'{"k": 1}', b'[1]', b'1e999', b'1' + b'0' * 400])
def test_a_label_that_is_not_a_scalar_is_rejected(label):
    from serving.codec import decode_label

    with pytest.raises(InvalidRecord):
        decode_label(b'{"id": "r", "ts": 1, "label": ' + label + b'}')


_feature_values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**70, 2**70),
                            st.booleans(), st.none(), st.sampled_from(["nord", "süd", "west", ""]),
                            st.lists(st.integers(), max_size=1))


@given(st.dictionaries(st.sampled_from(["a", "b", "site", "z"]), _feature_values, max_size=4),
       st.sampled_from(["reject", "impute"]), st.sampled_from(["reject", "accept"]))
def test_decoding_and_checking_in_one_pass_is_the_two_steps(features, missing, unseen):
    """The scorer's and monitor's one pass gives what decode_telemetry then check_features give:
    the same record and features, or a rejection with the same reason."""
    from serving.codec import decode_checked

    raw = json.dumps({"id": "r", "ts": 1.0, "features": features}).encode()  # NaN and Infinity as Python writes them

    def outcome(step):
        try:
            return step()
        except InvalidRecord as exc:
            return str(exc)

    def two_steps():
        record = decode_telemetry(raw)
        return record, check_features(record["features"], SCHEMA, missing, unseen=unseen)

    one = outcome(lambda: decode_checked(raw, SCHEMA, missing, unseen=unseen))
    assert one == outcome(two_steps)
    if not isinstance(one, str):
        assert list(one[1]) == list(two_steps()[1])  # the same order of features too


def test_one_pass_refuses_an_oversized_message():
    from serving.codec import decode_checked

    with pytest.raises(InvalidRecord, match="oversized"):
        decode_checked(b'{"id": "r", "ts": 1, "features": {"a": 1.0, "b": 2.0, "site": "nord"}}', SCHEMA,
                       max_bytes=10)
    record, checked = decode_checked(b'{"id": "r", "ts": 1, "features": {"b": 2.0, "a": 1, "site": "nord"}}', SCHEMA)
    assert checked == {"a": 1, "b": 2.0, "site": "nord"} and record["id"] == "r"

"""The scorer's metrics: a batch's latencies counted as one observe per record would count them."""

import random

import pytest

from serving.metrics import ScorerMetrics


def samples(metrics: ScorerMetrics) -> dict[tuple[str, str], float]:
    return {(s.name, s.labels.get("le", "")): s.value for family in metrics.registry.collect()
            if family.name == "driftctl_record_latency_seconds"
            for s in family.samples if not s.name.endswith("_created")}


def test_a_batch_of_latencies_counts_as_one_observe_each():
    rng = random.Random(3)
    acked = 1_767_225_600.0
    # Latencies on and around every bucket bound, far beyond the last, and appends after the ack (clock skew: 0).
    latencies = [*(b for b in (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)),
                 *(rng.uniform(0, 12) for _ in range(500)), 60.0, -0.5, 0.0]
    appended_ms = [round((acked - latency) * 1000) for latency in latencies]
    one_by_one, batched = ScorerMetrics(), ScorerMetrics()
    for ms in appended_ms:
        one_by_one.latency.observe(max(acked - ms / 1000.0, 0.0))
    batched.observe_latencies(acked, appended_ms[:200])
    batched.observe_latencies(acked, appended_ms[200:])
    batched.observe_latencies(acked, [])
    expected, got = samples(one_by_one), samples(batched)
    assert expected.keys() == got.keys() and len(expected) > 10
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9), key
    assert got[("driftctl_record_latency_seconds_count", "")] == len(latencies)

"""Drift detection and the drift policy: pure logic over plain records, no IO.

Detectors follow River's contract (`update(...)`, then read `drift_detected`) and keep
their `evidence`; `drift.policy` turns their signals into a typed `Decision`.
"""

"""Labelled records to frames, and the time-ordered train/holdout split."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict


class TooLittleData(Exception):
    """A training window holds too few labelled records, or a single class."""


def to_frame(features: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Feature dicts to a frame with sorted columns, so train and score agree on order."""
    frame = pd.DataFrame.from_records(list(features))
    return frame.reindex(sorted(frame.columns), axis=1)


def split_holdout(frame: pd.DataFrame, labels: pd.Series, fraction: float, *,
                  min_rows: int = 50) -> tuple[tuple[pd.DataFrame, pd.Series], tuple[pd.DataFrame, pd.Series]]:
    """The last `fraction` of the (time-ordered) rows is the holdout: evaluation is on the newest data."""
    if len(frame) != len(labels):
        raise ValueError("frame and labels differ in length")
    n_holdout = round(len(frame) * fraction)
    n_train = len(frame) - n_holdout
    if n_train < min_rows or n_holdout < min_rows:
        raise TooLittleData(f"{len(frame)} labelled rows: need {min_rows} to train and {min_rows} to evaluate")
    if labels.iloc[:n_train].nunique() < 2:
        raise TooLittleData("the training rows hold a single class")
    return (frame.iloc[:n_train], labels.iloc[:n_train]), (frame.iloc[n_train:], labels.iloc[n_train:])


class TrainingWindow(BaseModel):
    """Where a retrain's labelled records live: offset ranges [start, end) per partition."""

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str
    telemetry_topic: str
    labels_topic: str
    telemetry: dict[int, tuple[int, int]]
    labels: dict[int, tuple[int, int]]
    positions: tuple[int, int]  # labelled-record positions in the monitor's count
    first_ts: float | None = None
    last_ts: float | None = None

    @classmethod
    def from_positions(cls, rows: Sequence[tuple[int, int, int, int, float]], *, bootstrap_servers: str,
                       telemetry_topic: str, labels_topic: str, positions: tuple[int, int]) -> TrainingWindow:
        """`rows`: one (telemetry partition, offset, label partition, offset, ts) per labelled
        record; the window covers each partition's smallest to largest offset."""
        if not rows:
            raise TooLittleData(f"no labelled records in positions {positions}")
        telemetry: dict[int, list[int]] = {}
        labels: dict[int, list[int]] = {}
        for t_part, t_off, l_part, l_off, _ in rows:
            for ranges, part, off in ((telemetry, t_part, t_off), (labels, l_part, l_off)):
                span = ranges.setdefault(part, [off, off + 1])
                span[0], span[1] = min(span[0], off), max(span[1], off + 1)
        return cls(bootstrap_servers=bootstrap_servers, telemetry_topic=telemetry_topic, labels_topic=labels_topic,
                   telemetry={p: tuple(s) for p, s in telemetry.items()},
                   labels={p: tuple(s) for p, s in labels.items()}, positions=positions,
                   first_ts=min(r[4] for r in rows), last_ts=max(r[4] for r in rows))

    def describe(self) -> str:
        def spans(ranges: dict[int, tuple[int, int]]) -> str:
            return ",".join(f"{p}:{s}-{e}" for p, (s, e) in sorted(ranges.items()))
        return f"{self.telemetry_topic}[{spans(self.telemetry)}]+{self.labels_topic}[{spans(self.labels)}]"


def join_labelled(records: Iterable[Mapping[str, Any]],
                  labels: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.Series, list[Mapping[str, Any]]]:
    """Telemetry records joined with their labels by id, in event-time order."""
    rows = sorted((r for r in records if r["id"] in labels), key=lambda r: (r["ts"], r["id"]))
    frame = to_frame(r["features"] for r in rows)
    return frame, pd.Series([labels[r["id"]] for r in rows], name="label"), rows


class FeatureSchema(BaseModel):
    """What a model was trained on: feature names, which are numeric, and the categories
    seen for the others. Scorers check every record against their champion's schema."""

    model_config = ConfigDict(frozen=True)

    numeric: tuple[str, ...] = ()
    categorical: dict[str, tuple[str, ...]] = {}

    @property
    def names(self) -> list[str]:
        return sorted([*self.numeric, *self.categorical])

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> FeatureSchema:
        numeric = tuple(c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]))
        categorical = {c: tuple(sorted(str(v) for v in frame[c].dropna().unique()))
                       for c in frame.columns if c not in numeric}
        return cls(numeric=numeric, categorical=categorical)

"""Labelled records to frames, and the time-ordered train/holdout split."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from pydantic import BaseModel, ConfigDict

from driftctl.messages import Telemetry


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


def join_labelled(records: Iterable[Telemetry],
                  labels: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.Series, list[Telemetry]]:
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

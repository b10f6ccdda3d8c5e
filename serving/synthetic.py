"""A synthetic IoT telemetry stream with a concept drift at a known record.

Built on River's SINE generator: two sensors (vibration, pressure) decide whether a
device is in fault (the label); at `drift_at` the fault boundary changes (SINE1 to
SINE2, a real concept drift) and the temperature sensor is recalibrated (+1.5 degrees,
a covariate drift). Humidity and the firmware version (a category) are noise.
`records=None` streams forever. Pure: no IO.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass

from river.datasets import synth

from driftctl.messages import Telemetry


@dataclass(frozen=True)
class Reading:
    seq: int
    device: str
    record: Telemetry
    label: int


FIRMWARE = ("4.2.0", "4.2.1", "5.0.0-β")


def record_id(seq: int) -> str:
    return f"rec-{seq:09d}"


def iot_stream(records: int | None, *, drift_at: int, devices: int = 50, seed: int = 42,
               start_ts: float = 1_767_225_600.0, interval: float = 0.01) -> Iterator[Reading]:
    before = iter(synth.Sine(classification_function=0, seed=seed))
    after = iter(synth.Sine(classification_function=2, seed=seed + 1))
    rng = random.Random(seed)
    for seq in (range(records) if records is not None else itertools.count()):
        drifted = seq >= drift_at
        x, y = next(after if drifted else before)
        features = {
            "vibration": round(10.0 * x[0], 4),
            "pressure": round(95.0 + 10.0 * x[1], 4),
            "temperature": round(rng.gauss(21.5 if drifted else 20.0, 2.0), 3),
            "humidity": round(rng.gauss(45.0, 5.0), 3),
            "firmware": FIRMWARE[rng.randrange(len(FIRMWARE))],
        }
        yield Reading(
            seq=seq,
            device=f"device-{rng.randrange(devices):03d}",
            record=Telemetry(id=record_id(seq), ts=start_ts + seq * interval, features=features),
            label=int(y),
        )

"""Which prediction is served, and how accurate the served predictions probably are.

`ServingRule` picks, record by record, the champion's prediction, the online learner's or
their blend (probabilities averaged), whichever has the best exponentially weighted accuracy
over the recent labelled records; it switches only on a lead above a margin, so serving does
not flap between two models of equal skill. The live scorer and the backtest hold the same
rule: fed who was right once a label arrives, asked who serves when a record is scored.

`AccuracyEstimate` is the label-free estimate (confidence-based performance estimation, as
NannyML's CBPE does in batch): the expected accuracy of a served prediction is the calibrated
probability of the class served; their mean over the served records estimates accuracy
before the labels arrive. Each source has its own calibration map, learned from the
labelled records as their labels come.

Pure: no IO, no clock.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Self

SOURCES = ("champion", "online", "blend")


def blend(champion: Mapping[Any, float], online: Mapping[Any, float]) -> dict[Any, float]:
    """The two probability vectors averaged (a class one side lacks counts 0 there).

    >>> blend({0: 0.8, 1: 0.2}, {1: 0.6, 0: 0.4})
    {0: 0.6000000000000001, 1: 0.4}
    >>> blend({0: 0.8, 1: 0.2}, {})  # an online learner that has learned nothing yet
    {0: 0.4, 1: 0.1}
    """
    mixed = {c: 0.5 * p for c, p in champion.items()}
    for c, p in online.items():
        mixed[c] = mixed.get(c, 0.0) + 0.5 * p
    return mixed


class StackedBlend:
    """The blend as a learned log-linear pool of the two models (stacking, learned online).

    A class scores `bias[c] + a * log p_champion(c) + b * log p_online(c)`; the softmax of the scores
    is the blend. It starts as the product of the two (a = b = 1, no bias) and learns a, b and the
    biases from each labelled record: a step of gradient descent on log-loss, `rate` scaled down by
    the size of the record's log-probabilities (an overconfident model cannot throw the weights),
    then a pull of `shrink` back towards the product (a memory of about 1 / shrink labels: what was
    learned before a change fades, and late labels cannot hold it on a stale lesson).
    Record by record it leans on the model that is right where they disagree and corrects a shifted
    class prior, which a 50/50 average cannot; the serving rule still judges it as one source among
    three, so a blend that has learned the wrong lesson is not served for long.

    >>> stack = StackedBlend(rate=0.5)
    >>> stack.combine({0: 0.9, 1: 0.1}, {0: 0.2, 1: 0.8})[0]   # as the product: the champion's surer
    0
    >>> for _ in range(200):   # but the online learner is the one right where they disagree
    ...     stack.learn(stack.combine({0: 0.9, 1: 0.1}, {0: 0.2, 1: 0.8})[2], 1)
    >>> stack.combine({0: 0.9, 1: 0.1}, {0: 0.2, 1: 0.8})[0], stack.weights[1] > stack.weights[0]
    (1, True)
    """

    def __init__(self, *, rate: float = 0.05, shrink: float = 0.005, floor: float = 1e-4):
        if not 0 < rate <= 1:
            raise ValueError(f"rate must be in (0, 1], got {rate!r}")
        if not 0 <= shrink < 1:
            raise ValueError(f"shrink must be in [0, 1), got {shrink!r}")
        self.rate = rate
        self.shrink = shrink
        self.floor = floor
        self.weights = [1.0, 1.0]  # champion, online
        self.bias: dict[Any, float] = {}

    def _exps(self, classes: list[Any], lc: list[float], lo: list[float]) -> list[float]:
        """exp of each class's score, less the top score (the softmax without its division)."""
        a, b = self.weights
        get = self.bias.get
        scores = [get(c, 0.0) + a * x + b * z for c, x, z in zip(classes, lc, lo, strict=True)]
        top = max(scores)
        return [math.exp(z - top) for z in scores]

    def combine(self, champion: Mapping[Any, float], online: Mapping[Any, float]) -> tuple[Any, float, Any]:
        """The blend's class, its probability, and the record's features for `learn` (per class, its
        log-probability by each model; an online learner with nothing to say counts 0)."""
        floor, log = self.floor, math.log
        classes = list(champion)
        if online and not online.keys() <= champion.keys():
            classes += [c for c in online if c not in champion]
        elif len(classes) == 2:
            c0, c1 = classes
            return self.combine_pair(c0, c1, champion[c0], champion[c1], online)
        cget, oget = champion.get, online.get
        lc = [log(max(floor, cget(c, 0.0))) for c in classes]
        lo = [log(max(floor, oget(c, 0.0))) for c in classes] if online else [0.0] * len(classes)
        exps = self._exps(classes, lc, lo)
        best = exps.index(1.0)  # the top score's class (the first of equals)
        return classes[best], 1.0 / sum(exps), (classes, lc, lo)

    def combine_pair(self, c0: Any, c1: Any, p0: float, p1: float,
                     online: Mapping[Any, float]) -> tuple[Any, float, Any]:
        """`combine({c0: p0, c1: p1}, online)` for an `online` with no other class: written out for two
        classes (the common case), the same operations in the same order, without lists and loops. What
        it computed is reused by `learn` when nothing was learned in between (labels without delay)."""
        floor, log, exp = self.floor, math.log, math.exp
        x0 = log(p0 if p0 > floor else floor)  # log(max(floor, p0))
        x1 = log(p1 if p1 > floor else floor)
        if online:
            oget = online.get
            z0, z1 = oget(c0, 0.0), oget(c1, 0.0)
            z0, z1 = log(z0 if z0 > floor else floor), log(z1 if z1 > floor else floor)
        else:
            z0 = z1 = 0.0
        weights = self.weights
        a, b = weights
        get = self.bias.get
        s0 = get(c0, 0.0) + a * x0 + b * z0
        s1 = get(c1, 0.0) + a * x1 + b * z1
        top = s1 if s1 > s0 else s0  # max(s0, s1)
        e0, e1 = exp(s0 - top), exp(s1 - top)
        best = c0 if e0 == 1.0 else c1 if e1 == 1.0 else [e0, e1].index(1.0)  # (raises as `combine`)
        return best, 1.0 / (e0 + e1), (c0, c1, x0, x1, z0, z1, weights, e0, e1)

    def learn(self, features: Any, label: Any) -> None:
        """One labelled record, with the features `combine` gave for it."""
        if len(features) == 3:
            self._learn_classes(features, label)
            return
        # Two classes (`combine_pair`): `_learn_classes` written out for them, the same operations.
        c0, c1, x0, x1, z0, z1, weights, e0, e1 = features
        a, b = self.weights
        bias = self.bias
        if weights is not self.weights:  # learned since `combine_pair`: its exps are stale
            get = bias.get
            s0 = get(c0, 0.0) + a * x0 + b * z0
            s1 = get(c1, 0.0) + a * x1 + b * z1
            top = s1 if s1 > s0 else s0
            e0, e1 = math.exp(s0 - top), math.exp(s1 - top)
        total = e0 + e1
        mc, mo = (x0 + x1) / 2, (z0 + z1) / 2
        size = 1 + 4 / 2 * (((x0 - mc) ** 2 + (z0 - mo) ** 2) + ((x1 - mc) ** 2 + (z1 - mo) ** 2))
        step = self.rate / (1 + size / 10)
        keep = 1 - self.shrink
        g0 = step * ((c0 == label) - e0 / total)
        bias[c0] = keep * (bias.get(c0, 0.0) + g0)
        g1 = step * ((c1 == label) - e1 / total)
        bias[c1] = keep * (bias.get(c1, 0.0) + g1)
        da = 0.0 + g0 * x0 + g1 * x1
        db = 0.0 + g0 * z0 + g1 * z1
        self.weights = [1 + keep * (a + da - 1), 1 + keep * (b + db - 1)]

    def predict(self, features: Any) -> Any:
        """The class the blend would give now, with its current weights, for the record whose features
        `combine` gave (labels late: the class it gave then was chosen by older weights)."""
        a, b = self.weights
        get = self.bias.get
        if len(features) == 3:
            classes, lc, lo = features
            return classes[self._exps(classes, lc, lo).index(1.0)]
        c0, c1, x0, x1, z0, z1 = features[:6]
        s0, s1 = get(c0, 0.0) + a * x0 + b * z0, get(c1, 0.0) + a * x1 + b * z1
        return c0 if s0 >= s1 or math.exp(s0 - s1) == 1.0 else c1  # `combine_pair`'s choice, ties and all

    def _learn_classes(self, features: Any, label: Any) -> None:
        classes, lc, lo = features
        exps = self._exps(classes, lc, lo)
        total = sum(exps)
        k = len(classes)
        mc, mo = sum(lc) / k, sum(lo) / k
        size = 1 + 4 / k * sum((x - mc) ** 2 + (z - mo) ** 2 for x, z in zip(lc, lo, strict=True))
        step = self.rate / (1 + size / 10)
        keep = 1 - self.shrink
        bias = self.bias
        da = db = 0.0
        for c, x, z, e in zip(classes, lc, lo, exps, strict=True):
            g = step * ((c == label) - e / total)
            bias[c] = keep * (bias.get(c, 0.0) + g)
            da += g * x
            db += g * z
        a, b = self.weights
        self.weights = [1 + keep * (a + da - 1), 1 + keep * (b + db - 1)]


class ServingRule:
    """Serve the best of champion, online learner and blend by recent labelled accuracy.

    `update(champion_right, online_right, blend_right)` once per labelled record (scored by
    the serving champion); `serving` says which source serves the next records. A switch
    needs a lead above `margin` over the source serving (hysteresis). A new champion starts
    from its holdout accuracy (`on_champion`), the blend from the mean of the two.

    >>> rule = ServingRule(halflife=10, margin=0.01)
    >>> rule.serving
    'champion'
    >>> for _ in range(30):
    ...     _ = rule.update(False, True, True)   # the champion is wrong, the online learner right
    >>> rule.serving, rule.switches
    ('online', 1)
    >>> rule.on_champion(0.99)   # a fresh champion, 0.99 on its holdout
    >>> rule.serving, round(rule.recent["champion"], 2)
    ('champion', 0.99)
    >>> ServingRule(halflife=0)
    Traceback (most recent call last):
    ...
    ValueError: halflife must be at least 1 labelled record, got 0
    """

    def __init__(self, *, halflife: int = 200, margin: float = 0.01, start: float = 0.5,
                 stacked: StackedBlend | None = None, blend_now: bool = False):
        if halflife < 1:
            raise ValueError(f"halflife must be at least 1 labelled record, got {halflife!r}")
        if not 0 <= margin < 1:
            raise ValueError(f"margin must be in [0, 1), got {margin!r}")
        self.halflife = halflife
        self.margin = margin
        self.start = start
        self.stacked = stacked  # None: the blend is the 50/50 average (`blend`)
        self.blend_now = blend_now  # judge the stacked blend by the class its current weights give (`on_label`)
        self._reset()

    @classmethod
    def from_settings(cls, serving: Any) -> ServingRule:
        """From `ServingSettings` (its `serve_halflife`, `serve_margin` and `serve_blend`)."""
        stacked = (StackedBlend(rate=serving.serve_blend_rate, shrink=serving.serve_blend_shrink)
                   if serving.serve_blend == "stacked" else None)
        return cls(halflife=serving.serve_halflife, margin=serving.serve_margin, stacked=stacked,
                   blend_now=serving.serve_blend_now)

    def blend(self, champion: Mapping[Any, float], online: Mapping[Any, float]) -> tuple[Any, float, Any]:
        """The blend's class, its probability, and what `learn_blend` takes with the record's label
        (None for the 50/50 average, which learns nothing)."""
        if self.stacked is not None:
            return self.stacked.combine(champion, online)
        mixed = blend(champion, online)
        chosen = max(mixed, key=mixed.__getitem__)
        return chosen, mixed[chosen], None

    def learn_blend(self, features: Any, label: Any) -> None:
        """The label of a record the blend scored (`features` from `blend`; None: nothing to learn)."""
        if features is not None and self.stacked is not None:
            self.stacked.learn(features, label)

    def _reset(self) -> None:
        self._alpha = 1 - 0.5 ** (1 / self.halflife)
        self._recent = [self.start, self.start, self.start]  # champion, online, blend
        self.serving_index = 0  # the source serving, as its position in SOURCES (0 champion, 1 online, 2 blend)
        self.switches = 0
        self.n_seen = 0
        self.renewals = 0  # the online learner's renewals, as last heard (`on_renewals`)

    @property
    def serving(self) -> str:
        """The source that serves the next records: champion, online or blend."""
        return SOURCES[self.serving_index]

    @property
    def recent(self) -> dict[str, float]:
        """Each source's exponentially weighted recent accuracy."""
        return dict(zip(SOURCES, self._recent, strict=True))

    def update(self, champion_right: bool, online_right: bool | None, blend_right: bool | None) -> Self:
        """One labelled record: who was right (None: not known, as for a prediction of an online
        learner renewed since)."""
        a, recent = self._alpha, self._recent
        recent[0] += a * (champion_right - recent[0])
        if online_right is not None:
            recent[1] += a * (online_right - recent[1])
        if blend_right is not None:
            recent[2] += a * (blend_right - recent[2])
        self.n_seen += 1
        best = 0 if recent[0] >= recent[1] and recent[0] >= recent[2] else 1 if recent[1] >= recent[2] else 2
        if best != self.serving_index and recent[best] > recent[self.serving_index] + self.margin:
            self.serving_index = best
            self.switches += 1
        return self

    def on_champion(self, accuracy: float | None) -> None:
        """A new champion serves: it starts from its holdout `accuracy` (None: unchanged), the
        blend from the mean of champion and online learner; the best of the three serves."""
        recent = self._recent
        if accuracy is not None:
            recent[0] = float(accuracy)
        recent[2] = (recent[0] + recent[1]) / 2
        best = max(range(3), key=recent.__getitem__)
        if best != self.serving_index:
            self.switches += 1
        self.serving_index = best

    def on_online(self, accuracy: float) -> None:
        """The online learner renewed itself (`training.online.Renewing`): it starts from its own
        recent `accuracy` (the labels of records it did not score say nothing about it), the blend
        from the mean; the best of the three serves.

        >>> rule = ServingRule(halflife=10)
        >>> rule.on_champion(0.4)
        >>> rule.on_online(0.9)
        >>> rule.serving, round(rule.recent["blend"], 2)
        ('online', 0.65)
        """
        self._recent[1] = float(accuracy)
        self.on_champion(None)

    def on_renewals(self, renewals: int | None, accuracy: float | None) -> bool:
        """The online learner's renewal count (`training.online.Renewing.renewals`; None: not
        known) and recent `accuracy`, as last heard. On a change it renewed itself: it starts
        from its own accuracy (`on_online`; None: unchanged). Returns whether it renewed."""
        if renewals is None or renewals == self.renewals:
            return False
        self.renewals = renewals
        if accuracy is not None:
            self.on_online(accuracy)
        return True

    def on_label(self, outcomes: tuple[bool, bool | None, bool | None] | None, *, scored_renewals: int,
                 renewals: int | None = None, accuracy: float | None = None,
                 blend_features: Any = None, label: Any = None) -> bool:
        """The label of a record came and the online learner has learned it: the one call the live
        scorer and the backtest make, so both handle a renewal alike.

        `outcomes`: whether the champion, online learner and blend were right on it (None: scored by
        another champion, so it says nothing of this one); `scored_renewals`: the learner's renewals
        when the record was scored; `renewals` and `accuracy`: the learner's after learning the label
        (None: not known yet, as when a learner process reports them with its next answers). The
        online and blend outcomes count only if no renewal came between the record's scoring and
        this label (the labels of records the old learner scored say nothing of the new one).
        Returns whether the learner renewed (its calibration starts afresh too). With `blend_now`, the
        stacked blend is judged by the class its current weights give for the record (`blend_features`,
        from `blend`, and its `label`): with labels late, the class it served was chosen by weights that
        had not seen the newest labels, and after a change the pool learns faster than that shows.

        >>> rule = ServingRule(halflife=10)
        >>> rule.on_label((False, False, False), scored_renewals=0, renewals=1, accuracy=0.9)  # renewed on it
        True
        >>> rule.serving, rule.renewals
        ('online', 1)
        >>> online = rule.recent["online"]
        >>> rule.on_label((False, False, False), scored_renewals=0, renewals=1)  # the old learner scored it
        False
        >>> rule.recent["online"] == online, rule.n_seen   # the champion's outcome counted, not the online's
        (True, 2)
        """
        fresh = scored_renewals == self.renewals  # the learner that scored it served until this label
        renewed = self.on_renewals(renewals, accuracy)
        if outcomes is not None:
            champion, online, blended = outcomes
            if self.blend_now and blend_features is not None and self.stacked is not None:
                blended = self.stacked.predict(blend_features) == label
            self.update(champion, online if fresh else None, blended if fresh else None)
        return renewed

    def as_dict(self) -> dict[str, Any]:
        return {"serving": self.serving, "recent": {k: round(v, 4) for k, v in self.recent.items()},
                "switches": self.switches}


class AccuracyEstimate:
    """Label-free accuracy: the mean calibrated confidence of the served predictions (CBPE).

    `expect(source, confidence)` is a served record's probability of being right: the raw
    confidence (the served class's probability) mapped through that source's calibration,
    `bins` equal-width bins of confidence whose accuracy is learned from the labelled records
    (`learn`), shrunk towards the raw confidence while a bin has few labels. Calibration keeps
    a memory of about `memory` labels per bin, so it follows a drifting model. Feed
    `served(...)` as records are served and read `estimated_accuracy`: the mean over the
    last `window` served records, most of which have no label yet.

    >>> estimate = AccuracyEstimate(window=4)
    >>> round(estimate.expect("champion", 0.9), 3)   # nothing learned: the raw confidence
    0.9
    >>> for i in range(200):
    ...     estimate.learn("champion", 0.9, i % 5 < 3)   # overconfident: 0.9, but right 3 times in 5
    >>> round(estimate.expect("champion", 0.9), 3)
    0.614
    >>> for c in (0.9, 0.9, 0.3, 0.3):   # two records in a bin never labelled: their raw confidence
    ...     _ = estimate.served("champion", c)
    >>> estimate.estimated_accuracy
    0.4571
    """

    def __init__(self, *, bins: int = 10, prior: float = 10.0, memory: int = 1_000, window: int = 1_000):
        if bins < 1:
            raise ValueError(f"bins must be at least 1, got {bins!r}")
        if prior < 0:
            raise ValueError(f"prior must be at least 0, got {prior!r}")
        if memory < 1 or window < 1:
            raise ValueError(f"memory and window must be at least 1, got {memory!r} and {window!r}")
        self.bins = bins
        self.prior = prior
        self.memory = memory
        self.window = window
        self._reset()

    def _reset(self) -> None:
        # per source and bin: [labels counted (capped at memory), accuracy]
        self._maps = {s: [[0.0, 0.0] for _ in range(self.bins)] for s in SOURCES}
        self._recent: list[float] = []
        self._sum = 0.0
        self._next = 0

    def reset(self, source: str) -> None:
        """Forget one source's calibration (a new champion)."""
        self._maps[source] = [[0.0, 0.0] for _ in range(self.bins)]

    def _bin(self, confidence: float) -> int:
        b = int(confidence * self.bins)  # min(bins - 1, max(0, b)), a few times per record
        return b if 0 <= b < self.bins else 0 if b < 0 else self.bins - 1

    def expect(self, source: str, confidence: float) -> float:
        """The probability that a prediction served by `source` with this `confidence` is right."""
        bins = self.bins
        b = int(confidence * bins)  # self._bin(confidence), written out (a few times per record)
        n, accuracy = self._maps[source][b if 0 <= b < bins else 0 if b < 0 else bins - 1]
        return (n * accuracy + self.prior * confidence) / (n + self.prior) if n else confidence

    def learn(self, source: str, confidence: float, right: bool) -> None:
        """A labelled record: `source` served (or would have served) it with `confidence`."""
        bins = self.bins
        b = int(confidence * bins)  # self._bin(confidence), written out
        cell = self._maps[source][b if 0 <= b < bins else 0 if b < 0 else bins - 1]
        if cell[0] < self.memory:
            cell[0] += 1.0
        cell[1] += (right - cell[1]) / cell[0]

    def served(self, source: str, confidence: float) -> float:
        """A record served: its expected accuracy, also counted in `estimated_accuracy`."""
        bins = self.bins
        b = int(confidence * bins)  # self.expect(source, confidence), written out (once per record)
        n, accuracy = self._maps[source][b if 0 <= b < bins else 0 if b < 0 else bins - 1]
        expected = (n * accuracy + self.prior * confidence) / (n + self.prior) if n else confidence
        recent = self._recent
        if len(recent) < self.window:
            recent.append(expected)
        else:
            self._sum -= recent[self._next]
            recent[self._next] = expected
            self._next = (self._next + 1) % self.window
        self._sum += expected
        return expected

    @property
    def estimated_accuracy(self) -> float | None:
        """The mean expected accuracy of the last `window` served records (None before any)."""
        return round(self._sum / len(self._recent), 4) if self._recent else None

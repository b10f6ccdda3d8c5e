"""`driftctl demo`: the whole loop on the embedded stack, with what happened measured."""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from threadpoolctl import threadpool_limits

from drift.policy import Bootstrap
from driftctl.messages import Prediction
from driftctl.runtime.stack import configure_environment, kafka_stack
from driftctl.settings import Settings
from driftctl.stores.heartbeats import Heartbeat
from driftctl.stores.ledger import Ledger
from serving.synthetic import iot_stream

if TYPE_CHECKING:
    from driftctl.messages import DriftEvent
    from driftctl.stores.heartbeats import Beat


class DemoError(Exception):
    """The demo could not complete its loop."""


@dataclass
class DemoResult:
    """What the demo did, in the ledger's terms: the bootstrap champions (a provisional one while the
    warmup's labels are late, then the full one), the drift incident's retrains (a first try on few
    rows, the full window since the change), and what each served."""

    records: int
    drift_at: int
    predictions: int
    duplicates: int
    dead_letters: int
    detected_at: int | None
    detector: str | None
    detection_delay: int | None
    drift_events: list[dict]
    # Each: role ("provisional", "bootstrap"; "first try", "full window", "reinstated", "scheduled"), version,
    # promoted, rows it learned from, run_id, decision_id, reason, records it scored and their accuracy.
    bootstrap: list[dict]
    retrains: list[dict]  # the retrains and reinstatements of the drift's incident, in order
    champion_before_drift: int | None  # the full bootstrap champion (the provisional one's successor)
    champion_after_drift: int | None  # what the drift's incident promoted last (None: nothing)
    retrain_run_id: str | None  # the run of champion_after_drift
    versions_served: list[int]
    accuracy_before_drift: float | None  # champion_before_drift's own predictions before the drift
    accuracy_after_drift: float | None  # the bootstrap champions' own predictions after the drift
    accuracy_after_promotion: float | None  # champion_after_drift's own predictions
    online_accuracy_after_drift: float | None
    served_accuracy_after_drift: float | None  # what was served (serve=best) while a bootstrap champion served
    seconds: float
    # The drift's first retrain decision that was promoted, to the first record its version scored.
    decision_to_serving_s: float | None = None
    # Records from the detection on (stream position) the bootstrap champions scored (all when none was replaced).
    records_on_stale_champion: int | None = None
    outcomes: list[dict] = field(default_factory=list)
    incidents: int = 0  # drifts acted on (the events of one drift fold into one incident)
    stack: dict[str, Any] | None = None  # `demo --served`: the stack's addresses, and whether the demo started it
    prediction_log: list[Prediction] = field(default_factory=list, repr=False)  # every prediction read back

    def to_json(self) -> str:
        return json.dumps({k: v for k, v in asdict(self).items() if k != "prediction_log"}, indent=2)


class _Stage(threading.Thread):
    """A stage thread that keeps its exception for the caller instead of dying quietly."""

    def __init__(self, name: str, target: Callable[[], None]):
        super().__init__(name=name, daemon=True)
        self._run_stage = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._run_stage()
        except BaseException as exc:  # surfaced by _check
            self.error = exc


def fresh_home(settings: Settings) -> None:
    """The embedded broker starts empty, so the demo's models and ledger start empty too."""
    for name in ("mlflow.db", "ledger.db", "ledger.db-wal", "ledger.db-shm", "audit.db", "audit.db-wal",
                 "audit.db-shm", "audit.idx", "mlartifacts", "checkpoints", "reports", "broker.log", "evidently"):
        path = settings.home / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def bootstrap_holds(settings: Settings) -> tuple[int, ...]:
    """Where the demo's stream waits for a bootstrap champion to serve. Its stream is compressed (1,000
    records/s while a fit takes seconds), so it holds while each bootstrap fit the policy makes trains:
    with labels late, the provisional champion once `warmup` records are scored (drift.policy.Bootstrap),
    then the full one once the warmup's labels are in. A live stream does not wait: the online learner
    serves alone until the first champion."""
    warmup, delay = settings.drift.warmup, settings.stream.label_delay
    boot = Bootstrap.from_settings(settings.drift)
    boot.due(scored=warmup, labelled=max(0, warmup - delay))
    return (warmup, warmup + delay) if boot.in_flight == "early" else (warmup + delay,)


def run_demo(settings: Settings, progress: Callable[[str, int, int], None] | None = None) -> DemoResult:
    progress = progress or (lambda phase, done, total: None)
    configure_environment(settings)
    if not settings.kafka.bootstrap_servers and not settings.mlflow.tracking_uri and not settings.ledger.url:
        fresh_home(settings)
    configure_environment(settings)
    # Prefect and MLflow read their environment at import: these come after configure_environment.
    from flows.trigger import make_retrain
    from serving.codec import decode_prediction
    from serving.kafka_io import make_producer, read_topic
    from serving.monitor import Monitor
    from serving.producer import publish
    from serving.scorer import run_scorer_process
    from training.registry import Registry

    # The stages share this process with the trainer: OpenMP workers spinning for the
    # GIL-bound stage threads made one fit 20x slower. One OpenMP thread is plenty here.
    threadpool_limits(limits=1, user_api="openmp")
    stream = settings.stream
    started = time.monotonic()
    with kafka_stack(settings) as bootstrap:
        registry = Registry.from_settings(settings)
        ledger = Ledger.from_settings(settings)
        stop = threading.Event()
        monitor = Monitor(settings, bootstrap, registry, ledger, make_retrain(settings), stop)
        monitor_stage = _Stage("monitor", monitor.run)
        spawn = multiprocessing.get_context("spawn")
        scorer_stats = spawn.Array("q", 4)  # scored, dead letters, learned, version
        scorer_stop = spawn.Event()
        scorer = spawn.Process(target=run_scorer_process, name="scorer", daemon=True,
                               args=(settings.model_dump_json(), bootstrap, scorer_stats, scorer_stop))

        def check() -> None:
            if monitor_stage.error is not None:
                raise DemoError(f"the monitor stopped: {monitor_stage.error}") from monitor_stage.error
            if not scorer.is_alive() and not scorer_stop.is_set():
                raise DemoError(f"the scorer process exited with code {scorer.exitcode}")

        producer = make_producer(bootstrap, settings.kafka)
        producer_beat = Heartbeat.from_settings(settings, "producer", bootstrap)
        holds = bootstrap_holds(settings)
        serving: list[int] = []  # the full bootstrap champion's version, then each that served after it
        swapped_at: list[int] = []  # the record where each after it began to serve

        def on_record(n: int, total: int) -> None:
            producer_beat.beat(records=n)
            if n % 250 == 0:
                progress("streaming", n, total)

        def newest_promoted() -> int:
            return max((o["version"] for o in list(monitor.outcomes) if o.get("promoted")
                        and isinstance(o.get("version"), int)), default=0)

        def ready(full: bool) -> bool:
            """A champion serves (`full`: the full bootstrap champion, the provisional one replaced); or,
            for the provisional one, its fit ended without one (the full one follows the warmup's labels)."""
            boot = monitor.watch.bootstrap
            if not full:
                return scorer_stats[3] != 0 or (boot.tried_early and boot.in_flight is None and not boot.provisional)
            return boot.done and scorer_stats[3] == newest_promoted()

        def gate(seq: int) -> None:
            if seq not in holds:
                return
            full = seq == holds[-1]
            producer.flush()
            progress("training the champion" if full else "training a provisional", 0, 1)
            deadline = time.monotonic() + 300
            while not ready(full):
                check()
                producer_beat.beat(records=seq)
                if time.monotonic() > deadline:  # a failed full fit is tried again (serving.monitor)
                    failed = [o["error"] for o in list(monitor.outcomes) if "error" in o]
                    raise DemoError("no bootstrap champion within 300 s" + (f": {failed[-1]}" if failed else ""))
                time.sleep(0.1)
            if full:
                serving.append(scorer_stats[3])

        def keep_going(sent: int) -> bool:
            """A live stream does not stop mid-incident: past `records`, go on while a retrain is pending
            or running (the first try's full window included), and until the newest champion has served
            a few thousand records."""
            if serving and scorer_stats[3] != serving[-1]:
                serving.append(scorer_stats[3])
                swapped_at.append(sent)
            if sent < stream.records:
                return True
            if sent >= 3 * stream.records:
                return False
            policy = monitor.watch.policy
            if monitor.busy or policy.change_at is not None or policy.grow_at is not None:
                return True
            return bool(swapped_at) and sent < swapped_at[-1] + stream.after_promotion

        scorer.start()
        monitor_stage.start()
        try:
            sent = publish(producer, settings.kafka.topics,
                           iot_stream(None, drift_at=stream.drift_at, devices=stream.devices, seed=stream.seed),
                           rate=stream.rate, label_delay=stream.label_delay, gate=gate, keep_going=keep_going,
                           on_record=lambda n: on_record(n, max(n, stream.records)))
            producer.close()
            producer_beat.stopped(records=sent)
            deadline = time.monotonic() + 300
            while (scorer_stats[0] + scorer_stats[1] < sent or monitor.labelled < sent or monitor.busy):
                check()
                if time.monotonic() > deadline:
                    raise DemoError(f"stream not drained in 300 s: sent {sent}, scored {scorer_stats[0]}, "
                                    f"labelled {monitor.labelled}, retrain busy {monitor.busy}")
                progress("draining", scorer_stats[0], sent)
                time.sleep(0.2)
        finally:
            scorer_stop.set()
            stop.set()
            scorer.join(timeout=30)
            if scorer.is_alive():
                scorer.kill()
            monitor_stage.join(timeout=30)
        check()
        scored, dead_letters = scorer_stats[0], scorer_stats[1]
        predictions = [decode_prediction(m.value) for m in read_topic(
            bootstrap, settings.kafka, settings.kafka.topics.predictions,
            until=lambda got: len(got) >= scored, timeout=30)]
        ledger.close()
    return summarize(settings, sent, predictions, monitor, dead_letters, time.monotonic() - started)


class _Watched(Protocol):
    """What `summarize` reads of a monitor: a live `Monitor` (its newest, serving.monitor_history), or
    `_Observed` for a served stack."""

    @property
    def events(self) -> Sequence[DriftEvent]: ...
    @property
    def outcomes(self) -> Sequence[dict[str, Any]]: ...


def summarize(settings: Settings, sent: int, predictions: list[Prediction], monitor: _Watched, dead_letters: int,
              seconds: float) -> DemoResult:
    stream = settings.stream
    truth = {r.record["id"]: (r.seq, r.label) for r in
             iot_stream(sent, drift_at=stream.drift_at, devices=stream.devices, seed=stream.seed)}
    by_id = {p["id"]: p for p in predictions}

    def accuracy(select: Callable[[int, Prediction], bool], served: bool = False) -> float | None:
        """The champion's own predictions (or, `served`, those served) right among the selected."""
        def answer(p: Prediction) -> Any:
            champion = p.get("champion")
            return p["prediction"] if served or not champion else champion["prediction"]

        hits = [answer(p) == truth[i][1] for i, p in by_id.items() if select(truth[i][0], p)]
        return round(sum(hits) / len(hits), 4) if hits else None

    def online_accuracy(select: Callable[[int, Prediction], bool]) -> float | None:
        hits = [p["online"]["prediction"] == truth[i][1] for i, p in by_id.items() if select(truth[i][0], p)]
        return round(sum(hits) / len(hits), 4) if hits else None

    def position(event: DriftEvent) -> int | None:
        """The stream position of the record an event fired at (None: it names none of ours)."""
        record_id = event.window.get("record_id")
        return truth[record_id][0] if record_id in truth else None

    warmup_end = settings.drift.warmup + stream.label_delay
    after = [e for e in monitor.events if (seq := position(e)) is not None and seq >= stream.drift_at]
    first = after[0] if after else None
    detected_at = truth[first.window["record_id"]][0] if first else None

    steps, decided = _ledger_steps(settings)
    for step in steps:  # what each version served, and how well its own predictions did
        version: int | None = step["version"]
        step["served"] = sum(1 for p in by_id.values() if version is not None and p["model"]["version"] == version)
        step["accuracy"] = accuracy(partial(_scored_by, version))
    bootstrap = [s for s in steps if s["role"] in ("provisional", "bootstrap")]
    # The drift's incident (a later one, e.g. a false alarm, is another story); by time, events with none.
    retrains = [s for s in steps if s not in bootstrap and first is not None and s["at"] >= first.at
                and (first.incident is None or s["incident"] == first.incident)]
    stale = {s["version"] for s in bootstrap if s["promoted"]}  # the champions the drift made stale
    full = [s["version"] for s in bootstrap if s["promoted"] and s["role"] == "bootstrap"]
    champion_before = full[-1] if full else None
    answered = [s for s in retrains if s["promoted"]]
    champion_after = answered[-1]["version"] if answered else None
    first_served = (min((p.get("scored_at") or math.inf for p in by_id.values()
                         if p["model"]["version"] == answered[0]["version"]), default=math.inf)
                    if answered else math.inf)
    decided_at = decided.get(answered[0]["decision_id"], answered[0]["at"]) if answered else None
    return DemoResult(
        records=sent,
        drift_at=stream.drift_at,
        predictions=len(by_id),
        duplicates=len(predictions) - len(by_id),
        dead_letters=dead_letters,
        detected_at=detected_at,
        detector=first.detector if first else None,
        detection_delay=detected_at - stream.drift_at if detected_at is not None else None,
        drift_events=[{"id": e.id, "detector": e.detector, "kind": e.kind,
                       "record": position(e),
                       "statistic": e.statistic, "threshold": e.threshold} for e in monitor.events],
        bootstrap=[_public(s) for s in bootstrap],
        retrains=[_public(s) for s in retrains],
        champion_before_drift=champion_before,
        champion_after_drift=champion_after,
        retrain_run_id=answered[-1]["run_id"] if answered else None,
        versions_served=sorted({p["model"]["version"] for p in by_id.values()}),
        accuracy_before_drift=accuracy(lambda seq, p: warmup_end <= seq < stream.drift_at
                                       and p["model"]["version"] == champion_before),
        accuracy_after_drift=accuracy(lambda seq, p: seq >= stream.drift_at and p["model"]["version"] in stale),
        accuracy_after_promotion=accuracy(lambda seq, p: champion_after is not None
                                          and p["model"]["version"] == champion_after),
        online_accuracy_after_drift=online_accuracy(lambda seq, p: seq >= stream.drift_at),
        served_accuracy_after_drift=accuracy(lambda seq, p: seq >= stream.drift_at and p["model"]["version"] in stale,
                                             served=True),
        seconds=round(seconds, 1),
        decision_to_serving_s=(round(first_served - decided_at, 2) if decided_at is not None
                               and math.isfinite(first_served) else None),
        # By stream position, not the clock: a scorer that lags scores records from before the drift after
        # the detection, and those are not the drift's cost.
        records_on_stale_champion=(sum(1 for i, p in by_id.items() if p["model"]["version"] in stale
                                       and truth[i][0] >= detected_at) if detected_at is not None else None),
        outcomes=list(monitor.outcomes),
        incidents=len({e.incident for e in monitor.events if e.incident is not None}),
        prediction_log=predictions,
    )


def _has(settings: Settings, kind: str) -> bool:
    """Whether the ledger has an entry of `kind` (a `failure`: a retrain failed)."""
    ledger = Ledger.from_settings(settings)
    try:
        return bool(ledger.entries(kind, limit=1))
    finally:
        ledger.close()


def _scored_by(version: int | None, seq: int, p: Prediction) -> bool:
    return version is not None and p["model"]["version"] == version


def _ledger_steps(settings: Settings) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The champion's changes and the challengers rejected, from the ledger, in order, each with its role;
    and when each decision was taken (a promotion names its decision in its trigger)."""
    ledger = Ledger.from_settings(settings)
    try:
        timeline = ledger.timeline()
    finally:
        ledger.close()
    decided: dict[str, float] = {}
    steps: list[dict[str, Any]] = []
    for entry in timeline:
        payload = entry.payload or {}
        if entry.kind == "decision" and payload.get("id"):
            at = payload.get("at")
            decided[payload["id"]] = float(at) if isinstance(at, (int, float)) else entry.at
        elif entry.kind in ("promotion", "rejection", "reinstatement"):
            trigger = payload.get("trigger") or {}
            positions = (payload.get("window") or {}).get("positions")
            # The policy's own window is the first candidate (the others: its newest half, the champion's
            # rows plus the new ones; DriftWatch._candidates); the rows learned from, the one that won.
            candidates = trigger.get("candidates") or ([positions[1] - positions[0]] if positions else [None])
            rows = (payload.get("evaluation") or {}).get("rows") or candidates[0]
            steps.append({"role": _role(settings, entry.kind, trigger, candidates[0]), "version": entry.model_version,
                          "promoted": entry.kind != "rejection", "rows": rows, "run_id": payload.get("run_id"),
                          "decision_id": trigger.get("decision_id"), "reason": entry.reason, "at": entry.at,
                          "incident": trigger.get("incident") or payload.get("incident")})
    return steps, decided


def _role(settings: Settings, kind: str, trigger: dict[str, Any], rows: int | None) -> str:
    """What a retrain was for, in the policy's terms (drift.policy.Bootstrap, DriftPolicy.on_labelled)."""
    if kind == "reinstatement":
        return "reinstated"  # an archived champion back, no training
    if trigger.get("kind") == "bootstrap":
        return "provisional" if trigger.get("provisional") else "bootstrap"
    if trigger.get("kind") == "schedule":
        return "scheduled"
    # A retrain on fewer rows than min_train_rows since the change is its first try; the full window follows.
    return "first try" if rows is not None and rows < settings.drift.min_train_rows else "full window"


def _public(step: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in step.items() if k != "at"}


# -- `driftctl demo --served`: the same demo on the stack of `driftctl up` ----------------------
@dataclass
class _Observed:
    """What `summarize` reads of a monitor, rebuilt from what the served stack recorded: the
    drift events from their topic, the retrain outcomes from the ledger."""

    events: list[DriftEvent]
    outcomes: list[dict[str, Any]]


class _StackBeats:
    """The served stages' newest heartbeats, read at most once a second (the producer asks per record)."""

    def __init__(self, settings: Settings):
        from driftctl.stores.heartbeats import HealthStore

        self.store = HealthStore.from_settings(settings)
        self.read_at = 0.0
        self.scorers: list = []
        self.monitor: Beat | None = None

    def refresh(self, force: bool = False) -> _StackBeats:
        if force or time.monotonic() - self.read_at >= 1.0:
            self.read_at = time.monotonic()
            running = [b for b in self.store.latest() if b.state == "running"]
            self.scorers = [b for b in running if b.stage == "scorer"]
            self.monitor = next((b for b in running if b.stage == "monitor"), None)
        return self

    @property
    def version(self) -> int:
        """The version every scorer serves (0: none yet, or not all on one)."""
        versions = {b.model_version or 0 for b in self.scorers}
        return versions.pop() if len(versions) == 1 else 0

    @property
    def scored(self) -> int:
        return sum(b.records for b in self.scorers)

    @property
    def dead_letters(self) -> int:
        return sum(b.dead_letters for b in self.scorers)

    def vitals(self) -> dict:
        return self.monitor.extra if self.monitor is not None else {}

    def close(self) -> None:
        self.store.close()


def run_served_demo(settings: Settings, progress: Callable[[str, int, int], None] | None = None) -> DemoResult:
    """The demo on the served stack: the stack `driftctl up` started from this home, or, when
    none runs, a fresh one that this call starts on a fresh home (like `driftctl demo`, whose
    state it is) and leaves running, so the Prefect, MLflow and Evidently UIs and the console
    show the run; `driftctl down` stops it. The stream goes through the stack's own scorer and
    monitor; the retrain is a run of the `retrain-on-drift` deployment started by the drift
    event. A stack that has served a stream already is refused: its monitor learned from it,
    so the drift would not be measured from a clean start."""
    from driftctl.app.stack_up import running_stack, up

    progress = progress or (lambda phase, done, total: None)
    configure_environment(settings)
    started = time.monotonic()
    stack = running_stack(settings)
    if stack is None:
        if not settings.kafka.bootstrap_servers and not settings.mlflow.tracking_uri and not settings.ledger.url:
            fresh_home(settings)
        progress("starting the stack (driftctl up)", 0, 1)
        stack = up(settings, progress=lambda what: progress(what[:22], 0, 1))
        launched = True
    else:
        launched = False
        from training.registry import Registry

        champion = Registry.from_settings(settings).champion()
        if champion is not None:
            raise DemoError(f"the stack running from {settings.home} has served a stream already (champion "
                            f"version {champion.version}): run `driftctl down`, then `driftctl demo --served` "
                            "starts a fresh stack")
    from serving.kafka_io import make_producer, read_topic
    from serving.producer import publish

    bootstrap = stack.bootstrap_servers
    stream = settings.stream
    beats = _StackBeats(settings)
    producer = make_producer(bootstrap, settings.kafka)
    producer_beat = Heartbeat.from_settings(settings, "producer", bootstrap)
    holds = bootstrap_holds(settings)
    serving: list[int] = []  # the provisional champion's version, if any, then the full one's and each after
    swapped_at: list[int] = []  # the record where each after the full bootstrap champion began to serve
    booted: list[bool] = []  # the full bootstrap champion serves

    def gate(seq: int) -> None:
        if seq not in holds:
            return
        producer.flush()
        progress("training the champion" if seq == holds[-1] else "training a provisional", 0, 1)
        deadline = time.monotonic() + 600  # a deployment run: the worker starts a process for it
        # The full bootstrap champion replaces the provisional one, if there was one; a provisional fit
        # that failed (in the ledger, or the monitor busy and then idle with no champion) leaves the online
        # learner serving until the full one.
        busy = False
        while beats.refresh().version in (0, *serving):
            if seq != holds[-1]:
                was_busy, busy = busy, bool(beats.vitals().get("busy"))
                if (was_busy and not busy and not _has(settings, "promotion")) or _has(settings, "failure"):
                    return
            producer_beat.beat(records=seq)
            if time.monotonic() > deadline:
                raise DemoError(f"no bootstrap champion served within 600 s (see {settings.home / 'logs'})")
            time.sleep(0.5)
        serving.append(beats.version)
        if seq == holds[-1]:
            booted.append(True)

    def on_record(n: int) -> None:
        producer_beat.beat(records=n)
        if n % 250 == 0:
            progress("streaming", n, max(n, stream.records))

    ended_at: list[float] = []

    def keep_going(sent: int) -> bool:
        version = beats.refresh().version
        if booted and version not in (0, serving[-1]):
            serving.append(version)
            swapped_at.append(sent)
        if sent < stream.records:
            return True
        # A deployment run waits for the worker, so the cap past `records` is time, not records.
        if not ended_at:
            ended_at.append(time.monotonic())
        if time.monotonic() - ended_at[0] > 900:
            return False
        vitals = beats.vitals()
        if vitals.get("busy") or vitals.get("incident"):
            return True
        return bool(swapped_at) and sent < swapped_at[-1] + stream.after_promotion

    try:
        sent = publish(producer, settings.kafka.topics,
                       iot_stream(None, drift_at=stream.drift_at, devices=stream.devices, seed=stream.seed),
                       rate=stream.rate, label_delay=stream.label_delay, gate=gate, keep_going=keep_going,
                       on_record=on_record)
        producer.close()
        producer_beat.stopped(records=sent)
        deadline = time.monotonic() + 600
        while True:
            beats.refresh(force=True)
            vitals = beats.vitals()
            if (beats.scored + beats.dead_letters >= sent and vitals.get("labelled", 0) >= sent
                    and not vitals.get("busy")):
                break
            if time.monotonic() > deadline:
                raise DemoError(f"stream not drained in 600 s: sent {sent}, scored {beats.scored}, labelled "
                                f"{vitals.get('labelled')}, retrain busy {vitals.get('busy')}")
            progress("draining", beats.scored, sent)
            time.sleep(1.0)
        scored, dead_letters = beats.scored, beats.dead_letters
    finally:
        beats.close()
    predictions = [json.loads(m.value) for m in read_topic(
        bootstrap, settings.kafka, settings.kafka.topics.predictions, until=lambda got: len(got) >= scored,
        timeout=60)]
    from driftctl.messages import DriftEvent

    events = [DriftEvent.from_json(m.value) for m in read_topic(
        bootstrap, settings.kafka, settings.kafka.topics.drift_events, until=lambda got: False, timeout=10)]
    ledger = Ledger.from_settings(settings)
    try:
        outcomes = [{"promoted": e.kind == "promotion", "version": e.model_version, "run_id": e.payload.get("run_id"),
                     "kind": (e.payload.get("trigger") or {}).get("kind"), "reason": e.reason}
                    for e in ledger.timeline() if e.kind in ("promotion", "rejection", "failure")]
    finally:
        ledger.close()
    result = summarize(settings, sent, predictions, _Observed(events, outcomes), dead_letters,
                       time.monotonic() - started)
    result.stack = {**stack.addresses(), "started_by_demo": launched}
    return result

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
from typing import TYPE_CHECKING, Any, Protocol

from threadpoolctl import threadpool_limits

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
    records: int
    drift_at: int
    predictions: int
    duplicates: int
    dead_letters: int
    detected_at: int | None
    detector: str | None
    detection_delay: int | None
    drift_events: list[dict]
    retrain_run_id: str | None
    promoted_version: int | None
    versions_served: list[int]
    accuracy_before_drift: float | None
    accuracy_after_drift: float | None
    accuracy_after_promotion: float | None
    online_accuracy_after_drift: float | None
    served_accuracy_after_drift: float | None  # what was served (serve=best: champion, online or blend)
    seconds: float
    # Retrain decision to the first record scored by the promoted version (None: nothing promoted).
    decision_to_serving_s: float | None = None
    # Records the replaced champion scored after the drift was detected (all of them when none was promoted).
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


def _one_retrain_per_drift(settings: Settings) -> Settings:
    """The demo tells one drift's story: its stream is held until champion v1 is in (no record waits for a
    provisional stand-in), and one retrain answers the drift (the first try on fewer rows, on by default,
    would promote twice). Options a user set stay as set."""
    drift = settings.drift
    off = {name: None for name in ("early_champion_rows", "first_train_rows") if name not in drift.model_fields_set}
    return settings.model_copy(update={"drift": drift.model_copy(update=off)}) if off else settings


def run_demo(settings: Settings, progress: Callable[[str, int, int], None] | None = None) -> DemoResult:
    progress = progress or (lambda phase, done, total: None)
    settings = _one_retrain_per_drift(settings)
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
        hold_at = settings.drift.warmup + stream.label_delay

        def on_record(n: int, total: int) -> None:
            producer_beat.beat(records=n)
            if n % 250 == 0:
                progress("streaming", n, total)

        def gate(seq: int) -> None:
            if seq != hold_at:
                return
            producer.flush()
            progress("training champion v1", 0, 1)
            deadline = time.monotonic() + 300
            while scorer_stats[3] == 0:
                check()
                producer_beat.beat(records=seq)
                failed = [o["error"] for o in monitor.outcomes if "error" in o]
                if failed:
                    raise DemoError(f"training the first champion failed: {failed[0]}")
                if time.monotonic() > deadline:
                    raise DemoError("no first champion within 300 s")
                time.sleep(0.1)

        swapped_at: list[int] = []

        def keep_going(sent: int) -> bool:
            """A live stream does not stop mid-retrain: past `records`, go on while a retrain is
            pending or running, and until the new champion has served a few thousand records and
            its probation is judged (a loaded machine's monitor can follow the swap late: up to
            three times as long)."""
            if scorer_stats[3] > 1 and not swapped_at:
                swapped_at.append(sent)
            if sent < stream.records:
                return True
            if sent >= 3 * stream.records:
                return False
            if swapped_at:
                if sent < swapped_at[0] + stream.after_promotion:
                    return True
                return monitor.probation is not None and sent < swapped_at[0] + 3 * stream.after_promotion
            return monitor.busy or monitor.watch.policy.change_at is not None

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
    promoted = [o for o in monitor.outcomes if o.get("promoted") and (o.get("version") or 0) > 1]
    promoted_version = promoted[0]["version"] if promoted else None

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
    decided_at = _decision_time(settings, promoted_version)
    first_served = min((p.get("scored_at") or math.inf for p in by_id.values()
                        if p["model"]["version"] == promoted_version), default=math.inf)
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
        retrain_run_id=promoted[0]["run_id"] if promoted else None,
        promoted_version=promoted_version,
        versions_served=sorted({p["model"]["version"] for p in by_id.values()}),
        accuracy_before_drift=accuracy(lambda seq, p: warmup_end <= seq < stream.drift_at
                                       and p["model"]["version"] == 1),
        accuracy_after_drift=accuracy(lambda seq, p: seq >= stream.drift_at and p["model"]["version"] == 1),
        accuracy_after_promotion=accuracy(lambda seq, p: promoted_version is not None
                                          and p["model"]["version"] == promoted_version),
        online_accuracy_after_drift=online_accuracy(lambda seq, p: seq >= stream.drift_at),
        served_accuracy_after_drift=accuracy(lambda seq, p: seq >= stream.drift_at and p["model"]["version"] == 1,
                                             served=True),
        seconds=round(seconds, 1),
        decision_to_serving_s=(round(first_served - decided_at, 2) if decided_at is not None
                               and math.isfinite(first_served) else None),
        records_on_stale_champion=(sum(1 for p in by_id.values() if p["model"]["version"] != promoted_version
                                       and (p.get("scored_at") or 0.0) >= first.at) if first else None),
        outcomes=list(monitor.outcomes),
        incidents=len({e.incident for e in monitor.events if e.incident is not None}),
        prediction_log=predictions,
    )


def _decision_time(settings: Settings, version: int | None) -> float | None:
    """When the decision to retrain that promoted `version` was taken, from the ledger: its promotion
    names the decision (the trigger), and the decision's entry its time."""
    if version is None:
        return None
    ledger = Ledger.from_settings(settings)
    try:
        timeline = ledger.timeline()
    finally:
        ledger.close()
    promotion = next((e for e in timeline if e.kind == "promotion" and e.model_version == version), None)
    decision_id = ((promotion.payload.get("trigger") or {}).get("decision_id") if promotion else None)
    for entry in timeline:
        if entry.kind == "decision" and decision_id is not None and entry.payload.get("id") == decision_id:
            at = entry.payload.get("at")
            return float(at) if isinstance(at, (int, float)) else entry.at
    return None


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
    settings = _one_retrain_per_drift(settings)
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
    hold_at = settings.drift.warmup + stream.label_delay
    swapped_at: list[int] = []
    first_version: list[int] = []

    def gate(seq: int) -> None:
        if seq != hold_at:
            return
        producer.flush()
        progress("training champion v1", 0, 1)
        deadline = time.monotonic() + 600  # a deployment run: the worker starts a process for it
        while not beats.refresh().version:
            producer_beat.beat(records=seq)
            if time.monotonic() > deadline:
                raise DemoError(f"no first champion served within 600 s (see {settings.home / 'logs'})")
            time.sleep(0.5)
        first_version.append(beats.version)

    def on_record(n: int) -> None:
        producer_beat.beat(records=n)
        if n % 250 == 0:
            progress("streaming", n, max(n, stream.records))

    ended_at: list[float] = []

    def keep_going(sent: int) -> bool:
        version = beats.refresh().version
        if first_version and version > first_version[0] and not swapped_at:
            swapped_at.append(sent)
        if sent < stream.records:
            return True
        # A deployment run waits for the worker, so the cap past `records` is time, not records.
        if not ended_at:
            ended_at.append(time.monotonic())
        if time.monotonic() - ended_at[0] > 900:
            return False
        if swapped_at:
            return sent < swapped_at[0] + stream.after_promotion
        vitals = beats.vitals()
        return bool(vitals.get("busy") or vitals.get("incident"))

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

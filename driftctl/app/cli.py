"""The `driftctl` command: parse, build settings, call a library function, print.

Each command imports the modules it runs inside its own body: Prefect, MLflow, Evidently and
River take seconds to import, and `driftctl --help` or a bad argument must answer at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from driftctl.runtime.logs import quiet_libraries
from driftctl.settings import Settings, mask_url

if TYPE_CHECKING:
    from drift.backtest import BacktestResult
    from driftctl.app.demo import DemoResult

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Concept-drift detection and retraining for streaming ML.")
console = Console()
_debug = False


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")) -> None:
    global _debug
    _debug = debug
    quiet_libraries(debug)


def _settings(home: Path | None = None, **stream: Any) -> Settings:
    overrides = {k: v for k, v in stream.items() if v is not None}
    settings = Settings(home=home) if home else Settings()
    if overrides:
        settings = settings.model_copy(update={"stream": settings.stream.model_copy(update=overrides)})
        type(settings.stream).model_validate(settings.stream.model_dump())
    return settings


@app.command()
def demo(
    records: int | None = typer.Option(None, min=100, help="Records to stream."),
    drift_at: int | None = typer.Option(None, min=0, help="Record at which the concept drifts."),
    rate: float | None = typer.Option(None, min=1, help="Records per second offered."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    served: bool = typer.Option(False, "--served", help="Run on the stack of `driftctl up` (started if none runs; "
                                                        "left running)."),
) -> None:
    """Stream drifting telemetry through the embedded stack: score, detect, retrain, promote, hot-swap."""
    from driftctl.app.demo import run_demo, run_served_demo

    settings = _settings(home, records=records, drift_at=drift_at, rate=rate)
    if settings.stream.drift_at >= settings.stream.records:
        raise typer.BadParameter("--drift-at must be below --records")
    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True, disable=as_json) as bar:
        task = bar.add_task("starting", total=settings.stream.records)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        result = (run_served_demo if served else run_demo)(settings, progress)
    if as_json:
        print(result.to_json())
        return
    _print_demo(result, settings.home)
    if result.stack is not None:
        how = ("started by the demo and left running" if result.stack["started_by_demo"]
               else "the one `driftctl up` started")
        console.print(f"served stack ({how}; `driftctl down` stops it): Prefect {result.stack['prefect_ui']}, "
                      f"MLflow {result.stack['mlflow_ui']}, Evidently {result.stack['evidently_ui']}, "
                      f"console {result.stack['console']}", highlight=False)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _print_demo(r: DemoResult, home: Path) -> None:
    table = Table(title="driftctl demo", show_header=False, title_justify="left")
    table.add_row("records scored", f"{r.predictions:,} of {r.records:,} ({r.duplicates} duplicates, "
                                    f"{r.dead_letters} dead letters)")
    table.add_row("drift injected at", f"record {r.drift_at:,}")
    if r.detected_at is not None:
        table.add_row("drift detected at", f"record {r.detected_at:,} by {r.detector} "
                                           f"(delay {r.detection_delay:,} records)")
    else:
        table.add_row("drift detected at", "not detected")
    table.add_row("drift incidents", f"{r.incidents} ({len(r.drift_events)} drift events folded into them)")
    table.add_row("retrain run", r.retrain_run_id or "-")
    table.add_row("promoted version", str(r.promoted_version) if r.promoted_version else "none")
    table.add_row("versions served", ", ".join(map(str, r.versions_served)))
    table.add_row("champion accuracy before drift", _pct(r.accuracy_before_drift))
    table.add_row("champion accuracy after drift", _pct(r.accuracy_after_drift))
    table.add_row("champion accuracy after promotion", _pct(r.accuracy_after_promotion))
    table.add_row("online learner accuracy after drift", _pct(r.online_accuracy_after_drift))
    table.add_row("served accuracy after drift (before promotion)", _pct(r.served_accuracy_after_drift))
    table.add_row("retrain decision to the new version serving",
                  f"{r.decision_to_serving_s:.1f} s" if r.decision_to_serving_s is not None else "-")
    table.add_row("records the stale champion scored after detection",
                  f"{r.records_on_stale_champion:,}" if r.records_on_stale_champion is not None else "-")
    table.add_row("wall time", f"{r.seconds:.1f} s")
    console.print(table)
    console.print(f"state left in {home} - run [bold]driftctl status[/bold]", highlight=False)


@app.command()
def status(
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until Ctrl-C."),
    interval: float = typer.Option(2.0, min=0.2, help="Seconds between refreshes with --watch."),
) -> None:
    """Stage health, throughput and lag, the champion (version, when promoted, why), drift state, decisions."""
    from driftctl.app.status import answer_quickly, collect_status, status_view
    from driftctl.runtime.stack import configure_environment

    settings = _settings(home)
    configure_environment(settings)
    answer_quickly()
    if not watch:
        if as_json:
            print(json.dumps(collect_status(settings), indent=2, default=str))
        else:
            console.print(status_view(collect_status(settings)))
        _leave_hung_probes()
        return
    from rich.live import Live

    try:
        if as_json:  # one JSON document per line, for machines that follow it
            while True:
                print(json.dumps(collect_status(settings), default=str), flush=True)
                time.sleep(interval)
        with Live(status_view(collect_status(settings)), console=console, auto_refresh=False) as live:
            while True:
                time.sleep(interval)
                live.update(status_view(collect_status(settings)), refresh=True)
    except KeyboardInterrupt:
        return


@app.command()
def plot(
    backtest_json: Path | None = typer.Argument(None, help="A `driftctl backtest --json` file; none: live state."),
    out: Path = typer.Option(Path("driftctl-timeline.png"), "--out", help="PNG file to write."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was drawn as JSON."),
) -> None:
    """A PNG timeline: prequential accuracy, drift statistics against thresholds, drift and promotion markers."""
    from driftctl.app.plot import draw, load

    settings = _settings(home)
    drawn = draw(load(backtest_json, settings), out)
    if as_json:
        print(json.dumps(drawn, indent=2))
        return
    console.print(f"wrote {drawn['out']}: {drawn['records']:,} records, {drawn['accuracy_points']} accuracy points, "
                  f"{drawn['drift_events']} drift events, promotions {drawn['promotions'] or 'none'}"
                  + "".join(f"\n  note: {n}" for n in drawn["notes"]))


@app.command()
def report(
    out: Path | None = typer.Option(None, "--out", help="HTML file (default <home>/reports/latest-window.html)."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was rendered as JSON."),
) -> None:
    """Evidently's data-drift report of the newest monitor window against the champion's reference (HTML)."""
    from driftctl.app.reports import latest_report
    from driftctl.runtime.stack import configure_environment

    settings = _settings(home)
    configure_environment(settings)
    with console.status("rendering the Evidently report", spinner="dots") if not as_json else _nothing():
        done = latest_report(settings, out)
    if as_json:
        print(json.dumps(done, indent=2, default=str))
        return
    drifted = done["drifted_columns"]
    console.print(f"wrote {done['out']}: newest {done['window_rows']:,} records "
                  f"(to record {done['window_end_index']:,}) "
                  f"against {done['reference_rows']:,} reference rows of version {done['champion']['version']}"
                  + (f"; Evidently finds {drifted['count']:.0f} drifted column(s)" if drifted else ""))


def _nothing() -> contextlib.nullcontext[None]:
    return contextlib.nullcontext()


def _leave_hung_probes() -> None:
    """A source that hung leaves its probe's thread behind, and library exit hooks (MLflow's, a
    driver's) may wait for it: a read-only command that has printed its answer just ends."""
    from driftctl.app.status import Probe

    if Probe.left_behind():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@app.command("console")
def console_command(
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    host: str | None = typer.Option(None, help="Address to listen on (default 127.0.0.1: loopback only)."),
    port: int | None = typer.Option(None, min=0, max=65535, help="Port (default 8765; 0: a free one)."),
    token: str | None = typer.Option(None, help="Secret every request must carry (?token=, X-Driftctl-Token "
                                                "header); required off loopback. Also DRIFTCTL_CONSOLE__TOKEN."),
) -> None:
    """A local web page of what `status` shows, refreshed live: health, throughput, lag, drift, lineage."""
    from driftctl.app.console import ConsoleServer, is_loopback
    from driftctl.app.status import answer_quickly
    from driftctl.runtime.stack import configure_environment

    settings = _settings(home)
    secret = token or (settings.console.token.get_secret_value() if settings.console.token else None)
    where = host or settings.console.host
    if not is_loopback(where) and not secret:
        print(f"driftctl: error: --host {where} is not loopback: give a --token (or DRIFTCTL_CONSOLE__TOKEN)",
              file=sys.stderr)
        sys.exit(2)
    configure_environment(settings)
    answer_quickly()
    server = ConsoleServer(settings, host, port, token=secret).start()
    console.print(f"driftctl console at {server.url}" + ("  (requests need the token)" if secret else "")
                  + "  (Ctrl-C stops it)", highlight=False)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command()
def broker(home: Path | None = typer.Option(None, help="State directory (default ./.driftctl).")) -> None:
    """Run the embedded broker in the foreground and print its bootstrap address."""
    from driftctl.runtime.stack import configure_environment, kafka_stack

    settings = _settings(home)
    configure_environment(settings)
    with kafka_stack(settings) as bootstrap:
        console.print(f"bootstrap servers: {bootstrap}  (Ctrl-C stops the broker)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


@app.command()
def up(
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print the addresses as JSON."),
    any_port: bool = typer.Option(False, "--any-port", help="Free ports, not the conventional 4200/5000/8000/8765."),
    timeout: float = typer.Option(300.0, min=10, help="Seconds to wait for every part to answer."),
) -> None:
    """Start the served stack on loopback: broker, Prefect server + pool + deployments + worker, MLflow UI,
    Evidently UI, monitor, one scorer, console. Returns once every part answers."""
    from driftctl.app.stack_up import up as start_stack

    settings = _settings(home)
    with console.status("starting the stack", spinner="dots") if not as_json else _nothing() as status:
        stack = start_stack(settings, any_port=any_port, timeout=timeout,
                            progress=(lambda what: status.update(what)) if status else (lambda what: None))
    if as_json:
        print(json.dumps(stack.addresses(), indent=2))
        return
    table = Table(title=f"driftctl up ({stack.seconds:.0f} s)", show_header=False, title_justify="left")
    table.add_row("Kafka bootstrap", stack.bootstrap_servers + (" (embedded, in memory)" if stack.embedded_broker
                                                                 else ""))
    table.add_row("Prefect UI", stack.prefect_ui)
    table.add_row("MLflow UI", stack.mlflow_ui)
    table.add_row("Evidently UI", stack.evidently_ui)
    table.add_row("console", stack.console)
    console.print(table)
    console.print(f"state in {settings.home}; logs in {settings.home / 'logs'}. Next: "
                  f"[bold]DRIFTCTL_HOME={settings.home} DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS={stack.bootstrap_servers} "
                  f"driftctl produce iot[/bold]; [bold]driftctl down[/bold] stops it all"
                  + (" (the embedded broker keeps its topics in memory: they are lost at `down`)."
                     if stack.embedded_broker else "."), highlight=False)


@app.command()
def down(
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was stopped as JSON."),
) -> None:
    """Stop exactly what `driftctl up` started with this home."""
    from driftctl.app.stack_up import down as stop_stack

    settings = _settings(home)
    stopped = stop_stack(settings)
    if as_json:
        print(json.dumps(stopped, indent=2))
        return
    if not stopped:
        console.print(f"nothing to stop: no stack recorded in {settings.home}")
        return
    console.print("stopped " + ", ".join(f"{s['name']} ({s['state']})" for s in stopped)
                  + f". State kept in {settings.home} (the embedded broker's topics are gone).", highlight=False)


def _external_bootstrap(settings: Settings) -> str:
    bootstrap = settings.kafka.bootstrap_servers
    if not bootstrap:  # the stack `driftctl up` runs with this home, if any
        from driftctl.app.stack_up import running_stack

        stack = running_stack(settings)
        bootstrap = stack.bootstrap_servers if stack else ""
    if not bootstrap:
        raise typer.BadParameter("no Kafka configured: set DRIFTCTL_KAFKA__BOOTSTRAP_SERVERS, or run `driftctl up` "
                                 "(`driftctl broker` runs a local one and prints its address)")
    from driftctl.runtime.broker import ensure_topics, wait_until_reachable

    wait_until_reachable(bootstrap, timeout=10)
    ensure_topics(bootstrap, settings.kafka)
    return bootstrap


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@app.command()
def serve(
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    metrics_port: int | None = typer.Option(None, min=0, max=65535, help="Prometheus /metrics port (0: any)."),
) -> None:
    """Run one scorer: a member of the scorer consumer group, until SIGTERM or Ctrl-C."""
    from driftctl.runtime.stack import configure_environment
    from driftctl.stores.ledger import Ledger
    from serving.metrics import ScorerMetrics
    from serving.scorer import Scorer
    from training.registry import Registry

    settings = _settings(home)
    configure_environment(settings)
    bootstrap = _external_bootstrap(settings)
    metrics = ScorerMetrics()
    port = metrics_port if metrics_port is not None else settings.serving.metrics_port
    if port is not None:
        port = metrics.serve(port)
        console.print(f"metrics on http://127.0.0.1:{port}/metrics", highlight=False)
    stop = _stop_on_signals()
    scorer = Scorer(settings, bootstrap, Registry.from_settings(settings), stop,
                    ledger=Ledger.from_settings(settings), metrics=metrics)
    console.print(f"scorer {scorer.instance} joining group {settings.kafka.scorer_group} at {bootstrap}",
                  highlight=False)
    scorer.run()
    console.print(f"scorer {scorer.instance} stopped after {scorer.scored} records "
                  f"({scorer.dead_letters} dead letters, n_learned {scorer.n_learned})", highlight=False)


@app.command()
def monitor(home: Path | None = typer.Option(None, help="State directory (default ./.driftctl).")) -> None:
    """Run one drift monitor; it starts the retrain flow when the policy asks, until SIGTERM or Ctrl-C."""
    from driftctl.runtime.stack import configure_environment
    from driftctl.stores.ledger import Ledger
    from training.registry import Registry

    settings = _settings(home)
    configure_environment(settings)
    from flows.trigger import make_retrain
    from serving.monitor import Monitor

    bootstrap = _external_bootstrap(settings)
    stop = _stop_on_signals()
    stage = Monitor(settings, bootstrap, Registry.from_settings(settings), Ledger.from_settings(settings),
                    make_retrain(settings), stop)
    console.print(f"monitor joining group {settings.kafka.monitor_group} at {bootstrap}", highlight=False)
    from serving.scorer import freeze_heap

    freeze_heap()  # this process is the monitor's: start-up's objects out of the collector's walks, as a scorer's
    stage.run()


@app.command()
def produce(
    source: str = typer.Argument("iot", help="'iot' (the synthetic drifting stream), or a CSV/Parquet file."),
    target: str | None = typer.Option(None, "--target", help="FILE: the label column."),
    drop: list[str] = typer.Option([], "--drop", help="FILE: a column to ignore (repeat for more)."),
    time_col: str | None = typer.Option(None, "--time-col", help="FILE: replay in this column's order; not a feature."),
    id_col: str | None = typer.Option(None, "--id-col", help="FILE: record id column; not a feature."),
    records: int | None = typer.Option(None, min=1, help="Records to send."),
    drift_at: int | None = typer.Option(None, min=0, help="Record at which the concept drifts."),
    rate: float | None = typer.Option(None, min=1, help="Records per second (default: settings)."),
    label_delay: int | None = typer.Option(None, min=0, help="Records between a record and its label."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
) -> None:
    """Replay a stream into the telemetry and labels topics: the synthetic one, or a CSV/Parquet file
    handled as `backtest` handles it."""
    readings = None
    if source != "iot":
        path = Path(source)
        if not path.exists():
            raise typer.BadParameter(f"unknown source {source!r}: neither 'iot' nor an existing CSV/Parquet file")
        if target is None:
            raise typer.BadParameter("a file needs --target COL (its label column)")
        from driftctl.app.backtest import file_readings

        readings, dropped = file_readings(path, target=target, drop=drop, time_col=time_col, id_col=id_col)
        if dropped:
            print(f"driftctl: warning: {dropped} rows without a label dropped", file=sys.stderr)
        records = None  # the file's length, not a setting
    elif target is not None or drop or time_col or id_col:
        raise typer.BadParameter("--target, --drop, --time-col and --id-col apply to a file, not to 'iot'")
    from serving.kafka_io import make_producer
    from serving.producer import publish
    from serving.synthetic import iot_stream

    settings = _settings(home, records=records, drift_at=drift_at, rate=rate, label_delay=label_delay)
    bootstrap = _external_bootstrap(settings)
    stream = settings.stream
    from driftctl.stores.heartbeats import Heartbeat

    producer = make_producer(bootstrap, settings.kafka)
    beat = Heartbeat.from_settings(settings, "producer", bootstrap)
    with Progress(TextColumn("producing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("producing", total=len(readings) if readings is not None else stream.records)

        def on_record(n: int) -> None:
            beat.beat(records=n)
            if n % 250 == 0:
                bar.update(task, completed=n)

        sent = publish(producer, settings.kafka.topics,
                       readings if readings is not None else
                       iot_stream(stream.records, drift_at=stream.drift_at, devices=stream.devices, seed=stream.seed),
                       rate=stream.rate, label_delay=stream.label_delay, stop=_stop_on_signals(), on_record=on_record)
    producer.close()
    beat.stopped(records=sent)
    console.print(f"sent {sent} records and their labels to {bootstrap}", highlight=False)


@app.command()
def audit(
    record_id: str = typer.Argument(..., help="The record id to look up."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Which model version and which online-learner state scored a record, and which served it."""
    from serving.audit import AuditLog

    settings = _settings(home)
    path = settings.home / "audit.db"
    if not path.exists():
        raise typer.BadParameter(f"no audit log at {path}: nothing has been scored with this home")
    log = AuditLog(path, readonly=True)
    found = log.lookup(record_id)
    log.close()
    if found is None:
        print(f"driftctl: error: record {record_id!r} was never scored", file=sys.stderr)
        raise typer.Exit(1)
    if as_json:
        print(json.dumps(found, indent=2))
        return
    model, source = found["model"], found["source"]
    console.print(f"{record_id}: {model['name']} version {model['version']} (run {model['run_id']}), "
                  f"online learner n_learned={found['online']['n_learned']}, "
                  f"{source['topic']}[{source['partition']}]@{source['offset']}, scorer {found['scorer']}, "
                  f"served by {found.get('served_by') or 'unrecorded'}",
                  highlight=False)


@app.command()
def bench(
    records: int = typer.Option(200_000, min=1_000, help="Records preloaded into 3 partitions."),
    rate: float = typer.Option(10_000, min=100, help="Offered load (records/s) for the latency run."),
    sustained_seconds: float = typer.Option(60, min=0, help="Seconds of the sustained run: producer, scorer, "
                                                            "online learning, monitor and audit together "
                                                            "(0: none)."),
    sustained_rate: float = typer.Option(10_000, min=100, help="Records/s produced in the sustained run."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result as JSON to this file."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    offered_only: bool = typer.Option(False, "--offered-only", help="Only the latency run at --rate offered "
                                                                    "(no preload, throughput loops or sustained run)."),
) -> None:
    """End-to-end scoring throughput of one scorer beside the raw limit measured in the same run."""
    from driftctl.app.bench import bench_home, run_bench, to_json
    from driftctl.runtime.stack import configure_environment, kafka_stack

    with (bench_home(_settings(home)) as settings,  # never the user's registry, ledger or status
          Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=Console(stderr=True), transient=True) as bar):
        configure_environment(settings)
        task = bar.add_task("starting", total=records)
        with kafka_stack(settings) as bootstrap:
            result = run_bench(settings, bootstrap, records,
                               lambda phase, done, total: bar.update(task, description=phase, completed=done,
                                                                     total=total), rate=rate,
                               sustained_seconds=sustained_seconds, sustained_rate=sustained_rate,
                               offered_only=offered_only)
    if json_out:
        json_out.write_text(to_json(result))
    if offered_only:
        table = Table(title="driftctl bench, offered load only", show_header=False, title_justify="left")
        _offered_rows(table, result["offered_load"])
        console.print(table)
        return
    table = Table(title=f"driftctl bench, {records:,} records", show_header=False, title_justify="left")
    table.add_row("pipeline (champion + online learner)", f"{result['pipeline_rps']:,.0f} records/s")
    table.add_row("raw limit (consume, decode, encode, produce)", f"{result['limit_rps']:,.0f} records/s")
    table.add_row("ratio", f"{result['ratio']:.2f}")
    cpu = result["cpu_us_per_record"]
    if result["cpu_ratio"] is not None:
        table.add_row("CPU per record: pipeline / raw (ratio)",
                      f"{cpu['pipeline']:.0f} / {cpu['raw']:.0f} us ({result['cpu_ratio']:.2f})")
    if cpu.get("learner_process") is not None:
        table.add_row("CPU per record of the learner process (the other core)", f"{cpu['learner_process']:.0f} us")
    inline = result.get("inline")
    if inline:
        table.add_row("learner inline in the scoring loop: records/s, ratio, CPU ratio",
                      f"{inline['pipeline_rps']:,.0f} records/s, {inline['ratio']:.2f}, {inline['cpu_ratio']:.2f}")
    table.add_row("latency p50 / p99 (poll to ack)", f"{result['p50_ms']:.1f} / {result['p99_ms']:.1f} ms")
    _offered_rows(table, result["offered_load"])
    whole = result.get("sustained")
    if whole:
        table.add_row(f"sustained {whole['achieved_rate']:,.0f} records/s for {whole['seconds']:.0f} s "
                      "(scorer, learner, monitor, audit): max lag, growth",
                      f"{whole['max_lag']:,} records, {whole['lag_growth_per_s']} records/s"
                      if whole["lag_growth_per_s"] is not None else f"{whole['max_lag']:,} records")
    table.add_row("peak RSS (bench process; scorer process in the sustained run)",
                  f"{result['peak_rss_mb']:,.0f} MB; {(whole or {}).get('scorer_peak_rss_mb') or '-'} MB")
    console.print(table)


def _offered_rows(table: Table, offered: dict) -> None:
    table.add_row(f"latency p50 / p99 at {offered['rate']:,.0f} records/s offered (append to ack)",
                  f"{offered['p50_ms']:.1f} / {offered['p99_ms']:.1f} ms")
    parts = offered.get("parts_ms")
    if parts and parts["append_to_poll"][0] is not None:
        table.add_row("  of which p50 ms: append to poll; per poll: poll, process (ack wait), commit",
                      f"{parts['append_to_poll'][0]:.1f}; {parts['poll'][0]:.1f}, {parts['process'][0]:.1f} "
                      f"({parts['ack_wait'][0]:.1f}), {parts['commit'][0]:.1f}")
    cpu = offered.get("cpu_us_per_record") or {}
    if cpu.get("scorer") is not None:
        table.add_row("  CPU per record while offered: scoring process; learner process",
                      f"{cpu['scorer']:.0f}; {cpu['learner'] or 0:.0f} us")


@app.command()
def rollback(
    to: int | None = typer.Option(None, "--to", min=1, help="Version to serve (default: the one before)."),
    reason: str | None = typer.Option(None, help="Why, recorded in the ledger."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Move the champion alias back, announce it to every scorer, record why in the ledger."""
    from driftctl.runtime.stack import configure_environment
    from serving.rollback import roll_back

    settings = _settings(home)
    configure_environment(settings)
    done = roll_back(settings, to=to, reason=reason)
    if as_json:
        print(json.dumps(done.as_dict(), indent=2))
        return
    announced = "announced on the model-updates topic" if done.published else \
        "not announced (no Kafka configured): scorers load it when they start"
    console.print(f"{done.name}: champion moved from version {done.from_version} to version {done.to_version}; "
                  f"{announced}. Ledger entry {done.ledger_entry}: {done.reason}")


@app.command()
def history(
    limit: int | None = typer.Option(None, min=1, help="Newest N entries only."),
    windows: bool = typer.Option(False, "--windows", help="Include the monitor's window checkpoints."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """The ledger's timeline by incident (one per drift: its events, decisions, retrain, promotion or
    rejection, probation), then what belongs to no incident; window checkpoints with --windows."""
    from driftctl.app.history import history_view, ledger_history

    settings = _settings(home)
    report = ledger_history(settings, limit=limit, include_windows=windows)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return
    console.print(history_view(report))


@app.command()
def backtest(
    data: Path = typer.Argument(..., help="CSV or Parquet file, one record a row."),
    target: str = typer.Option(..., "--target", help="Label column."),
    drop: list[str] = typer.Option([], "--drop", help="A column to ignore (repeat for more)."),
    time_col: str | None = typer.Option(None, "--time-col", help="Sort by this column; not a feature."),
    id_col: str | None = typer.Option(None, "--id-col", help="Record id column; not a feature."),
    policy: str = typer.Option("drift", "--policy", help="drift | static | periodic:N | online."),
    warmup: int | None = typer.Option(None, "--warmup", min=100,
                                         help="Labelled records that train the first champion (default: settings)."),
    label_delay: int = typer.Option(0, "--label-delay", min=0, help="Records between a record and its label."),
    json_out: Path | None = typer.Option(None, "--json", help="Write the result as JSON to this file ('-': stdout)."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
) -> None:
    """Replay a CSV/Parquet file prequentially under a drift policy: accuracy, retrains, drift events."""
    from drift.backtest import parse_policy
    from driftctl.app.backtest import plan_backtest, write_json

    try:
        spec = parse_policy(policy)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--policy'") from None
    settings = _settings(home)
    replay = plan_backtest(data, target=target, settings=settings, policy=spec, drop=drop, time_col=time_col,
                           id_col=id_col, warmup=warmup, label_delay=label_delay)
    for warning in replay.warnings:
        print(f"driftctl: warning: {warning}", file=sys.stderr)
    quiet = json_out is not None and str(json_out) == "-"
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]:>12}"), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True, disable=quiet) as bar:
        task = bar.add_task(f"backtest {spec}", total=None, rate="")

        def progress(done: int, total: int) -> None:
            elapsed = bar.tasks[task].elapsed or 0.0
            rate = f"{done / elapsed:,.0f} rec/s" if elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)

        result = replay.run(progress)
    if quiet:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))
        return
    if json_out is not None:
        write_json(result, json_out)
    _print_backtest(result, json_out)


def _print_backtest(r: BacktestResult, json_out: Path | None) -> None:
    table = Table(title=f"driftctl backtest - policy {r.policy}", show_header=False, title_justify="left")
    table.add_row("records", f"{r.rows:,} ({r.dropped_rows:,} without a label dropped)")
    table.add_row("warmup / label delay", f"{r.warmup:,} / {r.label_delay:,} records")
    table.add_row("accuracy after warmup", _pct(r.accuracy))
    table.add_row("retrains / promotions", f"{r.retrains} / {len(r.promotions)}")
    detectors: dict[str, int] = {}
    for event in r.drift_events:
        detectors[event["detector"]] = detectors.get(event["detector"], 0) + 1
    events = ", ".join(f"{k}: {v}" for k, v in sorted(detectors.items())) or "none"
    table.add_row("drift events", f"{events} (in {r.incidents} incident(s))" if r.drift_events else events)
    firsts = ", ".join(f"{e['index']:,} ({e['detector']})" for e in r.drift_events[:5])
    if firsts:
        table.add_row("first events at record", firsts + (" ..." if len(r.drift_events) > 5 else ""))
    if r.promotions:
        table.add_row("promoted at record", ", ".join(f"{p['index']:,} (v{p['version']})" for p in r.promotions))
    table.add_row("wall time", f"{r.seconds:.1f} s ({r.records_per_second:,.0f} records/s)")
    if json_out is not None:
        table.add_row("JSON", str(json_out))
    console.print(table)


@app.command()
def provenance(
    version: int | None = typer.Argument(None, min=1, help="Model version (default: the champion)."),
    home: Path | None = typer.Option(None, help="State directory (default ./.driftctl)."),
) -> None:
    """Every audit item of one model version, from MLflow and the ledger, as JSON."""
    from driftctl.app.provenance import version_provenance
    from driftctl.runtime.stack import configure_environment

    settings = _settings(home)
    configure_environment(settings)
    print(json.dumps(version_provenance(settings, version), indent=2, default=str))


class _MaskedStream:
    """A text stream that masks the passwords of URLs in everything written through it: every
    line the CLI prints (rich tables, progress, errors, a traceback) passes here."""

    def __init__(self, stream: Any):
        self._stream = stream

    def write(self, text: str) -> int:
        if not isinstance(text, str):  # as a text stream does: click probes with b"" to tell text from binary
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        self._stream.write(mask_url(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def run() -> None:
    """Console entry point: usage errors and failures are one line and a non-zero exit."""
    if not isinstance(sys.stdout, _MaskedStream):
        sys.stdout, sys.stderr = _MaskedStream(sys.stdout), _MaskedStream(sys.stderr)
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:  # click returns a raised typer.Exit's code in this mode
            sys.exit(code)
    except KeyboardInterrupt:
        print("driftctl: interrupted", file=sys.stderr)
        sys.exit(130)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"driftctl: error: bad setting {where}: {first['msg']}", file=sys.stderr)
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as exc:
        if type(exc).__name__ == "Exit":  # typer.Exit: a chosen exit code
            sys.exit(getattr(exc, "exit_code", 0))
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's usage errors (typer vendors click)
            print(f"driftctl: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code or 1)
        if type(exc).__name__ == "Abort":
            print("driftctl: aborted", file=sys.stderr)
            sys.exit(130)
        if _debug:  # the whole traceback, its messages masked like every other line
            import traceback

            print(mask_url(traceback.format_exc()), file=sys.stderr, end="")
            sys.exit(1)
        message = (mask_url(exc).strip().splitlines() or [type(exc).__name__])[0]  # one line, always
        print(f"driftctl: error: {message}", file=sys.stderr)
        sys.exit(1)

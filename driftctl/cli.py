"""The `driftctl` command: parse, build settings, call a library function, print."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from driftctl.logs import quiet_libraries

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Concept-drift detection and retraining for streaming ML.")
console = Console()
_debug = False


@app.callback()
def main(debug: bool = typer.Option(False, "--debug", help="Show tracebacks and debug logs.")) -> None:
    global _debug
    _debug = debug
    quiet_libraries(debug)


def _settings(home: Optional[Path] = None, **stream):
    from driftctl.settings import Settings

    overrides = {k: v for k, v in stream.items() if v is not None}
    settings = Settings(**({"home": home} if home else {}))
    if overrides:
        settings = settings.model_copy(update={"stream": settings.stream.model_copy(update=overrides)})
        type(settings.stream).model_validate(settings.stream.model_dump())
    return settings


@app.command()
def demo(
    records: Optional[int] = typer.Option(None, min=100, help="Records to stream."),
    drift_at: Optional[int] = typer.Option(None, min=0, help="Record at which the concept drifts."),
    rate: Optional[float] = typer.Option(None, min=1, help="Records per second offered."),
    home: Optional[Path] = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Stream drifting telemetry through the embedded stack: score, detect, retrain, promote, hot-swap."""
    from driftctl.demo import run_demo

    settings = _settings(home, records=records, drift_at=drift_at, rate=rate)
    if settings.stream.drift_at >= settings.stream.records:
        raise typer.BadParameter("--drift-at must be below --records")
    with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True, disable=as_json) as bar:
        task = bar.add_task("starting", total=settings.stream.records)

        def progress(phase: str, done: int, total: int) -> None:
            bar.update(task, description=phase, completed=done, total=total)

        result = run_demo(settings, progress)
    if as_json:
        print(result.to_json())
        return
    _print_demo(result)


def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _print_demo(r) -> None:
    table = Table(title="driftctl demo", show_header=False, title_justify="left")
    table.add_row("records scored", f"{r.predictions:,} of {r.records:,} ({r.duplicates} duplicates, "
                                    f"{r.dead_letters} dead letters)")
    table.add_row("drift injected at", f"record {r.drift_at:,}")
    if r.detected_at is not None:
        table.add_row("drift detected at", f"record {r.detected_at:,} by {r.detector} "
                                           f"(delay {r.detection_delay:,} records)")
    else:
        table.add_row("drift detected at", "not detected")
    table.add_row("retrain run", r.retrain_run_id or "-")
    table.add_row("promoted version", str(r.promoted_version) if r.promoted_version else "none")
    table.add_row("versions served", ", ".join(map(str, r.versions_served)))
    table.add_row("champion accuracy before drift", _pct(r.accuracy_before_drift))
    table.add_row("champion accuracy after drift", _pct(r.accuracy_after_drift))
    table.add_row("champion accuracy after promotion", _pct(r.accuracy_after_promotion))
    table.add_row("online learner accuracy after drift", _pct(r.online_accuracy_after_drift))
    table.add_row("wall time", f"{r.seconds:.1f} s")
    console.print(table)
    console.print("state left in .driftctl/ - run [bold]driftctl status[/bold]")


@app.command()
def status(
    home: Optional[Path] = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
    watch: bool = typer.Option(False, "--watch", help="Refresh until Ctrl-C."),
    interval: float = typer.Option(2.0, min=0.2, help="Seconds between refreshes with --watch."),
) -> None:
    """Stage health, throughput and lag, the champion (version, when promoted, why), drift state, decisions."""
    from driftctl.stack import configure_environment
    from driftctl.status import collect_status, status_view

    settings = _settings(home)
    configure_environment(settings)
    if as_json and not watch:
        print(json.dumps(collect_status(settings), indent=2, default=str))
        return
    if not watch:
        console.print(status_view(collect_status(settings)))
        return
    import time

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
    backtest_json: Optional[Path] = typer.Argument(None, help="A `driftctl backtest --json` file; none: live state."),
    out: Path = typer.Option(Path("driftctl-timeline.png"), "--out", help="PNG file to write."),
    home: Optional[Path] = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was drawn as JSON."),
) -> None:
    """A PNG timeline: prequential accuracy, drift statistics against thresholds, drift and promotion markers."""
    from driftctl.plot import draw, load

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
    out: Optional[Path] = typer.Option(None, "--out", help="HTML file (default <home>/reports/latest-window.html)."),
    home: Optional[Path] = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print what was rendered as JSON."),
) -> None:
    """Evidently's data-drift report of the newest monitor window against the champion's reference (HTML)."""
    from driftctl.reports import latest_report
    from driftctl.stack import configure_environment

    settings = _settings(home)
    configure_environment(settings)
    with console.status("rendering the Evidently report", spinner="dots") if not as_json else _nothing():
        done = latest_report(settings, out)
    if as_json:
        print(json.dumps(done, indent=2, default=str))
        return
    drifted = done["drifted_columns"]
    console.print(f"wrote {done['out']}: newest {done['window_rows']:,} records (to record {done['window_end_index']:,}) "
                  f"against {done['reference_rows']:,} reference rows of version {done['champion']['version']}"
                  + (f"; Evidently finds {drifted['count']:.0f} drifted column(s)" if drifted else ""))


def _nothing():
    import contextlib

    return contextlib.nullcontext()


@app.command("console")
def console_command(
    home: Optional[Path] = typer.Option(None, help="State directory (default ./.driftctl)."),
    host: Optional[str] = typer.Option(None, help="Address to listen on (default 127.0.0.1: loopback only)."),
    port: Optional[int] = typer.Option(None, min=0, max=65535, help="Port (default 8765; 0: a free one)."),
) -> None:
    """A local web page of what `status` shows, refreshed live: health, throughput, lag, drift, lineage."""
    import threading

    from driftctl.console import ConsoleServer
    from driftctl.stack import configure_environment

    settings = _settings(home)
    configure_environment(settings)
    server = ConsoleServer(settings, host, port).start()
    console.print(f"driftctl console at {server.url}  (Ctrl-C stops it)")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command()
def broker(home: Optional[Path] = typer.Option(None, help="State directory (default ./.driftctl).")) -> None:
    """Run the embedded broker in the foreground and print its bootstrap address."""
    import threading

    from driftctl.stack import configure_environment, kafka_stack

    settings = _settings(home)
    configure_environment(settings)
    with kafka_stack(settings) as bootstrap:
        console.print(f"bootstrap servers: {bootstrap}  (Ctrl-C stops the broker)")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


def run() -> None:
    """Console entry point: usage errors and failures are one line and a non-zero exit."""
    try:
        app(standalone_mode=False)
    except KeyboardInterrupt:
        print("driftctl: interrupted", file=sys.stderr)
        sys.exit(130)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        print(f"driftctl: error: bad setting {where}: {first['msg']}", file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):  # click's usage errors (typer vendors click)
            print(f"driftctl: error: {exc.format_message()}", file=sys.stderr)
            sys.exit(exc.exit_code or 1)
        if type(exc).__name__ == "Abort":
            print("driftctl: aborted", file=sys.stderr)
            sys.exit(130)
        if _debug:
            raise
        message = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # one line, always
        print(f"driftctl: error: {message}", file=sys.stderr)
        sys.exit(1)

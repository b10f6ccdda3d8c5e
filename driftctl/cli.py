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
) -> None:
    """The champion model (version, when promoted, why), read from MLflow and the ledger."""
    from driftctl.stack import configure_environment
    from driftctl.status import champion_status

    settings = _settings(home)
    configure_environment(settings)
    report = champion_status(settings)
    if as_json:
        print(json.dumps(report, indent=2))
        return
    champion = report["champion"]
    if champion is None:
        console.print(f"no champion yet in {report['home']}" + "".join(f"\n  {e}" for e in report["errors"]))
        return
    table = Table(title="champion", show_header=False, title_justify="left")
    table.add_row("model", f"{champion['name']} version {champion['version']}")
    table.add_row("run", champion["run_id"])
    if champion["promoted_at"]:
        table.add_row("promoted at", datetime.fromtimestamp(champion["promoted_at"], timezone.utc).isoformat())
    table.add_row("why", champion["reason"] or "-")
    table.add_row("drift event", champion["event_id"] or "-")
    console.print(table)


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


@app.command()
def rollback(
    to: Optional[int] = typer.Option(None, "--to", min=1, help="Version to serve (default: the one before)."),
    reason: Optional[str] = typer.Option(None, help="Why, recorded in the ledger."),
    home: Optional[Path] = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Move the champion alias back, announce it to every scorer, record why in the ledger."""
    from driftctl.rollback import roll_back
    from driftctl.stack import configure_environment

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
    limit: Optional[int] = typer.Option(None, min=1, help="Newest N entries only."),
    windows: bool = typer.Option(False, "--windows", help="Include the monitor's window checkpoints."),
    home: Optional[Path] = typer.Option(None, help="State directory (default ./.driftctl)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """The ledger's timeline: drift events, decisions, promotions, rejections, failures, rollbacks."""
    from driftctl.history import ledger_history

    settings = _settings(home)
    report = ledger_history(settings, limit=limit, include_windows=windows)
    if as_json:
        print(json.dumps(report, indent=2, default=str))
        return

    def when(at) -> str:
        return "-" if at is None else datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")

    served = Table(title=f"champion history of {report['model']}", title_justify="left")
    for column in ("version", "deployed", "by", "undeployed", "by", "why"):
        served.add_column(column)
    for h in report["champion_history"]:
        served.add_row(str(h["version"]), when(h["deployed_at"]), h["deployed_by"], when(h["undeployed_at"]),
                       h["undeployed_by"] or "serving", (h["reason"] or "")[:80])
    console.print(served)
    table = Table(title="ledger", title_justify="left")
    for column in ("#", "at (UTC)", "kind", "version", "event", "reason"):
        table.add_column(column)
    for e in report["entries"]:
        table.add_row(str(e["id"]), when(e["at"]), e["kind"], str(e["model_version"] or "-"),
                      e["event_id"] or "-", (e["reason"] or "")[:100])
    console.print(table)


@app.command()
def provenance(
    version: Optional[int] = typer.Argument(None, min=1, help="Model version (default: the champion)."),
    home: Optional[Path] = typer.Option(None, help="State directory (default ./.driftctl)."),
) -> None:
    """Every audit item of one model version, from MLflow and the ledger, as JSON."""
    from driftctl.provenance import version_provenance
    from driftctl.stack import configure_environment

    settings = _settings(home)
    configure_environment(settings)
    print(json.dumps(version_provenance(settings, version), indent=2, default=str))


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
        print(f"driftctl: error: {exc}", file=sys.stderr)
        sys.exit(1)

"""Soak: a long stream through the real stages, each in its own process, with its memory sampled.

The embedded Tansu broker (a child of this process), the producer, one scorer (with its online
learner's process) and the monitor (with the retrain flow run in-process, as `driftctl demo` does,
and the local Prefect API server it starts) run the synthetic IoT stream, which drifts at
`--drift-at`; the producer holds at the warm-up until the first champion serves, like the demo.
Every `--every` seconds each stage's resident set (VmRSS of the stage's process and its
descendants, from /proc) is read, with its progress. A stage's quarter is by its own progress
(records sent, scored or read), so a stage that lags is judged on the same stretch of the stream.

    nice -n 10 python benchmarks/soak.py --records 2000000 --rate 4000

Writes benchmarks/results/soak.md and soak.json (`--out` elsewhere)."""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MONITOR_FIELDS = ("telemetry", "labelled", "drift_events", "decisions", "retrains", "promotions", "rollbacks",
                  "failed_retrains", "join_evicted", "join_skipped", "await_skipped", "near_misses",
                  "await_near_misses", "labelled_predictions", "join_held", "busy", "alive", "retrain_pid")


def rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


def tree_rss_kb(pid: int) -> int:
    """The process and all its descendants (the scorer's learner, the monitor's Prefect server)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss_kb(p)
        todo.extend(children(p))
    return total


# -- the stages, each the entry point of a spawned process -------------------------------------
def producer_process(settings_json: str, bootstrap: str, records: int, rate: float, scorer: Any,
                     shared: Any, stop: Any) -> None:
    from driftctl.settings import Settings
    from serving.kafka_io import make_producer
    from serving.producer import publish
    from serving.synthetic import iot_stream

    settings = Settings(**json.loads(settings_json))
    stream = settings.stream
    producer = make_producer(bootstrap, settings.kafka)
    hold_at = settings.drift.warmup + stream.label_delay
    stopped = threading.Event()

    def gate(seq: int) -> None:  # like the demo: nothing to score until the first champion
        if seq != hold_at:
            return
        producer.flush()
        deadline = time.monotonic() + 900
        while scorer[3] == 0 and time.monotonic() < deadline and not stop.is_set():
            time.sleep(0.2)

    def on_record(n: int) -> None:
        shared[0] = n
        if n % 1000 == 0 and stop.is_set():
            stopped.set()

    sent = publish(producer, settings.kafka.topics,
                   iot_stream(records, drift_at=stream.drift_at, devices=stream.devices, seed=stream.seed),
                   rate=rate, label_delay=stream.label_delay, gate=gate, on_record=on_record, stop=stopped)
    producer.close()
    shared[0], shared[1] = sent, 1


def memory_profile(pid: int | str = "self") -> dict[str, int]:
    """Resident KB by kind of mapping (/proc/PID/smaps): the C heap, anonymous maps (glibc's other
    arenas, mmapped blocks, thread stacks), files (shared libraries), and the rest."""
    kinds: dict[str, int] = {}
    kind = "other"
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split(None, 6)
                if "-" in head[0] and ":" not in head[0]:  # a mapping's first line: range perms offset dev inode [path]
                    path = head[5].strip() if len(head) > 5 else ""
                    kind = ("heap" if path == "[heap]" else "anon" if not path else "stack" if path == "[stack]"
                            else "file" if path.startswith("/") else "other")
                elif head[0] == "Rss:":
                    kinds[kind] = kinds.get(kind, 0) + int(head[1])
    except OSError:
        pass
    return kinds


def mallinfo() -> dict[str, int]:
    """glibc's mallinfo2: arena (bytes from brk), hblkhd (mmapped blocks), uordblks (in use),
    fordblks (free in the arenas). Empty elsewhere than glibc >= 2.33."""
    import ctypes

    class Info(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                          "fsmblks", "uordblks", "fordblks", "keepcost")]
    try:
        fn = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return {}
    fn.restype = Info
    info = fn()
    return {name: getattr(info, name) // 1024 for name in ("arena", "hblkhd", "uordblks", "fordblks")}


def pymalloc_stats() -> dict[str, int]:
    """Python's small-object allocator (sys._debugmallocstats, which writes to the C stderr):
    its arenas in use and the bytes in used and free blocks, in KB."""
    import sys

    wanted = {"# arenas allocated current": "arenas", "# bytes in allocated blocks": "allocated_kb",
              "# bytes in available blocks": "available_kb", "# bytes in unused pools": "unused_pools_kb"}
    with tempfile.TemporaryFile("w+") as f:
        saved = os.dup(2)
        try:
            sys.stderr.flush()
            os.dup2(f.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        f.seek(0)
        found = {}
        for line in f:
            name, _, value = line.partition("=")
            key = wanted.get(name.strip())
            if key:
                number = int(value.strip().replace(",", ""))
                found[key] = number if key == "arenas" else number // 1024
    return found


def monitor_sizes(monitor: Any) -> dict[str, int]:
    """The lengths of the monitor's containers (what could grow per record or per event)."""
    import sys

    watch = monitor.watch
    sizes = {"pending": len(monitor._pending), "pending_bytes": monitor._pending_bytes, "done": len(monitor._done),
             "positions": len(monitor._positions), "labelled_rows": len(monitor._labelled_rows),
             "events": len(monitor.events), "decisions": len(monitor.decisions), "outcomes": len(monitor.outcomes),
             "incident_of": len(monitor._incident_of), "error_position_runs": watch._error_positions.runs,
             "probe_online": len(watch._probe_online), "blocks": sys.getallocatedblocks(),
             "threads": threading.active_count()}
    return sizes


def gc_census(top: int = 12) -> dict[str, Any]:
    """The collector's generation counts and the commonest types of the objects it tracks (what
    grows when no container the mem-log lists does). A full walk of the objects: ~1 s at 5 M."""
    import gc
    from collections import Counter

    kinds = Counter(type(o).__name__ for o in gc.get_objects())
    return {"counts": list(gc.get_count()), "tracked": sum(kinds.values()), "types": dict(kinds.most_common(top)),
            "garbage": len(gc.garbage)}


def scorer_process(settings_json: str, bootstrap: str, shared: Any, stop: Any, mem_log: str) -> None:
    """`run_scorer_process` with a line every 30 s of what the scorer holds (its label join, the
    consumer's lag, its learner's RSS), to find what grows while it lags."""
    from driftctl.runtime.logs import quiet_libraries
    from driftctl.runtime.stack import configure_environment
    from driftctl.settings import Settings
    from serving.scorer import Scorer
    from training.registry import Registry

    settings = Settings(**json.loads(settings_json))
    configure_environment(settings)
    quiet_libraries()
    scorer = Scorer(settings, bootstrap, Registry.from_settings(settings), stop, shared=shared)
    stage = threading.Thread(target=scorer.run, name="scorer", daemon=True)
    stage.start()
    logged = 0.0
    while stage.is_alive():
        if time.monotonic() - logged > 30:
            logged = time.monotonic()
            joiner = scorer.joiner
            learner = scorer._learner
            line = {"t": round(time.time()), "scored": scorer.scored, "rss": rss_kb(os.getpid()),
                    "learner_rss": rss_kb(learner.pid) if learner is not None and learner.pid else 0,
                    "smaps": memory_profile(), "malloc": mallinfo(), "pymalloc": pymalloc_stats(),
                    "join": {"records": len(joiner._records), "labels": len(joiner._labels), "bytes": joiner.bytes,
                             "evicted_ids": len(joiner._evicted), "by_size": joiner.evicted_by_size,
                             "by_age": joiner.evicted_by_age, "share": joiner.admission.share},
                    "seen": len(scorer._seen), "swaps": len(scorer.swaps), "gc": gc_census()}
            with open(mem_log, "a") as f:
                f.write(json.dumps(line) + "\n")
        stage.join(timeout=1.0)


def pace_state(reader: Any) -> dict[str, list]:
    """Per partition the monitor reads: its last record's Kafka time (s, relative to the newest) and
    seconds since it first came back empty (None: it delivered last). Read from another thread
    than the monitor's: the reader's own fields only, no consumer call."""
    lasts = [v for v in list(reader._last.values()) if v is not None]
    newest = max(lasts) if lasts else 0
    state = {}
    for tp in list(reader.consumers):
        last, empty = reader._last.get(tp), reader._empty_since.get(tp)
        state[f"{tp.topic.rsplit('.', 1)[-1]}{tp.partition}"] = [
            None if last is None else round((last - newest) / 1000, 2),
            None if empty is None else round(reader.clock() - empty, 1)]
    return state


def monitor_process(settings_json: str, bootstrap: str, shared: Any, stop: Any, trace: str | None = None,
                    mem_log: str | None = None) -> None:
    import tracemalloc  # with --trace-dir: snapshots of the monitor, to find what grows (slow: a short run only)

    from threadpoolctl import threadpool_limits

    from driftctl.runtime.stack import configure_environment
    from driftctl.settings import Settings

    settings = Settings(**json.loads(settings_json))
    configure_environment(settings)
    threadpool_limits(limits=1, user_api="openmp")  # as the demo: the flow trains beside the stage
    from driftctl.stores.ledger import Ledger
    from flows.trigger import make_retrain
    from serving.monitor import Monitor
    from training.registry import Registry

    halt = threading.Event()
    retrain = make_retrain(settings)
    monitor = Monitor(settings, bootstrap, Registry.from_settings(settings), Ledger.from_settings(settings),
                      retrain, halt)
    stage = threading.Thread(target=monitor.run, name="monitor", daemon=True)
    stage.start()

    def publish_stats() -> None:
        join = monitor.join_vitals()
        outcomes = list(monitor.outcomes)
        values = {
            "telemetry": monitor.telemetry_seen, "labelled": monitor.labelled,
            "drift_events": len(monitor.events), "decisions": len(monitor.decisions), "retrains": len(outcomes),
            "promotions": sum(1 for o in outcomes if o.get("promoted") and (o.get("version") or 0) > 1),
            "rollbacks": len(monitor.rollbacks), "failed_retrains": sum(1 for o in outcomes if "error" in o),
            "join_evicted": join["evicted"], "join_skipped": join["records"]["skipped"],
            "await_skipped": join["awaiting_prediction"]["skipped"], "near_misses": join["records"]["near_misses"],
            "await_near_misses": join["awaiting_prediction"]["near_misses"],
            "labelled_predictions": join["labelled_predictions"], "join_held": join["held"],
            "busy": int(monitor.busy), "alive": int(stage.is_alive()),
            # The warm retrain process (retrain.child_process), sampled on its own as well.
            "retrain_pid": getattr(getattr(retrain, "_process", None), "pid", None) or 0,
        }
        shared[:] = [int(values[name]) for name in MONITOR_FIELDS]

    dumped = logged = paced = 0.0
    while stage.is_alive():
        if mem_log and time.monotonic() - logged > 30:
            logged = time.monotonic()
            line = {"t": round(time.time()), "read": monitor.telemetry_seen, "rss": rss_kb(os.getpid()),
                    "smaps": memory_profile(), "malloc": mallinfo(), "sizes": monitor_sizes(monitor),
                    "pymalloc": pymalloc_stats(), "gc": gc_census()}
            with open(mem_log, "a") as f:
                f.write(json.dumps(line) + "\n")

        if mem_log and monitor.reader is not None and time.monotonic() - paced > 5:
            paced = time.monotonic()
            with open(mem_log + ".pace", "a") as f:
                f.write(json.dumps({"t": round(time.time(), 1), "read": monitor.telemetry_seen,
                                    "labelled": monitor.labelled, "pending": len(monitor._pending),
                                    "paces": pace_state(monitor.reader)}) + "\n")
        publish_stats()
        if trace and not tracemalloc.is_tracing() and monitor.telemetry_seen > 5_000:  # imports done
            tracemalloc.start(6)
        if trace and tracemalloc.is_tracing() and time.monotonic() - dumped > 60:
            dumped = time.monotonic()
            tracemalloc.take_snapshot().dump(f"{trace}/monitor-{monitor.telemetry_seen:09d}.snapshot")
        if stop.is_set():
            halt.set()
        stage.join(timeout=0.5)
    publish_stats()


def slow_down(pid: int, seconds: float, share: float) -> None:
    """Stop `pid` and its descendants `share` of every second for `seconds` (SIGSTOP / SIGCONT)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        tree = [pid, *children(pid)]
        for p in tree:
            os.kill(p, signal.SIGSTOP)
        time.sleep(share)
        for p in tree:
            os.kill(p, signal.SIGCONT)
        time.sleep(1.0 - share)


# -- the run -----------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=2_000_000)
    parser.add_argument("--rate", type=float, default=4_000.0, help="records per second offered")
    parser.add_argument("--drift-at", type=int, default=None, help="default: 55 %% of the records (third quarter)")
    parser.add_argument("--every", type=float, default=1.0, help="seconds between RSS samples")
    parser.add_argument("--drain", type=float, default=900.0,
                        help="seconds the stages get to finish after the producer")
    parser.add_argument("--trace-dir", type=Path, default=None,
                        help="dump tracemalloc snapshots of the monitor there every 60 s (slows it)")
    parser.add_argument("--monitor-malloc", action="store_true",
                        help="the monitor's Python objects from the C library's malloc (PYTHONMALLOC=malloc)")
    parser.add_argument("--mem-log", type=Path, default=None,
                        help="append the monitor's memory by kind (smaps, malloc, its containers, gc census) there "
                        "every 30 s, and the scorer's (its label join, learner) to the same name + .scorer")
    parser.add_argument("--slow-scorer", type=float, nargs=3, default=None, metavar=("AT", "SECONDS", "SHARE"),
                        help="once AT records are sent, stop the scorer (and its learner) SHARE of every second "
                             "for SECONDS: a scorer falling behind as on a loaded machine, on a quiet one too")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.md")
    args = parser.parse_args()

    from driftctl.runtime.stack import configure_environment, kafka_stack
    from driftctl.settings import Settings
    from serving.scorer import run_scorer_process

    home = Path(tempfile.mkdtemp(prefix="driftctl-soak-"))
    settings = Settings(home=home)
    settings.stream.records = args.records
    settings.stream.drift_at = args.drift_at if args.drift_at is not None else int(args.records * 0.55)
    configure_environment(settings)
    spawn = multiprocessing.get_context("spawn")
    settings_json = settings.model_dump_json()
    started = time.monotonic()
    samples: list[dict] = []
    with kafka_stack(settings) as bootstrap:
        broker_pids = children(os.getpid())
        scorer_stats, scorer_stop = spawn.Array("q", 4), spawn.Event()  # scored, dead letters, learned, version
        monitor_stats, monitor_stop = spawn.Array("q", len(MONITOR_FIELDS)), spawn.Event()
        producer_stats, producer_stop = spawn.Array("q", 2), spawn.Event()  # sent, done
        scorer_args: tuple = (settings_json, bootstrap, scorer_stats, scorer_stop)
        if args.mem_log:
            scorer_args += (str(args.mem_log) + ".scorer",)
        scorer = spawn.Process(target=scorer_process if args.mem_log else run_scorer_process, name="scorer",
                               daemon=True, args=scorer_args)
        # Not a daemon: a daemonic process may not start children, and the monitor's retrain runs in
        # one (retrain.child_process); the `finally` below ends it.
        monitor = spawn.Process(target=monitor_process, name="monitor", daemon=False,
                                args=(settings_json, bootstrap, monitor_stats, monitor_stop,
                                       str(args.trace_dir) if args.trace_dir else None,
                                       str(args.mem_log) if args.mem_log else None))
        producer = spawn.Process(target=producer_process, name="producer", daemon=True,
                                 args=(settings_json, bootstrap, args.records, args.rate, scorer_stats,
                                       producer_stats, producer_stop))
        scorer.start()
        if args.monitor_malloc:  # a spawned process inherits the environment at its start
            os.environ["PYTHONMALLOC"] = "malloc"
        monitor.start()
        os.environ.pop("PYTHONMALLOC", None)
        producer.start()
        stages = {"producer": producer, "scorer": scorer, "monitor": monitor}
        produced_at: float | None = None
        drained_at: float | None = None
        slowing: threading.Thread | None = None  # --slow-scorer
        error = None
        try:
            while True:
                mon = dict(zip(MONITOR_FIELDS, monitor_stats[:], strict=True))
                sample = {"t": round(time.monotonic() - started, 1), "sent": producer_stats[0],
                          "scored": scorer_stats[0], "dead_letters": scorer_stats[1], "version": scorer_stats[3],
                          "read": mon["telemetry"], "labelled": mon["labelled"],
                          "rss_kb": {name: tree_rss_kb(p.pid) for name, p in stages.items() if p.pid},
                          "own_rss_kb": {name: rss_kb(p.pid) for name, p in stages.items() if p.pid}}
                sample["rss_kb"]["broker"] = sum(tree_rss_kb(p) for p in broker_pids)
                if mon["retrain_pid"]:  # inside the monitor's tree too; shown on its own
                    sample["rss_kb"]["retrain"] = tree_rss_kb(mon["retrain_pid"])
                samples.append(sample)
                if len(samples) % 30 == 0:
                    print(json.dumps({k: sample[k] for k in ("t", "sent", "scored", "read", "labelled", "version")}
                                     | {"rss_mb": {k: v // 1024 for k, v in sample["rss_kb"].items()}},
                                     ensure_ascii=False), flush=True)
                dead = [name for name, p in stages.items() if not p.is_alive() and (name != "producer"
                                                                                      or not producer_stats[1])]
                if dead:
                    error = f"stage exited: {dead}"
                    break
                if args.slow_scorer and producer_stats[0] >= args.slow_scorer[0] and slowing is None:
                    slowing = threading.Thread(target=slow_down, args=(scorer.pid, *args.slow_scorer[1:]), daemon=True)
                    slowing.start()
                if producer_stats[1] and produced_at is None:
                    produced_at = time.monotonic()
                if produced_at is not None:
                    sent = producer_stats[0]
                    if (scorer_stats[0] + scorer_stats[1] >= sent and mon["labelled"] >= sent
                            and not mon["busy"]):
                        # And the predictions joined to their labels (a grace: some never join).
                        drained_at = drained_at or time.monotonic()
                        if mon["join_held"] == 0 or time.monotonic() - drained_at > 60:
                            break
                    if time.monotonic() - produced_at > args.drain:
                        error = f"not drained within {args.drain:.0f} s"
                        break
                time.sleep(args.every)
        finally:
            for stop in (producer_stop, scorer_stop, monitor_stop):
                stop.set()
            for p in stages.values():
                p.join(timeout=60)
                if p.is_alive():
                    p.kill()
        mon = dict(zip(MONITOR_FIELDS, monitor_stats[:], strict=True))
    seconds = time.monotonic() - started
    result = summarize(args, settings, samples, producer_stats[0], scorer_stats[:], mon, seconds, error,
                       produced_at - started if produced_at else None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # `--out x.json` wrote the table over the samples (run 5's soak_2m.json): the table goes to x.md then.
    args.out.with_suffix(".json").write_text(json.dumps({**result, "samples": samples}, indent=1))
    args.out.with_suffix(".md").write_text(render(result))
    print(json.dumps({k: v for k, v in result.items() if k != "quarters"}, indent=1))
    print(render(result))


def summarize(args: Any, settings: Any, samples: list[dict], sent: int, scorer: list[int], mon: dict,
              seconds: float, error: str | None, produce_seconds: float | None) -> dict:
    progress_of = {"producer": "sent", "broker": "sent", "scorer": "scored", "monitor": "read", "retrain": "read"}
    quarters: dict[str, list[float | None]] = {}
    for stage, key in progress_of.items():
        peaks: list[float | None] = [None] * 4
        for s in samples:
            done = s[key] + (s["dead_letters"] if key == "scored" else 0)
            q = min(3, done * 4 // max(1, args.records))
            rss = s["rss_kb"].get(stage, 0) / 1024
            if rss and (peaks[q] is None or rss > peaks[q]):
                peaks[q] = round(rss, 1)
        quarters[stage] = peaks
    ratios = {stage: (round(p[3] / p[1], 3) if p[1] and p[3] else None) for stage, p in quarters.items()}
    load = os.getloadavg()
    scored, dead_letters = scorer[0], scorer[1]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": platform.machine(),
        "cpus": os.cpu_count(), "load_at_end": [round(x, 2) for x in load], "nice": os.nice(0),
        "records": args.records, "rate_offered": args.rate, "drift_at": settings.stream.drift_at,
        "label_delay": settings.stream.label_delay, "error": error,
        "sent": sent, "scored": scored, "dead_letters": dead_letters,
        "lost": max(0, sent - scored - dead_letters), "redelivered": max(0, scored + dead_letters - sent),
        "final_version": scorer[3], "monitor": mon,
        "seconds": round(seconds, 1), "produce_seconds": round(produce_seconds, 1) if produce_seconds else None,
        "produce_rps": round(sent / produce_seconds, 1) if produce_seconds else None,
        "end_to_end_rps": round(sent / seconds, 1),
        "quarters_mb": quarters, "q4_over_q2": ratios,
        "within_10pct": {stage: (r is not None and r <= 1.10) for stage, r in ratios.items()},
    }


def render(r: dict) -> str:
    mon = r["monitor"]
    lines = [
        "# Soak: peak RSS per quarter of the stream", "",
        f"{r['date']}, {r['machine']}, {r['cpus']} cores shared with other jobs; load average at the end "
        f"{r['load_at_end']}.", "",
        f"`nice -n {r.get('nice', 0)} python benchmarks/soak.py --records {r['records']} --rate {r['rate_offered']:g}` "
        f"(drift at record {r['drift_at']:,}, labels {r['label_delay']} records late).", "",
        f"Result: {'**' + r['error'] + '**' if r['error'] else 'drained'}.", "",
        "| stage | Q1 peak MB | Q2 peak MB | Q3 peak MB | Q4 peak MB | Q4 / Q2 | within 10 % |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for stage, peaks in r["quarters_mb"].items():
        cells = " | ".join("-" if p is None else f"{p:.1f}" for p in peaks)
        ratio = r["q4_over_q2"][stage]
        criterion = "not a stage: in-memory log, grows with the data kept" if stage == "broker" else (
            "yes" if r["within_10pct"][stage] else "**no**")
        if stage == "retrain":
            criterion += " (the monitor's retrain process, counted in the monitor's row too)"
        lines.append(f"| {stage} | {cells} | {'-' if ratio is None else f'{ratio:.3f}'} | {criterion} |")
    lines += [
        "", "| what | count |", "| --- | ---: |",
        f"| records sent | {r['sent']:,} |", f"| scored | {r['scored']:,} |",
        f"| dead-lettered | {r['dead_letters']:,} |",
        f"| lost (sent - scored - dead-lettered; goal 0) | {r['lost']:,} |",
        f"| scored more than once (at-least-once redelivery) | {r['redelivered']:,} |",
        f"| monitor: telemetry read | {mon['telemetry']:,} |", f"| monitor: labelled | {mon['labelled']:,} |",
        f"| monitor: labels joined to predictions | {mon['labelled_predictions']:,} |",
        f"| monitor: join entries evicted by its caps | {mon['join_evicted']:,} |",
        f"| monitor: ids skipped (join share below 1) | {mon['join_skipped']:,} |",
        f"| monitor: labelled records not kept for their prediction | {mon['await_skipped']:,} |",
        f"| monitor: near misses (records / predictions) | {mon['near_misses']:,} / {mon['await_near_misses']:,} |",
        f"| drift events | {mon['drift_events']:,} |", f"| decisions | {mon['decisions']:,} |",
        f"| retrains (bootstrap included) / failed | {mon['retrains']} / {mon['failed_retrains']} |",
        f"| promotions after the bootstrap | {mon['promotions']} |", f"| rollbacks | {mon['rollbacks']} |",
        f"| champion version served at the end | {r['final_version']} |",
        f"| seconds (whole run) | {r['seconds']:,} |",
        f"| producer records/s (offered {r['rate_offered']:g}) | {r['produce_rps']} |",
        f"| end to end records/s (start to drained) | {r['end_to_end_rps']} |",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

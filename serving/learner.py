"""The online learner off the scoring path (`ServingSettings.learner = "process"`): a child
process of the scorer holds the River learner, predicts a batch's records when asked and
learns from the (features, label) pairs the scorer joins, on another core.

River predicts and learns record by record in Python: `learn_one` and `predict_proba_one`
were the largest costs per record in the scorer (`benchmarks/results/bench.md`). Shipping the
learner's state to the scorer instead (a snapshot to swap in) was measured first: unpickling
a grown Hoeffding tree took ~40 ms, more than the learning it saved at a few snapshots a second.

Each batch is predicted by one learner state, and that state's `n_learned` comes back with
the probabilities: the lineage each prediction carries. A predict request is answered as
soon as it arrives, ahead of labels handed over but not yet learned (so the scorer waits for
the prediction only, never for the learning); a checkpoint request first learns them all.

The protocol, on the child's stdin: frames of one kind byte and an 8-byte length, then a
pickle: ``L`` a list of (features, label) pairs to learn; ``P`` a list of feature dicts to
predict, answered on its stdout by one frame (8-byte length, pickle of (n_learned,
probabilities, renewals, recent accuracy)); ``C`` the offsets to write a checkpoint with.
End of input (the scorer closed it, or died) ends the child. It is a plain subprocess, not
`multiprocessing`: a scorer started as a daemon process may not have multiprocessing children.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import select
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Any

from serving import checkpoint

log = logging.getLogger(__name__)
HEADER = 9  # kind (1 byte) + payload length (8 bytes, big-endian)
LEARN_SLICE = 50  # pairs learned between two looks for a request (~1-2 ms)
MAX_BACKLOG = 50_000  # pairs read and not yet learned; beyond it the child reads no more (back-pressure)
# Allocations between two young garbage collections, in the scorer and in this child (Python's
# default: 700). A scored record makes a few dozen containers, so at 700 the collector ran every
# ~20 records and walked the batch's live objects each time: 4-10 us of the scorer's ~35 per
# record offline, 0.1 us at 10,000 (benchmarks/hotpath.py). The older generations keep their ratios.
YOUNG_COLLECTION_THRESHOLD = 10_000


class LearnerFailed(Exception):
    """The learner process ended or answered out of turn; it has been restarted."""


class LearnerProcess:
    """The scorer's side. Writes block when the child is a pipe's worth behind: back-pressure,
    so no label is dropped and memory stays bounded (a scorer outrunning its learner slows)."""

    def __init__(self, learner: Any, n_learned: int, start_file: Path, checkpoint_path: Path):
        self.start_file = start_file  # the starting state, handed over through a file
        self.checkpoint_path = checkpoint_path
        self.n_sent = 0  # pairs handed over by this process
        self._child: subprocess.Popen[bytes] | None = None
        self._asked = False  # a predict request awaits its answer
        self.renewals = 0  # the learner's renewals and recent accuracy, as of its last answer
        self.accuracy: float | None = None
        self._start(learner, n_learned)

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child is not None else None

    def _start(self, learner: Any, n_learned: int) -> None:
        try:
            checkpoint.save(self.start_file, checkpoint.Checkpoint(learner, n_learned))
        except OSError as exc:  # disk full: no process to hand the state to (the scorer learns inline after 3)
            self._child = None
            raise LearnerFailed(f"the learner's starting state not written: {exc}") from exc
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._child = subprocess.Popen([sys.executable, "-m", "serving.learner", str(self.start_file),
                                        str(self.checkpoint_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       env=env)
        self._asked = False

    def learn(self, pairs: list[tuple[dict[str, Any], Any]]) -> None:
        if pairs:
            self.n_sent += len(pairs)
            self._write(b"L", pairs)

    def ask(self, rows: list[dict[str, Any]]) -> None:
        """Request the online probabilities of `rows`; `answer` returns them. In between the
        scorer does its own work (the champion's batch) while the child predicts."""
        self._write(b"P", rows)
        self._asked = True

    def answer(self) -> tuple[int, list[dict[Any, float]]]:
        """(n_learned of the state that predicted, one probability dict per row; {} where it failed)."""
        child = self._child
        assert child is not None and child.stdout is not None and self._asked
        self._asked = False
        size = child.stdout.read(8)
        payload = child.stdout.read(int.from_bytes(size, "big")) if len(size) == 8 else b""
        if len(size) < 8 or not payload:
            self._failed("no answer")
        n_learned, probabilities, self.renewals, self.accuracy = pickle.loads(payload)
        return n_learned, probabilities

    def request_checkpoint(self, offsets: dict[str, int]) -> None:
        """The child writes a checkpoint once it has learned everything sent before."""
        self._write(b"C", offsets)

    def _write(self, kind: bytes, value: Any) -> None:
        if self._asked:  # an answer never collected (the scorer's batch failed in between): drop it
            self.answer()
        if self._child is None:  # a restart that could not write its state (disk full): tried again now
            saved = [c for c in (checkpoint.load(self.checkpoint_path), checkpoint.load(self.start_file)) if c]
            if not saved:
                raise LearnerFailed("no learner state to restart from")
            start = max(saved, key=lambda c: c.n_learned)
            self._start(start.learner, start.n_learned)
        child = self._child
        assert child is not None and child.stdin is not None
        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            child.stdin.write(kind + len(payload).to_bytes(8, "big") + payload)
            child.stdin.flush()
        except OSError as exc:
            self._failed(str(exc))

    def _failed(self, why: str) -> None:
        """Restart from the last checkpoint (what was learned since is lost, and logged)."""
        child = self._child
        assert child is not None
        self._reap()
        # The newer of its last checkpoint and the state it started from (always written).
        saved = [c for c in (checkpoint.load(self.checkpoint_path), checkpoint.load(self.start_file)) if c]
        start = max(saved, key=lambda c: c.n_learned)
        log.error("online learner process %s failed (%s, exit %s); restarted from n_learned=%s",
                  child.pid, why, child.returncode, start.n_learned)
        self._start(start.learner, start.n_learned)
        raise LearnerFailed(why)

    def close(self, offsets: dict[str, int] | None, timeout: float = 60.0) -> None:
        """Checkpoint (when `offsets` is given) after the last pairs, then end the child."""
        if self._child is None:
            return
        if offsets is not None and not self._asked:
            try:
                self.request_checkpoint(offsets)
            except LearnerFailed as exc:
                log.error("online learner: no final checkpoint: %s", exc)
        self._reap(timeout)
        self.start_file.unlink(missing_ok=True)

    def _reap(self, timeout: float = 10.0) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        for stream in (child.stdin, child.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("online learner process %s did not end in %.0f s; killed", child.pid, timeout)
            child.kill()
            child.wait()


def remove_stale_start_files(directory: Path, instance: str) -> list[Path]:
    """Remove the start files (`<instance>-<pid>-<id>.start`) that scorers of this instance name
    left when they were killed (kill -9: no `close`), those whose process is gone; returns them.
    A live scorer's file is kept; so is any other instance's."""
    removed = []
    for path in directory.glob(f"{instance}-*.start"):
        try:
            pid = int(path.stem[len(instance) + 1:].split("-")[0])
        except ValueError:
            continue  # not a name this module wrote
        if pid == os.getpid() or _alive(pid):
            continue
        path.unlink(missing_ok=True)
        removed.append(path)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _read_exactly(fd: int, n: int) -> bytes | None:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def serve(start_file: Path, checkpoint_path: Path, source: int, sink: int) -> None:
    """The child's loop on file descriptors `source` (requests) and `sink` (answers)."""
    saved = checkpoint.load(start_file)
    if saved is None:
        raise SystemExit(f"online learner: no starting state in {start_file}")
    learner, n_learned = saved.learner, saved.n_learned
    gc.collect()
    gc.freeze()  # start-up's objects out of every full collection's walk (as the scorer does)
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *gc.get_threshold()[1:])
    predict, learn = learner.predict_proba_one, learner.learn_one
    failures = 0

    def failed(what: str, exc: Exception) -> None:
        nonlocal failures
        failures += 1
        if failures <= 10 or failures % 1000 == 0:
            log.warning("online learner: %s failed (%s failures): %s: %s", what, failures, type(exc).__name__, exc)

    def learn_one() -> None:
        nonlocal n_learned
        features, label = backlog.popleft()
        try:
            learn(features, label)
            n_learned += 1
        except Exception as exc:  # scored already: a failure to learn from it is logged, not lettered
            failed("learning", exc)

    backlog: deque[tuple[dict[str, Any], Any]] = deque()  # pairs read, not yet learned
    while True:
        # A waiting request is read between slices of learning: a predict request is answered at once
        # by the state as it is, ahead of the labels still to learn (its n_learned says which state).
        if backlog and (len(backlog) >= MAX_BACKLOG or not select.select([source], [], [], 0)[0]):
            for _ in range(min(LEARN_SLICE, len(backlog))):
                learn_one()
            continue
        header = _read_exactly(source, HEADER)
        payload = _read_exactly(source, int.from_bytes(header[1:], "big")) if header is not None else None
        if header is None or payload is None:
            return  # the scorer closed its end, or died: nothing more will come
        value = pickle.loads(payload)
        kind = header[:1]
        if kind == b"L":
            backlog.extend(value)
        elif kind == b"P":
            answers: list[dict[Any, float]] = []
            for features in value:
                try:
                    answers.append(predict(features))
                except Exception as exc:  # the online learner is advisory: the champion still serves
                    failed("predicting", exc)
                    answers.append({})
            # With the learner's renewals (training.online.Renewing): the scorer's serving rule follows them.
            reply = pickle.dumps((n_learned, answers, getattr(learner, "renewals", 0),
                                  getattr(learner, "accuracy", None)), protocol=pickle.HIGHEST_PROTOCOL)
            os.write(sink, len(reply).to_bytes(8, "big"))
            view = memoryview(reply)
            while view:
                view = view[os.write(sink, view):]
        elif kind == b"C":  # everything handed over before it is in the checkpoint
            while backlog:
                learn_one()
            try:
                checkpoint.save(checkpoint_path, checkpoint.Checkpoint(learner, n_learned, dict(value)))
            except OSError as exc:  # disk full: the previous checkpoint stays, the learner goes on
                failed("a checkpoint", exc)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s learner: %(message)s")
    sink = os.dup(1)  # answers only: anything a library prints goes to stderr
    os.dup2(2, 1)
    serve(Path(sys.argv[1]), Path(sys.argv[2]), 0, sink)


if __name__ == "__main__":
    main()

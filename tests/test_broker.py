"""The embedded Tansu broker: started for real, topics created, stopped on every way out."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import pytest
from kafka import KafkaConsumer

from driftctl.runtime.broker import BrokerError, EmbeddedBroker, ensure_topics
from driftctl.runtime.stack import kafka_stack
from driftctl.settings import KafkaSettings

pytestmark = pytest.mark.integration


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead too.
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split()[2] != "Z"


def test_topics_are_created_with_configured_partitions(tmp_path):
    kafka = KafkaSettings(partitions=4)
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        ensure_topics(broker.bootstrap_servers, kafka)
        ensure_topics(broker.bootstrap_servers, kafka)  # idempotent
        consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
        described = {name: len(consumer.partitions_for_topic(name) or ()) for name in kafka.topics.all()}
        consumer.close()
        pid = broker._process.pid
    assert described[kafka.topics.telemetry] == 4
    assert described[kafka.topics.model_updates] == 1
    assert not alive(pid)


def test_broker_stops_when_the_body_raises(tmp_path, home):
    from driftctl.settings import Settings

    settings = Settings()
    settings.home.mkdir(parents=True)
    with pytest.raises(RuntimeError), kafka_stack(settings) as bootstrap:
        port = int(bootstrap.rsplit(":", 1)[1])
        raise RuntimeError("boom")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_no_orphan_broker_after_kill_9_or_ctrl_c(tmp_path):
    # Ctrl-C as a shell delivers it: the child handles SIGINT by default even if the test process
    # it inherits from has it ignored or blocked (in full runs it once sat out the SIGINT).
    script = textwrap.dedent("""
        import signal, sys, time
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT])
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from driftctl.runtime.broker import EmbeddedBroker
        broker = EmbeddedBroker().start()
        print(broker._process.pid, flush=True)
        time.sleep(60)
    """)
    for how in (signal.SIGKILL, signal.SIGINT):
        child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                                 cwd=os.getcwd(), env={**os.environ, "PYTHONPATH": os.getcwd()})
        broker_pid = int(child.stdout.readline())
        assert alive(broker_pid)
        child.send_signal(how)
        child.wait(timeout=30)
        deadline = time.monotonic() + 5
        while alive(broker_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(broker_pid), f"broker left running after {how!r}"


def test_unreachable_broker_is_a_clear_error():
    with pytest.raises(BrokerError, match="no broker answers"):
        from driftctl.runtime.broker import wait_until_reachable

        wait_until_reachable("127.0.0.1:1", timeout=0.3)

"""Should driftctl's own producers compress? Each Kafka codec measured on the project's two
busiest topics: the telemetry the producer sends and the predictions the scorer sends.

For each codec (none, gzip, snappy, lz4, zstd) and topic, on the embedded broker: records/s
sent through kafka-python with the project's producer options, records/s read back (the
consumer decompresses) and bytes on the wire: the records' key and value bytes times the
producer's `compression-rate-avg` (compressed over raw size of its batches). Ratios are
taken against `none` in the same run.

    PYTHONPATH=. python benchmarks/compression.py [--records 100000] [--out benchmarks/results/compression.md]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from driftctl.messages import Prediction
from driftctl.runtime.broker import EmbeddedBroker, ensure_topics
from driftctl.runtime.machine import describe as describe_machine
from driftctl.settings import KafkaSettings
from serving.codec import encode_prediction, encode_telemetry
from serving.kafka_io import make_producer
from serving.synthetic import iot_stream

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def telemetry(records: int) -> list[tuple[bytes, bytes]]:
    return [(r.device.encode(), encode_telemetry(r.record)) for r in iot_stream(records, drift_at=records // 2)]


def predictions(records: int) -> list[tuple[bytes, bytes]]:
    """What a scorer sends per record: the served prediction with its lineage."""
    out = []
    for r in iot_stream(records, drift_at=records // 2):
        p: Prediction = {"id": r.record["id"], "ts": r.record["ts"], "prediction": r.label,
                         "model": {"name": "driftctl-classifier", "version": 3,
                                   "run_id": "5f0c2a9d7e1b4c6a8f3d2e1c0b9a8f7e"},
                         "proba": {"0": 0.18, "1": 0.82}, "online": {"prediction": r.label, "n_learned": r.seq},
                         "served_by": "blend", "confidence": 0.82, "champion": {"prediction": r.label},
                         "scorer": "scorer-a", "scored_at": time.time(),
                         "source": {"partition": r.seq % 3, "offset": r.seq // 3}}
        out.append((r.device.encode(), encode_prediction(p)))
    return out


def measure(bootstrap: str, kafka: KafkaSettings, topic: str, messages: list[tuple[bytes, bytes]],
            codec: str) -> dict[str, Any]:
    producer: KafkaProducer = make_producer(bootstrap, kafka, compression_type=None if codec == "none" else codec)
    started = time.perf_counter()
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    send_s = time.perf_counter() - started
    metrics = producer.metrics()["producer-metrics"]
    ratio = metrics.get("compression-rate-avg") or 1.0  # compressed / raw size of the batches sent
    producer.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=5_000,
                             max_partition_fetch_bytes=4 * 1024 * 1024)
    read, started = 0, time.perf_counter()
    for _ in consumer:
        read += 1
        if read == len(messages):
            break
    read_s = time.perf_counter() - started
    consumer.close()
    raw = sum(len(k) + len(v) for k, v in messages)
    return {"codec": codec, "sent_per_s": len(messages) / send_s, "read_per_s": read / read_s, "read": read,
            "wire_bytes": raw * ratio, "raw_bytes": raw, "compression_rate": ratio}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2, help="each codec measured this many times; the best kept")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    kafka = KafkaSettings()
    streams = {"telemetry": telemetry(args.records), "predictions": predictions(args.records)}
    rows = []
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap_servers, kafka)
        for name, messages in streams.items():
            for codec in CODECS:
                best: dict[str, Any] | None = None
                for round_ in range(args.rounds):
                    result = measure(broker.bootstrap_servers, kafka, f"bench-{name}-{codec}-{round_}", messages, codec)
                    if best is None or result["sent_per_s"] > best["sent_per_s"]:
                        best = result
                assert best is not None
                rows.append({"topic": name, **best})
                print(name, best, flush=True)
    lines = ["# Compression of driftctl's own messages", "",
             f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
             f"- machine: {describe_machine()}",
             f"- command: `PYTHONPATH=. python benchmarks/compression.py --records {args.records} "
             f"--rounds {args.rounds}` (embedded Tansu broker on loopback; the best of the rounds)", "",
             "| topic | codec | sent rec/s | × none | read rec/s | × none | wire bytes/record | × none |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        base = next(r for r in rows if r["topic"] == row["topic"] and r["codec"] == "none")
        per = row["wire_bytes"] / args.records
        lines.append(f"| {row['topic']} | {row['codec']} | {row['sent_per_s']:,.0f} | "
                     f"{row['sent_per_s'] / base['sent_per_s']:.2f} | {row['read_per_s']:,.0f} | "
                     f"{row['read_per_s'] / base['read_per_s']:.2f} | {per:,.0f} | "
                     f"{row['wire_bytes'] / base['wire_bytes']:.2f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()

"""The runtime at the bottom: the embedded Kafka-protocol broker, the stack's environment,
logging, the machine description benchmarks record, and the fault-injection hook of the crash tests."""

"""The runtime at the bottom: the embedded Kafka-protocol broker, the stack's environment,
logging and the machine description benchmarks record."""

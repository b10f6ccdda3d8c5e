"""The Kafka stages: synthetic producer, scorer with hot-swap, drift monitor, dead letters."""

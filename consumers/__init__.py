"""Kafka consumers and producer (confluent-kafka) wired onto ``observability``, with a dead-letter topic."""

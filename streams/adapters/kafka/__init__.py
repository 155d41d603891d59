"""Kafka: client configuration, topics, dead letters, the results publisher, the
flow's input-event reader and the bounded topic reader."""

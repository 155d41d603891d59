"""Kafka: the connection (:class:`~streams.adapters.kafka.connection.KafkaConnection`,
what every client here takes instead of the settings), admin and topic creation, dead
letters, the results publisher, the flow's input-event reader and the bounded topic reader."""

"""The topics scribe-stream uses: names, partition counts and configs, from the settings.

The application's topic layout, not Kafka client code: :func:`ensure_scribe_topics`
(``scribe topics create``, ``scribe worker``, the embedded dev stack, the tests) passes it
to :func:`streams.adapters.kafka.client.ensure_topics`.
"""

from __future__ import annotations

from aiokafka.admin import NewTopic

from streams.adapters.kafka.client import ensure_topics
from streams.adapters.kafka.connection import KafkaConnection
from streams.settings import Settings


def topic_specs(settings: Settings) -> list[NewTopic]:
    """The topics scribe-stream uses, with their partition counts and configs."""
    n, rf = settings.topic_partitions, settings.topic_replication
    # Kafka is the source of truth: events and results are kept forever (replay rebuilds
    # every derived store from them), dead letters too (nothing is lost).
    forever = {"retention.ms": "-1", "retention.bytes": "-1"}
    big = {**forever, "max.message.bytes": str(settings.max_result_bytes)}
    return [
        NewTopic(
            settings.topic_events,
            n,
            rf,
            topic_configs={
                **forever,
                "max.message.bytes": str(max(settings.max_text_bytes * 2, 1024 * 1024)),
            },
        ),
        NewTopic(settings.topic_embeddings, n, rf, topic_configs=big),
        NewTopic(settings.topic_dlq, n, rf, topic_configs=big),
        NewTopic(settings.topic_failures, n, rf, topic_configs=forever),
    ]


async def ensure_scribe_topics(settings: Settings) -> list[str]:
    """Create the missing topics of :func:`topic_specs` on the configured brokers (Faust
    must not auto-create them); return the created names."""
    return await ensure_topics(KafkaConnection.from_settings(settings), topic_specs(settings))

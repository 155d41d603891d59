"""The event source on Kafka: a group-less consumer, assigned and seeked per read."""

from __future__ import annotations

import asyncio
from typing import Any

from prefect_bridge.event_source import READ_TIMEOUT_SECONDS
from schemas import EventUnavailable, ServiceUnavailable, SourceRef
from streams.adapters.kafka.connection import KafkaConnection


class KafkaEventSource:
    """An aiokafka consumer without a group, assigned and seeked per read (one at a time).

    Between reads its partition is paused, so the consumer sends no fetches while idle.

    Started lazily in the event loop that uses it (the flow runtime is built per loop);
    connects as ``connection`` says and fetches at most ``max_bytes`` at a time.
    """

    def __init__(self, connection: KafkaConnection, max_bytes: int) -> None:
        self._config = connection.client_config()
        self._max_bytes = max_bytes
        self._consumer: Any = None
        self._lock: asyncio.Lock | None = None

    async def _started(self) -> Any:
        from aiokafka import AIOKafkaConsumer
        from aiokafka.errors import KafkaError

        if self._consumer is None:
            consumer = AIOKafkaConsumer(
                **self._config,
                group_id=None,
                enable_auto_commit=False,
                max_partition_fetch_bytes=self._max_bytes,
                fetch_max_bytes=self._max_bytes,
            )
            try:
                await asyncio.wait_for(consumer.start(), READ_TIMEOUT_SECONDS)
            except (KafkaError, TimeoutError) as exc:
                await consumer.stop()
                raise ServiceUnavailable(f"cannot read the input event: {exc!r}") from exc
            self._consumer = consumer
        return self._consumer

    async def read(self, source: SourceRef) -> tuple[bytes | None, bytes]:
        """See :meth:`EventSource.read`."""
        from aiokafka import TopicPartition
        from aiokafka.errors import KafkaError

        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            consumer = await self._started()
            tp = TopicPartition(source.topic, source.partition)
            try:
                # The log's bounds before the partition is assigned: assigning starts the
                # consumer's fetcher, which would long-poll at the log's end (up to
                # fetch_max_wait_ms, 0.5 s) and hold the fetch at ``offset`` back that long.
                first = (await consumer.beginning_offsets([tp]))[tp]
                end = (await consumer.end_offsets([tp]))[tp]
                at = source.stored_at
                if not first <= at < end:
                    raise EventUnavailable(
                        f"{source} (read at {at}) is not in the log"
                        f" (it holds offsets {first} to {end - 1}): "
                        "deleted by retention, or a position from another cluster"
                    )
                consumer.assign([tp])  # a new assignment: cancels the fetches of the last one
                consumer.seek(tp, at)  # no await in between: the first fetch is here
                message = await asyncio.wait_for(consumer.getone(tp), READ_TIMEOUT_SECONDS)
            except (KafkaError, TimeoutError) as exc:
                raise ServiceUnavailable(
                    f"cannot read the input event at {source}: {exc!r}"
                ) from exc
            finally:
                if tp in consumer.assignment():
                    consumer.pause(tp)  # idle between reads: no background fetches
        return message.key, message.value

    async def close(self) -> None:
        """Stop the consumer."""
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

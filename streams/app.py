"""The Faust app: topics and the two agents, wired to the ports in ``streams.wiring``."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import faust

from agents.pacing import FlushPacer
from agents.result_agent import ResultMessage
from schemas import SourceRef
from schemas.dead_letters import message_source
from streams import check_prefect_env
from streams.adapters.kafka.connection import KafkaConnection
from streams.commands.status_kafka import kafka_report
from streams.metrics import LAG, SINK_BATCH_SECONDS, Heartbeat, serve
from streams.settings import Settings
from streams.wiring import WorkerPorts, WorkerResources

log = logging.getLogger("scribe.worker")

#: Exit status of a worker that met an error it must not skip past (restart it).
EXIT_FAIL_STOP = 70


def _headers(message: Any) -> list[tuple[str, bytes]]:
    raw = message.headers or ()
    items = raw.items() if isinstance(raw, dict) else raw
    return [(str(k), bytes(v or b"")) for k, v in items]


def _position(message: Any) -> tuple[SourceRef, int]:
    """The message's source position (a redriven event keeps its original one) and how
    often ``scribe dlq redrive`` re-sent it."""
    stamp = getattr(message, "timestamp", None)
    return message_source(
        message.topic,
        message.partition,
        message.offset,
        int(stamp * 1000) if isinstance(stamp, float) else stamp,
        _headers(message),
    )


def _source(message: Any) -> SourceRef:
    return _position(message)[0]


def _fail_stop(what: str, exc: BaseException) -> None:
    """Stop the process without committing: the message is redelivered after a restart."""
    log.critical("%s failed with a non-retriable error; stopping the worker: %r", what, exc)
    logging.shutdown()
    os._exit(EXIT_FAIL_STOP)


def create_app(settings: Settings) -> faust.App:
    """A Faust app consuming ``novel-events`` and the results topic."""
    check_prefect_env(settings)  # the chapter agent submits through Prefect's client
    kafka = KafkaConnection.from_settings(settings)
    app = faust.App(
        settings.app_id,
        broker=[f"kafka://{b.strip()}" for b in kafka.bootstrap_servers.split(",")],
        broker_credentials=kafka.faust_credentials(),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,  # health and metrics have their own endpoints (streams.metrics)
        topic_partitions=settings.topic_partitions,
        topic_allow_declare=False,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        producer_max_request_size=settings.max_result_bytes,
        consumer_max_fetch_size=settings.max_result_bytes,
        broker_commit_every=1,
        broker_session_timeout=settings.consumer_session_timeout,
        broker_heartbeat_interval=max(1.0, settings.consumer_session_timeout / 10),
        # aiokafka resets a position without refreshing a stale leader (defect 28).
        consumer_metadata_max_age_ms=kafka.metadata_max_age_ms,
        producer_metadata_max_age_ms=kafka.metadata_max_age_ms,
    )
    resources = WorkerResources(settings)
    events = app.topic(settings.topic_events, key_type=bytes, value_type=bytes)
    results = app.topic(settings.topic_embeddings, key_type=bytes, value_type=bytes)

    @app.agent(events, name="chapter-agent", isolated_partitions=True)
    async def chapter_agent(stream: Any) -> None:
        """Per partition, in log order: one input event -> one durable effect.

        The ports are fetched inside the iteration, never before it: an actor that Faust
        cancels on a rebalance while it waits for them (a service away at start-up) must
        end its iteration, or Faust restarts it for the revoked partition and the next
        assignment fails its ``active_partitions`` assertion (chaos seed 406).
        """
        ports: WorkerPorts | None = None
        async for event in stream.events():
            if ports is None:
                ports = await resources.get()
            msg = event.message
            try:
                source, redrive = _position(msg)
                await ports.chapter.handle(msg.key, msg.value, source, redrive)
            except Exception as exc:
                _fail_stop(f"event {msg.topic}[{msg.partition}]@{msg.offset}", exc)

    @app.agent(results, name="result-agent")
    async def result_agent(stream: Any) -> None:
        """Batches of results -> Milvus (upsert, trim, flush) -> the ledger."""
        ports = await resources.get()
        pacer = FlushPacer(settings.sink_flush_seconds)
        async for batch in stream.take_events(
            settings.sink_batch_size, within=settings.sink_batch_seconds
        ):
            messages = [
                ResultMessage(e.message.key, e.message.value, _source(e.message)) for e in batch
            ]
            try:
                with SINK_BATCH_SECONDS.time():
                    await ports.result.handle_batch(messages)
            except Exception as exc:
                _fail_stop(f"result batch ending {messages[-1].source}", exc)
            pacer.flushed()
            # Acked when the next batch is taken, so after its flush; meanwhile it grows.
            await asyncio.sleep(pacer.pause())

    heartbeat = Heartbeat()

    @app.task  # type: ignore[untyped-decorator]
    async def start_metrics() -> None:
        """/metrics and /health of the worker on SCRIBE_METRICS_HOST."""
        serve(settings.worker_metrics_port, heartbeat.healthy, settings.metrics_host)

    @app.timer(interval=15.0)  # type: ignore[untyped-decorator]
    async def observe() -> None:
        """Keep the heartbeat fresh and export consumer lag."""
        heartbeat.beat()
        try:
            report = await kafka_report(settings)
        except Exception as exc:  # Kafka away: the lag gauge waits for the next round
            log.debug("lag not measured: %s", exc)
            return
        for p in report["partitions"]:
            LAG.labels(p["topic"], str(p["partition"])).set(p["lag"])

    return app

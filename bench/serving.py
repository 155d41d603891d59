"""A scribe-stream pipeline under test: ``flows serve [--warm]`` and ``worker`` as children.

They run like the integration tests run them (``python -m streams.cli ...``), on one
scenario's own topics, consumer group, alias, deployment and work pool, next to a
producer for its events topic and a watcher of its Milvus alias.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer

from bench.env import BenchEnv, settings_for
from bench.memory import RssSampler
from bench.watch import IndexWatcher
from streams.adapters.kafka.client import start_producer
from streams.adapters.kafka.connection import KafkaConnection
from streams.embedded.processes import ManagedProcess
from streams.settings import Settings
from streams.topics import ensure_scribe_topics

log = logging.getLogger("bench.serving")


@dataclass
class Serving:
    """A started scribe-stream pipeline: runner, worker, a producer and an index watcher."""

    settings: Settings
    runner: ManagedProcess
    worker: ManagedProcess
    producer: AIOKafkaProducer
    watcher: IndexWatcher

    def alive(self) -> None:
        """Raise when the runner or the worker died."""
        self.runner.check_alive()
        self.worker.check_alive()


@asynccontextmanager
async def serving(
    benv: BenchEnv,
    name: str,
    sampler: RssSampler,
    *,
    warm: bool,
    tag: str | None = None,
    env_overrides: dict[str, str] | None = None,
) -> AsyncIterator[Serving]:
    """``flows serve [--warm]`` and ``worker`` on scenario ``name``'s topics, stopped on exit.

    Their trees are tracked by ``sampler`` as ``<name>.runner`` and ``<name>.worker``; when
    the body fails, the tails of both logs are logged. ``tag`` (default ``name``) names
    the topics, alias, deployment and pool, so a repetition gets fresh ones;
    ``env_overrides`` are extra ``SCRIBE_*`` settings of both children.
    """
    env, settings = benv.scenario(tag or name)
    if env_overrides:
        env = {**env, **env_overrides}
        settings = settings_for(env)
    await ensure_scribe_topics(settings)
    serve = ["flows", "serve", "--warm"] if warm else ["flows", "serve"]
    runner = benv.child(f"{tag or name}-runner", serve, env)
    worker = benv.child(f"{tag or name}-worker", ["worker"], env)
    watcher = IndexWatcher(settings.milvus_url, settings.milvus_collection)
    producer = None
    try:
        runner.start()
        worker.start()
        assert runner.proc is not None and worker.proc is not None
        sampler.track(f"{name}.runner", runner.proc.pid)
        sampler.track(f"{name}.worker", worker.proc.pid)
        producer = await start_producer(
            KafkaConnection.from_settings(settings), settings.max_result_bytes
        )
        yield Serving(settings, runner, worker, producer, watcher)
    except Exception:
        log.error("%s failed; runner log:\n%s\nworker log:\n%s", name, runner.tail(), worker.tail())
        raise
    finally:
        if producer is not None:
            await producer.stop()
        watcher.close()
        sampler.untrack(f"{name}.worker")
        sampler.untrack(f"{name}.runner")
        worker.stop()
        runner.stop()

"""Size limits: result messages are checked before they reach Kafka."""

from __future__ import annotations

import uuid

import pytest

from schemas import ChapterEmbedded, ChunkVector, ResultTooLarge
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.kafka.publisher import KafkaResultPublisher


async def test_an_oversized_result_is_refused_before_sending() -> None:
    publisher = KafkaResultPublisher("results", KafkaConnection("127.0.0.1:1"), 1024)
    result = ChapterEmbedded(
        event_id=uuid.uuid4(),
        novel_id="n",
        chapter_id="c",
        version=1,
        model="m",
        dimension=256,
        pipeline_version="pv",
        chunks=(ChunkVector(chunk_no=0, text="字" * 100, vector=tuple([0.0625] * 256)),),
    )
    with pytest.raises(ResultTooLarge, match="SCRIBE_MAX_RESULT_BYTES") as caught:
        await publisher.publish(result)
    assert caught.value.retriable is False


def test_timeouts_follow_the_size_limit_and_the_slowest_rate() -> None:
    from prefect_bridge.chunking import ChunkingPolicy
    from prefect_bridge.timeouts import timeouts_for

    policy = ChunkingPolicy()
    big = timeouts_for(2 * 1024 * 1024, policy, min_chunks_per_second=1.0)
    # 2 MiB of CJK ~ 699k tokens ~ 2,255 chunks of 310 new tokens: twice that in seconds
    assert 4400 < big.embed < 4600
    assert big.flow > big.chunk + big.embed + big.publish
    faster = timeouts_for(2 * 1024 * 1024, policy, min_chunks_per_second=2.0)
    assert faster.embed == pytest.approx(big.embed / 2)
    small = timeouts_for(10_000, policy, min_chunks_per_second=1.0)
    assert (small.chunk, small.embed) == (30.0, 60.0)  # floors
    pinned = timeouts_for(2 * 1024 * 1024, policy, 1.0, embed_override=2.5)
    assert pinned.embed == 2.5
    assert pinned.flow == pytest.approx(pinned.chunk + 2.5 + pinned.publish + 60.0)


def test_the_embed_timeout_setting_reaches_the_flow_timeouts() -> None:
    from streams.settings import Settings
    from streams.wiring import flow_timeouts

    derived = flow_timeouts(Settings(_env_file=None))  # type: ignore[call-arg]
    pinned = flow_timeouts(Settings(_env_file=None, embed_timeout_seconds=3))  # type: ignore[call-arg]
    assert derived.embed >= 60.0 and pinned.embed == 3.0
    assert pinned.flow == pytest.approx(derived.flow - derived.embed + 3.0)


async def test_a_timed_out_embed_task_returns_at_its_timeout_not_when_the_model_does() -> None:
    """A hung model must not turn the task's timeout into a hang: the thread is abandoned."""
    import threading
    import time

    from prefect.utilities.timeout import timeout_async

    from prefect_bridge.chunking import ChunkingPolicy
    from prefect_bridge.embedding import HashingEmbedder
    from prefect_bridge.runtime import FlowRuntime, configure
    from prefect_bridge.tasks import embed_chunks
    from tests.fakes import InMemoryPublisher

    release = threading.Event()

    class HungEmbedder(HashingEmbedder):
        def embed_passages(self, texts: list[str]) -> list[list[float]]:
            release.wait(30)
            return super().embed_passages(texts)

    configure(lambda: FlowRuntime(HungEmbedder(), InMemoryPublisher(), ChunkingPolicy(), 10_000))
    began = time.monotonic()
    try:
        # timeout_async is what Prefect wraps a task with timeout_seconds in
        with pytest.raises(TimeoutError), timeout_async(0.3):
            await embed_chunks.fn(["悟空"])
        assert time.monotonic() - began < 5
    finally:
        release.set()


async def test_tasks_retry_only_errors_that_say_so() -> None:
    """Called the way Prefect's async task engine does, inside a running event loop."""
    from prefect.states import Failed
    from prefect.task_engine import TaskRunTimeoutError

    from prefect_bridge.tasks import retry_unless_permanent
    from schemas import PublishError

    assert retry_unless_permanent(None, None, Failed(data=PublishError("broker away")))
    assert retry_unless_permanent(None, None, Failed(data=TaskRunTimeoutError("slow")))
    assert retry_unless_permanent(None, None, Failed(data=ConnectionError("reset")))
    assert not retry_unless_permanent(None, None, Failed(data=ResultTooLarge("too big")))


def test_the_embed_timeout_allows_for_the_runs_sharing_the_model() -> None:
    """Runs take turns on one model: each may take as many times as long as alone."""
    from prefect_bridge.chunking import ChunkingPolicy
    from prefect_bridge.timeouts import timeouts_for
    from streams.settings import Settings
    from streams.wiring import flow_timeouts

    policy = ChunkingPolicy()
    alone = timeouts_for(2 * 1024 * 1024, policy, 1.0)
    shared = timeouts_for(2 * 1024 * 1024, policy, 1.0, runs_sharing_model=3)
    assert shared.embed == pytest.approx(3 * alone.embed)
    assert shared.flow == pytest.approx(alone.flow + 2 * alone.embed)
    one = flow_timeouts(Settings(_env_file=None, runner_limit=1))  # type: ignore[call-arg]
    three = flow_timeouts(Settings(_env_file=None, runner_limit=3))  # type: ignore[call-arg]
    assert three.embed == pytest.approx(3 * one.embed)


async def test_a_timed_out_embed_task_stops_taking_turns_on_the_shared_model() -> None:
    """The abandoned thread of a timed-out chapter must not keep the model from the others."""
    import asyncio
    import time

    from prefect.utilities.timeout import timeout_async

    from prefect_bridge.chunking import ChunkingPolicy
    from prefect_bridge.embedding import HashingEmbedder
    from prefect_bridge.fair_embedding import FairEmbedder
    from prefect_bridge.runtime import FlowRuntime, configure
    from prefect_bridge.tasks import embed_chunks
    from tests.fakes import InMemoryPublisher

    calls: list[int] = []

    class SlowEmbedder(HashingEmbedder):
        def embed_passages(self, texts: list[str]) -> list[list[float]]:
            calls.append(len(texts))
            time.sleep(0.02)
            return super().embed_passages(texts)

    shared = FairEmbedder(SlowEmbedder(), batch_size=1)
    configure(lambda: FlowRuntime(shared, InMemoryPublisher(), ChunkingPolicy(), 10_000))
    with pytest.raises(TimeoutError), timeout_async(0.2):
        await embed_chunks.fn([f"chunk {i}" for i in range(500)])
    await asyncio.sleep(0.2)  # at most the batch in progress finishes
    stopped_at = len(calls)
    await asyncio.sleep(0.3)
    assert len(calls) == stopped_at < 500

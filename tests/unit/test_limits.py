"""Size limits: result messages are checked before they reach Kafka."""

from __future__ import annotations

import uuid

import pytest

from prefect_bridge.publisher import KafkaResultPublisher
from schemas import ChapterEmbedded, ChunkVector, ResultTooLarge


async def test_an_oversized_result_is_refused_before_sending() -> None:
    publisher = KafkaResultPublisher("results", {"bootstrap_servers": "127.0.0.1:1"}, 1024)
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


def test_tasks_retry_only_errors_that_say_so() -> None:
    from types import SimpleNamespace

    from prefect_bridge.flow import retry_unless_permanent
    from schemas import PublishError

    def failed_with(exc: Exception) -> object:
        def result() -> None:
            raise exc

        return SimpleNamespace(result=result)

    assert retry_unless_permanent(None, None, failed_with(PublishError("broker away")))
    assert retry_unless_permanent(None, None, failed_with(TimeoutError("slow")))
    assert not retry_unless_permanent(None, None, failed_with(ResultTooLarge("too big")))

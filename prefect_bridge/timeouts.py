"""Timeouts of the processing flow, derived from the size limit and the embedder's speed.

A run must never hang, and must never be cut short while doing honest work: the largest
chapter allowed (``max_text_bytes``) at the slowest embedding rate we accept
(``min_chunks_per_second``) bounds every step, with a factor of two to spare.

The runs of one runner share its model (``runs_sharing_model``, the runner's limit):
they take turns one batch at a time (:mod:`prefect_bridge.fair_embedding`), so a
chapter gets at least its share of the model and its embed step takes at most that
many times as long as alone; the embed timeout allows for it. (Before turns, a chapter
waited for whole chapters ahead of it, just as long in the worst case.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prefect_bridge.chunking import ChunkingPolicy

#: UTF-8 bytes per token in the worst case: CJK text, ~1 token per 3-byte character.
BYTES_PER_TOKEN = 3


@dataclass(frozen=True)
class Timeouts:
    """Seconds allowed to each task and to the whole flow run."""

    chunk: float
    embed: float
    publish: float
    flow: float


def timeouts_for(
    max_text_bytes: int,
    policy: ChunkingPolicy,
    min_chunks_per_second: float,
    embed_override: float | None = None,
    runs_sharing_model: int = 1,
) -> Timeouts:
    """Timeouts for the largest chapter allowed at the slowest accepted embedding rate.

    ``embed_override`` replaces the derived embed timeout (and the flow's share of it):
    for a model whose speed the rate cannot describe, or to see a timeout happen.
    ``runs_sharing_model`` multiplies the derived embed timeout (see the module docstring).
    """
    tokens = max_text_bytes / BYTES_PER_TOKEN
    stride = max(1, policy.target_tokens - policy.overlap_tokens)
    chunks = math.ceil(tokens / stride)
    chunk = max(30.0, 0.02 * chunks * 2)  # tokenizer calls: ~ms per chunk
    embed = max(60.0, 2 * chunks / min_chunks_per_second) * max(1, runs_sharing_model)
    if embed_override is not None:
        embed = embed_override
    publish = 120.0  # a broker round trip, with the producer's own retries inside
    return Timeouts(chunk=chunk, embed=embed, publish=publish, flow=chunk + embed + publish + 60.0)

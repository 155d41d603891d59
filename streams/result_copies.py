"""What a resink re-publishes: copies of results, each saying where it was copied from.

A resink re-publishes the live index's results to the results topic it reads. The live
index holds the results addressed to no collection (the worker's) and those addressed to
the live collection (the copies a rebuild made of its predecessor's). Without knowing
which messages are copies of which, the next full resink re-sends an original *and* its
copy, the one after that three of each, and so on (defect 10 in RELIABILITY.md). So each
copy names its original in headers, and a replay leaves out a copy whose original it
re-sends itself: the original is selected and lies inside the replay's range. A copy
whose original retention has taken (or that a replay does not select) is re-sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from schemas import ChapterEmbedded, parse_result
from schemas.dead_letters import Headers

H_COPY_PARTITION = "scribe.copy_of.partition"
H_COPY_OFFSET = "scribe.copy_of.offset"
#: The collection the original addressed; empty for none (the live index at the time).
H_COPY_TARGET = "scribe.copy_of.target"


@dataclass(frozen=True)
class CopyOf:
    """The position, in the results topic, and the address of the result a copy repeats."""

    partition: int
    offset: int
    target: str | None

    def headers(self) -> Headers:
        """The headers a copy is published with."""
        return [
            (H_COPY_PARTITION, str(self.partition).encode()),
            (H_COPY_OFFSET, str(self.offset).encode()),
            (H_COPY_TARGET, (self.target or "").encode()),
        ]

    @classmethod
    def from_headers(cls, headers: Headers) -> CopyOf | None:
        """The original a message repeats, or ``None`` for an original (or unreadable)."""
        h = {k: v for k, v in headers}
        try:
            partition = int(h[H_COPY_PARTITION])
            offset = int(h[H_COPY_OFFSET])
            target = h[H_COPY_TARGET].decode()
        except (KeyError, ValueError, UnicodeDecodeError):
            return None
        return cls(partition=partition, offset=offset, target=target or None)

    def redundant(self, selected: tuple[str | None, ...], starts: Mapping[int, int]) -> bool:
        """Whether a replay that re-sends the ``selected`` addresses from ``starts``
        (partition -> first offset it reads) re-sends this copy's original itself."""
        start = starts.get(self.partition)
        return self.target in selected and start is not None and self.offset >= start


@dataclass(frozen=True)
class Resend:
    """One result to re-publish: its bytes, and the address its original had."""

    value: bytes
    original_target: str | None


def resend(
    value: bytes, *, live: str, target: str | None, model: str | None, dimension: int
) -> Resend | None:
    """The message to re-publish for one result, or ``None`` to leave it out.

    Kept: results of the live index (addressed to no collection, or to ``live``), of the
    current ``model`` (or, when it is unknown, of the index's ``dimension``); they are
    addressed to ``target``, the rebuild's collection (``None`` in place). Left out:
    other rebuilds' results and embeddings of another model (a reembed replaced them).
    An invalid message raises :class:`InvalidEvent` (the worker dead-lettered it).
    """
    result = parse_result(value)
    if result.target not in (None, live):
        return None
    if isinstance(result, ChapterEmbedded) and (
        result.model != model if model is not None else result.dimension != dimension
    ):
        return None
    if result.target != target:
        value = result.model_copy(update={"target": target}).model_dump_json().encode()
    return Resend(value=value, original_target=result.target)

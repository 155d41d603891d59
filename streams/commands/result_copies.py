"""What a resink re-publishes: copies of results, each naming the results it repeats.

A resink re-publishes the live index's results to the results topic it reads. The live
index holds the results addressed to no collection (the worker's) and those addressed to
the live collection (the copies a rebuild made of its predecessor's). Without knowing
which messages are copies of which, the next full resink re-sends an original *and* its
copy, the one after that three of each, and so on (defect 10 in RELIABILITY.md).

So each copy names its ancestry in a header: the message it was copied from, that
message's own source, and so on (nearest first, at most :data:`MAX_CHAIN`), each with
its position in the results topic and the collection it addressed. A replay leaves out a
copy when it has itself read, and selected, one of those ancestors: the same content was
re-sent already. An ancestor it has not read (taken by retention before or during the
replay, before its start, or addressed to a collection it does not select) does not
count, so the copy is re-sent: a duplicate is harmless, a missing result is not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from schemas import LIVE, ChapterEmbedded, Target, parse_result
from schemas.dead_letters import Headers

#: JSON list of ``[partition, offset, target]`` (target ``null``: no collection named).
H_COPY_OF = "scribe.copy_of"
#: Ancestors a copy names; a longer chain only grows when copies outlive their originals.
MAX_CHAIN = 8


@dataclass(frozen=True)
class Origin:
    """A result's position in the results topic and the collection it addressed."""

    partition: int
    offset: int
    target: Target


@dataclass(frozen=True)
class Ancestry:
    """The results a message repeats, nearest first (empty: an original)."""

    chain: tuple[Origin, ...] = ()

    def copied_as(self, source: Origin) -> Ancestry:
        """The ancestry of a copy of the message at ``source`` that had this ancestry."""
        return Ancestry((source, *self.chain)[:MAX_CHAIN])

    def headers(self) -> Headers:
        """The header a copy is published with."""
        value = [[o.partition, o.offset, o.target.wire] for o in self.chain]
        return [(H_COPY_OF, json.dumps(value, separators=(",", ":")).encode())]

    @classmethod
    def from_headers(cls, headers: Headers) -> Ancestry:
        """What a message's headers say it repeats; an original (or unreadable) names none."""
        raw = dict(headers).get(H_COPY_OF)
        if raw is None:
            return cls()
        try:
            chain = tuple(
                Origin(int(p), int(o), Target.of(str(t) if t is not None else None))
                for p, o, t in json.loads(raw)
            )
        except (ValueError, TypeError):
            return cls()
        return cls(chain[:MAX_CHAIN])

    def repeats_one_of(
        self, selected: tuple[Target, ...], read: Callable[[int, int], bool]
    ) -> bool:
        """Whether an ancestor addressed one of ``selected`` and ``read(partition, offset)``
        says this replay has read it: the same content went out with that ancestor."""
        return any(o.target in selected and read(o.partition, o.offset) for o in self.chain)


@dataclass(frozen=True)
class Resend:
    """One result to re-publish: its bytes, and the address its original had."""

    value: bytes
    original_target: Target


def resend(
    value: bytes, *, live: str, target: Target, model: str | None, dimension: int
) -> Resend | None:
    """The message to re-publish for one result, or ``None`` to leave it out.

    Kept: results of the live index (addressed to no collection, or to ``live``), of the
    current ``model`` (or, when it is unknown, of the index's ``dimension``); they are
    addressed to ``target``, the rebuild's collection (live in place). Left out:
    other rebuilds' results and embeddings of another model (a reembed replaced them).
    An invalid message raises :class:`InvalidEvent` (the worker dead-lettered it).
    """
    result = parse_result(value)
    if result.target not in (LIVE, Target(live)):
        return None
    if isinstance(result, ChapterEmbedded) and (
        result.model != model if model is not None else result.dimension != dimension
    ):
        return None
    if result.target != target:
        value = result.model_copy(update={"target": target}).model_dump_json().encode()
    return Resend(value=value, original_target=result.target)

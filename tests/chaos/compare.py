"""What the stack holds against what the oracle expects: a list of mismatches (pure)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from tests.chaos.oracle import Expected, Position, Row

MismatchKind = Literal[
    "missing",
    "extra",
    "duplicate",
    "wrong_version",
    "wrong_text",
    "wrong_row",
    "missing_dead_letter",
    "extra_dead_letter",
    "unexpected_recreation_letter",
]


@dataclass(frozen=True)
class DeadLetterSeen:
    """One message of the DLQ topic: the input position it came from (its origin, for a
    redriven copy) and whether it was parked as retriable (a failed flow run)."""

    position: Position
    retriable: bool
    #: A result parked as ``RecreatedBelowDeletion``; ``position`` is its input's origin.
    recreated: bool = False


@dataclass(frozen=True)
class Mismatch:
    """One difference; ``subject`` is a row id or a ``partition:offset``."""

    kind: MismatchKind
    subject: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind} {self.subject}" + (f": {self.detail}" if self.detail else "")


def compare(
    expected: Expected, rows: Sequence[Row], dead_letters: Iterable[DeadLetterSeen] = ()
) -> list[Mismatch]:
    """Every way ``rows`` and ``dead_letters`` differ from ``expected``, sorted.

    Rows: each expected id exactly once with the expected version and text; nothing else.
    Dead letters: the invalid inputs, each at least once (at-least-once delivery may park
    one twice); retriable letters (failed runs, redriven later) are not input errors and
    are ignored. A result parked because its write can never win must be one the oracle
    allows (``may_park``); whether it is parked depends on timing, so none is required.
    """
    out: list[Mismatch] = []
    counts = Counter(row.id for row in rows)
    out += [Mismatch("duplicate", rid, f"{n} rows") for rid, n in counts.items() if n > 1]
    actual = {row.id: row for row in rows}
    for rid, want in expected.rows.items():
        got = actual.get(rid)
        if got is None:
            out.append(Mismatch("missing", rid, f"v{want.version}"))
            continue
        if got.version != want.version:
            out.append(Mismatch("wrong_version", rid, f"v{got.version}, expected v{want.version}"))
        if got.text != want.text:
            out.append(Mismatch("wrong_text", rid, f"{_clip(got.text)} != {_clip(want.text)}"))
        if (got.novel_id, got.chapter_id, got.chunk_no) != (
            want.novel_id,
            want.chapter_id,
            want.chunk_no,
        ):
            out.append(
                Mismatch(
                    "wrong_row",
                    rid,
                    f"fields {got.novel_id}/{got.chapter_id}#{got.chunk_no} disagree with the id",
                )
            )
    out += [
        Mismatch("extra", rid, f"v{row.version}")
        for rid, row in actual.items()
        if rid not in expected.rows
    ]
    letters = list(dead_letters)
    recreated = {letter.position for letter in letters if letter.recreated}
    out += [Mismatch("unexpected_recreation_letter", str(p)) for p in recreated - expected.may_park]
    parked = {p.position for p in letters if not p.retriable and not p.recreated}
    out += [Mismatch("missing_dead_letter", str(p)) for p in expected.dead_letters - parked]
    out += [Mismatch("extra_dead_letter", str(p)) for p in parked - expected.dead_letters]
    return sorted(out, key=lambda m: (m.kind, m.subject))


def _clip(text: str, width: int = 24) -> str:
    return repr(text if len(text) <= width else text[:width] + "…")

"""compare(): every kind of difference between a stack's index and the oracle's."""

from __future__ import annotations

from dataclasses import replace

from tests.chaos.compare import DeadLetterSeen, Mismatch, compare
from tests.chaos.oracle import Expected, Position, Row


def row(rid: str, version: int = 1, text: str = "t") -> Row:
    novel, chapter, chunk = rid.split(":")
    return Row(rid, novel, chapter, version, int(chunk), text)


EXPECTED = Expected(
    rows={r.id: r for r in (row("n:c1:0"), row("n:c1:1"), row("n:c2:0", 2, "u"))},
    chapters={("n", "c1"): 1, ("n", "c2"): 2},
    dead_letters=frozenset({Position(0, 4), Position(1, 0)}),
)
PARKED = [DeadLetterSeen(Position(0, 4), False), DeadLetterSeen(Position(1, 0), False)]


def test_an_exact_index_has_no_mismatch() -> None:
    assert compare(EXPECTED, list(EXPECTED.rows.values()), PARKED) == []


def test_each_kind_of_row_difference_is_named() -> None:
    actual = [
        row("n:c1:0"),
        row("n:c1:0"),  # twice
        # n:c1:1 missing
        row("n:c2:0", 1, "u"),  # older version
        row("n:c3:0"),  # deleted chapter left behind
    ]
    assert compare(EXPECTED, actual, PARKED) == [
        Mismatch("duplicate", "n:c1:0", "2 rows"),
        Mismatch("extra", "n:c3:0", "v1"),
        Mismatch("missing", "n:c1:1", "v1"),
        Mismatch("wrong_version", "n:c2:0", "v1, expected v2"),
    ]


def test_a_wrong_text_and_fields_that_disagree_with_the_id_are_named() -> None:
    actual = [
        row("n:c1:0", text="stale"),
        Row("n:c1:1", "n", "c1", 1, 7, "t"),
        row("n:c2:0", 2, "u"),
    ]
    found = compare(EXPECTED, actual, PARKED)
    assert [(m.kind, m.subject) for m in found] == [
        ("wrong_row", "n:c1:1"),
        ("wrong_text", "n:c1:0"),
    ]
    assert "'stale' != 't'" in str(found[1])


def test_dead_letters_compare_as_a_set_of_invalid_inputs() -> None:
    parked = [
        DeadLetterSeen(Position(0, 4), False),
        DeadLetterSeen(Position(0, 4), False),  # parked twice after a crash: fine
        DeadLetterSeen(Position(0, 9), True),  # a failed run, retriable: not an input error
        DeadLetterSeen(Position(2, 3), False),
    ]
    assert compare(EXPECTED, list(EXPECTED.rows.values()), parked) == [
        Mismatch("extra_dead_letter", "2:3"),
        Mismatch("missing_dead_letter", "1:0"),
    ]


def test_a_parked_result_that_can_never_win_is_allowed_only_where_the_oracle_says() -> None:
    allowed = replace(EXPECTED, may_park=frozenset({Position(0, 7)}))
    parked = [
        *PARKED,
        DeadLetterSeen(Position(0, 7), False, recreated=True),
        DeadLetterSeen(Position(0, 8), False, recreated=True),
    ]
    assert compare(allowed, list(EXPECTED.rows.values()), parked) == [
        Mismatch("unexpected_recreation_letter", "0:8")
    ]
    assert compare(allowed, list(EXPECTED.rows.values()), PARKED) == []  # none is required

"""The oracle on hand-written histories: what "correct" means, case by case."""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from prefect_bridge.chunking import ChunkingPolicy, chunk_text, estimate_tokens
from tests.chaos.oracle import Expected, Logged, Position, Row, expected_index

#: Small budgets, so that a sentence or two makes a chunk and texts give several rows.
POLICY = ChunkingPolicy(target_tokens=12, max_tokens=16, overlap_tokens=2)
TEXT_1 = "孙悟空大闹天宫。玉帝请来如来佛祖。佛祖压他在五行山下。"
TEXT_2 = "唐僧路过五行山。揭去佛祖的帖子。悟空拜他为师，一同西行。"
TEXT_3 = "悟空借来芭蕉扇。"


@dataclass
class Log:
    """A hand-written log: messages get consecutive offsets in one partition (by default)."""

    partition: int = 0
    messages: list[Logged] = field(default_factory=list)

    def _append(
        self, key: bytes | None, value: bytes, redrive_of: Position | None = None
    ) -> Logged:
        offset = sum(1 for m in self.messages if m.position.partition == self.partition)
        logged = Logged(Position(self.partition, offset), key, value, redrive_of)
        self.messages.append(logged)
        return logged

    def event(self, novel: str, key: str | None = "", **fields: Any) -> Logged:
        body = {
            "event_id": str(fields.pop("event_id", uuid.uuid4())),
            "schema_version": 1,
            "novel_id": novel,
            "version": 1,
            "occurred_at": "2026-11-28T12:00:00Z",
            **fields,
        }
        raw = json.dumps(body, ensure_ascii=False).encode()
        return self._append(novel.encode() if key == "" else _enc(key), raw)

    def write(self, novel: str, chapter: str, version: int, text: str, **kw: Any) -> Logged:
        return self.event(
            novel,
            event_type="chapter.updated" if version > 1 else "chapter.created",
            chapter_id=chapter,
            version=version,
            title="t",
            text=text,
            **kw,
        )

    def delete(self, novel: str, chapter: str, version: int, **kw: Any) -> Logged:
        return self.event(
            novel, event_type="chapter.deleted", chapter_id=chapter, version=version, **kw
        )

    def delete_novel(self, novel: str, **kw: Any) -> Logged:
        return self.event(novel, event_type="novel.deleted", **kw)

    def raw(self, key: bytes | None, value: bytes) -> Logged:
        return self._append(key, value)

    def resend(self, message: Logged) -> Logged:
        """The producer sends the same bytes again (a retry, an at-least-once producer)."""
        return self._append(message.key, message.value)

    def redrive(self, message: Logged) -> Logged:
        """``scribe dlq redrive``: a copy at the end of the log that keeps its origin."""
        return self._append(message.key, message.value, redrive_of=message.origin)

    def oracle(self, max_text_bytes: int = 2 * 1024 * 1024) -> Expected:
        return expected_index(self.messages, POLICY, estimate_tokens, max_text_bytes)


def _enc(key: str | None) -> bytes | None:
    return None if key is None else key.encode()


def rows_of(novel: str, chapter: str, version: int, text: str) -> dict[str, Row]:
    """The rows a chapter at ``version`` with ``text`` must have, from the chunker itself."""
    chunks = chunk_text(text, POLICY, estimate_tokens)
    return {
        f"{novel}:{chapter}:{c.chunk_no}": Row(
            f"{novel}:{chapter}:{c.chunk_no}", novel, chapter, version, c.chunk_no, c.text
        )
        for c in chunks
    }


def test_a_created_chapter_is_its_chunks() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    expected = log.oracle()
    assert len(expected.rows) > 1  # the small policy really splits
    assert expected.rows == rows_of("xyj", "c1", 1, TEXT_1)
    assert expected.chapters == {("xyj", "c1"): 1}
    assert expected.dead_letters == frozenset()


def test_the_newest_version_wins_whatever_the_log_order() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    log.write("xyj", "c1", 3, TEXT_3)
    log.write("xyj", "c1", 2, TEXT_2)  # late, older
    assert log.oracle().rows == rows_of("xyj", "c1", 3, TEXT_3)


def test_a_shorter_newer_version_leaves_no_chunk_of_the_older() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1 + TEXT_2)
    log.write("xyj", "c1", 2, TEXT_3)
    expected = log.oracle()
    assert expected.rows == rows_of("xyj", "c1", 2, TEXT_3)
    assert list(expected.rows) == ["xyj:c1:0"]


def test_a_resent_duplicate_changes_nothing_even_after_a_newer_version() -> None:
    log = Log()
    first = log.write("xyj", "c1", 1, TEXT_1)
    log.resend(first)
    log.write("xyj", "c1", 2, TEXT_2)
    log.resend(first)
    assert log.oracle().rows == rows_of("xyj", "c1", 2, TEXT_2)


def test_an_event_id_seen_before_is_ignored_even_with_other_content() -> None:
    log = Log()
    same = uuid.uuid4()
    log.write("xyj", "c1", 1, TEXT_1, event_id=same)
    log.write("xyj", "c1", 2, TEXT_2, event_id=same)
    assert log.oracle().rows == rows_of("xyj", "c1", 1, TEXT_1)


def test_an_event_id_counts_from_its_first_valid_message() -> None:
    log = Log()
    same = uuid.uuid4()
    bad = log.write("xyj", "c1", 1, TEXT_1, event_id=same, key="other")
    log.write("xyj", "c1", 1, TEXT_1, event_id=same)
    expected = log.oracle()
    assert expected.rows == rows_of("xyj", "c1", 1, TEXT_1)
    assert expected.dead_letters == {bad.position}


@pytest.mark.parametrize("delete_first", [True, False])
def test_at_equal_versions_a_delete_beats_a_write_in_either_order(delete_first: bool) -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    if delete_first:
        log.delete("xyj", "c1", 2)
        log.write("xyj", "c1", 2, TEXT_2)
    else:
        log.write("xyj", "c1", 2, TEXT_2)
        log.delete("xyj", "c1", 2)
    expected = log.oracle()
    assert expected.rows == {}
    assert expected.chapters == {}


def test_a_delete_beats_an_older_write_logged_after_it() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    log.write("xyj", "c1", 3, TEXT_3)
    log.delete("xyj", "c1", 3)
    log.write("xyj", "c1", 2, TEXT_2)  # an update with a lower version after the delete
    assert log.oracle().rows == {}


def test_a_write_after_a_delete_at_a_version_not_above_it_may_be_parked() -> None:
    log = Log()
    before = log.write("xyj", "c1", 1, TEXT_1)
    log.delete("xyj", "c1", 3)
    again = log.write("xyj", "c1", 1, TEXT_1)  # re-created, numbering restarted
    equal = log.write("xyj", "c1", 3, TEXT_3)
    above = log.write("xyj", "c1", 4, TEXT_3)
    log.delete_novel("xyj")
    fresh = log.write("xyj", "c1", 1, TEXT_1)  # a new incarnation of the novel
    expected = log.oracle()
    assert expected.may_park == {again.position, equal.position}
    assert before.position not in expected.may_park
    assert above.position not in expected.may_park and fresh.position not in expected.may_park
    assert expected.rows == rows_of("xyj", "c1", 1, TEXT_1)


def test_a_newer_write_after_a_delete_brings_the_chapter_back() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    log.delete("xyj", "c1", 2)
    log.write("xyj", "c1", 3, TEXT_3)
    assert log.oracle().rows == rows_of("xyj", "c1", 3, TEXT_3)


def test_deleting_a_chapter_never_created_removes_nothing_and_beats_older_writes() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    log.delete("xyj", "c9", 2)
    log.write("xyj", "c9", 1, TEXT_2)  # older than the delete: stays deleted
    log.write("xyj", "c8", 2, TEXT_2)
    log.delete("xyj", "c7", 1)
    log.write("xyj", "c7", 2, TEXT_3)  # newer than the delete: live
    expected = log.oracle()
    assert expected.rows == {
        **rows_of("xyj", "c1", 1, TEXT_1),
        **rows_of("xyj", "c8", 2, TEXT_2),
        **rows_of("xyj", "c7", 2, TEXT_3),
    }


def test_a_novel_deletion_removes_everything_logged_before_it() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    log.write("xyj", "c2", 5, TEXT_2)
    log.write("hlm", "c1", 1, TEXT_3)  # another novel, same partition
    log.delete_novel("xyj")
    expected = log.oracle()
    assert expected.rows == rows_of("hlm", "c1", 1, TEXT_3)
    assert expected.chapters == {("hlm", "c1"): 1}


def test_a_novel_written_again_after_its_deletion_has_only_what_came_after() -> None:
    log = Log()
    log.write("xyj", "c1", 3, TEXT_1)
    log.write("xyj", "c2", 1, TEXT_2)
    log.delete_novel("xyj")
    log.write("xyj", "c1", 1, TEXT_3)  # versions start again at 1
    expected = log.oracle()
    assert expected.rows == rows_of("xyj", "c1", 1, TEXT_3)
    assert expected.chapters == {("xyj", "c1"): 1}


def test_only_the_last_novel_deletion_counts() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    log.delete_novel("xyj")
    log.write("xyj", "c2", 1, TEXT_2)
    log.delete_novel("xyj")
    log.write("xyj", "c3", 1, TEXT_3)
    assert log.oracle().rows == rows_of("xyj", "c3", 1, TEXT_3)


def test_a_resent_novel_deletion_does_not_delete_again() -> None:
    log = Log()
    deletion = log.delete_novel("xyj")
    log.write("xyj", "c1", 1, TEXT_1)
    log.resend(deletion)  # same event id: a duplicate, not a new deletion
    assert log.oracle().rows == rows_of("xyj", "c1", 1, TEXT_1)


def test_a_resent_chapter_deletion_does_not_delete_the_recreated_chapter() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    deletion = log.delete("xyj", "c1", 2)
    log.delete_novel("xyj")
    log.write("xyj", "c1", 1, TEXT_3)
    log.resend(deletion)
    assert log.oracle().rows == rows_of("xyj", "c1", 1, TEXT_3)


def test_a_chapter_with_empty_text_is_live_with_no_rows() -> None:
    log = Log()
    log.write("xyj", "c1", 1, TEXT_1)
    log.write("xyj", "c1", 2, "")
    expected = log.oracle()
    assert expected.rows == {}
    assert expected.chapters == {("xyj", "c1"): 2}


def test_invalid_messages_are_dead_lettered_and_have_no_effect() -> None:
    log = Log()
    good = json.loads(log.write("xyj", "c1", 1, TEXT_1).value)
    bad = [
        log.raw(b"xyj", b'{"event_id": '),  # not JSON
        log.raw(b"xyj", b"\xff\xfe" + json.dumps(good).encode()),  # not UTF-8
        log.raw(b"xyj", b"[1, 2]"),  # JSON, not an object
        log.event("xyj", event_type="chapter.archived", chapter_id="c1", version=2),
        log.event(
            "xyj",
            event_type="chapter.updated",
            chapter_id="c1",
            version=2,
            title="t",
            text=TEXT_2,
            schema_version=2,
        ),  # newer schema
        log.event(
            "xyj", event_type="chapter.updated", chapter_id="c1", version=3, title="t"
        ),  # no text
        log.event(
            "xyj", event_type="chapter.updated", chapter_id="c:1", version=4, title="t", text=TEXT_2
        ),  # an id with a separator
        log.write("xyj", "c1", 5, TEXT_2, key="hlm"),  # wrong key
        log.write("xyj", "c1", 6, "长" * 400),  # 1200 bytes: over the limit below
        log.delete("xyj", "c1", 7, key="xyj-other"),
        log.delete_novel("xyj", key="nope"),
    ]
    expected = log.oracle(max_text_bytes=1000)
    assert expected.rows == rows_of("xyj", "c1", 1, TEXT_1)
    assert expected.dead_letters == {m.position for m in bad}


def test_a_message_without_a_key_is_dead_lettered() -> None:
    log = Log()
    keyless = log.write("xyj", "c1", 1, TEXT_1, key=None)
    expected = log.oracle()
    assert expected.rows == {}
    assert expected.dead_letters == {keyless.position}


def test_a_redriven_copy_changes_nothing_and_an_invalid_one_is_parked_at_its_origin() -> None:
    log = Log()
    valid = log.write("xyj", "c1", 1, TEXT_1)
    invalid = log.raw(b"xyj", b"not json")
    log.delete_novel("xyj")
    log.write("xyj", "c2", 1, TEXT_2)
    log.redrive(valid)
    log.redrive(invalid)
    expected = log.oracle()
    assert expected.rows == rows_of("xyj", "c2", 1, TEXT_2)
    assert expected.dead_letters == {invalid.position}


def test_a_redriven_event_is_ordered_at_its_origin_not_at_the_end() -> None:
    # Only the copy is left (say the original was compacted away): it still sorts before
    # the novel deletion that followed the original, so it must not come back.
    log = Log()
    log.raw(b"xyj", b"placeholder for the original at offset 0")
    log.delete_novel("xyj")
    copy = Logged(Position(0, 2), b"xyj", Log().write("xyj", "c1", 1, TEXT_1).value, Position(0, 0))
    expected = expected_index([*log.messages[1:], copy], POLICY, estimate_tokens)
    assert expected.rows == {}


def test_the_index_is_a_function_of_the_log_not_of_the_order_it_is_read_in() -> None:
    a, b = Log(partition=0), Log(partition=1)
    for log, novel in ((a, "xyj"), (b, "hlm")):
        log.write(novel, "c1", 1, TEXT_1)
        log.write(novel, "c1", 3, TEXT_3)
        log.delete(novel, "c2", 1)
        log.write(novel, "c2", 2, TEXT_2)
        log.delete_novel(novel)
        log.write(novel, "c3", 2, TEXT_2)
        log.write(novel, "c3", 1, TEXT_1)
        log.raw(novel.encode(), b"{")
    messages = a.messages + b.messages
    reference = expected_index(messages, POLICY, estimate_tokens)
    for seed in range(5):
        shuffled = list(messages)
        random.Random(seed).shuffle(shuffled)
        assert expected_index(shuffled, POLICY, estimate_tokens) == reference
    assert set(reference.chapters) == {("xyj", "c3"), ("hlm", "c3")}
    assert reference.dead_letters == {Position(0, 7), Position(1, 7)}


def test_a_novel_whose_events_span_partitions_has_no_correct_index() -> None:
    a, b = Log(partition=0), Log(partition=1)
    a.write("xyj", "c1", 1, TEXT_1)
    b.write("xyj", "c2", 1, TEXT_2)
    with pytest.raises(ValueError, match="partitions 0 and 1"):
        expected_index(a.messages + b.messages, POLICY, estimate_tokens)


def test_describe_lists_rows_per_chapter_and_the_dead_letters() -> None:
    log = Log()
    log.write("xyj", "c1", 2, TEXT_1)
    log.write("xyj", "c2", 1, "")
    log.raw(b"xyj", b"{")
    text = log.oracle().describe()
    n = len(rows_of("xyj", "c1", 2, TEXT_1))
    assert f"expected index: {n} rows, 2 live chapters, 1 dead letters" in text
    assert f"c1 v2: {n} rows" in text and "c2 v1: 0 rows" in text
    assert "dead letters: 0:2" in text

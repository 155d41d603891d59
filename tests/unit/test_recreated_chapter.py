"""A chapter re-created after its deletion at a version that cannot win (issue 19, hole 9).

The platform numbers versions per chapter revision; newest wins. A chapter deleted at
version 6 and created again later in the log at version 1 (a platform that restarted its
numbering) was skipped for ever as "older than 6", with nothing but an info line. Its
result is now dead-lettered (not retriable) with a reason naming the deleted version; a
result logged *before* the deletion (a replay, a redrive of history) is skipped quietly
as before.
"""

from __future__ import annotations

from agents.decisions import ChapterState, Skip, decide_result
from agents.ledger import Ledger
from schemas import RecreatedBelowDeletion
from tests.unit import test_agents
from tests.unit.test_agents import Sink, embedded, msg, removed, rows_of

ledger = test_agents.ledger  # the fixtures: memory and SQLite ledgers, a sink on each
sink = test_agents.sink


def deleted_at(version: int, offset: int | None) -> ChapterState:
    return ChapterState("n1", "c1", version, True, deleted_offset=offset)


def test_an_embedding_logged_after_the_deletion_below_its_version_is_refused() -> None:
    for version in (1, 6):
        decision = decide_result(embedded(version, 1, offset=30), deleted_at(6, 20), None)
        assert isinstance(decision, Skip) and decision.dead_letter
        assert "deleted at version 6" in decision.reason
        assert f"version {version}" in decision.reason and "above 6" in decision.reason


def test_history_before_the_deletion_is_skipped_quietly() -> None:
    for chapter in (deleted_at(6, 20), deleted_at(6, None)):
        decision = decide_result(embedded(1, 1, offset=10), chapter, None)
        assert isinstance(decision, Skip) and not decision.dead_letter
    unknown = decide_result(embedded(1, 1, offset=30), deleted_at(6, None), None)
    assert isinstance(unknown, Skip) and not unknown.dead_letter  # no position: cannot tell
    newer = decide_result(embedded(7, 1, offset=30), deleted_at(6, 20), None)
    assert not isinstance(newer, Skip)


async def test_the_sink_dead_letters_a_recreation_below_the_deletion(
    sink: Sink, ledger: Ledger
) -> None:
    agent, store, dlq = sink
    await agent.handle_batch([msg(embedded(5, 2, offset=10)), msg(removed(6, offset=20))])
    state = await ledger.chapter("n1", "c1")
    assert state is not None and state.deleted and state.deleted_offset == 20

    await agent.handle_batch([msg(embedded(1, 2, offset=30))])  # re-created at v1
    [letter] = dlq.items
    assert isinstance(letter.error, RecreatedBelowDeletion)
    assert not letter.error.retriable
    assert "deleted at version 6" in letter.error.reason
    assert rows_of(store) == []

    await agent.handle_batch([msg(embedded(5, 2, offset=10))])  # history: quiet skip
    assert len(dlq.items) == 1 and rows_of(store) == []

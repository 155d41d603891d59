"""run() against fake stacks: what it drives, in which order, and how it judges."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from prefect_bridge.chunking import ChunkingPolicy, estimate_tokens
from tests.chaos.__main__ import main
from tests.chaos.compare import DeadLetterSeen
from tests.chaos.history import Fault, Operator, Produce, generate_faults, generate_history
from tests.chaos.oracle import Logged, Position, Row, expected_index
from tests.chaos.run import run, simulate_log

POLICY = ChunkingPolicy(target_tokens=60, max_tokens=80, overlap_tokens=8)


@dataclass
class PerfectStack:
    """Logs like Kafka and holds exactly what the log calls for (the oracle's answer)."""

    partitions: int = 3
    calls: list[str] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)
    lose_a_row: bool = False

    async def produce(self, messages: Sequence[Produce]) -> list[Position]:
        self.calls.append(f"produce {len(messages)}")
        everything = simulate_log([*self._sent, *messages], self.partitions)
        self.log = everything
        return [m.position for m in everything[-len(messages) :]]

    @property
    def _sent(self) -> list[Produce]:
        return [Produce("create", m.key, m.value, "") for m in self.log]

    async def operator(self, action: Operator) -> None:
        self.calls.append(action.describe())

    async def fault(self, fault: Fault) -> None:
        self.calls.append(fault.describe())

    async def drain(self) -> None:
        self.calls.append("drain")

    async def read_index(self) -> list[Row]:
        expected = expected_index(self.log, POLICY, estimate_tokens, 16 * 1024)
        rows = sorted(expected.rows.values(), key=lambda r: r.id)
        return rows[1:] if self.lose_a_row else rows

    async def read_dlq(self) -> list[DeadLetterSeen]:
        expected = expected_index(self.log, POLICY, estimate_tokens, 16 * 1024)
        return [DeadLetterSeen(p, False) for p in expected.dead_letters]


async def test_a_stack_that_holds_the_log_passes() -> None:
    stack = PerfectStack()
    report = await run(21, 80, 5, stack, POLICY, estimate_tokens)
    assert report.ok, report.describe()
    assert report.expected.rows and report.expected.dead_letters
    history = generate_history(21, 80)
    assert len(stack.log) == len(history.messages())
    assert [m.value for m in stack.log] == [m.value for m in history.messages()]
    assert stack.calls[-1] == "drain"


async def test_faults_and_operator_actions_happen_at_their_step_in_order() -> None:
    stack = PerfectStack()
    await run(21, 80, 5, stack, POLICY, estimate_tokens)
    history, schedule = generate_history(21, 80), generate_faults(21, 80, 5)
    want: list[str] = []
    pending = 0
    for step, op in enumerate(history.ops):
        due = schedule.due(step)
        if (due or isinstance(op, Operator)) and pending:
            want.append(f"produce {pending}")
            pending = 0
        want += [f.describe() for f in due]
        if isinstance(op, Operator):
            want.append(op.describe())
        else:
            pending += 1
    if pending:
        want.append(f"produce {pending}")
    want += [f.describe() for f in schedule.due(80)]
    assert stack.calls == [*want, "drain"]


async def test_a_lost_row_fails_the_run_and_the_report_says_how_to_replay_it() -> None:
    report = await run(21, 80, 5, PerfectStack(lose_a_row=True), POLICY, estimate_tokens)
    assert not report.ok
    assert [m.kind for m in report.mismatches] == ["missing"]
    text = report.describe()
    assert text.startswith("chaos run seed=21 ops=80 faults=5: 1 MISMATCHES")
    assert "history seed=21" in text and "faults seed=21" in text


def test_simulated_offsets_are_consecutive_per_partition_and_keyed_alike() -> None:
    messages = [m for m in generate_history(2, 60).messages() if m.kind != "wrong_key"]
    log = simulate_log(messages, 4)
    by_novel: dict[bytes | None, set[int]] = {}
    for m in log:
        by_novel.setdefault(m.key, set()).add(m.position.partition)
    assert all(len(parts) == 1 for parts in by_novel.values())
    for partition in range(4):
        offsets = [m.position.offset for m in log if m.position.partition == partition]
        assert offsets == list(range(len(offsets)))


def test_the_dry_run_prints_history_faults_and_expected_index(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert (
        main(["--seed", "4", "--ops", "25", "--faults", "2", "--dry-run", "--estimate-tokens"]) == 0
    )
    out = capsys.readouterr().out
    assert "history seed=4 ops=25" in out
    assert "faults seed=4 count=2" in out
    assert "expected index:" in out

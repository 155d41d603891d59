"""A chaos run: drive a stack through a seeded history and faults, then hold it to the oracle.

The stack is anything that implements :class:`Driver`; :func:`run` is the whole test.
``python -m tests.chaos --dry-run`` uses :func:`simulate_log` instead of a stack, to show
a history, its faults and the index the oracle expects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka.partitioner import DefaultPartitioner

from prefect_bridge.chunking import ChunkingPolicy, TokenCounter
from tests.chaos.compare import DeadLetterSeen, Mismatch, compare
from tests.chaos.history import (
    Fault,
    FaultSchedule,
    History,
    Operator,
    Produce,
    generate_faults,
    generate_history,
)
from tests.chaos.oracle import Expected, Logged, Position, Row, expected_index


class Driver(Protocol):
    """The stack under test, as a chaos run sees it.

    It runs with ``SCRIBE_MAX_TEXT_BYTES`` = ``History.max_text_bytes`` and the chunking
    policy and tokenizer that :func:`run` is given.
    """

    async def produce(self, messages: Sequence[Produce]) -> list[Position]:
        """Produce to ``novel-events`` in order, each acknowledged (acks=all) before the
        next; return where each one was logged."""
        ...

    async def operator(self, action: Operator) -> None:
        """Run the command: ``dlq_redrive`` is ``scribe dlq redrive --all --any-error``,
        ``replay_resink`` ``scribe replay --resink``, ``replay_reembed_novel``
        ``scribe replay --reembed --novel ID``, ``replay_reembed_full``
        ``scribe replay --reembed``. It may return while the command still runs beside
        the stack; :meth:`drain` waits for it.

        With ``action.trim_first``, first delete the records of ``novel-events`` that
        retention may take while the stack runs on: below the workers' committed offset
        and below the event of every flow run not yet ended or whose failure is not yet
        reported (a run reads its event by position). The index must not change."""
        ...

    async def fault(self, fault: Fault) -> None:
        """Inject ``fault`` and return at once; the driver heals it by itself (SIGCONT
        after ``pause_s``; a killed process is started again, as its supervisor would)."""
        ...

    async def drain(self) -> None:
        """Return once every fault has healed and every operator command has finished,
        and the stack is quiet: no lag on the input and results topics, no flow run
        scheduled, pending or running, no retriable dead letter left un-redriven (an
        operator redrives failed runs), a full rebuild switched to."""
        ...

    async def read_index(self) -> list[Row]:
        """Every row behind the ``novel_chunks`` alias, duplicates included."""
        ...

    async def read_dlq(self) -> list[DeadLetterSeen]:
        """Every message of the DLQ topic, by the input position first logged (the
        ``scribe.origin.*`` headers of a redriven copy, else ``scribe.source.*``)."""
        ...


@dataclass(frozen=True)
class RunReport:
    """What a chaos run did and how the stack's index differs from the oracle's."""

    history: History
    faults: FaultSchedule
    expected: Expected
    mismatches: tuple[Mismatch, ...]

    @property
    def ok(self) -> bool:
        """No mismatch."""
        return not self.mismatches

    def describe(self) -> str:
        """Everything needed to read the failure and replay it (same seed, ops, faults)."""
        verdict = "OK" if self.ok else f"{len(self.mismatches)} MISMATCHES"
        parts = [
            f"chaos run seed={self.history.seed} ops={len(self.history.ops)} "
            f"faults={len(self.faults.faults)}: {verdict}",
            *(f"  {m}" for m in self.mismatches),
            self.history.describe(),
            self.faults.describe(),
            self.expected.describe(),
        ]
        return "\n".join(parts)


async def run(
    seed: int,
    ops: int,
    faults: int,
    stack: Driver,
    policy: ChunkingPolicy,
    count_tokens: TokenCounter,
    pace_s: float = 0.0,
) -> RunReport:
    """Produce the seeded history into ``stack`` with its operator actions and faults,
    drain, and compare the index and DLQ with what the oracle expects of the log.

    Messages between two operator actions or faults go in one :meth:`Driver.produce`
    call; with ``pace_s`` each goes alone, ``pace_s`` seconds apart.
    """
    history = generate_history(seed, ops)
    schedule = generate_faults(seed, ops, faults)
    log: list[Logged] = []
    batch: list[Produce] = []

    async def send() -> None:
        if batch:
            positions = await stack.produce(list(batch))
            log.extend(Logged(p, m.key, m.value) for p, m in zip(positions, batch, strict=True))
            batch.clear()

    for step, op in enumerate(history.ops):
        due = schedule.due(step)
        if due or isinstance(op, Operator):
            await send()
        for fault in due:
            await stack.fault(fault)
        if isinstance(op, Operator):
            await stack.operator(op)
        else:
            batch.append(op)
        if pace_s:
            await send()
            await asyncio.sleep(pace_s)
    await send()
    for fault in schedule.due(len(history.ops)):
        await stack.fault(fault)
    await stack.drain()
    expected = expected_index(log, policy, count_tokens, history.max_text_bytes)
    mismatches = compare(expected, await stack.read_index(), await stack.read_dlq())
    return RunReport(history, schedule, expected, tuple(mismatches))


def simulate_log(messages: Sequence[Produce], partitions: int) -> list[Logged]:
    """Where Kafka would log ``messages``: the Java client's partitioner (murmur2 of the
    key), consecutive offsets per partition from 0."""
    partitioner = DefaultPartitioner()
    everyone = list(range(partitions))
    next_offset = [0] * partitions
    log = []
    for message in messages:
        partition = int(partitioner(message.key, everyone, everyone)) if message.key else 0
        log.append(Logged(Position(partition, next_offset[partition]), message.key, message.value))
        next_offset[partition] += 1
    return log

"""Seeded histories of ``novel-events`` and fault schedules for a chaos run (pure).

One seed gives one history and one fault schedule, exactly, on any machine and in any
process (only ``random.Random(seed)`` draws; nothing iterates a set of strings). Chapter
texts are short windows of the bundled sample (西游记, chapters 1-10).

A history is a list of operations: messages to produce (valid events of a few novels:
creates, in- and out-of-order updates, re-sent duplicates, chapter deletes, deletes of
chapters never created, novel deletes and re-creates; and invalid messages of every kind)
and operator actions (``scribe dlq redrive``, ``scribe replay --resink``, ``--reembed
--novel``, a full ``--reembed``). Half the redrives come right after a retention trim of
``novel-events`` (drawn apart, so that seeds keep their histories otherwise); after one,
a full re-embed is drawn as a full resink. :meth:`History.describe` prints it all, so a
failed run can be read and replayed.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from importlib.resources import files
from typing import Any, Literal, get_args

ProduceKind = Literal[
    "create",
    "recreate",
    "update",
    "update_out_of_order",
    "late_update",
    "duplicate",
    "chapter_delete",
    "delete_never_created",
    "novel_delete",
    "bad_json",
    "bad_utf8",
    "wrong_key",
    "unknown_type",
    "newer_schema",
    "too_large",
    "null_value",
    "keyless",
    "huge_number",
]
OperatorAction = Literal[
    "dlq_redrive", "replay_resink", "replay_reembed_novel", "replay_reembed_full"
]
FaultKind = Literal["kill9", "pause", "kafka_freeze", "failpoint"]

PRODUCE_KINDS: tuple[ProduceKind, ...] = get_args(ProduceKind)
OPERATOR_ACTIONS: tuple[OperatorAction, ...] = get_args(OperatorAction)
INVALID_KINDS: tuple[ProduceKind, ...] = PRODUCE_KINDS[PRODUCE_KINDS.index("bad_json") :]

NOVELS = ("xyj-a", "xyj-b", "xyj-c")
#: ``SCRIBE_MAX_TEXT_BYTES`` the stack under test must run with (``too_large`` exceeds it).
MAX_TEXT_BYTES = 16 * 1024
KILL_TARGETS = ("worker", "runner")
#: Where a process armed with ``SCRIBE_FAILPOINTS`` may crash (schemas/failpoints.py):
#: between two writes of the worker's sink or chapter agent, or of a runner's flow.
FAILPOINT_TARGETS: dict[str, tuple[str, ...]] = {
    "worker": (
        "sink.after_write",
        "sink.after_flush",
        "sink.between_ledger_writes",
        "sink.after_ledger",
        "chapter.after_submit",
    ),
    "runner": ("flow.after_embed", "flow.after_publish"),
}
PAUSE_TARGETS = ("prefect", "milvus", "postgres", "kafka")
#: Probability that a ``dlq_redrive`` comes right after a retention trim of ``novel-events``.
TRIM_BEFORE_REDRIVE = 0.5
_EPOCH = datetime(2026, 11, 28, 12, tzinfo=UTC)

#: Relative weight of each operation; an impossible one (nothing to update yet) is
#: replaced by a create.
_WEIGHTS: dict[ProduceKind | OperatorAction, float] = {
    "create": 12,
    "recreate": 4,
    "update": 12,
    "update_out_of_order": 5,
    "late_update": 5,
    "duplicate": 7,
    "chapter_delete": 5,
    "delete_never_created": 2,
    "novel_delete": 2,
    "bad_json": 1,
    "bad_utf8": 1,
    "wrong_key": 1,
    "unknown_type": 1,
    "newer_schema": 1,
    "too_large": 1,
    "null_value": 1,
    "keyless": 1,
    "huge_number": 1,
    "dlq_redrive": 1.5,
    "replay_resink": 1,
    "replay_reembed_novel": 1,
    "replay_reembed_full": 0.5,
}


@dataclass(frozen=True)
class Produce:
    """One message to produce to ``novel-events``."""

    kind: ProduceKind
    key: bytes | None
    value: bytes | None
    note: str

    def describe(self) -> str:
        key = self.key.decode("utf-8", "replace") if self.key is not None else "-"
        return f"produce {self.kind:<20} key={key:<8} {self.note}"


@dataclass(frozen=True)
class Operator:
    """One operator action, between two messages."""

    action: OperatorAction
    novel_id: str | None = None
    #: Before the command, delete ``novel-events``' records below every position still
    #: needed (retention, shortened as far as it fairly can be: see ``Driver.operator``).
    trim_first: bool = False

    def describe(self) -> str:
        trim = "retention trim, then " if self.trim_first else ""
        return f"operator {trim}{self.action}" + (f" {self.novel_id}" if self.novel_id else "")


Op = Produce | Operator


@dataclass(frozen=True)
class History:
    """What to produce and do, in order."""

    seed: int
    ops: tuple[Op, ...]
    novels: tuple[str, ...] = NOVELS
    max_text_bytes: int = MAX_TEXT_BYTES

    def messages(self) -> list[Produce]:
        """The messages alone, in order."""
        return [op for op in self.ops if isinstance(op, Produce)]

    def describe(self) -> str:
        head = (
            f"history seed={self.seed} ops={len(self.ops)} novels={','.join(self.novels)} "
            f"(stack: SCRIBE_MAX_TEXT_BYTES={self.max_text_bytes})"
        )
        return "\n".join([head, *(f"  #{i:<4} {op.describe()}" for i, op in enumerate(self.ops))])


@dataclass(frozen=True)
class Fault:
    """Before operation ``at_op`` (``== len(ops)``: during the drain), hurt ``target``.

    ``kill9``: SIGKILL the worker or the runner (its supervisor starts it again).
    ``pause``: SIGSTOP a service for ``pause_s`` seconds, then SIGCONT.
    ``kafka_freeze``: SIGSTOP every Kafka node at once for ``pause_s`` seconds (the whole
    cluster away, as a network cut would leave it), then SIGCONT.
    ``failpoint``: restart the worker or the runner with the failpoint ``point`` armed; it
    crashes there at its next pass, and its supervisor starts it again, disarmed.
    """

    at_op: int
    kind: FaultKind
    target: str
    pause_s: float = 0.0
    point: str = ""

    def describe(self) -> str:
        if self.kind == "kill9":
            return f"before #{self.at_op}: kill -9 {self.target}"
        if self.kind == "failpoint":
            return f"before #{self.at_op}: arm {self.point} in {self.target}"
        if self.kind == "kafka_freeze":
            return f"before #{self.at_op}: SIGSTOP every Kafka node for {self.pause_s:.1f}s"
        return f"before #{self.at_op}: SIGSTOP {self.target} for {self.pause_s:.1f}s"


@dataclass(frozen=True)
class FaultSchedule:
    """The faults of one run, in order."""

    seed: int
    ops: int
    faults: tuple[Fault, ...]

    def due(self, step: int) -> list[Fault]:
        """The faults to inject before operation ``step``."""
        return [f for f in self.faults if f.at_op == step]

    def describe(self) -> str:
        head = f"faults seed={self.seed} count={len(self.faults)}"
        return "\n".join([head, *(f"  {f.describe()}" for f in self.faults)])


@cache
def sample_text() -> str:
    """The bundled sample novel (package data of ``streams.samples``)."""
    return files("streams.samples").joinpath("xiyouji-1-10.txt").read_text(encoding="utf-8")


def generate_faults(seed: int, ops: int, count: int) -> FaultSchedule:
    """``count`` faults at random moments of a history of ``ops`` operations."""
    rng = random.Random(f"faults:{seed}")
    faults = []
    for _ in range(count):
        at = rng.randint(0, ops)
        roll = rng.random()
        if roll < 0.2:
            faults.append(Fault(at, "kill9", rng.choice(KILL_TARGETS)))
        elif roll < 0.4:
            target = rng.choice(KILL_TARGETS)
            point = rng.choice(FAILPOINT_TARGETS[target])
            faults.append(Fault(at, "failpoint", target, point=point))
        elif roll < 0.55:
            faults.append(Fault(at, "kafka_freeze", "kafka", round(rng.uniform(30, 90), 1)))
        else:
            pause = round(rng.uniform(10, 40), 1)
            faults.append(Fault(at, "pause", rng.choice(PAUSE_TARGETS), pause))
    return FaultSchedule(seed, ops, tuple(sorted(faults, key=lambda f: f.at_op)))


@dataclass
class _Chapter:
    written: set[int] = field(default_factory=set)  # versions written (one text each)
    held: list[int] = field(default_factory=list)  # versions skipped, to be written late
    deleted_at: int = 0

    @property
    def created(self) -> bool:
        return bool(self.written)

    def next_version(self) -> int:
        return max([*self.written, *self.held, self.deleted_at]) + 1


@dataclass
class _Novel:
    id: str
    chapters: dict[str, _Chapter] = field(default_factory=dict)
    retired: list[str] = field(default_factory=list)  # chapter ids of before a deletion
    numbered: int = 0
    deletions: int = 0

    def new_chapter_id(self) -> str:
        self.numbered += 1
        return f"c{self.numbered:02d}"


class _Generator:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(f"history:{seed}")
        #: Draws the retention trims alone, so that they change no other draw of a seed.
        self.trim_rng = random.Random(f"trim:{seed}")
        self.trimmed = False
        self.novels = [_Novel(n) for n in NOVELS]
        self.produced: list[tuple[int, Produce]] = []
        self.full_replay_done = False
        self.step = 0
        #: Operations that must come next, on a given novel (a full rebuild's companions).
        self.forced: list[tuple[ProduceKind, _Novel]] = []

    # -- helpers -------------------------------------------------------------------------

    def _event(self, novel: str, event_type: str, version: int, **fields: Any) -> dict[str, Any]:
        return {
            "event_id": str(uuid.UUID(int=self.rng.getrandbits(128), version=4)),
            "event_type": event_type,
            "schema_version": 1,
            "novel_id": novel,
            "version": version,
            "occurred_at": (_EPOCH + timedelta(seconds=self.step)).isoformat(),
            **fields,
        }

    def _text(self) -> str:
        sample = sample_text()
        length = self.rng.randint(40, 900)
        start = self.rng.randrange(len(sample) - length)
        return sample[start : start + length].strip() or "空。"

    def _msg(self, kind: ProduceKind, novel: str, body: dict[str, Any], note: str) -> Produce:
        value = json.dumps(body, ensure_ascii=False).encode()
        return Produce(kind, novel.encode(), value, f"{note} id={body['event_id'][:8]}")

    def _write(self, kind: ProduceKind, novel: _Novel, chapter_id: str, version: int) -> Produce:
        chapter = novel.chapters.setdefault(chapter_id, _Chapter())
        chapter.written.add(version)
        text = self._text()
        event_type = "chapter.created" if kind in ("create", "recreate") else "chapter.updated"
        body = self._event(
            novel.id, event_type, version, chapter_id=chapter_id, title=f"第{version}稿", text=text
        )
        return self._msg(kind, novel.id, body, f"{novel.id}/{chapter_id} v{version} {len(text)}ch")

    def _pick(self, options: list[Any]) -> Any:
        return options[self.rng.randrange(len(options))] if options else None

    # -- operations ----------------------------------------------------------------------

    def op(self, kind: ProduceKind | OperatorAction, on: _Novel | None = None) -> Op | None:
        novel: _Novel = on if on is not None else self._pick(self.novels)
        created = [c for c, s in novel.chapters.items() if s.created]
        if kind == "create":
            fresh = [c for c, s in novel.chapters.items() if not s.created]
            chapter_id = self._pick(fresh) if fresh and self.rng.random() < 0.3 else None
            return self._write("create", novel, chapter_id or novel.new_chapter_id(), 1)
        if kind == "recreate":
            again = [c for c in novel.retired if c not in novel.chapters]
            return self._write("recreate", novel, again[0], 1) if again else None
        if kind == "update" and created:
            chapter_id = self._pick(created)
            return self._write(
                "update", novel, chapter_id, novel.chapters[chapter_id].next_version()
            )
        if kind == "update_out_of_order" and created:
            chapter_id = self._pick(created)
            chapter = novel.chapters[chapter_id]
            skipped = chapter.next_version()
            chapter.held.append(skipped)
            return self._write("update_out_of_order", novel, chapter_id, skipped + 1)
        if kind == "late_update":
            late = [c for c in created if novel.chapters[c].held]
            if not late:
                return None
            chapter_id = self._pick(late)
            version = novel.chapters[chapter_id].held.pop(0)
            return self._write("late_update", novel, chapter_id, version)
        if kind == "chapter_delete" and created:
            chapter_id = self._pick(created)
            chapter = novel.chapters[chapter_id]
            newest = max(chapter.written)
            version = newest if self.rng.random() < 0.5 else chapter.next_version()
            chapter.deleted_at = max(chapter.deleted_at, version)
            body = self._event(novel.id, "chapter.deleted", version, chapter_id=chapter_id)
            return self._msg(kind, novel.id, body, f"{novel.id}/{chapter_id} v{version}")
        if kind == "delete_never_created":
            chapter_id = novel.new_chapter_id()
            version = self.rng.randint(1, 3)
            novel.chapters[chapter_id] = _Chapter(deleted_at=version)
            body = self._event(novel.id, "chapter.deleted", version, chapter_id=chapter_id)
            return self._msg(kind, novel.id, body, f"{novel.id}/{chapter_id} v{version}")
        if kind == "novel_delete" and created:
            novel.deletions += 1
            novel.retired += [c for c in novel.chapters if c not in novel.retired]
            novel.chapters.clear()
            body = self._event(novel.id, "novel.deleted", novel.deletions)
            return self._msg(kind, novel.id, body, f"{novel.id} (deletion {novel.deletions})")
        if kind == "duplicate" and self.produced:
            step, original = self._pick(self.produced[-10:])
            return Produce("duplicate", original.key, original.value, f"re-send of #{step}")
        if kind in INVALID_KINDS:
            return self._invalid(kind, novel)
        if kind == "replay_reembed_novel":
            return Operator("replay_reembed_novel", novel.id)
        if kind == "replay_reembed_full" and self.trimmed:
            # A full re-embed rebuilds from the log's start: what retention took, it lacks
            # (it refuses to switch, RebuildIncomplete). A full resink needs only results.
            return Operator("replay_resink")
        if kind == "replay_reembed_full":
            if self.full_replay_done:
                return None
            self.full_replay_done = True
            # A full rebuild runs in the background while the history goes on: delete one
            # novel and write two of its chapters again right away, so that the deletion
            # and the re-creation land while the rebuild copies and catches up, around its
            # switch (where rows must carry their source position: RELIABILITY.md, defect 20).
            alive = [n for n in self.novels if any(c.created for c in n.chapters.values())]
            if alive:
                target = self._pick(alive)
                self.forced = [("novel_delete", target), ("recreate", target), ("recreate", target)]
            return Operator("replay_reembed_full")
        if kind == "dlq_redrive":
            # Half the redrives come after retention took what it may: the originals of
            # the letters are gone, and the redrive must send the DLQ's copies.
            trim = self.trim_rng.random() < TRIM_BEFORE_REDRIVE
            self.trimmed = self.trimmed or trim
            return Operator(kind, trim_first=trim)
        if kind == "replay_resink":
            return Operator(kind)
        return None

    def _invalid(self, kind: ProduceKind, novel: _Novel) -> Produce:
        chapter_id = novel.new_chapter_id()  # never written: a valid reading would show
        body = self._event(
            novel.id, "chapter.created", 1, chapter_id=chapter_id, title="坏", text=self._text()
        )
        where = f"{novel.id}/{chapter_id}"
        if kind == "bad_json":
            raw = json.dumps(body, ensure_ascii=False).encode()
            return Produce(kind, novel.id.encode(), raw[: len(raw) // 2], f"{where} cut in half")
        if kind == "bad_utf8":
            raw = json.dumps(body, ensure_ascii=False).encode()
            return Produce(kind, novel.id.encode(), b"\xff" + raw, f"{where} 0xff first")
        if kind == "null_value":  # a tombstone: once a TypeError that stopped the partition
            return Produce(kind, novel.id.encode(), None, f"{novel.id} null value")
        if kind == "keyless":  # valid, but on any partition: out of its novel's order
            msg = self._msg(kind, novel.id, body, f"{where} without a key")
            return Produce(kind, None, msg.value, msg.note)
        if kind == "huge_number":  # once a ValueError from json.loads that stopped the partition
            body["version"] = "@@"
            raw = json.dumps(body, ensure_ascii=False).encode().replace(b'"@@"', b"9" * 5000)
            return Produce(kind, novel.id.encode(), raw, f"{where} version of 5,000 digits")
        if kind == "wrong_key":
            other = self._pick([n.id for n in self.novels if n.id != novel.id])
            msg = self._msg(kind, novel.id, body, f"{where} keyed {other}")
            return Produce(kind, str(other).encode(), msg.value, msg.note)
        if kind == "unknown_type":
            body["event_type"] = "chapter.archived"
        elif kind == "newer_schema":
            body["schema_version"] = 2
        else:
            assert kind == "too_large"
            body["text"] = "长" * (MAX_TEXT_BYTES // 3 + 1)
        return self._msg(kind, novel.id, body, where)


def generate_history(seed: int, ops: int) -> History:
    """A history of ``ops`` operations over :data:`NOVELS`, the same for the same seed."""
    gen = _Generator(seed)
    kinds = list(_WEIGHTS)
    weights = list(_WEIGHTS.values())
    out: list[Op] = []
    for step in range(ops):
        gen.step = step
        if gen.forced:
            forced, novel = gen.forced.pop(0)
            op = gen.op(forced, novel) or gen.op("create", novel)
        else:
            kind = gen.rng.choices(kinds, weights)[0] if step else "create"  # something first
            op = gen.op(kind) or gen.op("create")
        assert op is not None
        if isinstance(op, Produce):
            gen.produced.append((step, op))
        out.append(op)
    return History(seed, tuple(out))

"""The real :class:`tests.chaos.run.Driver`: the scaled-out stack of :mod:`tests.chaos.cluster`.

* ``produce``: one acks=all idempotent producer, each message acknowledged before the next;
* ``operator``: the real CLI (``python -m streams.cli ...``) in a subprocess, one command
  at a time in the background, in the order given, each retried (as an operator would)
  when it exits non-zero;
* ``fault``: ``kill -9`` of a worker or a runner with all its descendants (a host crash:
  the process worker's flow-run processes die too), started again a second later as its
  supervisor would; ``SIGSTOP`` of Prefect, Milvus, PostgreSQL or one Kafka node (every
  process of it) and ``SIGCONT`` after the pause. A kill hits instance a or b by the
  parity of its step, Kafka pauses go round the three nodes;
* ``fault`` also freezes the whole Kafka cluster (``SIGSTOP`` of every node at once), and
  arms a failpoint (:mod:`schemas.failpoints`) in a worker or a runner: the process is
  killed and started again with ``SCRIBE_FAILPOINTS`` set, crashes at that point's next
  pass (a runner's flow-run processes at each pass with probability 1/2), and is started
  again disarmed by its supervisor, or after ``FAILPOINT_WINDOW`` seconds;
* a supervisor restarts a worker or runner that exits by itself (a fail-stop, exit 70;
  a failpoint's crash, exit 86) and writes it in the journal;
* ``drain``: faults healed, commands done, no lag of the workers' group on the input and
  results topics, no flow run of the deployment unfinished, every retriable dead letter
  redriven (an operator's job), all of it unchanged for a few seconds;
* ``read_index``: every row behind the alias, straight from Milvus with pymilvus;
* ``read_dlq``: the DLQ topic with :func:`streams.commands.dlq.read_all`, by original position.

Nothing here imports Prefect's client: the Prefect API is read over HTTP, so this process
never binds Prefect's settings to this stack.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import RecordsToDelete

from prefect_bridge.chunking import ChunkingPolicy, TokenCounter
from schemas.dead_letters import H_ORIGIN_OFFSET, H_ORIGIN_PARTITION, H_REDRIVE
from schemas.failpoints import CRASH_EXIT
from schemas.failpoints import ENV as FAILPOINTS_ENV
from streams.adapters.kafka.client import admin_client, partitions_of
from streams.adapters.kafka.connection import KafkaConnection
from streams.commands.dlq import read_all
from streams.embedded.processes import ManagedProcess
from tests.chaos.cluster import ClusterStack, signal_tree
from tests.chaos.compare import DeadLetterSeen
from tests.chaos.history import Fault, Operator, Produce
from tests.chaos.oracle import Position, Row
from tests.chaos.run import RunReport, run

#: Flow-run states that are not final.
UNFINISHED = ("SCHEDULED", "PENDING", "RUNNING", "CANCELLING", "PAUSED")
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
#: Seconds the drained state must hold (no lag, no run unfinished, offsets unchanged).
QUIET_SECONDS = 8.0
#: Seconds before a killed process is started again.
RESTART_DELAY = 1.0
#: Seconds a runner stays armed when no run crashed it (its flow-run processes crash, not it).
FAILPOINT_WINDOW = 60.0
#: The worker's exit code when it stops without committing (``streams.app.EXIT_FAIL_STOP``;
#: not imported: that module imports Faust and Prefect).
EXIT_FAIL_STOP = 70
#: The tag on a run whose failure is reported (``prefect_bridge.unreported.REPORTED_TAG``;
#: not imported: that module imports Prefect).
REPORTED_TAG = "scribe:reported"
#: Attempts of one operator command.
COMMAND_ATTEMPTS = 3

_COMMANDS: dict[str, list[str]] = {
    "dlq_redrive": ["dlq", "redrive", "--all", "--any-error"],
    "replay_resink": ["replay", "--resink"],
    "replay_reembed_novel": ["replay", "--reembed", "--novel"],
    "replay_reembed_full": ["replay", "--reembed"],
}


@dataclass
class Quiet:
    """What :meth:`ClusterDriver.drain` last saw."""

    lag: int = -1
    unfinished: dict[str, int] = field(default_factory=dict)
    ends: dict[str, int] = field(default_factory=dict)

    @property
    def drained(self) -> bool:
        return self.lag == 0 and not any(self.unfinished.values())


class ClusterDriver:
    """Drives a :class:`ClusterStack` (see the module docstring)."""

    def __init__(
        self,
        stack: ClusterStack,
        say: Callable[[str], None] = print,
        drain_timeout: float = 900.0,
    ) -> None:
        self.stack = stack
        self.settings = stack.settings
        self.kafka = KafkaConnection.from_settings(stack.settings)
        self.say = say
        self.drain_timeout = drain_timeout
        #: Everything the driver did and saw, in order (printed with a failed run).
        self.journal: list[str] = []
        #: Faults injected, by ``kind target`` (``kill9 runner-b``, ``pause kafka-2``).
        self.injected: Counter[str] = Counter()
        #: Operator commands run, by action; and failed attempts.
        self.commands: Counter[str] = Counter()
        self.command_failures: list[str] = []
        #: Restarts of scribe processes that exited by themselves.
        self.unexpected_exits: list[str] = []
        #: Fail-stops (exit 70: a non-retriable error, redelivered after the restart).
        self.fail_stops: list[str] = []
        #: Crashes at an armed failpoint (exit 86), each followed by a disarmed restart.
        self.failpoint_crashes: list[str] = []
        self.drain_timed_out = False
        self.status_report: dict[str, Any] = {}
        self._producer: AIOKafkaProducer | None = None
        self._chain: asyncio.Task[None] | None = None
        self._heals: list[asyncio.Task[None]] = []
        self._paused_until: dict[str, float] = {}
        self._turns: Counter[str] = Counter()
        self._killed: set[str] = set()
        self._supervisor: asyncio.Task[None] | None = None
        self._began = time.monotonic()
        self._cli_runs = 0
        self._copies_seen: set[tuple[int, int, int]] = set()

    # -- helpers ---------------------------------------------------------------------------

    def note(self, text: str) -> None:
        line = f"[{time.monotonic() - self._began:7.1f}s] {text}"
        self.journal.append(line)
        self.say(line)

    def _ensure_supervisor(self) -> None:
        if self._supervisor is None or self._supervisor.done():
            self._supervisor = asyncio.create_task(self._supervise())

    async def _supervise(self) -> None:
        """Start again a worker or runner that exited by itself (compose ``restart:``)."""
        while True:
            for proc in self.stack.scribe_processes:
                if proc.name in self._killed or proc.proc is None:
                    continue
                code = proc.proc.poll()
                if code is not None:
                    what = f"{proc.name} exited by itself with {code}; restarting"
                    if code == CRASH_EXIT and proc.env.pop(FAILPOINTS_ENV, None):
                        what = f"{proc.name} crashed at its failpoint; restarting it disarmed"
                        self.failpoint_crashes.append(what)
                    elif code != EXIT_FAIL_STOP:  # a fail-stop is the design; a crash is not
                        self.unexpected_exits.append(what)
                    else:
                        self.fail_stops.append(what)
                    self.note(what + "\n" + proc.tail(15))
                    proc.proc = None
                    proc.start()
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        """Stop the producer and the background tasks (healing every pause first)."""
        for task in self._heals:
            task.cancel()
        for name in list(self._paused_until):
            signal_tree(self._target(name), signal.SIGCONT)
        if self._supervisor is not None:
            self._supervisor.cancel()
        if self._chain is not None:
            self._chain.cancel()
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    # -- produce ---------------------------------------------------------------------------

    async def produce(self, messages: Sequence[Produce]) -> list[Position]:
        self._ensure_supervisor()
        if self._producer is None:
            self._producer = AIOKafkaProducer(
                **self.kafka.client_config(),
                acks="all",
                enable_idempotence=True,
                request_timeout_ms=120_000,
                max_request_size=self.settings.max_result_bytes,
            )
            await self._producer.start()
        out = []
        for message in messages:
            sent = await self._producer.send_and_wait(
                self.settings.topic_events, value=message.value, key=message.key
            )
            out.append(Position(sent.partition, sent.offset))
        return out

    # -- operator actions ------------------------------------------------------------------

    async def operator(self, action: Operator) -> None:
        self._ensure_supervisor()
        argv = list(_COMMANDS[action.action])
        if action.novel_id:
            argv.append(action.novel_id)
        previous = self._chain

        async def after_previous() -> None:
            if previous is not None:
                await previous
            if action.trim_first:
                await self.trim_retention()
            await self.cli(argv, action.action)

        self._chain = asyncio.create_task(after_previous())
        await asyncio.sleep(0)

    async def cli(self, argv: list[str], what: str, limit_s: float = 900.0) -> str:
        """Run ``scribe argv`` against the stack (retried); return its stdout."""
        self.commands[what] += 1
        for attempt in range(1, COMMAND_ATTEMPTS + 1):
            self._cli_runs += 1
            log = self.stack.data / "logs" / f"cli-{self._cli_runs:03d}-{what}.log"
            self.note(f"scribe {' '.join(argv)} (attempt {attempt})")
            began = time.monotonic()
            with log.open("wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "streams.cli",
                    *argv,
                    env=self.stack.cli_env(),
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                )
                try:
                    out, _ = await asyncio.wait_for(proc.communicate(), limit_s)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
                    out = b""
            took = time.monotonic() - began
            if proc.returncode == 0:
                self.note(
                    f"scribe {argv[0]} {argv[1] if len(argv) > 1 else ''} done in {took:.0f}s"
                )
                return out.decode(errors="replace")
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-8:])
            failure = f"scribe {' '.join(argv)} exited {proc.returncode} after {took:.0f}s: {tail}"
            self.command_failures.append(failure)
            self.note(failure)
            await asyncio.sleep(5)
        return ""

    async def trim_retention(self) -> None:
        """Delete what retention may take from ``novel-events`` while the stack runs on
        (:meth:`tests.chaos.run.Driver.operator`); retried while a service is away."""
        s = self.settings
        for attempt in range(1, COMMAND_ATTEMPTS + 1):
            try:
                points, why = await self._trim_points()
                async with admin_client(self.kafka) as admin:
                    await admin.delete_records(
                        {
                            TopicPartition(s.topic_events, p): RecordsToDelete(offset)
                            for p, offset in points.items()
                            if offset > 0
                        }
                    )
            except Exception as exc:  # a fault is on: an operator would try again
                self.note(f"retention trim failed (attempt {attempt}): {exc!r}")
                await asyncio.sleep(10)
                continue
            self.commands["retention_trim"] += 1
            self.note(f"retention trim of {s.topic_events}: records below {points} deleted ({why})")
            return
        self.command_failures.append("retention trim failed three times")

    async def _trim_points(self) -> tuple[dict[int, int], str]:
        """Per partition of ``novel-events``: the workers' committed offset, lowered to the
        event of each run not yet ended, crashed, or failed without its report (the
        watchdog reads the event again to park it); and why, in words. The offsets are
        read first: a run below them was created before they were committed, so the runs
        read next show it."""
        s = self.settings
        async with admin_client(self.kafka) as admin:
            committed = await admin.list_consumer_group_offsets(s.app_id)
        points = {}
        for p in await partitions_of(self.kafka, s.topic_events):
            meta = committed.get(TopicPartition(s.topic_events, p))
            points[p] = meta.offset if meta is not None and meta.offset >= 0 else 0
        why = [f"committed {dict(points)}"]
        for state, source in await self._sources_still_needed():
            if source.get("topic") == s.topic_events and source.get("partition") in points:
                p, offset = int(source["partition"]), int(source["offset"])
                if offset < points[p]:
                    points[p] = offset
                    why.append(f"[{p}]@{offset} {state.lower()}")
        return points, ", ".join(why)

    async def _sources_still_needed(self) -> list[tuple[str, dict[str, Any]]]:
        """State and ``source`` parameter of every run of the deployment that may read its
        event again: unfinished, crashed, or failed and not yet reported."""
        states = [*UNFINISHED, "CRASHED", "FAILED"]
        out: list[tuple[str, dict[str, Any]]] = []
        async with httpx.AsyncClient(base_url=self.settings.prefect_url, timeout=30) as client:
            got = await client.get(f"/deployments/name/{self.settings.deployment}")
            got.raise_for_status()
            deployment = got.json()["id"]
            offset = 0
            while True:
                body = {
                    "deployments": {"id": {"any_": [deployment]}},
                    "flow_runs": {"state": {"type": {"any_": states}}},
                    "limit": 200,
                    "offset": offset,
                }
                page = await client.post("/flow_runs/filter", json=body)
                page.raise_for_status()
                runs = page.json()
                for r in runs:
                    state = str(r.get("state_type"))
                    if state == "FAILED" and REPORTED_TAG in (r.get("tags") or ()):
                        continue
                    source = (r.get("parameters") or {}).get("source")
                    if isinstance(source, dict):
                        out.append((state, source))
                if len(runs) < 200:
                    return out
                offset += 200

    # -- faults ----------------------------------------------------------------------------

    def _target(self, name: str) -> ManagedProcess:
        for proc in self.stack.scribe_processes:
            if proc.name == name:
                return proc
        return self.stack.service(name)

    def _pick(self, target: str, choices: Sequence[str]) -> str:
        turn = self._turns[target]
        self._turns[target] += 1
        return choices[turn % len(choices)]

    async def fault(self, fault: Fault) -> None:
        self._ensure_supervisor()
        if fault.kind == "kill9":
            names = [p.name for p in self.stack.scribe_processes if p.name.startswith(fault.target)]
            name = names[fault.at_op % len(names)]  # from the schedule: replays the same
            self.injected[f"kill9 {name}"] += 1
            self._heals.append(asyncio.create_task(self._kill_and_restart(name)))
            await asyncio.sleep(0)
            return
        if fault.kind == "failpoint":
            names = [p.name for p in self.stack.scribe_processes if p.name.startswith(fault.target)]
            name = names[fault.at_op % len(names)]
            self.injected[f"failpoint {fault.point} in {name}"] += 1
            point = fault.point if fault.target == "worker" else f"{fault.point}@0.5"
            self._heals.append(asyncio.create_task(self._arm(name, point)))
            await asyncio.sleep(0)
            return
        if fault.kind == "kafka_freeze":
            self.injected["freeze kafka (every node)"] += 1
            for broker in self.stack.brokers:
                self._pause(broker.process.name, fault.pause_s)
            return
        if fault.target == "kafka":
            name = self._pick("kafka", [b.process.name for b in self.stack.brokers])
        else:
            name = fault.target
        self.injected[f"pause {name}"] += 1
        self._pause(name, fault.pause_s)

    def _pause(self, name: str, seconds: float) -> None:
        proc = self._target(name)
        pids = signal_tree(proc, signal.SIGSTOP)
        until = time.monotonic() + seconds
        self._paused_until[name] = max(until, self._paused_until.get(name, 0.0))
        self.note(f"SIGSTOP {name} ({len(pids)} processes) for {seconds:.1f}s")
        self._heals.append(asyncio.create_task(self._resume(name, proc, until)))

    async def _arm(self, name: str, point: str) -> None:
        """Restart ``name`` with ``point`` armed; disarm it after the window if it is
        still armed (the supervisor disarms a process that crashed there itself)."""
        proc = self._target(name)
        proc.env[FAILPOINTS_ENV] = point
        await self._kill_and_restart(name, f"armed with {point}")
        await asyncio.sleep(FAILPOINT_WINDOW)
        if proc.env.pop(FAILPOINTS_ENV, None) is not None:
            await self._kill_and_restart(name, "disarmed")

    async def _resume(self, name: str, proc: ManagedProcess, until: float) -> None:
        await asyncio.sleep(max(0.0, until - time.monotonic()))
        if self._paused_until.get(name, 0.0) > time.monotonic():
            return  # paused again meanwhile: that pause's task resumes it
        self._paused_until.pop(name, None)
        pids = signal_tree(proc, signal.SIGCONT)
        self.note(f"SIGCONT {name} ({len(pids)} processes)")

    async def _kill_and_restart(self, name: str, how: str = "again") -> None:
        proc = self._target(name)
        self._killed.add(name)
        try:
            pids = signal_tree(proc, signal.SIGKILL)
            if proc.proc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(proc.proc.wait, 10)
            proc.proc = None
            self.note(f"kill -9 {name} ({len(pids)} processes)")
            await asyncio.sleep(RESTART_DELAY)
            proc.start()
            self.note(f"started {name} {how}")
        finally:
            self._killed.discard(name)

    # -- drain -----------------------------------------------------------------------------

    async def drain(self) -> None:
        self._ensure_supervisor()
        self.note("draining: waiting for faults to heal and commands to finish")
        await asyncio.gather(*self._heals)
        if self._chain is not None:
            await self._chain
        self.note("faults healed, commands done; waiting for the stack to be quiet")
        deadline = time.monotonic() + self.drain_timeout
        quiet_since: float | None = None
        seen = Quiet()
        last_report = 0.0
        while time.monotonic() < deadline:
            try:
                now = await self.quiet()
            except Exception as exc:  # a service still waking up
                self.note(f"drain check failed: {type(exc).__name__}: {exc}")
                quiet_since = None
                await asyncio.sleep(3)
                continue
            if now.drained:
                if await self.redrive_retriable():
                    quiet_since = None
                    continue
                if quiet_since is None or now.ends != seen.ends:
                    quiet_since = time.monotonic()
                elif time.monotonic() - quiet_since >= QUIET_SECONDS:
                    self.note(f"drained: {sum(now.ends.values())} messages in the topics")
                    return
            else:
                quiet_since = None
            if time.monotonic() - last_report > 30:
                last_report = time.monotonic()
                self.note(f"not drained yet: lag {now.lag}, unfinished runs {now.unfinished}")
            seen = now
            await asyncio.sleep(2)
        self.drain_timed_out = True
        self.note(f"drain timed out after {self.drain_timeout:.0f}s: {seen}")

    async def quiet(self) -> Quiet:
        """Lag of the workers' group and unfinished flow runs, now."""
        lag, ends = await self.group_lag()
        return Quiet(lag, await self.runs_by_state(UNFINISHED), ends)

    async def group_lag(self) -> tuple[int, dict[str, int]]:
        """Total lag of the workers' group on the input and results topics, and the end
        offsets per ``topic[partition]``."""
        s = self.settings
        async with admin_client(self.kafka) as admin:
            committed = await admin.list_consumer_group_offsets(s.app_id)
        consumer = AIOKafkaConsumer(**self.kafka.client_config(), group_id=None)
        await consumer.start()
        try:
            lag, ends_out = 0, {}
            for topic in (s.topic_events, s.topic_embeddings):
                tps = [TopicPartition(topic, p) for p in await partitions_of(self.kafka, topic)]
                ends = await consumer.end_offsets(tps) if tps else {}
                for tp in tps:
                    meta = committed.get(tp)
                    done = meta.offset if meta is not None and meta.offset >= 0 else 0
                    lag += max(0, ends[tp] - done)
                    ends_out[f"{topic}[{tp.partition}]"] = ends[tp]
            return lag, ends_out
        finally:
            await consumer.stop()

    async def runs_by_state(self, states: Sequence[str]) -> dict[str, int]:
        """Flow runs of the deployment per state type (Prefect's REST API)."""
        api = self.settings.prefect_url
        async with httpx.AsyncClient(base_url=api, timeout=30) as client:
            got = await client.get(f"/deployments/name/{self.settings.deployment}")
            got.raise_for_status()
            deployment = got.json()["id"]
            out = {}
            for state in states:
                body = {
                    "deployments": {"id": {"any_": [deployment]}},
                    "flow_runs": {"state": {"type": {"any_": [state]}}},
                }
                counted = await client.post("/flow_runs/count", json=body)
                counted.raise_for_status()
                out[state.lower()] = int(counted.json())
            if "CRASHED" not in states:
                # A crashed run is not done: a runner's watchdog reschedules it (before its
                # last attempt) or reports it and sets it Failed (prefect_bridge.recovery).
                body = {
                    "deployments": {"id": {"any_": [deployment]}},
                    "flow_runs": {"state": {"type": {"any_": ["CRASHED"]}}},
                }
                counted = await client.post("/flow_runs/count", json=body)
                counted.raise_for_status()
                out["crashed_to_act_on"] = int(counted.json())
            return out

    async def redrive_retriable(self) -> bool:
        """Redrive the retriable dead letters (failed runs) that no copy in the input topic
        redrives yet, as an operator would; whether there were any."""
        parked = await read_all(self.settings)
        letters = [p for p in parked if p.letter.retriable and p.letter.source is not None]
        if not letters:
            return False
        copies = await self._redrive_copies()
        todo = [
            p
            for p in letters
            if p.letter.source is not None
            and (p.letter.source.partition, p.letter.source.offset, p.letter.redrive + 1)
            not in copies
        ]
        if not todo:
            return False
        self.note(f"{len(todo)} retriable dead letters not redriven: redriving them")
        await self.cli(["dlq", "redrive", *(p.position for p in todo)], "drain_redrive")
        return True

    async def _redrive_copies(self) -> set[tuple[int, int, int]]:
        """``(origin partition, origin offset, redrive count)`` of every redriven copy in
        the input topic, and of every one seen before a retention trim took it."""
        s = self.settings
        consumer = AIOKafkaConsumer(
            **self.kafka.client_config(),
            group_id=None,
            enable_auto_commit=False,
            max_partition_fetch_bytes=s.max_result_bytes,
        )
        await consumer.start()
        try:
            tps = [
                TopicPartition(s.topic_events, p)
                for p in await partitions_of(self.kafka, s.topic_events)
            ]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            ends = await consumer.end_offsets(tps)
            out: set[tuple[int, int, int]] = set()
            remaining = {tp for tp in tps if ends[tp] > 0}
            while remaining:
                batches = await consumer.getmany(*remaining, timeout_ms=1000)
                for messages in batches.values():
                    for m in messages:
                        h = {k: v.decode(errors="replace") for k, v in m.headers or ()}
                        if H_ORIGIN_OFFSET in h:
                            out.add(
                                (
                                    int(h.get(H_ORIGIN_PARTITION, m.partition)),
                                    int(h[H_ORIGIN_OFFSET]),
                                    int(h.get(H_REDRIVE, "1")),
                                )
                            )
                for tp in list(remaining):
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            self._copies_seen |= out
            return set(self._copies_seen)
        finally:
            await consumer.stop()

    # -- reading the outcome ---------------------------------------------------------------

    async def read_index(self) -> list[Row]:
        def query() -> list[dict[str, Any]]:
            from pymilvus import MilvusClient

            # A channel of its own: pymilvus shares one per URI, and a shared channel the
            # server closed while idle ("too many pings") failed this read (seed 36 in CI).
            client = MilvusClient(uri=self.settings.milvus_url, dedicated=True)
            try:
                alias = self.settings.milvus_collection
                client.load_collection(alias)
                rows = client.query(
                    alias,
                    filter='id != ""',
                    output_fields=[
                        "id",
                        "novel_id",
                        "chapter_id",
                        "chapter_version",
                        "chunk_no",
                        "text",
                    ],
                    limit=16_384,
                    consistency_level="Strong",
                )
                return [dict(r) for r in rows]
            finally:
                client.close()

        rows: list[dict[str, Any]] = []
        for attempt in range(5):  # Milvus may be just back from a pause: its channel too
            try:
                rows = await asyncio.to_thread(query)
                break
            except Exception:
                if attempt == 4:
                    raise
                await asyncio.sleep(3)
        if len(rows) >= 16_384:
            raise AssertionError("the index holds more rows than one query reads")
        return [
            Row(
                str(r["id"]),
                str(r["novel_id"]),
                str(r["chapter_id"]),
                int(r["chapter_version"]),
                int(r["chunk_no"]),
                str(r["text"]),
            )
            for r in rows
        ]

    async def read_dlq(self) -> list[DeadLetterSeen]:
        parked = await read_all(self.settings)
        out = []
        for p in parked:
            source = p.letter.source
            if p.letter.error_class == "RecreatedBelowDeletion" and p.value is not None:
                origin = json.loads(p.value).get("source") or {}
                at = Position(int(origin.get("partition", -1)), int(origin.get("offset", -1)))
                out.append(DeadLetterSeen(at, False, recreated=True))
                continue
            if source is None or source.topic != self.settings.topic_events:
                out.append(DeadLetterSeen(Position(-1, p.offset), p.letter.retriable))
                continue
            out.append(
                DeadLetterSeen(Position(source.partition, source.offset), p.letter.retriable)
            )
        return out

    # -- the checks beside the index ---------------------------------------------------------

    async def final_problems(self) -> list[str]:
        """What is wrong with the stack besides its index: runs not in a final state, the
        drain's timeout, and what ``scribe status --json`` calls unhealthy (a grown DLQ
        is expected: the history's malformed events)."""
        problems = []
        if self.drain_timed_out:
            problems.append("the drain timed out (see the journal)")
        problems += [f"crash: {e.splitlines()[0]}" for e in self.unexpected_exits]
        problems += self.foreign_recoveries()
        unfinished = await self.runs_by_state(UNFINISHED)
        if any(unfinished.values()):
            problems.append(f"flow runs not in a final state: {unfinished}")
        # ``scribe status`` exits 1 when unhealthy: run it once, read its JSON whatever the code.
        status = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "streams.cli",
            "status",
            "--json",
            env=self.stack.cli_env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        raw, _ = await status.communicate()
        text = raw.decode(errors="replace")
        try:
            report: dict[str, Any] = json.loads(text[text.index("{") :])
        except ValueError:
            report = {}
        self.status_report = report
        for issue in report.get("problems", ["scribe status --json printed no report"]):
            if issue.startswith("dead-letter topic grew"):
                continue
            problems.append(f"scribe status: {issue}")
        return problems

    def foreign_recoveries(self) -> list[str]:
        """Runs a runner's watchdog rescheduled for a dead process of *another* host (host
        ids chaos-a, chaos-b): that process may be alive there, so this must not happen."""
        out = []
        for runner in self.stack.runners:
            here = runner.env.get("SCRIBE_HOST_ID", "")
            for line in runner.tail(100_000).splitlines():
                if "rescheduled orphaned flow run" not in line or "its process" not in line:
                    continue
                owner = line.split("its process ", 1)[1].split(" ", 1)[0]
                if ":" in owner and owner.rsplit(":", 1)[0] != here:
                    out.append(f"{runner.name} ({here}) rescheduled a run of {owner}: {line}")
        return out

    def summary(self) -> str:
        """Faults, commands and surprises of the run, for RELIABILITY.md and failures."""
        lines = [
            "faults injected: "
            + (", ".join(f"{k} x{n}" for k, n in sorted(self.injected.items())) or "none"),
            "commands: "
            + (", ".join(f"{k} x{n}" for k, n in sorted(self.commands.items())) or "none"),
        ]
        lines += [f"command failure: {f}" for f in self.command_failures]
        lines += [f"unexpected exit: {e.splitlines()[0]}" for e in self.unexpected_exits]
        lines += [f"fail-stop: {e.splitlines()[0]}" for e in self.fail_stops]
        lines += [f"failpoint: {e.splitlines()[0]}" for e in self.failpoint_crashes]
        return "\n".join(lines)

    def describe_journal(self) -> str:
        return "driver journal:\n" + "\n".join(f"  {line}" for line in self.journal)


@dataclass
class ChaosOutcome:
    """One chaos run on the cluster: the oracle's verdict and the checks beside it."""

    report: RunReport
    problems: list[str]
    summary: str
    journal: str
    seconds: float

    @property
    def ok(self) -> bool:
        """No mismatch with the oracle and nothing else wrong."""
        return self.report.ok and not self.problems

    def describe(self) -> str:
        """Everything needed to read a failure and replay it."""
        verdict = "PASSED" if self.ok else "FAILED"
        return "\n".join(
            [
                f"chaos run seed={self.report.history.seed} {verdict} in {self.seconds:.0f}s",
                *(f"  problem: {p}" for p in self.problems),
                self.summary,
                self.report.describe(),
                self.journal,
            ]
        )


def chaos_run(
    stack: ClusterStack,
    seed: int,
    ops: int,
    faults: int,
    count_tokens: TokenCounter,
    say: Callable[[str], None] = print,
    fresh: bool = True,
    pace_s: float = 1.5,
) -> ChaosOutcome:
    """One seeded run on ``stack`` (on a fresh tenant unless ``fresh`` is false: topics,
    group, alias and ledger of its own), with the chunking policy of the stack's settings.
    Messages go ``pace_s`` apart, so the faults land while the stack is busy."""
    if fresh:
        stack.new_tenant(say)
    began = time.monotonic()
    s = stack.settings  # streams.wiring.chunking_policy, without importing Prefect here
    policy = ChunkingPolicy(s.chunk_target_tokens, s.chunk_max_tokens, s.chunk_overlap_tokens)

    async def go() -> tuple[RunReport, list[str], ClusterDriver]:
        driver = ClusterDriver(stack, say)
        try:
            report = await run(seed, ops, faults, driver, policy, count_tokens, pace_s)
            problems = await driver.final_problems()
            return report, problems, driver
        finally:
            await driver.close()

    report, problems, driver = asyncio.run(go())
    return ChaosOutcome(
        report,
        problems,
        driver.summary(),
        driver.describe_journal(),
        time.monotonic() - began,
    )

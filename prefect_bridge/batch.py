"""A replay's batch run: several chapter writes of one partition in one flow run (issue 22).

Each chapter of the batch runs on its own, in order: its steps with the tasks' attempts
and delays (``prefect_bridge.steps``), then the whole chapter once more after
:data:`CHAPTER_RETRY_DELAY` seconds (as a chapter's own run retries once) unless its error
says retrying cannot help. Then the chapter is

* **done**: its result is on the results topic;
* **failed** for good: reported alone (``chapter.failed``, the platform's notice, its
  event parked in the DLQ: ``prefect_bridge.failure_report``), and the batch goes on;
* **later**: a service is away (a retriable error after all that): this chapter and the
  rest of the batch are tried later, as a chapter's own run is (``try_later``).

After each chapter the run keeps in its parameters only the chapters not yet done or
reported (``keep``), so a run tried later, retried, crashed or timed out, and every report
made from its parameters as Prefect holds them (the failure hook, the runners' watchdog),
concerns only those: a chapter done is never run again by its batch, one reported never
reported twice. The batch's artifact lists each chapter and what became of it.

No I/O of its own: the flow passes the ports in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from prefect_bridge.markdown import escape_markdown
from prefect_bridge.steps import Pause, attempts
from schemas import ScribeError

#: Seconds before a chapter of a batch runs once more (a chapter's own run: its retry).
CHAPTER_RETRY_DELAY = 5.0

Entry = dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """What became of one chapter of the batch."""

    entry: Entry
    state: Literal["done", "failed", "later"]
    detail: str

    @property
    def chapter(self) -> str:
        """``novel/chapter@vN``, as the chapter's own run would be named."""
        e = self.entry
        return f"{e.get('novel_id')}/{e.get('chapter_id')}@v{e.get('version')}"


@dataclass(frozen=True)
class BatchResult:
    """The outcomes in order; the chapters left for later and the error that left them."""

    outcomes: list[Outcome]
    left: list[Entry]
    error: ScribeError | None


async def run_batch(
    entries: Sequence[Entry],
    process: Callable[[Entry], Awaitable[dict[str, Any]]],
    report: Callable[[Entry, str], Awaitable[None]],
    keep: Callable[[list[Entry]], Awaitable[None]],
    pause: Pause = asyncio.sleep,
) -> BatchResult:
    """Process ``entries`` one by one (see the module docstring)."""
    outcomes: list[Outcome] = []
    for i, entry in enumerate(entries):
        try:
            counts = await attempts(partial(process, entry), (CHAPTER_RETRY_DELAY,), None, pause)
            detail = f"{counts.get('chunks', 0)} chunks, {counts.get('reused', 0)} reused"
            outcomes.append(Outcome(entry, "done", detail))
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            away = exc if isinstance(exc, ScribeError) and exc.retriable else None
            if away is None:
                try:
                    await report(entry, reason)
                except ScribeError as unreported:  # Kafka away: report it later, with the rest
                    if not unreported.retriable:
                        raise
                    away = unreported
            if away is not None:
                left = list(entries[i:])
                outcomes += [Outcome(e, "later", f"{type(away).__name__}: {away}") for e in left]
                await keep(left)
                return BatchResult(outcomes, left, away)
            outcomes.append(Outcome(entry, "failed", reason))
        await keep(list(entries[i + 1 :]))
    return BatchResult(outcomes, [], None)


def batch_summary(name: str, outcomes: Sequence[Outcome]) -> str:
    """The markdown shown on a batch run's Artifacts tab: every chapter and its outcome."""
    md = escape_markdown
    counts = {s: sum(o.state == s for o in outcomes) for s in ("done", "failed", "later")}
    lines = [
        f"# {md(name)}",
        "",
        f"{len(outcomes)} chapters: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['later']} tried later",
        "",
        "| chapter | outcome | detail |",
        "|---|---|---|",
    ]
    lines += [f"| {md(o.chapter)} | {o.state} | {md(o.detail[:300])} |" for o in outcomes]
    return "\n".join(lines)

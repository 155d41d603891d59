"""Replays in batch runs: many chapter writes, one flow run (issue 22).

Live traffic keeps one flow run per chapter event: that is what users watch in Prefect's
UI. A replay re-runs chapters users watched long ago, and one run per chapter costs it
Prefect's per-run price (a run's creation, its states and events, ~180 KB of Prefect's
database) for every chapter. So a replay groups the runs the chapter agent would submit
into batch runs, each the chapters of one partition in log order, bounded by
``max_chapters`` and by ``max_bytes`` of chapter text (the largest chapter allowed: the
flow's timeouts are sized for it, so a batch never has more to chunk and embed than one
chapter may have). The flow processes each chapter of a batch on its own: one that fails is reported
alone (``prefect_bridge.batch``).

Pure: no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agents.decisions import SubmitFlowRun

#: Tag of every batch run (filter on it in Prefect's UI).
BATCH_TAG = "batch"


@dataclass(frozen=True)
class Member:
    """One chapter write to batch: its run as a single run would be, where it is logged,
    and how many bytes of text it has."""

    run: SubmitFlowRun
    partition: int
    text_bytes: int


@dataclass(frozen=True)
class SubmitBatchRun:
    """One flow run for several chapter writes of one partition."""

    name: str
    idempotency_key: str
    tags: list[str]
    parameters: dict[str, Any]
    members: tuple[SubmitFlowRun, ...]


def plan_batches(
    members: Sequence[Member], label: str, max_chapters: int, max_bytes: int
) -> list[SubmitBatchRun]:
    """Group ``members`` per partition, in their order, into bounded batch runs.

    A run is named ``<label>/p<partition>/<n> (<k> chapters: <first> .. <last>)`` and
    tagged ``batch``, ``batch:<label>``, each chapter's ``novel:`` tag and the replay's
    ``rebuild:`` tag, so the UI finds a batch by replay, by novel or by rebuild. Its
    idempotency key is derived from its members' keys: the same batch submitted again is
    the same run.
    """
    if max_chapters < 1 or max_bytes < 1:
        raise ValueError("a batch holds at least one chapter")
    by_partition: dict[int, list[list[Member]]] = {}
    for member in members:
        groups = by_partition.setdefault(member.partition, [[]])
        current = groups[-1]
        size = sum(m.text_bytes for m in current)
        if current and (len(current) >= max_chapters or size + member.text_bytes > max_bytes):
            current = []
            groups.append(current)
        current.append(member)
    batches = []
    for partition, groups in by_partition.items():
        for n, group in enumerate(groups, start=1):
            batches.append(_batch(label, partition, n, [m.run for m in group]))
    return batches


def _batch(label: str, partition: int, n: int, runs: list[SubmitFlowRun]) -> SubmitBatchRun:
    digest = hashlib.sha256("\n".join(r.idempotency_key for r in runs).encode()).hexdigest()
    tags = [BATCH_TAG, f"batch:{label}"]
    for run in runs:
        tags += [t for t in run.tags if t.startswith(("novel:", "rebuild:")) and t not in tags]
    span = runs[0].name if len(runs) == 1 else f"{runs[0].name} .. {runs[-1].name}"
    return SubmitBatchRun(
        name=f"{label}/p{partition}/{n} ({len(runs)} chapters: {span})",
        idempotency_key=f"batch:{digest[:40]}",
        tags=tags,
        parameters={"batch": [r.parameters for r in runs]},
        members=tuple(runs),
    )

"""Failpoints: named places between two writes where a test may crash the process.

Off by default. ``SCRIBE_FAILPOINTS`` arms some of them for one process, as a comma-separated
list of ``NAME`` (crash at the first pass) or ``NAME@P`` (crash at each pass with
probability ``P``, for the chaos driver, whose seeded runs choose which processes to arm):

    SCRIBE_FAILPOINTS="sink.between_ledger_writes" scribe worker

A crash is ``os._exit(CRASH_EXIT)``: no clean-up, no offset commit, no flush, as a kill -9
or a power cut would leave things. Every failpoint is named in :data:`FAILPOINTS` (as TiKV's
fail-rs or FoundationDB's buggify keep theirs in one place), so a test, the chaos driver
and the code agree on the names; an unknown name in the variable is refused at the first
check instead of never firing.

This module lives in ``schemas`` because it is stdlib only and every layer (the agents,
the flow, the wiring) must reach it without importing another.
"""

from __future__ import annotations

import logging
import os
import random
import sys

ENV = "SCRIBE_FAILPOINTS"

#: The exit status of a process that crashed at a failpoint (tests tell it from others).
CRASH_EXIT = 86

#: Every failpoint, with the writes it stands between.
FAILPOINTS: dict[str, str] = {
    "chapter.after_submit": "the chapter agent: Prefect accepted the run / the ledger's "
    "pending mark and the offset commit",
    "sink.after_write": "the sink: Milvus upserts and deletes / the flush",
    "sink.after_flush": "the sink: the flush / the batch's first ledger write",
    "sink.between_ledger_writes": "the sink: one of the batch's ledger writes / the next",
    "sink.after_ledger": "the sink: the batch's ledger writes / the offset commit",
    "flow.after_embed": "the flow: the embeddings / the result's publication",
    "flow.after_publish": "the flow: the published result / the run's Completed state",
}

log = logging.getLogger("scribe.failpoints")


def armed(spec: str | None = None) -> dict[str, float]:
    """The failpoints ``spec`` (default: the environment) arms, with their probabilities."""
    spec = os.environ.get(ENV, "") if spec is None else spec
    points: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, chance = item.partition("@")
        if name not in FAILPOINTS:
            raise ValueError(
                f"{ENV} names an unknown failpoint {name!r}; known: {sorted(FAILPOINTS)}"
            )
        points[name] = float(chance) if chance else 1.0
    return points


def failpoint(name: str) -> None:
    """Crash here when ``name`` is armed (and its coin says so); do nothing otherwise."""
    if name not in FAILPOINTS:
        raise ValueError(f"unknown failpoint {name!r}")
    if ENV not in os.environ:  # the common case: one dictionary look-up
        return
    chance = armed().get(name)
    if chance is None or random.random() >= chance:
        return
    log.critical("failpoint %s: crashing the process (%s)", name, FAILPOINTS[name])
    sys.stderr.flush()
    os._exit(CRASH_EXIT)

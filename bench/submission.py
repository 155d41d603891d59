"""Scenario 4: the chapter agent's flow-run submission rate against a raw Prefect loop.

Both sides create runs of a separate deployment of the same flow (``bench-submit`` on the
pool ``bench-pool``, which no worker serves, so nothing executes them) on the bench's
Prefect server, with the same parameters, names, tags and idempotency keys the chapter
agent derives (``agents.decisions.plan_event``), one run at a time, as the agent does per
partition. The agent side is ``ChapterAgent.handle`` with the real
``PrefectFlowSubmitter``, an in-memory ledger, no-op results and dead-letter ports and a
bound too large to block. The raw side is ``create_flow_run_from_deployment`` in a loop,
with the plans built before the clock starts. Blocks of ten runs alternate A-B, B-A to
cancel drift (the machine's load changes).

Prefect is imported inside the functions: ``PREFECT_API_URL`` must be in the environment
first (the bench exports it at start).
"""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Sequence
from typing import Any

from agents.chapter_agent import ChapterAgent
from agents.decisions import SubmitFlowRun, plan_event
from bench.workload import BenchChapter, make_chapters, percentile
from prefect_bridge.chunking import ChunkingPolicy
from prefect_bridge.runtime import pipeline_version
from schemas import ResultEvent, ScribeError, SourceRef, parse_event
from tests.fakes import InMemoryLedger

DEPLOYMENT = "novel-processing/bench-submit"
POOL = "bench-pool"
#: Runs per timed block; blocks alternate agent-raw, raw-agent.
BLOCK = 10


class _NoResults:
    """Results port that drops everything (the bench only produces chapter writes)."""

    async def publish(self, result: ResultEvent) -> None:
        """Drop."""


class _NoDeadLetters:
    """Dead-letter port that fails loudly: every bench event must be valid."""

    async def dead_letter(
        self,
        *,
        key: bytes | None,
        value: bytes,
        source: SourceRef,
        error: ScribeError,
        redrive: int = 0,
    ) -> None:
        """Raise: a bench event was rejected."""
        raise RuntimeError(f"bench event dead-lettered: {error}")


def _source(i: int) -> SourceRef:
    return SourceRef(topic="bench-submit", partition=0, offset=i)


async def _agent_round(agent: ChapterAgent, chapters: Sequence[BenchChapter], base: int) -> float:
    start = time.perf_counter()
    for i, ch in enumerate(chapters):
        run_id = await agent.handle(ch.key, ch.value, _source(base + i))
        assert run_id is not None
    return time.perf_counter() - start


async def _raw_round(client: Any, deployment_id: Any, plans: Sequence[SubmitFlowRun]) -> float:
    start = time.perf_counter()
    for plan in plans:
        await client.create_flow_run_from_deployment(
            deployment_id,
            parameters=plan.parameters,
            name=plan.name,
            tags=plan.tags,
            idempotency_key=plan.idempotency_key,
        )
    return time.perf_counter() - start


def _plans(chapters: Sequence[BenchChapter], version: str, base: int) -> list[SubmitFlowRun]:
    plans = []
    for i, ch in enumerate(chapters):
        plan = plan_event(parse_event(ch.value), _source(base + i), version)
        assert isinstance(plan, SubmitFlowRun)
        plans.append(plan)
    return plans


def preload_prefect() -> None:
    """Import the Prefect side now (``PREFECT_API_URL`` must be exported already).

    Called at start, so a long bench run does not import code that changed on disk since
    (the rest of the package is imported at start too).
    """
    for module in (
        "prefect.client.orchestration",
        "prefect_bridge.deployment",
        "streams.adapters.prefect.submitter",
    ):
        importlib.import_module(module)


async def run_submission(count: int, model: str, max_text_bytes: int) -> dict[str, Any]:
    """Submit ``count`` runs through the agent and ``count`` raw; return both rates."""
    from prefect.client.orchestration import get_client

    from prefect_bridge.deployment import ensure_deployment
    from streams.adapters.prefect.submitter import PrefectFlowSubmitter

    version = pipeline_version(model, ChunkingPolicy())
    tag = uuid.uuid4().hex[:6]

    def chapters(novel: str, n: int) -> list[BenchChapter]:
        return make_chapters(f"{novel}-{tag}", n, len)  # rows not counted: any counter

    agent_chapters = chapters("submit-agent", count)
    raw_plans = _plans(chapters("submit-raw", count), version, 0)
    warm_agent, warm_raw = chapters("submit-warm-agent", 1), chapters("submit-warm-raw", 1)

    submitter = PrefectFlowSubmitter(DEPLOYMENT)
    agent = ChapterAgent(
        submitter=submitter,
        results=_NoResults(),
        dead_letters=_NoDeadLetters(),
        ledger=InMemoryLedger(),
        pipeline_version=version,
        max_text_bytes=max_text_bytes,
        max_in_flight=10**9,
    )
    agent_times: list[float] = []
    raw_times: list[float] = []
    try:
        async with get_client() as client:
            await ensure_deployment(client, work_pool=POOL, deployment=DEPLOYMENT.split("/")[1])
            deployment_id = (await client.read_deployment_by_name(DEPLOYMENT)).id
            # Warm-up (connections, deployment look-up, the agent's first capacity check).
            await _agent_round(agent, warm_agent, 0)
            await _raw_round(client, deployment_id, _plans(warm_raw, version, 0))
            for i in range(0, count, BLOCK):
                agent_block = agent_chapters[i : i + BLOCK]
                raw_block = raw_plans[i : i + BLOCK]
                if (i // BLOCK) % 2:
                    raw_times.append(await _raw_round(client, deployment_id, raw_block))
                    agent_times.append(await _agent_round(agent, agent_block, 1_000 + i))
                else:
                    agent_times.append(await _agent_round(agent, agent_block, 1_000 + i))
                    raw_times.append(await _raw_round(client, deployment_id, raw_block))
            created = await _count_runs(client, deployment_id)
    finally:
        await submitter.close()
    agent_s, raw_s = sum(agent_times), sum(raw_times)
    agent_rate, raw_rate = count / agent_s, count / raw_s
    return {
        "runs_each": count,
        "deployment": DEPLOYMENT,
        "agent_s": round(agent_s, 3),
        "raw_s": round(raw_s, 3),
        "agent_runs_per_s": round(agent_rate, 2),
        "raw_runs_per_s": round(raw_rate, 2),
        "agent_ms_per_run": round(1000 * agent_s / count, 2),
        "raw_ms_per_run": round(1000 * raw_s / count, 2),
        # Paired, adjacent blocks (A-B, B-A): the median of their ratios shrugs off load
        # spikes from other work on the machine; the ratio of the totals does not.
        "ratio_agent_raw_totals": round(agent_rate / raw_rate, 3),
        "ratio_agent_raw": round(
            percentile([r / a for a, r in zip(agent_times, raw_times, strict=True)], 50), 3
        ),
        "agent_block_s": [round(t, 3) for t in agent_times],
        "raw_block_s": [round(t, 3) for t in raw_times],
        "runs_in_deployment": created,
        "payload_bytes_avg": round(sum(len(c.value) for c in agent_chapters) / count),
    }


async def _count_runs(client: Any, deployment_id: Any) -> int:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return int(
        await client.count_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id]))
        )
    )

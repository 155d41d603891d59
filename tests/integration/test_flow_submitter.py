"""The flow submitter contract (tests/flow_submitter_contract.py) on a real Prefect server:
``create_flow_run_from_deployment`` through Prefect's async client, as the agents submit.

Each check gets a deployment of its own that no runner serves, so its runs stay scheduled
and ``in_flight`` counts exactly what the check made.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings

from streams.adapters.prefect.submitter import PrefectFlowSubmitter
from tests.flow_submitter_contract import CONTRACT, Run, Submissions
from tests.integration.harness import Stack

pytestmark = pytest.mark.integration


class PrefectSubmissions:
    """A submitter bound to a fresh, unserved deployment; runs read back from the API."""

    def __init__(self, deployment: str) -> None:
        self.deployment = deployment
        self.submitter = PrefectFlowSubmitter(deployment)

    async def remove(self) -> None:
        """Delete the deployment and the runs the check left scheduled: other tests count
        every run in flight on the server (test_guarantees' in-flight bound)."""
        async with get_client() as client:
            deployment = await client.read_deployment_by_name(self.deployment)
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            )
            for run in runs:
                await client.delete_flow_run(run.id)
            await client.delete_deployment(deployment.id)

    async def run(self, run_id: str) -> Run:
        async with get_client() as client:
            run = await client.read_flow_run(uuid.UUID(run_id))
        return Run(run.name, frozenset(run.tags), dict(run.parameters))


async def _unserved_deployment() -> str:
    flow, name = f"contract-flow-{uuid.uuid4().hex[:8]}", "unserved"
    async with get_client() as client:
        flow_id = await client.create_flow_from_name(flow)
        await client.create_deployment(flow_id=flow_id, name=name)
    return f"{flow}/{name}"


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_prefect_flow_submitter_contract(
    stack: Stack, check: Callable[[Submissions], Awaitable[None]]
) -> None:
    async def run() -> None:
        submissions = PrefectSubmissions(await _unserved_deployment())
        try:
            await check(submissions)
        finally:
            await submissions.submitter.close()
            await submissions.remove()

    with temporary_settings(updates={PREFECT_API_URL: stack.settings.prefect_url}):
        asyncio.run(run())

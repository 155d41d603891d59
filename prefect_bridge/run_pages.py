"""Every flow run of a deployment that a filter selects, page after page."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
)

#: Runs per request.
PAGE_SIZE = 200


async def every_run(
    client: PrefectClient, deployment_id: UUID, flow_run_filter: FlowRunFilter
) -> list[Any]:
    """The deployment's runs that ``flow_run_filter`` selects, all pages read first (one
    page alone leaves every run past it unseen)."""
    runs: list[Any] = []
    while True:
        page: list[Any] = await client.read_flow_runs(
            flow_run_filter=flow_run_filter,
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            limit=PAGE_SIZE,
            offset=len(runs),
        )
        runs.extend(page)
        if len(page) < PAGE_SIZE:
            return runs

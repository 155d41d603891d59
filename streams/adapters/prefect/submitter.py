"""Submitting flow runs through Prefect's async client (the chapter agent's port adapter)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import httpx
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import (
    DeploymentFilter,
    DeploymentFilterId,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import StateType
from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError

from schemas import ConfigurationError, FlowSubmissionError
from schemas.submissions import SubmittedRun

#: Runs per page of Prefect's API (its default limit is 200).
PAGE_SIZE = 200


class PrefectFlowSubmitter:
    """Creates one flow run per call with ``create_flow_run_from_deployment``.

    The deployment is looked up once (``read_deployment_by_name``) on first use; the same
    ``idempotency_key`` returns the run Prefect already has instead of creating another.
    Connection errors and 5xx answers raise the retriable :class:`FlowSubmissionError`.
    """

    def __init__(self, deployment: str) -> None:
        self._deployment = deployment
        self._client: PrefectClient | None = None
        self._deployment_id: UUID | None = None

    async def _ready(self) -> tuple[PrefectClient, UUID]:
        if self._client is None:
            client = get_client()
            await client.__aenter__()
            self._client = client
        if self._deployment_id is None:
            try:
                deployment = await self._client.read_deployment_by_name(self._deployment)
            except ObjectNotFound as exc:
                raise FlowSubmissionError(
                    f"deployment {self._deployment!r} not found (is `scribe flows serve` running?)"
                ) from exc
            except (httpx.TransportError, PrefectHTTPStatusError) as exc:
                raise FlowSubmissionError(f"Prefect API unreachable: {exc}") from exc
            self._deployment_id = deployment.id
        return self._client, self._deployment_id

    async def submit(
        self,
        *,
        name: str,
        idempotency_key: str,
        tags: list[str],
        parameters: dict[str, Any],
    ) -> SubmittedRun:
        """Create (or find, by idempotency key) the flow run."""
        client, deployment_id = await self._ready()
        try:
            run = await client.create_flow_run_from_deployment(
                deployment_id,
                parameters=parameters,
                name=name,
                tags=tags,
                idempotency_key=idempotency_key,
            )
        except httpx.TransportError as exc:
            raise FlowSubmissionError(f"Prefect API unreachable: {exc}") from exc
        except PrefectHTTPStatusError as exc:
            status = exc.response.status_code
            if status == 404:
                self._deployment_id = None  # deleted and re-created: look it up again
                raise FlowSubmissionError(f"deployment {self._deployment!r} vanished") from exc
            if status >= 500 or status in (408, 409, 429):
                raise FlowSubmissionError(f"Prefect answered {status}") from exc
            raise ConfigurationError(f"Prefect rejected the flow run ({status}): {exc}") from exc
        return SubmittedRun(id=str(run.id), ended=run.state is not None and run.state.is_final())

    async def in_flight(self, tag: str | None = None) -> int:
        """Runs of the deployment (with ``tag``, if given) in a Scheduled, Pending, Running
        or Cancelling state."""
        client, deployment_id = await self._ready()
        states = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.CANCELLING]
        try:
            return int(
                await client.count_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=states)),
                        tags=FlowRunFilterTags(all_=[tag]) if tag is not None else None,
                    ),
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                )
            )
        except (httpx.TransportError, PrefectHTTPStatusError) as exc:
            raise FlowSubmissionError(f"Prefect API unreachable: {exc}") from exc

    async def failed(self, tag: str) -> set[str]:
        """Ids of the deployment's runs with ``tag`` that ended Failed (every page).

        Prefect sets the state before the run's failure hook reports it, so this knows a
        failure before the results topic does."""
        client, deployment_id = await self._ready()
        found: list[Any] = []
        try:
            while True:
                page = await client.read_flow_runs(
                    flow_run_filter=FlowRunFilter(
                        state=FlowRunFilterState(
                            type=FlowRunFilterStateType(any_=[StateType.FAILED])
                        ),
                        tags=FlowRunFilterTags(all_=[tag]),
                    ),
                    deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
                    limit=PAGE_SIZE,
                    offset=len(found),
                )
                found += page
                if len(page) < PAGE_SIZE:
                    return {str(run.id) for run in found}
        except (httpx.TransportError, PrefectHTTPStatusError) as exc:
            raise FlowSubmissionError(f"Prefect API unreachable: {exc}") from exc

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.__aexit__(None, None, None)

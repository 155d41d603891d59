"""The Prefect side: deploy ``novel-processor`` and run a process worker on its pool."""

from __future__ import annotations

import logging

from prefect.client.orchestration import get_client
from prefect.workers.process import ProcessWorker

from prefect_bridge.deployment import ensure_deployment
from streams.settings import Settings
from streams.wiring import apply_prefect_env

log = logging.getLogger("scribe.runner")


async def deploy(settings: Settings) -> str:
    """Create/update the work pool and the deployment; return the deployment id."""
    apply_prefect_env(settings)
    flow_name, deployment = settings.deployment.split("/", 1)
    async with get_client() as client:
        deployment_id = await ensure_deployment(
            client, work_pool=settings.work_pool, deployment=deployment
        )
    log.info("deployment %s on pool %s: %s", settings.deployment, settings.work_pool, deployment_id)
    return str(deployment_id)


async def serve_with_worker(settings: Settings) -> None:
    """Deploy, then execute runs with Prefect's process worker (one process per run)."""
    await deploy(settings)
    async with ProcessWorker(
        work_pool_name=settings.work_pool, limit=settings.runner_limit
    ) as worker:
        await worker.start()

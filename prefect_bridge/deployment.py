"""Creating the work pool and the ``novel-processor`` deployment, idempotently."""

from __future__ import annotations

from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.utilities.callables import parameter_schema
from prefect.workers.process import ProcessWorker

from prefect_bridge.flow import FLOW_NAME, novel_processing

DEPLOYMENT_NAME = "novel-processor"
#: Module path of the flow as the wiring layer exposes it (configures the runtime on import).
ENTRYPOINT = "streams.flow_entry:novel_processing"


async def ensure_work_pool(client: PrefectClient, name: str) -> None:
    """Create a process work pool named ``name`` unless it exists."""
    try:
        await client.read_work_pool(name)
    except ObjectNotFound:
        template = ProcessWorker.get_default_base_job_template()
        await client.create_work_pool(
            WorkPoolCreate(name=name, type="process", base_job_template=template)
        )


async def ensure_deployment(
    client: PrefectClient,
    *,
    work_pool: str,
    deployment: str = DEPLOYMENT_NAME,
    entrypoint: str = ENTRYPOINT,
    description: str = "Chunk, embed and publish one chapter event of novel-events.",
) -> UUID:
    """Create or update the deployment of ``novel-processing`` on ``work_pool``."""
    await ensure_work_pool(client, work_pool)
    flow_id = await client.create_flow_from_name(FLOW_NAME)
    schema = parameter_schema(novel_processing.fn).model_dump_for_openapi()
    return await client.create_deployment(
        flow_id=flow_id,
        name=deployment,
        work_pool_name=work_pool,
        entrypoint=entrypoint,
        parameter_openapi_schema=schema,
        enforce_parameter_schema=False,
        pull_steps=[],
        description=description,
        tags=["scribe-stream"],
    )

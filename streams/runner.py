"""The Prefect side: deploy ``novel-processor`` and run a process worker on its pool."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.workers.process import ProcessWorker

from prefect_bridge.automations import (
    ensure_automation,
    ensure_webhook_block,
    failure_automation,
    zombie_automation,
)
from prefect_bridge.deployment import ensure_deployment
from prefect_bridge.recovery import recover_orphans
from streams import check_prefect_env
from streams.metrics import RUNS_FINISHED, Heartbeat, serve
from streams.processes import terminate_children
from streams.settings import Settings
from streams.wiring import apply_prefect_env

log = logging.getLogger("scribe.runner")


async def deploy(settings: Settings) -> str:
    """Create/update the work pool and the deployment; return the deployment id."""
    apply_prefect_env(settings)
    check_prefect_env(settings)  # this module imported Prefect: it must already see our API
    deployment = settings.deployment.split("/", 1)[1]
    async with get_client() as client:
        deployment_id = await ensure_deployment(
            client, work_pool=settings.work_pool, deployment=deployment
        )
        await ensure_automations(client, settings, deployment_id)
    log.info("deployment %s on pool %s: %s", settings.deployment, settings.work_pool, deployment_id)
    return str(deployment_id)


async def ensure_automations(
    client: PrefectClient, settings: Settings, deployment_id: UUID
) -> dict[str, str]:
    """Zombie detection always; failure notifications when a webhook URL is configured."""
    made = {
        "zombies": str(
            await ensure_automation(
                client,
                zombie_automation(settings.deployment, deployment_id, settings.heartbeat_seconds),
            )
        )
    }
    if settings.failure_webhook_url is not None:
        block = await ensure_webhook_block(settings.failure_webhook_url.get_secret_value())
        made["failures"] = str(
            await ensure_automation(
                client, failure_automation(settings.deployment, deployment_id, block)
            )
        )
    return made


async def serve_with_worker(settings: Settings) -> None:
    """Deploy, then execute runs with Prefect's process worker (one process per run).

    SIGTERM or SIGINT stops polling and terminates the flow-run processes in flight
    (Prefect starts them in sessions of their own); their runs end as crashed or
    cancelled in Prefect instead of running on unattended.
    """
    await deploy(settings)
    serve(settings.runner_metrics_port, HEARTBEAT.healthy)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    watchdog = asyncio.create_task(_watch_orphans(settings))
    delay = 1.0
    try:
        while True:  # the worker gives up when the API is gone for a while: start it again
            try:
                async with ProcessWorker(
                    work_pool_name=settings.work_pool, limit=settings.runner_limit
                ) as worker:
                    await worker.start()
                return
            except Exception as exc:
                log.warning("process worker stopped (%s); restarting in %.0fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
    except asyncio.CancelledError:
        log.info("stopping the runner")
    finally:
        watchdog.cancel()
        await asyncio.to_thread(terminate_children)


HEARTBEAT = Heartbeat(max_age=120.0)


def _count_finished(state: str) -> None:
    RUNS_FINISHED.labels(state).inc()


async def _watch_orphans(settings: Settings, every: float = 30.0) -> None:
    """At start and then periodically, reschedule runs whose process died."""
    while True:
        HEARTBEAT.beat()
        try:
            async with get_client() as client:
                deployment = await client.read_deployment_by_name(settings.deployment)
                await recover_orphans(client, deployment.id)
        except Exception as exc:  # Prefect briefly down: try again next round
            log.warning("orphan check failed: %s", exc)
        await asyncio.sleep(every)


def serve_warm(settings: Settings) -> None:
    """Deploy, then execute runs in this process with the warm runner (model loaded once).

    The runner's event loop runs off the main thread: when a flow runs on the main thread
    Prefect's engine installs its own SIGTERM handler, and an external SIGTERM then
    crashes the runs in flight. The main thread waits for SIGTERM/SIGINT and stops the
    loop, which cancels the runs in flight (the watchdog of the next runner reschedules
    them).
    """
    import threading

    from prefect_bridge.runtime import get_runtime
    from streams.flow_entry import novel_processing  # configures the flow runtime once

    asyncio.run(deploy(settings))
    get_runtime()  # load the embedder now, not in the first run
    serve(settings.runner_metrics_port, HEARTBEAT.healthy)
    stop = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        from prefect_bridge.warm_runner import WarmRunner

        holder["task"] = asyncio.current_task()
        holder["loop"] = asyncio.get_running_loop()
        watchdog = asyncio.create_task(_watch_orphans(settings))
        try:
            async with get_client() as client:
                deployment = await client.read_deployment_by_name(settings.deployment)
                runner = WarmRunner(
                    client,
                    novel_processing,
                    deployment.id,
                    settings.runner_limit,
                    settings.runner_poll_seconds,
                    on_finished=_count_finished,
                )
                log.info("warm runner: %d slots on %s", settings.runner_limit, settings.deployment)
                await runner.run_forever()
        finally:
            watchdog.cancel()

    def loop_thread() -> None:
        delay = 1.0
        while not stop.is_set():
            try:
                asyncio.run(main())
            except asyncio.CancelledError:
                return
            except Exception as exc:  # Prefect unreachable for a while: start again
                log.warning("warm runner stopped (%s); restarting in %.0fs", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 30.0)
        stop.set()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()
        loop, task = holder.get("loop"), holder.get("task")
        if loop is not None and task is not None:
            loop.call_soon_threadsafe(task.cancel)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    thread = threading.Thread(target=loop_thread, name="warm-runner", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)

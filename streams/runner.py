"""The Prefect side: deploy ``novel-processor`` and run a process worker on its pool."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import warnings
from typing import Any
from uuid import UUID

from prefect.client.orchestration import PrefectClient, get_client
from prefect.workers.process import ProcessJobConfiguration, ProcessWorker

from prefect_bridge.automations import (
    ensure_automation,
    ensure_webhook_block,
    failure_automation,
    zombie_automation,
)
from prefect_bridge.deployment import ensure_deployment
from prefect_bridge.failure_report import HOOK_TIMEOUT_SECONDS, report_run_failure
from prefect_bridge.publisher import SEND_TIMEOUT_SECONDS
from prefect_bridge.recovery import recover_orphans
from prefect_bridge.unreported import report_unreported
from streams import export_prefect_env
from streams.embedded.processes import terminate_children
from streams.flow_process import command
from streams.metrics import RUNS_FINISHED, Heartbeat, serve
from streams.settings import Settings
from streams.wiring import (
    build_event_source,
    build_result_publisher,
    flow_timeouts,
)

log = logging.getLogger("scribe.runner")


async def deploy(settings: Settings) -> str:
    """Create/update the work pool and the deployment; return the deployment id."""
    export_prefect_env(settings)  # this module imported Prefect: it must already see our API
    deployment = settings.deployment.split("/", 1)[1]
    async with get_client() as client:
        deployment_id = await ensure_deployment(
            client, work_pool=settings.work_pool, deployment=deployment
        )
        await ensure_automations(client, settings, deployment_id)
    log.info("deployment %s on pool %s: %s", settings.deployment, settings.work_pool, deployment_id)
    return str(deployment_id)


#: How long a runner's start keeps trying to deploy while Prefect is unavailable.
DEPLOY_PATIENCE_SECONDS = 600.0


def prefect_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` says Prefect (or its database) is away for now, not that the
    request is wrong: no connection, a timeout, a 5xx or 429 answer."""
    import httpx
    from prefect.exceptions import PrefectHTTPStatusError

    if isinstance(exc, httpx.HTTPStatusError | PrefectHTTPStatusError):
        status = exc.response.status_code
        return status >= 500 or status == 429
    return isinstance(exc, httpx.TransportError | TimeoutError | ConnectionError)


async def deploy_when_ready(
    settings: Settings, patience: float = DEPLOY_PATIENCE_SECONDS, first_delay: float = 1.0
) -> str:
    """:func:`deploy`, retried with backoff while Prefect is unavailable.

    A runner is often (re)started while Prefect or its database is down: by a supervisor
    after a crash, or with the whole stack. It waits for Prefect instead of exiting 1 into
    a restart loop (chaos campaign, seed 106: a runner restarted during a PostgreSQL pause
    got a 500 from Prefect and died). Errors that retrying cannot fix raise at once.
    """
    began, delay = time.monotonic(), first_delay
    while True:
        try:
            return await deploy(settings)
        except Exception as exc:
            if not prefect_unavailable(exc) or time.monotonic() - began > patience:
                raise
            log.warning("Prefect unavailable (%s); deploying again in %.0fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)


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


class FlowProcessJob(ProcessJobConfiguration):
    """A process worker's job whose command, unless the deployment names one, is
    :mod:`streams.flow_process` in this interpreter instead of ``python -m prefect.engine``
    (RELIABILITY.md, defect 29: a run tried later must not be recorded as a crash)."""

    def prepare_for_flow_run(self, flow_run: Any, *args: Any, **kwargs: Any) -> None:
        """See :meth:`ProcessJobConfiguration.prepare_for_flow_run`."""
        if self.command is None:
            self.command = command()
        super().prepare_for_flow_run(flow_run, *args, **kwargs)


with warnings.catch_warnings():
    # Prefect registers worker classes by their type: this one takes "process" over in
    # this process (the same worker, with our job), which Prefect warns about.
    warnings.simplefilter("ignore", UserWarning)

    class FlowProcessWorker(ProcessWorker):
        """Prefect's process worker running each flow run with :class:`FlowProcessJob`."""

        job_configuration = FlowProcessJob


async def serve_with_worker(settings: Settings) -> None:
    """Deploy, then execute runs with Prefect's process worker (one process per run).

    SIGTERM or SIGINT stops polling and terminates the flow-run processes in flight
    (Prefect starts them in sessions of their own); their runs end as crashed or
    cancelled in Prefect instead of running on unattended.
    """
    await deploy_when_ready(settings)
    heartbeat = Heartbeat(max_age=HEALTH_MAX_AGE_SECONDS)
    serve(settings.runner_metrics_port, heartbeat.healthy, settings.metrics_host)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    watchdog = asyncio.create_task(_watch_orphans(settings, heartbeat))
    delay = 1.0
    try:
        while True:  # the worker gives up when the API is gone for a while: start it again
            try:
                async with FlowProcessWorker(
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


#: Seconds without progress after which /health of a runner turns red.
HEALTH_MAX_AGE_SECONDS = 120.0

#: Seconds a run's failure hooks may need after its flow timeout: each publishes up to
#: three messages, each bounded by the publisher's send timeout, plus the producer's start.
HOOKS_GRACE_SECONDS = 4 * SEND_TIMEOUT_SECONDS

#: A loop that ran this long before it failed starts again after the shortest delay.
LOOP_STABLE_SECONDS = 60.0


def _count_finished(state: str) -> None:
    RUNS_FINISHED.labels(state).inc()


async def _watch_orphans(
    settings: Settings, heartbeat: Heartbeat | None = None, every: float = 30.0
) -> None:
    """At start and then periodically, reschedule runs whose process died, report the
    ones that crashed on their last attempt, and report failed runs whose own report could
    not be published (Kafka away), with a publisher of this loop's own."""
    publisher, events = build_result_publisher(settings), build_event_source(settings)

    async def report(params: dict[str, Any], reason: str, run_id: str) -> None:
        await asyncio.wait_for(
            report_run_failure(publisher, events, params, reason, run_id), HOOK_TIMEOUT_SECONDS
        )

    try:
        while True:
            if heartbeat is not None:
                heartbeat.beat()
            try:
                async with get_client() as client:
                    deployment = await client.read_deployment_by_name(settings.deployment)
                    await recover_orphans(
                        client, deployment.id, host=settings.host_id, report=report
                    )
                    await report_unreported(client, deployment.id, report)
            except Exception as exc:  # Prefect or Kafka briefly down: try again next round
                log.warning("orphan check failed: %s", exc)
            await asyncio.sleep(every)
    finally:
        for closing in (publisher.close(), events.close()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(closing, 10.0)


def run_deadline(settings: Settings) -> float:
    """Seconds after its claim when a warm run is cancelled as stuck.

    Both attempts of the flow (it retries once, 5 s apart) at their timeout, then the
    failure hooks: a run that is still going past this is not doing honest work.
    """
    return 2 * (flow_timeouts(settings).flow + 5.0) + HOOKS_GRACE_SECONDS


def serve_warm(settings: Settings) -> None:
    """Deploy, then execute runs in this process with the warm runner (model loaded once).

    The runner's event loop runs off the main thread: when a flow runs on the main thread
    Prefect's engine installs its own SIGTERM handler, and an external SIGTERM then
    crashes the runs in flight. The main thread waits for SIGTERM/SIGINT and stops the
    loop, which cancels the runs in flight (the watchdog of the next runner reschedules
    them).

    While Prefect is unreachable the runner retries its rounds in the same loop and the
    runs in flight go on (see ``prefect_bridge.warm_runner``); when ``main()`` raises
    (Prefect away at its start, or rounds failing for ``GIVE_UP_SECONDS``, raised only
    once the runs in flight ended) the loop is started again. Everything bound to a loop
    (the Prefect client, the flow runtime with its Kafka producer) is built inside
    ``main()`` and closed when it ends; only the loaded model outlives a loop. /health is
    beaten by the runner's rounds that reached Prefect with no run stuck past its
    deadline, so it turns red while the runner cannot claim runs or its slots are stuck.
    """
    import threading

    from prefect_bridge.runtime import close_runtime
    from streams.flow_entry import (  # also imports pymilvus, before any run: streams.preload
        load_embedder,
        novel_processing,
    )

    asyncio.run(deploy_when_ready(settings))
    load_embedder()  # load the model now, not in the first run
    heartbeat = Heartbeat(max_age=max(HEALTH_MAX_AGE_SECONDS, 3 * settings.runner_poll_seconds))
    serve(settings.runner_metrics_port, heartbeat.healthy, settings.metrics_host)
    stop = threading.Event()
    holder: dict[str, Any] = {}
    deadline = run_deadline(settings)

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
                    run_deadline=deadline,
                    on_progress=heartbeat.beat,
                    host=settings.host_id,
                )
                log.info("warm runner: %d slots on %s", settings.runner_limit, settings.deployment)
                await runner.run_forever()
        finally:
            watchdog.cancel()
            await asyncio.gather(watchdog, return_exceptions=True)
            await close_runtime()  # the Kafka producer of this loop's runs

    def loop_thread() -> None:
        delay = 1.0
        while not stop.is_set():
            began = time.monotonic()
            try:
                asyncio.run(main())
            except asyncio.CancelledError:
                return
            except Exception as exc:  # Prefect unreachable for a while: start again
                if time.monotonic() - began > LOOP_STABLE_SECONDS:
                    delay = 1.0  # a new outage, not the same one going on
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

"""Prefect automations for the deployment, created idempotently (by name).

* **Zombie runs**: the flow engine emits ``prefect.flow-run.heartbeat`` every
  ``heartbeat_seconds``; a run of the deployment that goes silent for three beats without
  reaching a final state is marked Crashed (Prefect's documented "detect zombie flows"
  recipe), after which the runner's watchdog reschedules or reports it.
* **Failure notifications**: a webhook notification block (URL from the settings) gets a
  message for every Failed or Crashed run of the deployment.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState, SendNotification
from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture

from schemas import ConfigurationError

FINAL = ["Completed", "Failed", "Cancelled", "Crashed"]
WEBHOOK_BLOCK = "scribe-failure-webhook"


def _for_deployment(deployment_id: UUID) -> dict[str, Any]:
    return {
        "prefect.resource.id": f"prefect.deployment.{deployment_id}",
        "prefect.resource.role": "deployment",
    }


def zombie_automation(
    deployment: str, deployment_id: UUID, heartbeat_seconds: int
) -> AutomationCore:
    """Mark runs Crashed when they start or beat, then go silent (window: three beats)."""
    return AutomationCore(
        name=f"scribe: crash zombie runs of {deployment}",
        description="A run whose heartbeats stopped without a final state is marked Crashed.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_for_deployment(deployment_id),
            # Armed when a run starts too: a run killed before its first beat never sends
            # one, and would otherwise stay Running forever.
            after={"prefect.flow-run.Running", "prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in FINAL)},
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=3 * heartbeat_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat for {3 * heartbeat_seconds}s: the run's process is gone",
            )
        ],
    )


def failure_automation(
    deployment: str, deployment_id: UUID, block_document_id: UUID
) -> AutomationCore:
    """Notify the webhook block about every Failed or Crashed run of the deployment."""
    return AutomationCore(
        name=f"scribe: notify on failed runs of {deployment}",
        description="Failed or crashed chapter processing, sent to the configured webhook.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related=_for_deployment(deployment_id),
            expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
            posture=Posture.Reactive,
            threshold=1,
            within=timedelta(0),
        ),
        actions=[
            SendNotification(
                block_document_id=block_document_id,
                subject="scribe-stream: chapter processing failed",
                body=(
                    "Flow run {{ flow_run.name }} ({{ flow_run.id }}) of "
                    + deployment
                    + " ended {{ flow_run.state.name }}: {{ flow_run.state.message }}"
                ),
            )
        ],
    )


async def ensure_automation(client: PrefectClient, automation: AutomationCore) -> UUID:
    """Create the automation, or bring the one with its name up to date (never two).

    An automation that already says what ``automation`` says is left untouched: Prefect
    gives the trigger a new id on every update and keeps a proactive trigger's open
    windows (one per watched run) under the old one, so updating on every runner start
    (every restart after a crash, every deploy) silently dropped the zombie detection of
    the runs in flight, the very runs a crashed runner leaves behind (chaos campaign,
    seed 104). A real change (another heartbeat setting) still updates, and drops them.
    """
    existing = await client.read_automations_by_name(automation.name)
    if not existing:
        return await client.create_automation(automation)
    keep, *extra = existing
    if not same_automation(keep, automation):
        await client.update_automation(keep.id, automation)
    for duplicate in extra:
        await client.delete_automation(duplicate.id)
    return keep.id


def same_automation(a: AutomationCore, b: AutomationCore) -> bool:
    """Whether two automations say the same (the fields one creates an automation with)."""

    def spec(automation: AutomationCore) -> dict[str, Any]:
        fields = set(AutomationCore.model_fields)
        return automation.model_dump(include=fields)

    return spec(a) == spec(b)


async def ensure_webhook_block(url: str) -> UUID:
    """The notification block that posts failure messages to ``url`` (http or https only:
    the Prefect server itself would post to it)."""
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
    except ValueError:
        host = None
    if not host or parts.scheme.lower() not in ("http", "https"):
        raise ConfigurationError("the failure webhook must be an http:// or https:// URL")
    block = CustomWebhookNotificationBlock(
        name="scribe-stream failures",
        url=url,
        method="POST",
        json_data={"subject": "{{subject}}", "text": "{{body}}"},
    )
    return await block.asave(WEBHOOK_BLOCK, overwrite=True)

"""Automations are brought up to date without being touched when nothing changed."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from prefect.events.schemas.automations import Automation, AutomationCore

from prefect_bridge.automations import ensure_automation, same_automation, zombie_automation

DEPLOYMENT = uuid.uuid4()


def read_back(automation: AutomationCore, automation_id: uuid.UUID | None = None) -> Automation:
    """``automation`` as Prefect's API returns it: through JSON, with an id."""
    data = json.loads(automation.model_dump_json())
    return Automation.model_validate({**data, "id": str(automation_id or uuid.uuid4())})


class FakeAutomations:
    """read_automations_by_name / create / update / delete of a PrefectClient."""

    def __init__(self) -> None:
        self.stored: list[Automation] = []
        self.updates = 0

    async def read_automations_by_name(self, name: str) -> list[Automation]:
        return [a for a in self.stored if a.name == name]

    async def create_automation(self, automation: AutomationCore) -> uuid.UUID:
        stored = read_back(automation)
        self.stored.append(stored)
        return stored.id

    async def update_automation(self, automation_id: uuid.UUID, automation: Any) -> None:
        self.updates += 1
        self.stored = [
            read_back(automation, automation_id) if a.id == automation_id else a
            for a in self.stored
        ]

    async def delete_automation(self, automation_id: uuid.UUID) -> None:
        self.stored = [a for a in self.stored if a.id != automation_id]


async def test_a_runner_start_leaves_an_unchanged_automation_untouched() -> None:
    """Chaos campaign, seed 104: each update gives the trigger a new id in Prefect, which
    drops the open window of every run in flight; runners start often (after a crash)."""
    prefect = FakeAutomations()
    zombies = zombie_automation("novel-processing/novel-processor", DEPLOYMENT, 30)
    first = await ensure_automation(prefect, zombies)  # type: ignore[arg-type]
    again = await ensure_automation(prefect, zombies)  # type: ignore[arg-type]
    assert first == again and prefect.updates == 0
    slower = zombie_automation("novel-processing/novel-processor", DEPLOYMENT, 60)
    assert await ensure_automation(prefect, slower) == first  # type: ignore[arg-type]
    assert prefect.updates == 1 and len(prefect.stored) == 1


def test_an_automation_read_back_says_the_same_as_the_one_made() -> None:
    zombies = zombie_automation("novel-processing/novel-processor", DEPLOYMENT, 30)
    assert same_automation(read_back(zombies), zombies)
    assert not same_automation(read_back(zombies), zombie_automation("other", DEPLOYMENT, 30))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "javascript:alert(1)", "gopher://x/"])
async def test_a_webhook_block_is_refused_for_a_url_that_is_not_http(url: str) -> None:
    """Refused before any Prefect call (none is reachable here)."""
    from prefect_bridge.automations import ensure_webhook_block
    from schemas import ConfigurationError

    with pytest.raises(ConfigurationError, match="http"):
        await ensure_webhook_block(url)

"""The process worker's command for each flow run (RELIABILITY.md, defect 29)."""

from __future__ import annotations

import sys
import uuid

from prefect.client.schemas.objects import FlowRun

from streams.runner import FlowProcessJob, FlowProcessWorker


def _run() -> FlowRun:
    return FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), name="n/c1@v1")


def test_a_job_without_a_command_runs_the_flow_to_its_state_in_this_interpreter() -> None:
    job = FlowProcessJob()
    job.prepare_for_flow_run(_run())
    assert job.command == f"{sys.executable} -m streams.flow_process"
    # Prefect starts a configured command as it is (not its workspace launcher).
    assert job._command_configured
    assert FlowProcessWorker.job_configuration is FlowProcessJob


def test_a_deployments_own_command_is_kept() -> None:
    job = FlowProcessJob(command="python -m prefect.engine")
    job.prepare_for_flow_run(_run())
    assert job.command == "python -m prefect.engine"

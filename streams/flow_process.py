"""The command Prefect's process worker runs for each flow run (RELIABILITY.md, defect 29).

Prefect's own, ``python -m prefect.engine``, runs the flow and then asks it for its
*result*: a run that ended ``AwaitingRetry`` (a service away, ``prefect_bridge.try_later``)
raises ``UnfinishedRun`` there, the process exits 1 and the worker records the run
Crashed over its scheduled retry, so each try-later counted as a crash and a long outage
failed the chapter after ``MAX_CRASH_ATTEMPTS``. This command is the same engine (as of
Prefect 3.9: the control channel, the engine's signal handling, the flow loaded from its
deployment) asking for the run's final *state* instead, as the warm runner does: the
state is already in Prefect, whatever it is, so the process exits 0 once the engine has
recorded it, and a crash is still a crash (a non-zero exit, a signal, no state).

``scribe flows serve`` runs it for each run (``streams.runner.FlowProcessJob``); another
Process worker runs it when the deployment's ``command`` job variable names it:
``python -m streams.flow_process``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import cast
from uuid import UUID

from prefect._internal.control_listener import configure_from_env
from prefect.engine import handle_engine_signals
from prefect.flow_engine import load_flow, load_flow_run, run_flow
from prefect.logging.loggers import flow_run_logger
from prefect.utilities.processutils import command_to_string


def main(argv: list[str]) -> None:
    """Run the flow run named by ``argv[1]`` or ``PREFECT__FLOW_RUN_ID`` to its state."""
    flow_run_id = UUID(argv[1] if len(argv) > 1 else os.environ["PREFECT__FLOW_RUN_ID"])
    configure_from_env()  # the runner's cancel channel, before any flow code loads
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        flow = load_flow(flow_run)
        ran = run_flow(
            flow,
            flow_run=flow_run,
            error_logger=cast(logging.Logger, flow_run_logger(flow_run=flow_run)),
            return_type="state",
        )
        if asyncio.iscoroutine(ran):  # an async flow: run it on this main thread's loop
            asyncio.run(ran)


def command() -> str:
    """This module as a process worker's command line, with the current interpreter."""
    return command_to_string([sys.executable, "-m", "streams.flow_process"])


if __name__ == "__main__":
    main(sys.argv)

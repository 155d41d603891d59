"""Logging set-up: plain text or one JSON object per line (``SCRIBE_LOG_JSON``).

Agents and the flow log with ``extra`` fields (event_id, novel_id, chapter_id, version,
flow_run_id), which the JSON format carries as keys, so one chapter can be traced from
the chapter agent through its flow run to the sink. Settings are never logged; secrets
are ``SecretStr`` everywhere.
"""

from __future__ import annotations

import logging
import logging.config
from typing import Any

PLAIN = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def logging_config(level: str, as_json: bool, *, quiet_clients: bool = False) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` for the root logger (also handed to Faust).

    ``quiet_clients`` (the one-shot commands) keeps aiokafka at WARNING unless ``level``
    is DEBUG: its INFO lines (one per subscription and group coordinator) say nothing to
    the person running ``scribe replay``; the worker keeps them, as group events matter
    there.
    """
    formatter: dict[str, Any] = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        }
        if as_json
        else {"format": PLAIN}
    )
    loggers: dict[str, Any] = {"httpx": {"level": "WARNING"}}  # one line per API call
    if quiet_clients and level.upper() != "DEBUG":
        loggers["aiokafka"] = {"level": "WARNING"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"scribe": formatter},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "scribe"}},
        "root": {"level": level.upper(), "handlers": ["console"]},
        "loggers": loggers,
    }


def configure(level: str, as_json: bool) -> None:
    """Apply :func:`logging_config` for a command (quiet clients)."""
    logging.config.dictConfig(logging_config(level, as_json, quiet_clients=True))

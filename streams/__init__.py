"""Wiring of scribe-stream: settings, topics, the Faust app, the embedded stack, the CLI.

Prefect reads its settings (``PREFECT_API_URL``, ``PREFECT_HOME``, ...) once, when it is
first imported; a process that imports it before exporting scribe's Prefect environment
silently starts a throwaway server instead of talking to the configured one. Every entry
point therefore calls :func:`export_prefect_env` first (the CLI does it in ``main``, before
any command runs), and the modules that drive Prefect call :func:`check_prefect_env`,
which fails loudly when the order was wrong.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.settings import Settings


def export_prefect_env(settings: Settings) -> None:
    """Put ``settings.prefect_env()`` into this process's environment, before Prefect reads it.

    Raises :class:`schemas.ConfigurationError` when Prefect has been imported already with
    other settings (see :func:`check_prefect_env`).
    """
    env = settings.prefect_env()
    os.environ.update(env)
    # Prefect creates its home without parents and warns on every command when it cannot,
    # as in a fresh checkout before anything made the data dir.
    with contextlib.suppress(OSError):
        Path(env["PREFECT_HOME"]).mkdir(parents=True, exist_ok=True)
    check_prefect_env(settings)


def check_prefect_env(settings: Settings) -> None:
    """Raise :class:`schemas.ConfigurationError` unless Prefect, if imported, uses our API.

    Prefect in ``sys.modules`` with another API URL (or none: a throwaway server) means
    a module imported it before :func:`export_prefect_env` ran; nothing in this process can
    fix that any more, so stop with the reason instead of talking to the wrong server.
    """
    if "prefect" not in sys.modules:
        return
    from prefect.settings import get_current_settings

    from schemas import ConfigurationError

    wanted = settings.prefect_env()["PREFECT_API_URL"]
    seen = get_current_settings().api.url
    if seen != wanted:
        raise ConfigurationError(
            f"Prefect was imported before scribe exported its environment: it uses API "
            f"{seen or 'none (a throwaway temporary server)'} instead of {wanted}. Call "
            "streams.export_prefect_env(settings) before anything imports prefect "
            "(the scribe CLI does it in main())."
        )

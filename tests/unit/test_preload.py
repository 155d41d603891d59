"""pymilvus is imported before any flow run starts, never by a run's first index lookup.

Its first import reconfigures logging while holding the logging lock; inside a running
flow that deadlocked a warm runner against Prefect's log and event workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_flow_entrypoint_imports_pymilvus_when_it_is_loaded(tmp_path: Path) -> None:
    code = "import sys, streams.flow_entry; print('pymilvus' in sys.modules)"
    env = {**os.environ, "SCRIBE_DATA_DIR": str(tmp_path), "PREFECT_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr[-2000:]

"""The sink's flush cadence: at most one Milvus flush per interval under load.

Each flush seals a segment; flushing every small batch under load makes many small
segments (Milvus Lite's memory grew with them in the soak run) for no gain in latency,
since the next batch is already waiting. The pacer holds the next batch back until the
interval since the last flush has passed: under load batches grow and flushes thin out;
a result that arrives after a quiet spell is written at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FlushPacer:
    """Tells the sink how long to wait before taking its next batch."""

    interval: float
    clock: Callable[[], float] = time.monotonic
    _last: float | None = field(default=None, init=False)

    def flushed(self) -> None:
        """A batch was written and flushed now."""
        self._last = self.clock()

    def pause(self) -> float:
        """Seconds to wait before the next batch (0 when the last flush is old enough)."""
        if self._last is None:
            return 0.0
        return max(0.0, self.interval - (self.clock() - self._last))

"""Peak resident memory of processes and their descendants, read from /proc (Linux).

A background thread samples every ``interval`` seconds. Per tracked role it keeps:

* ``root_hwm_mib``: the root process's own ``VmHWM`` (kernel-kept peak RSS);
* ``tree_peak_mib``: the highest sum of ``VmRSS`` over the root and its descendants seen
  in a sample (flow-run processes of Prefect's process worker, PostgreSQL backends);
* ``child_peak_mib``: the highest ``VmHWM`` of any single descendant.

Shared pages (PostgreSQL's shared buffers, the model file mapped by several processes)
are counted once per process, so tree sums overstate what the machine spends.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

KIB_PER_MIB = 1024.0


def status_kib(pid: int, field: str) -> int | None:
    """A ``kB`` field of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``), None if gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return None


def self_hwm_mib() -> float:
    """Peak RSS of this process so far, in MiB."""
    return round((status_kib(os.getpid(), "VmHWM") or 0) / KIB_PER_MIB, 1)


def _parents() -> dict[int, list[int]]:
    """Children of every process, from the ppid field of ``/proc/*/stat``."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    return children


def _descendants(root: int, children: dict[int, list[int]]) -> list[int]:
    out: list[int] = []
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@dataclass
class Peak:
    """Peaks of one role."""

    root_hwm_mib: float = 0.0
    tree_peak_mib: float = 0.0
    child_peak_mib: float = 0.0


class RssSampler:
    """Samples the tracked process trees in a daemon thread until stopped."""

    def __init__(self, interval: float = 0.5) -> None:
        self._interval = interval
        self._roots: dict[str, tuple[int, bool]] = {}
        self._peaks: dict[str, Peak] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def track(self, role: str, pid: int, *, tree: bool = True) -> None:
        """Follow ``pid`` (and its descendants when ``tree``) under ``role``."""
        with self._lock:
            self._roots[role] = (pid, tree)
            self._peaks.setdefault(role, Peak())

    def untrack(self, role: str) -> None:
        """Take a last sample of ``role`` and stop following it (its peaks stay)."""
        self.sample()
        with self._lock:
            self._roots.pop(role, None)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling (after one last sample)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self._interval)

    def sample(self) -> None:
        """One sample of every tracked tree."""
        with self._lock:
            roots = dict(self._roots)
        children = _parents() if any(tree for _, tree in roots.values()) else {}
        for role, (pid, tree) in roots.items():
            hwm = status_kib(pid, "VmHWM")
            if hwm is None:
                continue
            kids = _descendants(pid, children) if tree else []
            total = (status_kib(pid, "VmRSS") or 0) + sum(status_kib(k, "VmRSS") or 0 for k in kids)
            kid_hwm = max((status_kib(k, "VmHWM") or 0 for k in kids), default=0)
            with self._lock:
                peak = self._peaks[role]
                peak.root_hwm_mib = max(peak.root_hwm_mib, round(hwm / KIB_PER_MIB, 1))
                peak.tree_peak_mib = max(peak.tree_peak_mib, round(total / KIB_PER_MIB, 1))
                peak.child_peak_mib = max(peak.child_peak_mib, round(kid_hwm / KIB_PER_MIB, 1))

    def peaks(self) -> dict[str, dict[str, float]]:
        """Peaks so far, by role."""
        with self._lock:
            return {
                role: {
                    "root_hwm_mib": p.root_hwm_mib,
                    "tree_peak_mib": p.tree_peak_mib,
                    "child_peak_mib": p.child_peak_mib,
                }
                for role, p in sorted(self._peaks.items())
            }

"""Peak resident memory and CPU time of processes and their descendants, from /proc (Linux).

A background thread samples every ``interval`` seconds. Per tracked role it keeps:

* ``root_hwm_mib``: the root process's own ``VmHWM`` (kernel-kept peak RSS);
* ``tree_peak_mib``: the highest sum of ``VmRSS`` over the root and its descendants seen
  in a sample (flow-run processes of Prefect's process worker, PostgreSQL backends);
* ``child_peak_mib``: the highest ``VmHWM`` of any single descendant.

Shared pages (PostgreSQL's shared buffers, the model file mapped by several processes)
are counted once per process, so tree sums overstate what the machine spends.

:meth:`RssSampler.cpu_snapshot` reads the CPU seconds of the same trees and of the whole
machine, so a phase can tell what its processes spent from what other work on the
machine took (:func:`cpu_delta`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

KIB_PER_MIB = 1024.0
TICKS = float(os.sysconf("SC_CLK_TCK"))
#: Key of the machine's busy CPU seconds in a CPU snapshot.
MACHINE = "_machine"


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


def cpu_s(pid: int, *, reaped: bool) -> float | None:
    """utime + stime of ``pid`` (plus its reaped children's when ``reaped``), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICKS


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores, from /proc/stat)."""
    values = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return (user + nice + system + irq + softirq + steal) / TICKS


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per role between two snapshots, with ``ours``, ``machine`` and ``other``.

    ``other`` is what the machine spent outside the tracked processes (other work, the
    kernel): the larger it is, the less the phase's timings say about scribe itself.
    """
    out = {
        role: round(after[role] - before[role], 2)
        for role in sorted(after)
        if role in before and role != MACHINE
    }
    ours = round(sum(out.values()), 2)
    machine = round(after[MACHINE] - before[MACHINE], 2)
    return {**out, "ours": ours, "machine": machine, "other": round(machine - ours, 2)}


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

    def cpu_snapshot(self) -> dict[str, float]:
        """CPU seconds so far of every tracked tree (reaped descendants included) and the
        machine's busy seconds under :data:`MACHINE`."""
        with self._lock:
            roots = dict(self._roots)
        children = _parents()
        out: dict[str, float] = {MACHINE: machine_busy_s()}
        for role, (pid, tree) in roots.items():
            own = cpu_s(pid, reaped=tree)
            if own is None:
                continue
            kids = _descendants(pid, children) if tree else []
            out[role] = own + sum(cpu_s(k, reaped=True) or 0.0 for k in kids)
        return out

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

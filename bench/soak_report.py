"""The soak's numbers (pure): RSS at 10/50/100 % of the chapters, growth, a verdict.

A sample is ``{"t_s": ..., "done": <chapters searchable>, "rss_mib": {role: MiB},
"anon_mib": {role: MiB}}``; each value is summed over the role's process and its
descendants. Growth is taken over the second half of the chapters only: by then the
model is loaded, the caches and pools are filled and the JVM's heap is sized, so a
process that still grows is one that keeps something per chapter.

Verdict: a role *grows* when the least-squares line of its RSS against the chapters
searchable, over the samples from 50 % of the chapters on, rises over that half by more
than ``max(FLAT_MIB, FLAT_FRACTION x its RSS at 50 %)``; else it is *flat*. The floor is
above the jitter of one process's RSS between samples (allocator arenas, garbage
collection); the fraction keeps that jitter of large processes (the runner holds the
model) from reading as growth. A steady leak of more than that per half run shows.
"""

from __future__ import annotations

import math
from typing import Any

#: A role is flat while its fitted growth over the second half stays under
#: ``max(FLAT_MIB, FLAT_FRACTION x RSS at 50 %)``.
FLAT_MIB = 10.0
FLAT_FRACTION = 0.02

Sample = dict[str, Any]


def at_done(samples: list[Sample], role: str, done: int, key: str = "rss_mib") -> float | None:
    """``role``'s value in the first sample with at least ``done`` chapters searchable."""
    for s in samples:
        if s["done"] >= done and role in s[key]:
            return float(s[key][role])
    return None


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``points`` (x, y); None without two distinct x."""
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def threshold_mib(rss_mid: float) -> float:
    """Largest growth over the second half that still counts as flat."""
    return max(FLAT_MIB, FLAT_FRACTION * rss_mid)


def verdict(growth_mib: float | None, rss_mid: float | None) -> str:
    """``flat``, ``grows``, or ``n/a`` when there is too little to tell."""
    if growth_mib is None or rss_mid is None:
        return "n/a"
    return "flat" if growth_mib <= threshold_mib(rss_mid) else "grows"


def _r(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def role_summary(samples: list[Sample], role: str, chapters: int) -> dict[str, Any]:
    """RSS at 10/50/100 %, growth over the second half (fit, end - mid) and the verdict."""
    mid = math.ceil(chapters / 2)
    rss10 = at_done(samples, role, max(1, math.ceil(chapters / 10)))
    rss50 = at_done(samples, role, mid)
    last = next((s for s in reversed(samples) if role in s["rss_mib"]), None)
    rss100 = None if last is None or last["done"] < chapters else float(last["rss_mib"][role])
    half = chapters - mid
    fit: dict[str, float | None] = {}
    for key in ("rss_mib", "anon_mib"):
        pts = [
            (float(s["done"]), float(s[key][role]))
            for s in samples
            if s["done"] >= mid and role in s.get(key, {})
        ]
        fit[key] = slope(pts)
    growth = None if fit["rss_mib"] is None else fit["rss_mib"] * half
    end_mid = None if rss100 is None or rss50 is None else rss100 - rss50
    return {
        "rss_10pct_mib": _r(rss10),
        "rss_50pct_mib": _r(rss50),
        "rss_100pct_mib": _r(rss100),
        "growth_second_half_mib": _r(growth),
        "mib_per_100_chapters": _r(None if fit["rss_mib"] is None else fit["rss_mib"] * 100, 2),
        "anon_mib_per_100_chapters": _r(
            None if fit["anon_mib"] is None else fit["anon_mib"] * 100, 2
        ),
        "end_minus_mid_mib": _r(end_mid),
        "flat_below_mib": _r(None if rss50 is None else threshold_mib(rss50)),
        "verdict": verdict(growth, rss50),
    }


def summarize_series(samples: list[Sample], chapters: int) -> dict[str, dict[str, Any]]:
    """:func:`role_summary` of every role seen in the samples, in order of first sight."""
    roles: dict[str, None] = {}
    for s in samples:
        roles.update(dict.fromkeys(s["rss_mib"]))
    return {role: role_summary(samples, role, chapters) for role in roles}


def _f(x: Any, digits: int = 0) -> str:
    return "–" if x is None else f"{float(x):.{digits}f}"


def soak_section(results: dict[str, Any]) -> list[str]:
    """The ``## Soak`` part of BENCHMARKS.md (a line saying it was not run when absent)."""
    soak = results.get("soak")
    if not soak:
        why = "failed (see below)" if "soak" in results.get("errors", {}) else "not run"
        return ["## Soak", "", f"The soak run {why}; `python -m bench --soak 500` measures it."]
    n, run = soak["chapters"], soak["run"]
    procs: dict[str, dict[str, Any]] = soak["processes"]
    growing = [role for role, p in procs.items() if p["verdict"] == "grows"]
    lines = [
        f"## Soak: {n} chapters, memory over time",
        "",
        f"The warm pipeline (`flows serve --warm` + `worker`) on {n} one-chunk chapters "
        f"(~{soak['chars_per_chapter']} characters of the sample each, {soak['novels']} "
        "novels), produced at once (the chapter agent keeps at most "
        f"{soak['max_in_flight']} flow runs in flight): {_f(run.get('chapters_per_s'), 2)} "
        f"chapters/s, {_f(run.get('chunks_per_s'), 2)} chunks/s, {_f(run.get('wall_s'))} s "
        f"from first produce to last searchable. RSS (VmRSS summed over each process and its "
        f"descendants) was sampled every {soak['interval_s']:g} s with the number of "
        "chapters searchable; growth is the least-squares slope over the samples from 50 % "
        f"of the chapters on. A process is *flat* when that growth over the second half "
        f"stays under max({FLAT_MIB:g} MiB, {FLAT_FRACTION:.0%} of its RSS at 50 %), the "
        "column *flat below*. *Anonymous*: the same slope of RssAnon (heap, not mapped "
        "files or shared memory): growth there is what a leak looks like.",
        "",
        "| process | RSS at 10 % MiB | at 50 % | at 100 % | growth, 2nd half MiB "
        "| MiB per 100 chapters | anonymous MiB per 100 chapters | end - mid MiB "
        "| flat below MiB | verdict |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for role, p in procs.items():
        lines.append(
            f"| {role} | {_f(p['rss_10pct_mib'])} | {_f(p['rss_50pct_mib'])} "
            f"| {_f(p['rss_100pct_mib'])} | {_f(p['growth_second_half_mib'], 1)} "
            f"| {_f(p['mib_per_100_chapters'], 1)} | {_f(p['anon_mib_per_100_chapters'], 1)} "
            f"| {_f(p['end_minus_mid_mib'], 1)} | {_f(p['flat_below_mib'])} | {p['verdict']} |"
        )
    summary = (
        f"grows: {', '.join(growing)}"
        if growing
        else "every process flat"
        if all(p["verdict"] == "flat" for p in procs.values())
        else "not enough samples for every process"
    )
    lines += [
        "",
        f"Verdict over {n} chapters: **{summary}**. *total* sums the rows above (shared "
        "pages counted once per process).",
        "",
        "![soak chart](bench/latest-soak.png)",
    ]
    return lines

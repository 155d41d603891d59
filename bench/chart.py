"""A small bar chart of one bench run (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

SCENARIOS = ("direct", "warm", "process")
COLORS = {"direct": "#4c72b0", "warm": "#55a868", "process": "#c44e52"}


def _get(d: dict[str, Any] | None, *keys: str) -> float:
    """Nested lookup; NaN where anything is missing."""
    cur: Any = d
    for key in keys:
        if not isinstance(cur, dict) or cur.get(key) is None:
            return float("nan")
        cur = cur[key]
    return float(cur)


def render(results: dict[str, Any], path: Path) -> None:
    """Throughput, latency and ratios-to-baseline side by side, as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scen: dict[str, Any] = results.get("scenarios", {})
    names = [n for n in SCENARIOS if n in scen]
    fig, (ax1, ax2, ax3) = plt.subplots(
        1, 3, figsize=(14, 4), dpi=100, gridspec_kw={"width_ratios": [1, 1.2, 1.5]}
    )

    rates = [_get(scen[n], "burst", "chunks_per_s") for n in names]
    ax1.bar(names, rates, color=[COLORS[n] for n in names])
    ax1.set_title("end-to-end throughput (burst)")
    ax1.set_ylabel("chunks / s")
    for i, v in enumerate(rates):
        ax1.annotate(f"{v:.2f}", (i, v), ha="center", va="bottom", fontsize=8)

    width = 0.38
    xs = list(range(len(names)))
    burst = [_get(scen[n], "burst", "latency_p50_s") for n in names]
    iso = [_get(scen[n], "isolated", "latency_p50_s") for n in names]
    ax2.bar([x - width / 2 for x in xs], burst, width, label="p50, burst", color="#8c8c8c")
    ax2.bar(
        [x + width / 2 for x in xs],
        iso,
        width,
        label="p50, one at a time",
        color=[COLORS[n] for n in names],
    )
    target = _get(results, "targets_detail", "latency_target_s")
    if target == target:  # not NaN
        ax2.axhline(target, color="black", linestyle="--", linewidth=1, label="target (warm)")
    ax2.set_xticks(xs, names)
    ax2.set_title("produce -> searchable latency")
    ax2.set_ylabel("seconds")
    ax2.legend(fontsize=7)

    ratios = results.get("ratios", {})
    labels = [
        "warm/direct",
        "warm/direct\nper CPU-s",
        "process/direct",
        "submit\nagent/raw",
        "sink\nagent/raw",
    ]
    keys = [
        "warm_vs_direct",
        "warm_vs_direct_cpu",
        "process_vs_direct",
        "submission_agent_vs_raw",
        "sink_agent_vs_raw",
    ]
    goals = [0.8, 0.8, None, 0.9, 0.8]
    values = [_get(ratios, k) for k in keys]
    colors = ["#55a868", "#8fd19e", "#c44e52", "#8172b2", "#ccb974"]
    ax3.bar(range(len(keys)), values, color=colors)
    for i, goal in enumerate(goals):
        if goal is not None:
            ax3.hlines(goal, i - 0.4, i + 0.4, colors="black", linestyles="--", linewidth=1)
    for i, v in enumerate(values):
        ax3.annotate(f"{v:.2f}x", (i, v), ha="center", va="bottom", fontsize=8)
    ax3.set_xticks(range(len(keys)), labels, fontsize=7)
    ax3.set_title("ratio (dashed: target)")
    ax3.axhline(1.0, color="grey", linewidth=0.5)

    fig.suptitle(
        f"scribe-stream bench: {results.get('config', {}).get('chapters')} chapters, "
        f"{results.get('machine', {}).get('nproc')} cores",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def render_soak(soak: dict[str, Any], path: Path) -> None:
    """RSS per process against chapters searchable, and its change since 10 %, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples: list[dict[str, Any]] = soak.get("samples") or []
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4), dpi=100)
    for role, p in (soak.get("processes") or {}).items():
        if role == "total":
            continue
        pts = [(s["done"], s["rss_mib"][role]) for s in samples if role in s["rss_mib"]]
        if not pts:
            continue
        xs, ys = [x for x, _ in pts], [y for _, y in pts]
        label = f"{role} ({p.get('verdict')})"
        ax1.plot(xs, ys, label=label, linewidth=1.2)
        base = p.get("rss_10pct_mib")
        if base is not None:
            ax2.plot(xs, [y - base for y in ys], label=label, linewidth=1.2)
    ax1.set_title("RSS of each process tree")
    ax1.set_ylabel("MiB")
    ax2.set_title("RSS minus its value at 10 % of the chapters")
    ax2.set_ylabel("MiB")
    ax2.axhline(0, color="grey", linewidth=0.5)
    for ax in (ax1, ax2):
        if soak.get("chapters"):
            ax.axvline(soak["chapters"] / 2, color="grey", linestyle="--", linewidth=0.8)
        ax.set_xlabel("chapters searchable (dashed: 50 %, where the growth fit starts)")
        ax.legend(fontsize=7)
    fig.suptitle(f"scribe-stream soak: {soak.get('chapters')} chapters", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)

"""Figures (matplotlib, Agg backend: no display needed)."""
from __future__ import annotations

import os
from typing import Dict, List, Optional


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def cactus(series: Dict[str, List[float]], path: str, title: str = "instances solved vs time",
           timeout: Optional[float] = None) -> str:
    """One step line per tool: how many instances it solved within t seconds (x log scale)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    floor = 0.01
    longest = max([max(v) for v in series.values() if v] + [1.0])
    for name, times in sorted(series.items(), key=lambda kv: -len(kv[1])):
        ts = sorted(max(floor, float(t)) for t in times)
        xs = [floor] + ts + [max(longest, timeout or 0.0)]
        ys = [0] + list(range(1, len(ts) + 1)) + [len(ts)]
        ax.step(xs, ys, where="post", label=f"{name} ({len(ts)})", linewidth=1.6)
    if timeout:
        ax.axvline(timeout, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("time (s, log scale)")
    ax.set_ylabel("instances solved")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def bars(values: Dict[str, float], path: str, title: str, ylabel: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    names = list(values)
    ax.bar(names, [values[n] for n in names])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path

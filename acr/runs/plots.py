"""Figures of sweeps and reports: top-1 per bucket, one dot per seed, the seed interval as bars.

Drawn with matplotlib's Agg backend, so they render without a display (CI, servers).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)
import numpy as np  # noqa: E402

MAX_BUCKETS = 24  # beyond this a figure is unreadable; crossed cells are left to the tables


def _figure(buckets: list[str], groups: int) -> tuple[plt.Figure, plt.Axes]:
    """Wide enough for ``groups`` marks in each bucket."""
    return plt.subplots(figsize=(max(6.0, 1.0 + 0.3 * len(buckets) * groups), 4.5))


def _save(figure: plt.Figure, axes: plt.Axes, buckets: list[str], title: str, path: Path) -> Path:
    """Bucket names under the groups, top-1 on [0, 1], the legend, then a PNG at ``path``."""
    axes.set_xticks(np.arange(len(buckets)), buckets, rotation=35, ha="right", fontsize=8)
    axes.set_ylim(-0.02, 1.02)
    axes.set_ylabel("top-1")
    axes.set_title(title, fontsize=10)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def single_buckets(buckets: list[str]) -> list[str]:
    """``overall`` first, then one-column buckets (``degradation=noise``), no crossed cells."""
    singles = [bucket for bucket in buckets if bucket != "overall" and bucket.count("=") == 1]
    return (["overall"] if "overall" in buckets else []) + sorted(singles)[: MAX_BUCKETS - 1]


def per_seed_top1(results: list[dict], system: str) -> dict[str, dict[str, list[float]]]:
    """arm -> bucket -> top-1 of each seed."""
    values: dict[str, dict[str, list[float]]] = {}
    for result in sorted(results, key=lambda r: r["seed"]):
        buckets = result["systems"].get(system, {})
        for bucket, metrics in buckets.items():
            values.setdefault(result["arm"], {}).setdefault(bucket, []).append(metrics["top1"])
    return values


def plot_top1_by_bucket(
    results: list[dict], summary: dict, system: str, path: Path, title: str
) -> Path:
    """One group of points per bucket, one colour per arm: seeds as dots, mean with its 95 %
    interval over seeds as an error bar."""
    per_seed = per_seed_top1(results, system)
    arms = sorted(per_seed)
    buckets = single_buckets(sorted({b for arm in arms for b in per_seed[arm]}))
    figure, axes = _figure(buckets, len(arms))
    width = 0.8 / max(1, len(arms))
    for position, arm in enumerate(arms):
        offsets = np.arange(len(buckets)) - 0.4 + width * (position + 0.5)
        means, lows, highs = [], [], []
        for x, bucket in zip(offsets, buckets):
            seeds = per_seed[arm].get(bucket, [])
            axes.scatter([x] * len(seeds), seeds, s=14, alpha=0.6, color=f"C{position}")
            interval = summary[arm][system].get(bucket, {}).get("top1", {})
            means.append(interval.get("mean", np.nan))
            lows.append(interval.get("ci95", [np.nan])[0])
            highs.append(interval.get("ci95", [np.nan, np.nan])[1])
        means = np.asarray(means)
        errors = np.clip([means - np.asarray(lows), np.asarray(highs) - means], 0, None)
        axes.errorbar(offsets, means, yerr=errors, fmt="o", color=f"C{position}", capsize=3,
                      markersize=6, label=arm)  # fmt: skip
    return _save(figure, axes, buckets, title, path)


def plot_buckets_with_intervals(series: dict[str, dict[str, dict]], path: Path, title: str) -> Path:
    """Top-1 per bucket for each named result set (a system, the untrained model...), with its
    95 % interval (``ci95.top1``) as error bars."""
    names = list(series)
    buckets = single_buckets(list(series[names[-1]]))
    figure, axes = _figure(buckets, len(names))
    width = 0.8 / len(names)
    for position, name in enumerate(names):
        offsets = np.arange(len(buckets)) - 0.4 + width * (position + 0.5)
        cells = [series[name].get(bucket, {}) for bucket in buckets]
        means = np.array([cell.get("top1", np.nan) for cell in cells])
        intervals = np.array([cell.get("ci95", {}).get("top1", [np.nan, np.nan]) for cell in cells])
        errors = np.clip([means - intervals[:, 0], intervals[:, 1] - means], 0, None)
        axes.bar(offsets, means, width, yerr=errors, capsize=2, color=f"C{position}", label=name)
    return _save(figure, axes, buckets, title, path)

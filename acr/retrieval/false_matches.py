"""Scoring answers that may be "no match": how often music the index does not hold still gets
an answer (the false-match rate), and how many in-catalog queries are answered right at a given
false-match rate, per bucket, with Wilson intervals; and the DET curve of each system.

A system's decision score for a query is its calibrated probability (acr calibrate) where the
index has one, else its top score (log1p): ranking by it is all a ROC or DET curve needs. A
query that failed (unreadable, silent, too short) is never answered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from acr.data.manifests import bucket_columns
from acr.retrieval.calibration import Calibration, threshold_at
from acr.retrieval.metrics import format_bucket_value, proportion_interval
from acr.retrieval.recognizer import Recognition

# The false-match rates at which the true-positive rate is reported.
REPORTED_RATES = (0.01, 0.001)


def decision_scores(
    recognitions: Sequence[Recognition],
    system: str,
    calibration: Calibration | None,
) -> np.ndarray:
    """Each query's score for answering with ``system``'s top track (-inf: an error)."""
    model = calibration.systems.get(system) if calibration else None
    scores = np.full(len(recognitions), -np.inf)
    for row, recognition in enumerate(recognitions):
        if recognition.status == "error":
            continue
        ranking = recognition.ranking(system)
        if model is not None:
            scores[row] = model.probability(ranking, recognition.duration_s)
        elif ranking:
            scores[row] = math.log1p(max(ranking[0].score, 0.0))
    return scores


def right_answers(
    recognitions: Sequence[Recognition], truths: Sequence[str], system: str
) -> np.ndarray:
    """Whether each in-catalog query's top track under ``system`` is the right one."""
    return np.array(
        [
            recognition.status != "error"
            and bool(ranking := recognition.ranking(system))
            and ranking[0].track_id == truth
            for recognition, truth in zip(recognitions, truths)
        ],
        dtype=bool,
    )


def score_false_matches(
    inside: pd.DataFrame,
    inside_scores: np.ndarray,
    inside_right: np.ndarray,
    outside: pd.DataFrame,
    outside_scores: np.ndarray,
    threshold: float | None,
) -> dict[str, dict]:
    """Per cell (overall, then each value of each bucket both tables have): query counts, the
    true-positive rate at each of REPORTED_RATES, and with a calibrated ``threshold`` the
    false-match rate, right answers and wrong answers it gives; each rate with its 95 % Wilson
    interval (``ci95``)."""
    cells = {"overall": (np.arange(len(inside)), np.arange(len(outside)))}
    for column in [c for c in bucket_columns(inside) if c in outside.columns]:
        inside_groups = inside.groupby(column, sort=True).indices
        outside_groups = outside.groupby(column, sort=True).indices
        for value in sorted(set(inside_groups) & set(outside_groups), key=str):
            name = f"{column}={format_bucket_value(value)}"
            cells[name] = (inside_groups[value], outside_groups[value])
    return {
        name: _cell(inside_scores[i], inside_right[i], outside_scores[o], threshold)
        for name, (i, o) in cells.items()
    }


def _cell(
    inside_scores: np.ndarray,
    inside_right: np.ndarray,
    outside_scores: np.ndarray,
    threshold: float | None,
) -> dict:
    cell: dict = {"in_catalog": len(inside_scores), "out_of_catalog": len(outside_scores)}
    intervals: dict[str, list[float]] = {}

    def rate(name: str, hits: int, total: int) -> None:
        cell[name] = hits / total if total else math.nan
        intervals[name] = proportion_interval(hits, total)

    for target in REPORTED_RATES:
        # Below 1 / target out-of-catalog queries, the rate cannot be measured: the threshold
        # then lies above all of them, and the figure says what that stricter rule gives.
        at = threshold_at(outside_scores, target)
        hits = int((inside_right & (inside_scores >= at)).sum())
        rate(f"tpr_at_fmr_{target:g}", hits, len(inside_scores))
        cell[f"measurable_at_fmr_{target:g}"] = len(outside_scores) * target >= 1
    if threshold is not None:
        answered_outside = int((outside_scores >= threshold).sum())
        answered = inside_scores >= threshold
        rate("false_match_rate", answered_outside, len(outside_scores))
        rate("true_positive_rate", int((answered & inside_right).sum()), len(inside_scores))
        rate("wrong_answer_rate", int((answered & ~inside_right).sum()), len(inside_scores))
    cell["ci95"] = intervals
    return cell


def det_curve(
    inside_scores: np.ndarray, inside_right: np.ndarray, outside_scores: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(false-match rate, miss rate) at every threshold: a miss is an in-catalog query not
    answered with its right track."""
    thresholds = np.unique(np.concatenate([inside_scores, outside_scores]))
    thresholds = thresholds[np.isfinite(thresholds)]
    thresholds = np.r_[thresholds, np.inf]
    outside_sorted = np.sort(outside_scores)
    right_sorted = np.sort(inside_scores[inside_right])
    false_matches = len(outside_sorted) - np.searchsorted(outside_sorted, thresholds, "left")
    hits = len(right_sorted) - np.searchsorted(right_sorted, thresholds, "left")
    fmr = false_matches / max(len(outside_scores), 1)
    miss = 1 - hits / max(len(inside_scores), 1)
    return fmr, miss


def plot_det(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path) -> Path:
    """DET curves (Martin et al. 1997) on normal-deviate axes, one per system."""
    from scipy.stats import norm

    from acr.runs.plots import plt  # matplotlib with its Agg backend

    limits = (1e-4, 0.5)
    ticks = [0.0001, 0.001, 0.01, 0.05, 0.2, 0.5]
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for system, (fmr, miss) in curves.items():
        axes.plot(norm.ppf(np.clip(fmr, *limits)), norm.ppf(np.clip(miss, *limits)), label=system)
    labels = [f"{100 * t:g}%" for t in ticks]
    axes.set_xlim(*norm.ppf(limits))
    axes.set_ylim(*norm.ppf(limits))
    axes.set_xticks(norm.ppf(ticks), labels)
    axes.set_yticks(norm.ppf(ticks), labels)
    axes.set_xlabel("false-match rate (out-of-catalog queries answered)")
    axes.set_ylabel("miss rate (in-catalog queries not answered right)")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path

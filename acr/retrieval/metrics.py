"""Track-identification metrics: top-k accuracy and MRR from the rank of the right track.

A torchmetrics ``Metric`` so that it accumulates over batches, syncs across devices, and one
instance per bucket value gives per-bucket numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import binomtest
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from acr.data.manifests import bucket_columns

NOT_FOUND = math.inf  # rank of a right track that is absent from the ranked list


def rank_of(track_id: str, ranked_track_ids: Sequence[str]) -> float:
    """1-based position of ``track_id`` in a ranked list, or NOT_FOUND."""
    for position, candidate in enumerate(ranked_track_ids, start=1):
        if candidate == track_id:
            return float(position)
    return NOT_FOUND


class RetrievalAccuracy(Metric):
    """Top-k accuracy for each k in ``top_k`` and mean reciprocal rank, from 1-based ranks."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, top_k: Iterable[int] = (1, 5), **kwargs) -> None:
        super().__init__(**kwargs)
        self.top_k = tuple(top_k)
        self.add_state("ranks", default=[], dist_reduce_fx="cat")

    def update(self, ranks: torch.Tensor) -> None:
        self.ranks.append(torch.as_tensor(ranks, dtype=torch.float64).flatten())

    def compute(self) -> dict[str, torch.Tensor]:
        # Synced across processes the list state is one tensor; ``if self.ranks`` would then ask
        # a tensor of many values for its truth (the DDP crash of issue 16).
        ranks = self.ranks
        if isinstance(ranks, list):
            ranks = dim_zero_cat(ranks) if ranks else torch.zeros(0, dtype=torch.float64)
        if len(ranks) == 0:
            nan = torch.tensor(float("nan"), dtype=torch.float64)
            return {**{f"top{k}": nan for k in self.top_k}, "mrr": nan}
        results = {f"top{k}": (ranks <= k).double().mean() for k in self.top_k}
        results["mrr"] = (1.0 / ranks).mean()
        return results


def format_bucket_value(value: object) -> str:
    """``3.0`` -> ``3`` so bucket names read the way people write them."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def proportion_interval(successes: int, total: int, confidence: float = 0.95) -> list[float]:
    """Wilson score interval of a proportion (scipy's): never zero-width, so a perfect cell of
    100 queries says [0.963, 1.0], where a percentile bootstrap says [1.0, 1.0]. An empty cell
    knows nothing: [0, 1]."""
    if total == 0:
        return [0.0, 1.0]
    interval = binomtest(int(successes), int(total)).proportion_ci(confidence, method="wilson")
    return [float(interval.low), float(interval.high)]


def confidence_intervals(
    ranks: np.ndarray,
    top_k: Sequence[int],
    samples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, list[float]]:
    """Confidence intervals over queries: Wilson score intervals for top-k accuracy (a
    proportion), a percentile bootstrap of ``samples`` resamples for MRR (a mean of ranks).

    They say how much a number would move with another draw of queries of the same kind; with
    40 queries a top-1 of 0.80 is roughly 0.65-0.90.
    """
    intervals = {
        f"top{k}": proportion_interval(int((ranks <= k).sum()), len(ranks), confidence)
        for k in top_k
    }
    rng = np.random.default_rng(seed)
    resampled = ranks[rng.integers(0, len(ranks), size=(samples, len(ranks)))]
    reciprocal = (1.0 / resampled).mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    intervals["mrr"] = [
        float(np.percentile(reciprocal, tail)),
        float(np.percentile(reciprocal, 100 - tail)),
    ]
    return intervals


def metrics_by_bucket(
    ranks: Sequence[float],
    queries: pd.DataFrame,
    buckets: Sequence[str],
    crossed_buckets: Sequence[Sequence[str]] = (),
    top_k: Iterable[int] = (1, 5),
    bootstrap_samples: int = 0,
) -> dict[str, dict]:
    """Metrics overall, per value of each bucket column, and per combination of crossed buckets.

    Keys are ``overall``, ``degradation=noise``, ``degradation=noise,length_s=3``; every entry
    has the metrics and ``queries`` (how many queries the cell holds), and with
    ``bootstrap_samples`` also ``ci95``: a [low, high] interval per metric (Wilson for top-k,
    bootstrap for MRR: ``confidence_intervals``).
    """
    ranks = np.asarray(ranks, dtype=np.float64)
    queries = queries.reset_index(drop=True)
    top_k = tuple(top_k)

    def summarize(rows: np.ndarray) -> dict:
        # The ranks here are already every process's (RetrievalEvaluation gathers the windows
        # first), and a cell may exist on one rank only: no sync, which would wait forever.
        metric = RetrievalAccuracy(top_k, sync_on_compute=False)
        metric.update(torch.from_numpy(ranks[rows]))
        values: dict = {name: float(value) for name, value in metric.compute().items()}
        values["queries"] = int(len(rows))
        if bootstrap_samples and len(rows):
            values["ci95"] = confidence_intervals(ranks[rows], top_k, bootstrap_samples)
        return values

    results = {"overall": summarize(np.arange(len(ranks)))}
    groupings = [[column] for column in buckets]
    groupings += [list(combo) for combo in crossed_buckets if set(combo) <= set(buckets)]
    for columns in groupings:
        for values, rows in queries.groupby(columns, sort=True).indices.items():
            values = values if isinstance(values, tuple) else (values,)
            name = ",".join(f"{c}={format_bucket_value(v)}" for c, v in zip(columns, values))
            results[name] = summarize(rows)
    return results


def ranks_by_query(queries: pd.DataFrame, ranks: Sequence[float]) -> dict:
    """Each query's id, bucket values and the rank of its right track (None: not found).

    Kept beside the aggregates so that runs can be compared query by query (acr sweep's
    paired bootstrap) instead of only by their means.
    """
    ids = queries["query_id"] if "query_id" in queries else queries.index
    return {
        "query_id": [str(query_id) for query_id in ids],
        "rank": [None if math.isinf(rank) else int(rank) for rank in ranks],
        "buckets": {
            column: [format_bucket_value(value) for value in queries[column]]
            for column in bucket_columns(queries)
        },
    }

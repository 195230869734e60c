"""Statistics of ``acr sweep``: seed summaries, paired bootstrap, and Holm-adjusted verdicts.

A sweep compares two arms (configs, grid values) on per-query scores, e.g. 1/0 for top-1
correct or the reciprocal rank, from several training seeds. A difference is called real only
when it holds across seeds and queries: the previous prototype judged from one seed and a few
dozen queries, and its verdict flipped with every seed.

The verdict of ``compare_buckets`` uses Holm-adjusted p-values (Holm 1979), because a sweep
tests many buckets at once (overall, per degradation, per genre, ...) and some would look
significant by chance. The CI reported is the unadjusted 95 % percentile interval of B − A.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats

MEMORY_BUDGET_BYTES = 200_000_000  # resamples are drawn in chunks that fit in this


def seed_summary(
    values: Sequence[float], confidence: float = 0.95
) -> dict[str, float | list[float] | int]:
    """Mean, sample std, range and Student-t interval of one metric over training seeds.

    Student t rather than normal, because a sweep has 3-5 seeds, not 30.
    """
    per_seed = np.asarray(values, dtype=np.float64)
    if per_seed.ndim != 1 or len(per_seed) == 0:
        raise ValueError(f"seed_summary needs a non-empty list of per-seed values, got {values}")
    seeds = len(per_seed)
    mean = float(per_seed.mean())
    std = float(per_seed.std(ddof=1)) if seeds > 1 else 0.0
    half_width = 0.0
    if seeds > 1:
        half_width = stats.t.ppf((1 + confidence) / 2, seeds - 1) * std / np.sqrt(seeds)
    return {
        "mean": mean,
        "std": std,
        "min": float(per_seed.min()),
        "max": float(per_seed.max()),
        "ci95": [float(mean - half_width), float(mean + half_width)],
        "seeds": seeds,
    }


def _paired_scores(scores_a: np.ndarray, scores_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both arms as float [seeds, queries] arrays; a 1-D array is one seed."""
    a = np.atleast_2d(np.asarray(scores_a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(scores_b, dtype=np.float64))
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(
            "paired scores need the same [seeds, queries] shape for both arms, got "
            f"{np.shape(scores_a)} for A and {np.shape(scores_b)} for B"
        )
    if a.size == 0:
        raise ValueError(f"paired scores are empty: shape {a.shape}")
    return a, b


def _resampled_means(differences: np.ndarray, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Mean of ``differences`` under ``samples`` draws of seeds and of queries with replacement.

    Multinomial counts weight the rows and columns instead of indexing copies; queries are
    drawn in chunks to stay within MEMORY_BUDGET_BYTES. Seed and query draws use separate
    streams, so the chunk size does not change the result.
    """
    seeds, queries = differences.shape
    seed_rng, query_rng = rng.spawn(2)
    seed_weights = seed_rng.multinomial(seeds, np.full(seeds, 1 / seeds), size=samples)
    chunk = max(1, MEMORY_BUDGET_BYTES // (8 * 2 * queries))  # query weights + weighted rows
    means = np.empty(samples)
    for start in range(0, samples, chunk):
        stop = min(start + chunk, samples)
        query_weights = query_rng.multinomial(
            queries, np.full(queries, 1 / queries), size=stop - start
        )
        means[start:stop] = np.einsum(
            "bs,sq,bq->b", seed_weights[start:stop], differences, query_weights, optimize=True
        )
    return means / (seeds * queries)


def paired_bootstrap(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    samples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict:
    """Two-level paired bootstrap of mean(B) − mean(A) over [seeds, queries] scores.

    Each resample draws seeds with replacement and queries with replacement (one query draw
    shared by all seeds), as in hierarchical bootstrap (Davison & Hinkley 1997, §3.8; Saravanan
    et al. 2020): a difference must hold across training seeds, not only across the queries of
    one lucky seed. With one seed only queries vary. The p-value is two-sided,
    2·min(P*(Δ ≤ 0), P*(Δ ≥ 0)) with the (count + 1)/(samples + 1) correction (Davison &
    Hinkley 1997, ch. 4), so it is never exactly 0.
    """
    a, b = _paired_scores(scores_a, scores_b)
    differences = b - a
    means = _resampled_means(differences, samples, np.random.default_rng(seed))
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    at_most_zero = (np.count_nonzero(means <= 0) + 1) / (samples + 1)
    at_least_zero = (np.count_nonzero(means >= 0) + 1) / (samples + 1)
    return {
        "difference": float(differences.mean()),
        "ci95": [float(low), float(high)],
        "p_value": float(min(1.0, 2 * min(at_most_zero, at_least_zero))),
        "seeds": differences.shape[0],
        "queries": differences.shape[1],
    }


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni step-down adjusted p-values (Holm 1979), in the input order.

    The i-th smallest p is multiplied by (m − i + 1), made non-decreasing, and capped at 1.
    """
    unadjusted = np.asarray(p_values, dtype=np.float64)
    count = len(unadjusted)
    order = np.argsort(unadjusted, kind="stable")
    scaled = unadjusted[order] * (count - np.arange(count))
    adjusted = np.empty(count)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return adjusted.tolist()


def _verdict(difference: float, p_holm: float, names: tuple[str, str], alpha: float) -> str:
    if p_holm < alpha and difference > 0:
        return f"{names[1]} better"
    if p_holm < alpha and difference < 0:
        return f"{names[0]} better"
    return "no significant difference"


def compare_buckets(
    scores_a: np.ndarray,
    scores_b: np.ndarray,
    buckets: dict[str, np.ndarray],
    names: tuple[str, str] = ("A", "B"),
    alpha: float = 0.05,
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, dict]:
    """Paired bootstrap of B − A in each bucket of queries, with Holm-adjusted verdicts.

    ``buckets`` maps a name to a boolean mask or an index array over the queries. Every
    bucket uses the same ``seed``, so a bucket's numbers do not depend on the other buckets.
    """
    a, b = _paired_scores(scores_a, scores_b)
    all_queries = np.arange(a.shape[1])
    results: dict[str, dict] = {}
    for name, mask in buckets.items():
        columns = all_queries[np.asarray(mask)]
        if len(columns) == 0:
            results[name] = {"verdict": "no queries", "queries": 0}
            continue
        bucket_a, bucket_b = a[:, columns], b[:, columns]
        results[name] = {
            **paired_bootstrap(bucket_a, bucket_b, samples=samples, seed=seed),
            "mean_a": float(bucket_a.mean()),
            "mean_b": float(bucket_b.mean()),
        }
    tested = [name for name, result in results.items() if "p_value" in result]
    adjusted = holm_adjust([results[name]["p_value"] for name in tested])
    for name, p_holm in zip(tested, adjusted):
        result = results[name]
        result["p_holm"] = p_holm
        result["verdict"] = _verdict(result["difference"], p_holm, names, alpha)
    return results

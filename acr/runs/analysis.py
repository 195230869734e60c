"""What a sweep's runs say together: every metric over seeds, and paired verdicts between arms.

Input: the runs' ``result.json`` (acr.runs.sweep), each with per-bucket metrics and every query's
rank per system (``validation`` for a fit's last validation; ``embedding``, ``fingerprint``,
``hybrid`` ... after ``acr evaluate``). Comparisons are on top-1, query by query, on the seeds
and queries both arms share (acr.runs.statistics.compare_buckets).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from acr.retrieval.metrics import proportion_interval
from acr.runs.statistics import compare_buckets, seed_summary

SUMMARY_METRICS_SKIPPED = ("queries", "ci95")


def aggregate(results: list[dict]) -> dict[str, dict[str, dict[str, dict]]]:
    """arm -> system -> bucket -> metric -> seed summary (mean, std, min, max, ci95, seeds);
    top-k summaries also have ``pooled95``, the Wilson interval of all seeds' queries pooled,
    which a few seeds that agree cannot shrink to nothing (3 seeds at 1.00: [1.00, 1.00] by
    Student t)."""
    values: dict = defaultdict(lambda: defaultdict(lambda: defaultdict(lambda: defaultdict(list))))
    for result in results:
        for system, buckets in result["systems"].items():
            for bucket, metrics in buckets.items():
                for metric, value in metrics.items():
                    if metric not in SUMMARY_METRICS_SKIPPED:
                        values[result["arm"]][system][bucket][metric].append(value)
                values[result["arm"]][system][bucket]["queries"].append(metrics["queries"])
    return {
        arm: {
            system: {
                bucket: {
                    metric: _summary(metric, per_seed, metrics["queries"])
                    for metric, per_seed in metrics.items()
                }
                for bucket, metrics in buckets.items()
            }
            for system, buckets in systems.items()
        }
        for arm, systems in values.items()
    }


def _summary(metric: str, per_seed: list[float], queries: list[int]) -> int | dict:
    if metric == "queries":
        return int(np.mean(per_seed))
    summary = seed_summary(per_seed)
    if metric.startswith("top"):
        hits = sum(round(value * count) for value, count in zip(per_seed, queries))
        summary["pooled95"] = list(proportion_interval(hits, sum(queries)))
    return summary


def top1_matrix(results: list[dict], system: str, query_ids: list[str]) -> np.ndarray:
    """[seeds, queries] 1/0 top-1 of ``system`` over ``query_ids``, seeds in ascending order."""
    rows = []
    for result in sorted(results, key=lambda r: r["seed"]):
        per_query = result["per_query"][system]
        ranks = dict(zip(per_query["query_id"], per_query["rank"]))
        rows.append([1.0 if ranks[query] == 1 else 0.0 for query in query_ids])
    return np.asarray(rows)


def shared_queries(results: Iterable[dict], system: str) -> tuple[list[str], dict[str, list[str]]]:
    """Query ids present in every given run, and their bucket values (from the first run)."""
    results = list(results)
    common = set.intersection(*(set(r["per_query"][system]["query_id"]) for r in results))
    first = results[0]["per_query"][system]
    position = {query: row for row, query in enumerate(first["query_id"])}
    ordered = sorted(common, key=position.__getitem__)
    buckets = {
        column: [labels[position[query]] for query in ordered]
        for column, labels in first.get("buckets", {}).items()
    }
    return ordered, buckets


def bucket_masks(buckets: dict[str, list[str]], count: int) -> dict[str, np.ndarray]:
    """``overall`` and one mask per value of each bucket column (``degradation=noise``)."""
    masks = {"overall": np.ones(count, dtype=bool)}
    for column, labels in buckets.items():
        labels = np.asarray(labels)
        for value in sorted(set(labels.tolist())):
            masks[f"{column}={value}"] = labels == value
    return masks


def compare_pair(
    a_results: list[dict],
    b_results: list[dict],
    system_a: str,
    system_b: str,
    names: tuple[str, str],
    samples: int,
) -> dict:
    """Paired top-1 comparison of two arms (or two systems) on their shared seeds and queries."""
    seeds = sorted({r["seed"] for r in a_results} & {r["seed"] for r in b_results})
    a_results = [r for r in a_results if r["seed"] in seeds]
    b_results = [r for r in b_results if r["seed"] in seeds]
    queries_a, buckets_a = shared_queries(a_results, system_a)
    queries_b, _ = shared_queries(b_results, system_b)
    in_b = set(queries_b)
    kept = [row for row, query in enumerate(queries_a) if query in in_b]
    query_ids = [queries_a[row] for row in kept]
    buckets = {column: [labels[row] for row in kept] for column, labels in buckets_a.items()}
    verdicts = compare_buckets(
        top1_matrix(a_results, system_a, query_ids),
        top1_matrix(b_results, system_b, query_ids),
        bucket_masks(buckets, len(query_ids)),
        names=names,
        samples=samples,
    )
    return {
        "a": names[0],
        "b": names[1],
        "seeds": seeds,
        "queries": len(query_ids),
        "buckets": verdicts,
    }


def comparisons(results: list[dict], grid: list[tuple[str, list[str]]], samples: int) -> list[dict]:
    """Each pair of values of each grid key (other keys held fixed), per system; and each pair
    of systems within each arm (the engine comparison after ``acr evaluate --engine hybrid``)."""
    by_arm: dict[str, list[dict]] = defaultdict(list)
    for result in results:
        by_arm[result["arm"]].append(result)
    systems = sorted({system for result in results for system in result["per_query"]})
    found = []
    for key, values in grid:
        for a_value, b_value in itertools.combinations(values, 2):
            for context in _other_settings(results, key):
                a_runs = _matching(results, {**context, key: a_value})
                b_runs = _matching(results, {**context, key: b_value})
                if not a_runs or not b_runs:
                    continue
                for system in systems:
                    names = (a_runs[0]["arm"], b_runs[0]["arm"])
                    entry = compare_pair(a_runs, b_runs, system, system, names, samples)
                    found.append({"factor": key, "system": system, **entry})
    for arm, runs in by_arm.items():
        for system_a, system_b in itertools.combinations(systems, 2):
            entry = compare_pair(runs, runs, system_a, system_b, (system_a, system_b), samples)
            found.append({"factor": "system", "arm": arm, **entry})
    return found


def _other_settings(results: list[dict], key: str) -> list[dict[str, str]]:
    """The distinct settings of every grid key but ``key`` among the runs."""
    settings = {tuple(sorted((k, v) for k, v in r["grid"].items() if k != key)) for r in results}
    return [dict(setting) for setting in sorted(settings)]


def _matching(results: list[dict], grid: dict[str, str]) -> list[dict]:
    return [r for r in results if all(r["grid"].get(k) == v for k, v in grid.items())]

"""Evaluating an index on a query table: ranks per engine and fused, metrics per bucket with
confidence intervals (Wilson for top-k, bootstrap for MRR)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from rich.table import Table

from acr.data.manifests import ManifestError, blank, bucket_columns, line_numbers, read_queries
from acr.files import output_path, write_json
from acr.retrieval.false_matches import (
    decision_scores,
    det_curve,
    plot_det,
    right_answers,
    score_false_matches,
)
from acr.retrieval.metrics import metrics_by_bucket, rank_of, ranks_by_query
from acr.retrieval.recognizer import Recognition, Recognizer
from acr.retrieval.store import HYBRID
from acr.status import Heartbeat

FUSED = HYBRID  # the fused ranking, scored as a system beside the engines


def evaluate_index(
    index: str,
    queries: str,
    output: str | None = None,
    top_k: int = 5,
    bootstrap: int = 1000,
    max_queries: int | None = None,
    seed: int = 0,
    out_of_catalog: str | None = None,
) -> dict:
    """Score an index on labelled queries: top-1, top-k and MRR with 95 % intervals.

    Per engine and fused, overall, per bucket and per degradation x length; every number has a
    95 % interval (Wilson score for top-k, bootstrap for MRR) and the count of queries in its
    cell. With out-of-catalog queries, also per bucket: the false-match rate at the index's
    calibrated threshold (acr calibrate), and the true-positive rate at false-match rates of
    1 % and 0.1 %; with ``output``, a DET plot beside the report.

    Args:
        index: the index directory.
        queries: a CSV/JSONL query table with query_id, path (or source, offset_s, length_s)
            and track_id (a track of the index); every other column is a bucket.
        output: where to write the report as JSON (its heartbeat goes beside it; without one,
            into the index directory).
        top_k: the k of top-k accuracy (top-1 is always reported).
        bootstrap: bootstrap resamples per MRR interval (0: no intervals).
        max_queries: evaluate a seeded sample of this many queries, stratified by bucket (every
            combination of bucket values keeps its share of the table).
        seed: seeds that sample (and that of the out-of-catalog queries).
        out_of_catalog: a query table of music the index does not hold (acr data make-queries
            --out_of_catalog INDEX); its buckets are matched with the in-catalog table's.
    """
    if output:
        output_path(output)
    recognizer = Recognizer.load(index, cascade=False)
    track_ids = next(iter(recognizer.engines.values())).track_ids
    table = read_queries(queries)
    require_truth(table, track_ids, queries)
    outside = None
    if out_of_catalog is not None:
        outside = read_queries(out_of_catalog, False)
        require_outside(outside, track_ids, out_of_catalog)
    if max_queries is not None:
        table = stratified_sample(table, max_queries, seed)
        if outside is not None:
            outside = stratified_sample(outside, max_queries, seed)
    with Heartbeat(Path(output).parent if output else index, "evaluate") as heartbeat:
        report = evaluate(recognizer, table, top_k, bootstrap, heartbeat, outside)
        report.update(index=str(index), query_table=str(queries))
        if outside is not None:
            report["out_of_catalog_table"] = str(out_of_catalog)
            if output:
                path = Path(output).with_suffix(".det.png")
                report["det_plot"] = str(plot_det(report.pop("det_curves"), path))
            else:
                report.pop("det_curves")
        if max_queries is not None:
            report.update(max_queries=max_queries, seed=seed)
        if output:
            write_json(output, report)
        heartbeat.finish(
            queries=report["queries"],
            errors=len(report["errors"]),
            top1={system: cells["overall"]["top1"] for system, cells in report["systems"].items()},
        )
    return report


def require_truth(queries: pd.DataFrame, track_ids: Iterable[str], name: str | Path) -> None:
    """Every query can be scored: a usable ``query_id`` and a ``track_id`` among ``track_ids``
    (the index's). Otherwise a ManifestError with the count and the first few rows: a query
    whose truth is empty or unknown would be scored as a miss, a wrong number."""
    known = set(track_ids)
    problems = []
    rows = zip(line_numbers(queries), queries["query_id"], queries["track_id"])
    for line, query_id, track_id in rows:
        if blank(query_id):
            problems.append(f"line {line}: empty query_id")
        elif blank(track_id):
            problems.append(f"query {query_id!r}: empty track_id")
        elif track_id not in known:
            problems.append(f"query {query_id!r}: track_id {track_id!r} is not in the index")
    if problems:
        raise ManifestError(
            name, f"{len(problems)} queries cannot be scored: {'; '.join(problems[:3])}"
        )


def require_outside(queries: pd.DataFrame, track_ids: Iterable[str], name: str | Path) -> None:
    """Out-of-catalog queries are of music the index does not hold: a ``track_id`` (when the
    table names the source) that the index holds is a ManifestError naming the rows."""
    if "track_id" not in queries:
        return
    known = set(track_ids)
    held = [
        f"line {line}: query {query_id!r} is of track {track_id!r}"
        for line, query_id, track_id in zip(
            line_numbers(queries), queries["query_id"], queries["track_id"]
        )
        if not blank(track_id) and track_id in known
    ]
    if held:
        raise ManifestError(
            name,
            f"{len(held)} out-of-catalog queries are of tracks the index holds: "
            + "; ".join(held[:3]),
        )


def stratified_sample(queries: pd.DataFrame, count: int, seed: int = 0) -> pd.DataFrame:
    """``count`` rows drawn without replacement so that every combination of bucket values
    keeps its share of the table (largest remainders get the rows left over); table order."""
    if count < 1:
        raise ValueError(f"max_queries must be >= 1, got {count}")
    if count >= len(queries):
        return queries
    buckets = bucket_columns(queries)
    strata = [np.arange(len(queries))]
    if buckets:
        strata = list(queries.groupby(buckets, sort=True, dropna=False).indices.values())
    shares = np.array([len(rows) for rows in strata]) * count / len(queries)
    quotas = np.floor(shares).astype(int)
    leftover = count - quotas.sum()
    quotas[np.argsort(-(shares - quotas), kind="stable")[:leftover]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(rows, size=quota, replace=False) for rows, quota in zip(strata, quotas)]
    return queries.iloc[np.sort(np.concatenate(chosen))].reset_index(drop=True)


def evaluate(
    recognizer: Recognizer,
    queries: pd.DataFrame,
    top_k: int = 5,
    bootstrap_samples: int = 1000,
    heartbeat: Heartbeat | None = None,
    outside: pd.DataFrame | None = None,
) -> dict:
    """Recognise every query, then :func:`score_recognitions`; ``heartbeat`` follows both.
    With ``outside`` (out-of-catalog queries), also ``no_match``: per system, the cells of
    acr.retrieval.false_matches, and ``det_curves``."""
    systems = list(recognizer.engines) + ([FUSED] if len(recognizer.engines) > 1 else [])
    recognitions = list(recognizer.recognize_queries(queries, max(top_k, 10), heartbeat))
    outside_recognitions = []
    if outside is not None:
        outside_recognitions = list(recognizer.recognize_queries(outside, 10, heartbeat))
    if heartbeat is not None:
        heartbeat.update(stage="scoring")
    report = score_recognitions(recognitions, queries, systems, top_k, bootstrap_samples)
    if outside is not None:
        calibration = recognizer.calibration
        report["no_match"], report["det_curves"] = {}, {}
        for system in systems:
            inside_scores = decision_scores(recognitions, system, calibration)
            right = right_answers(recognitions, queries["track_id"], system)
            outside_scores = decision_scores(outside_recognitions, system, calibration)
            model = calibration.systems.get(system) if calibration else None
            report["no_match"][system] = score_false_matches(
                queries, inside_scores, right, outside, outside_scores,
                model.threshold if model else None,
            )  # fmt: skip
            report["det_curves"][system] = det_curve(inside_scores, right, outside_scores)
        report["out_of_catalog_queries"] = len(outside)
        report["calibrated"] = calibration is not None
    return report


def score_recognitions(
    recognitions: list[Recognition],
    queries: pd.DataFrame,
    systems: list[str],
    top_k: int = 5,
    bootstrap_samples: int = 1000,
) -> dict:
    """Per system (each engine, and ``hybrid`` for the fused ranking): top-1, top-k and MRR
    overall and per bucket, each with a 95 % interval (Wilson for top-k, bootstrap for MRR) and
    its query count.

    ``recognitions`` follow the rows of ``queries``. A query that failed (unreadable, silent,
    too short) counts as a miss for every system and is listed under ``errors``.
    """
    ranks = {system: np.full(len(queries), np.inf) for system in systems}
    errors = []
    for row, (recognition, truth) in enumerate(zip(recognitions, queries["track_id"])):
        if recognition.status == "error":
            errors.append({"query_id": recognition.query_id, "error": recognition.error})
            continue
        for system in systems:
            ranking = recognition.ranking(system)
            ranks[system][row] = rank_of(truth, [match.track_id for match in ranking])
    buckets = bucket_columns(queries)
    crossed = [("degradation", "length_s")]
    return {
        "queries": len(queries),
        "errors": errors,
        "systems": {
            system: metrics_by_bucket(
                ranks[system], queries, buckets, crossed, (1, top_k), bootstrap_samples
            )
            for system in systems
        },
        "per_query": {system: ranks_by_query(queries, ranks[system]) for system in systems},
    }


def report_table(report: dict, metric: str = "top1") -> Table:
    """One row per bucket value, one column per system: the metric and its 95 % interval."""
    systems = list(report["systems"])
    kind = "bootstrap" if metric == "mrr" else "Wilson"  # metrics.confidence_intervals
    table = Table(title=f"{metric} with 95% {kind} interval ({report['queries']} queries)")
    for column in ("bucket", "value", "queries"):
        table.add_column(column, justify="right" if column == "queries" else "left")
    for system in systems:
        table.add_column(system, justify="right", style="bold" if system == FUSED else "")
    first = report["systems"][systems[0]]
    for name, cell in first.items():
        bucket, _, value = name.partition("=")
        row = [bucket, value, str(cell["queries"])]
        for system in systems:
            values = report["systems"][system][name]
            low, high = values.get("ci95", {}).get(metric, [np.nan, np.nan])
            row.append(f"{values[metric]:.3f} [{low:.2f}, {high:.2f}]")
        table.add_row(*row)
    return table


def no_match_table(report: dict) -> Table:
    """One row per cell, one column per system: the false-match rate at the calibrated
    threshold (when there is one) and the true-positive rate at false-match rates of 1 % and
    0.1 % (in brackets: not measurable with so few out-of-catalog queries)."""
    systems = list(report["no_match"])
    table = Table(
        title=f"out of catalog: {report['out_of_catalog_queries']} queries"
        + ("" if report.get("calibrated") else " (no calibration: acr calibrate)")
    )
    for column in ("bucket", "in / out"):
        table.add_column(column)
    for system in systems:
        table.add_column(f"{system}: FMR | TPR@1% | TPR@0.1%", justify="right")
    for name, first in report["no_match"][systems[0]].items():
        row = [name, f"{first['in_catalog']} / {first['out_of_catalog']}"]
        for system in systems:
            cell = report["no_match"][system][name]
            rates = [f"{cell['false_match_rate']:.3f}" if "false_match_rate" in cell else "-"]
            for target in ("0.01", "0.001"):
                value = f"{cell[f'tpr_at_fmr_{target}']:.3f}"
                rates.append(value if cell[f"measurable_at_fmr_{target}"] else f"({value})")
            row.append(" | ".join(rates))
        table.add_row(*row)
    return table

"""Which segment strategy makes the queries an index answers best? Mean and 95 % CI per strategy.

    python experiments/compare_segment_strategies.py --catalog tracks.csv --index INDEX_DIR \
        --work DIR [--tracks 100] [--seeds 0 1 2] [--lengths 1] \
        [--degradations noise phone_codec live_mix] [--strategies random high_energy ...]

For every strategy and seed it makes queries (``acr data make-queries --strategy``) from a
seeded sample of tracks, recognises them with the index, and keeps the ranks in
``DIR/<strategy>/seed<S>/ranks.csv``: a finished cell is not redone when the script is rerun.

Queries of one track are not independent, so intervals come from a cluster bootstrap over
tracks (all of a track's queries, every seed, drawn together). A strategy differs from
``random`` only when the bootstrap interval of the difference excludes 0; the per-seed
top-1 range shows how far a single small run could have strayed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from acr.data.manifests import read_queries
from acr.data.query_sets import make_queries
from acr.data.segments.strategies import STRATEGIES
from acr.retrieval.metrics import rank_of
from acr.retrieval.recognizer import Recognizer
from acr.runs.environment import machine

BOOTSTRAP_SAMPLES = 2000


def main() -> None:
    options = _parser().parse_args()
    console = Console(width=160)
    console.print(f"machine: {machine()}")
    recognizer = Recognizer.load(options.index)
    cells = []
    for strategy in options.strategies:
        for seed in options.seeds:
            ranks = _cell(options, recognizer, strategy, seed)
            cells.append(ranks.assign(strategy=strategy, seed=seed))
    results = pd.concat(cells, ignore_index=True)
    console.print(_table(results, options.strategies))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--index", required=True)
    parser.add_argument("--work", required=True, type=Path)
    parser.add_argument("--tracks", type=int, default=100, help="tracks sampled per seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--lengths", type=float, nargs="+", default=[1.0])
    parser.add_argument("--degradations", nargs="+", default=["noise", "phone_codec", "live_mix"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    return parser


def _cell(
    options: argparse.Namespace, recognizer: Recognizer, strategy: str, seed: int
) -> pd.DataFrame:
    """Ranks of the right track for one (strategy, seed): made, recognised, or read back."""
    directory = options.work / strategy / f"seed{seed}"
    done = directory / "ranks.csv"
    if done.is_file():
        return pd.read_csv(done, dtype={"track_id": str})
    make_queries(
        options.catalog,
        directory,
        lengths_s=options.lengths,
        degradations=options.degradations,
        seed=seed,
        max_tracks=options.tracks,
        strategy=strategy,
    )
    queries = read_queries(directory / "queries.csv")
    ranks = [
        rank_of(truth, [match.track_id for match in recognition.matches])
        if recognition.status == "ok"
        else np.inf
        for recognition, truth in zip(
            recognizer.recognize_queries(queries, top_k=10), queries["track_id"]
        )
    ]
    table = pd.DataFrame(
        {"query_id": queries["query_id"], "track_id": queries["track_id"], "rank": ranks}
    )
    table.to_csv(done.with_suffix(".tmp"), index=False)
    done.with_suffix(".tmp").rename(done)  # the cell counts as finished only when complete
    return table


def _table(results: pd.DataFrame, strategies: list[str]) -> Table:
    results = results.assign(hit=(results["rank"] == 1).astype(float))
    tracks = results["track_id"].unique()
    rng = np.random.default_rng(0)
    draws = rng.integers(0, len(tracks), size=(BOOTSTRAP_SAMPLES, len(tracks)))
    boot = {
        s: _cluster_bootstrap(results[results["strategy"] == s], tracks, draws) for s in strategies
    }
    table = Table(title="top-1 per segment strategy (cluster bootstrap over tracks, 95 % CI)")
    columns = ("strategy", "queries", "top-1", "95 % CI", "per-seed range", "Δ random", "Δ 95 % CI")
    for column in (*columns, "verdict"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    for strategy in strategies:
        rows = results[results["strategy"] == strategy]
        per_seed = rows.groupby("seed")["hit"].mean()
        low, high = np.nanpercentile(boot[strategy], [2.5, 97.5])
        versus = ["", "", ""]
        if strategy != "random" and "random" in boot:
            difference = boot[strategy] - boot["random"]
            d_low, d_high = np.nanpercentile(difference, [2.5, 97.5])
            verdict = "better" if d_low > 0 else "worse" if d_high < 0 else "no clear difference"
            versus = [f"{np.nanmean(difference):+.3f}", f"{d_low:+.3f} to {d_high:+.3f}", verdict]
        table.add_row(
            strategy,
            str(len(rows)),
            f"{rows['hit'].mean():.3f}",
            f"{low:.3f}-{high:.3f}",
            f"{per_seed.min():.3f}-{per_seed.max():.3f}",
            *versus,
        )
    return table


def _cluster_bootstrap(rows: pd.DataFrame, tracks: np.ndarray, draws: np.ndarray) -> np.ndarray:
    """Top-1 of each bootstrap draw of tracks (the same draws for every strategy)."""
    per_track = rows.groupby("track_id")["hit"].agg(["sum", "count"]).reindex(tracks, fill_value=0)
    hits, counts = per_track["sum"].to_numpy()[draws], per_track["count"].to_numpy()[draws]
    totals = counts.sum(axis=1)
    return np.where(totals > 0, hits.sum(axis=1) / np.maximum(totals, 1), np.nan)


if __name__ == "__main__":
    main()

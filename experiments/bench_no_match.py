"""Benchmark "no match": calibrate an index on one set of in-catalog and out-of-catalog queries,
then measure on fresh ones the false-match rate at the fitted threshold and the true-positive
rate (right answers) at false-match rates of 1 % and 0.1 %, per degradation and length.

The corpus is split by track, seeded: half is indexed, a quarter is held out to fit the
threshold, a quarter held out to measure it; the in-catalog queries of the two sets come from
the indexed half with different seeds (different excerpts and degradations).

    python experiments/bench_no_match.py --catalog /work/corpus/tracks.csv --work runs/no_match

Every stage is skipped when its output exists, so a killed run resumes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from acr.data.catalogs import read_catalog
from acr.data.query_sets import make_queries
from acr.retrieval.build import build_index
from acr.retrieval.evaluation import evaluate_index
from acr.retrieval.fitting import fit_calibration
from acr.runs.environment import machine

DEGRADATIONS = ("clean", "noise", "reverb", "phone_codec", "speed", "pitch", "live_mix")


def split(catalog: Path, work: Path, seed: int) -> dict[str, Path]:
    """Indexed half, held-out quarter to fit, held-out quarter to test: track tables."""
    tracks = read_catalog(str(catalog))[["track_id", "path"]]
    shuffled = tracks.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    half, three_quarters = len(shuffled) // 2, 3 * len(shuffled) // 4
    parts = {
        "catalog": shuffled[:half],
        "held_fit": shuffled[half:three_quarters],
        "held_test": shuffled[three_quarters:],
    }
    paths = {}
    for name, table in parts.items():
        paths[name] = work / f"{name}.csv"
        if not paths[name].is_file():
            table.to_csv(paths[name], index=False)
    return paths


def queries(source: Path, output: Path, seed: int, index: Path | None, lengths: list) -> Path:
    table = output / "queries.csv"
    if not table.is_file():
        make_queries(
            str(source), str(output), lengths_s=lengths, degradations=DEGRADATIONS, seed=seed,
            out_of_catalog=str(index) if index else None,
        )  # fmt: skip
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--false_match_rate", type=float, default=0.01)
    parser.add_argument("--lengths_s", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tracks = split(args.catalog, args.work, args.seed)
    index = args.work / "index"
    if not (index / "index.json").is_file():
        build_index(str(tracks["catalog"]), str(index), resume=index.exists())
    fit_in = queries(tracks["catalog"], args.work / "q_fit", 100, None, args.lengths_s)
    test_in = queries(tracks["catalog"], args.work / "q_test", 200, None, args.lengths_s)
    fit_out = queries(tracks["held_fit"], args.work / "o_fit", 100, index, args.lengths_s)
    test_out = queries(tracks["held_test"], args.work / "o_test", 200, index, args.lengths_s)
    calibration = fit_calibration(str(index), [str(fit_in)], [str(fit_out)], args.false_match_rate)
    report_path = args.work / "report.json"
    report = evaluate_index(
        str(index), str(test_in), str(report_path), bootstrap=0, out_of_catalog=str(test_out)
    )
    print("machine:", machine())
    print(
        f"tracks: {len(pd.read_csv(tracks['catalog']))} indexed, "
        f"{len(pd.read_csv(tracks['held_fit']))} held out to fit, "
        f"{len(pd.read_csv(tracks['held_test']))} held out to test"
    )
    model = calibration.systems["fingerprint"]
    print(
        f"calibration: {calibration.in_catalog_queries} in + "
        f"{calibration.out_of_catalog_queries} out-of-catalog queries; threshold P >= "
        f"{model.threshold:.3f} for a false-match rate of {args.false_match_rate:g}"
    )
    print(
        f"test: {report['queries']} in-catalog, {report['out_of_catalog_queries']} "
        "out-of-catalog queries (fresh excerpts, fresh held-out tracks)"
    )
    print("| cell | top-1 | false-match rate at threshold | right answers at threshold |"
          " TPR @ FMR 1 % | TPR @ FMR 0.1 % |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    top1 = report["systems"]["fingerprint"]
    for name, cell in report["no_match"]["fingerprint"].items():
        if "," in name:
            continue
        ci = cell["ci95"]

        def rate(key: str, cell=cell, ci=ci) -> str:
            low, high = ci[key]
            return f"{cell[key]:.3f} [{low:.3f}, {high:.3f}]"

        tpr_strict = rate("tpr_at_fmr_0.001")
        if not cell["measurable_at_fmr_0.001"]:
            tpr_strict = f"({tpr_strict})"
        print(
            f"| {name} ({cell['in_catalog']} / {cell['out_of_catalog']}) "
            f"| {top1[name]['top1']:.3f} | {rate('false_match_rate')} "
            f"| {rate('true_positive_rate')} | {rate('tpr_at_fmr_0.01')} | {tpr_strict} |"
        )
    print(f"wall time {time.perf_counter() - started:.0f} s; report {report_path}")


if __name__ == "__main__":
    main()

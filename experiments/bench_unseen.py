"""The gap between acr's own split and queries it cannot flatter: top-1 per degradation and
length on the same tracks, offsets and seed, once with acr's own degradations (the generators
training views share) and once with the field suite's independent ones (acr.augment.field:
espeak-ng crowds and Voss pink noise, Freeverb, Opus calls, soxr speed, Rubber Band pitch, a
pYIN singer), each with its 95 % Wilson interval.

Queries are made once per suite into --work and reused; each index named is evaluated on both
(acr evaluate's own scoring, so every engine of a hybrid and the fused answer are reported).

    python experiments/bench_unseen.py --catalog /work/corpus/tracks.csv \
        --index runs/unseen/fp_index --work runs/unseen --tracks 120 \
        [--speech_dir /work/speech]   # crowds of recorded talkers (fetch_speech.sh), not espeak-ng
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from acr.augment.degradations import DEGRADATION_NAMES
from acr.data.query_sets import QUERIES_FILE, make_queries
from acr.retrieval.evaluation import evaluate_index
from acr.retrieval.metrics import proportion_interval
from acr.runs.environment import machine

SUITES = ("acr", "field")


def queries(args: argparse.Namespace, suite: str) -> Path:
    """The suite's query table, made once (a complete queries.csv is reused)."""
    recorded = suite == "field" and args.speech_dir is not None
    folder = args.work / f"queries-{suite}{'-recorded' if recorded else ''}"
    if not (folder / QUERIES_FILE).is_file():
        make_queries(
            args.catalog, str(folder), lengths_s=args.lengths, degradations=args.degradations,
            max_tracks=args.tracks, seed=args.seed, suite=suite, workers=args.workers,
            speech_dir=args.speech_dir if recorded else None,
        )  # fmt: skip
    return folder / QUERIES_FILE


def report(args: argparse.Namespace, index: Path, suite: str, table: Path) -> dict:
    """acr evaluate's report of ``index`` on the suite's queries (kept, and reused)."""
    output = args.work / f"report-{index.name}-{table.parent.name}.json"
    if not output.is_file():
        evaluate_index(str(index), str(table), output=str(output), bootstrap=0)
    return json.loads(output.read_text())


def cell(report: dict, system: str, key: str) -> dict | None:
    return report["systems"][system].get(key)


def show(index: Path, reports: dict[str, dict], lengths: list[float]) -> None:
    systems = list(reports["acr"]["systems"])
    for system in systems:
        print(f"\n{index.name} / {system}: top-1 % own split -> field split [95 % Wilson] (gap)")
        header = "".join(f"{f'{length:g} s':>34s}" for length in lengths)
        print(f"{'degradation':14s}{header}")
        for degradation in ["all", *DEGRADATION_NAMES]:
            row = f"{degradation:14s}"
            for length in lengths:
                key = (
                    f"length_s={length:g}"
                    if degradation == "all"
                    else f"degradation={degradation},length_s={length:g}"
                )
                own, unseen = (cell(reports[suite], system, key) for suite in SUITES)
                if own is None or unseen is None:
                    row += f"{'-':>34s}"
                    continue
                hits = round(unseen["top1"] * unseen["queries"])
                low, high = proportion_interval(hits, unseen["queries"])
                gap = 100 * (unseen["top1"] - own["top1"])
                row += (
                    f"{100 * own['top1']:7.1f} -> {100 * unseen['top1']:5.1f}"
                    f" [{100 * low:4.1f},{100 * high:5.1f}] ({gap:+5.1f})"
                )
            print(row)
        both = [reports[suite]["systems"][system]["overall"] for suite in SUITES]
        print(
            f"{'overall':14s} own {100 * both[0]['top1']:.1f} % of {both[0]['queries']},"
            f" field {100 * both[1]['top1']:.1f} % of {both[1]['queries']}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True, help="tracks.csv of the indexed catalog")
    parser.add_argument("--index", type=Path, nargs="+", required=True, help="index folders")
    parser.add_argument("--work", type=Path, required=True, help="queries and reports go here")
    parser.add_argument("--tracks", type=int, default=120, help="tracks queried (seeded sample)")
    parser.add_argument("--lengths", type=float, nargs="+", default=[1.0, 3.0, 10.0])
    parser.add_argument("--degradations", nargs="+", default=list(DEGRADATION_NAMES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--speech_dir", default=None, help="recorded speech for the field crowds (fetch_speech.sh)"
    )
    args = parser.parse_args()
    print(machine())
    tables = {suite: queries(args, suite) for suite in SUITES}
    for index in args.index:
        show(index, {suite: report(args, index, suite, tables[suite]) for suite in SUITES},
             args.lengths)  # fmt: skip


if __name__ == "__main__":
    main()

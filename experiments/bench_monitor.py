"""Issue 17's monitoring targets: `acr monitor` on generated broadcast mixes, scored against
their truth.

    python experiments/bench_monitor.py --catalog /music/catalog.csv \
        --out_of_catalog /music/held_out --work /tmp/acr-monitor [--recordings 4 \
        --duration_s 300 --seed 0 --engine fingerprint --reuse-index]

Indexes the catalog (`acr index --catalog ... --output WORK/index`; --reuse-index keeps an
index already there), writes mixes of catalog excerpts, out-of-catalog music and speech into
WORK/mixes (acr.data.mixes, as `acr data make-mixes`), runs `python -m acr monitor` on each
recording (WORK/detections/), scores all detections with acr.monitor.scoring (as `acr
evaluate-monitor`; WORK/report.json) and prints the per-bucket table, the targets (recall
>= 95 %, precision >= 98 %, median boundary error <= 1 s, <= 1 false alarm per hour of
out-of-catalog audio), the x real time of monitoring and the machine.

x real time is audio seconds / wall seconds of the `acr monitor` processes, start-up and index
loading included; the scan's own figure (what `acr monitor` reports) is printed beside it.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.table import Table

from acr.cli import MODULES
from acr.data.mixes import TRUTH_FILE, make_mixes
from acr.monitor.scoring import evaluate_monitor, report_table
from acr.runs.environment import machine

SCAN_SPEED = re.compile(r"\(([\d.]+)x real time\)")  # acr monitor's summary line


def require_monitor() -> None:
    """Stop with a clear message when this checkout has no `acr monitor` yet."""
    if "monitor" not in MODULES or importlib.util.find_spec(MODULES["monitor"]) is None:
        sys.exit("bench_monitor: this checkout has no `acr monitor` command (acr.cli.MODULES "
                 "holds no 'monitor'); nothing to benchmark")  # fmt: skip


def run(command: list[str], what: str) -> subprocess.CompletedProcess:
    """Run an acr command; stop with its last lines of output when it fails."""
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        sys.exit(f"bench_monitor: {what} failed (exit {result.returncode}):\n{tail}")
    return result


def build_index(catalog: str, index: Path, engine: str, workers: int, reuse: bool) -> float:
    """`acr index` of the catalog into ``index``; its wall seconds (0 when reused)."""
    if reuse and index.is_dir():
        print(f"index: reusing {index}")
        return 0.0
    shutil.rmtree(index, ignore_errors=True)
    started = time.perf_counter()
    run([sys.executable, "-m", "acr", "index", "--catalog", catalog, "--output", str(index),
         "--engine", engine, "--workers", str(workers)], "acr index")  # fmt: skip
    seconds = time.perf_counter() - started
    print(f"index: {index} in {seconds:.0f} s")
    return seconds


def monitor_all(
    mixes: Path, recordings: list[str], index: Path, folder: Path, options: list[str]
) -> tuple[Path, float, list[float]]:
    """`acr monitor` on each recording; the detections of all of them in one CSV, the wall
    seconds, and each scan's own x real time."""
    folder.mkdir(parents=True, exist_ok=True)
    tables, wall_s, scan_speeds = [], 0.0, []
    for recording in recordings:
        detections = folder / f"{Path(recording).stem}.csv"
        command = [sys.executable, "-m", "acr", "monitor", str(mixes / recording),
                   "--index", str(index), "--output", str(detections), "--format", "csv",
                   *options]  # fmt: skip
        started = time.perf_counter()
        result = run(command, f"acr monitor {recording}")
        wall_s += time.perf_counter() - started
        scan_speeds += [float(speed) for speed in SCAN_SPEED.findall(result.stderr)]
        if detections.is_file() and detections.read_text().strip():
            tables.append(pd.read_csv(detections, dtype={"track_id": str}))
    combined = folder / "all.csv"
    if tables:
        pd.concat(tables, ignore_index=True).to_csv(combined, index=False)
    else:
        combined.write_text("recording,start_s,end_s,track_id\n")
    return combined, wall_s, scan_speeds


def targets_table(report: dict) -> Table:
    table = Table(title="issue 17 targets")
    for column in ("metric", "value", "target", "met"):
        table.add_column(column)
    for verdict in report["targets"]:
        value = verdict["value"]
        table.add_row(
            verdict["metric"],
            "-" if value is None else f"{value:.3f}",
            f"{'>=' if verdict['at_least'] else '<='} {verdict['target']:g}",
            "yes" if verdict["met"] else "NO",
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True, help="the indexed tracks: folder or table")
    parser.add_argument("--out_of_catalog", help="held-out tracks (default: generated songs)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/acr-monitor"))
    parser.add_argument("--recordings", type=int, default=4)
    parser.add_argument("--duration_s", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample_rate", type=int, default=16000)
    parser.add_argument("--engine", default="fingerprint")
    parser.add_argument("--workers", type=int, default=2, help="acr index and make-mixes")
    parser.add_argument("--reuse-index", action="store_true", help="keep WORK/index if there")
    parser.add_argument(
        "--monitor-option",
        action="append",
        default=[],
        help="passed to acr monitor, e.g. --monitor-option=--scan.hop_s=1",
    )
    options = parser.parse_args()
    require_monitor()
    print("machine:", machine())
    work = options.work
    index = work / "index"
    index_s = build_index(options.catalog, index, options.engine, options.workers,
                          options.reuse_index)  # fmt: skip
    mixes = work / "mixes"
    shutil.rmtree(mixes, ignore_errors=True)
    truth = make_mixes(options.catalog, str(mixes), recordings=options.recordings,
                       duration_s=options.duration_s, out_of_catalog=options.out_of_catalog,
                       seed=options.seed, sample_rate=options.sample_rate,
                       workers=options.workers)  # fmt: skip
    recordings = sorted(truth["recording"].unique())
    detections, wall_s, scan_speeds = monitor_all(
        mixes, recordings, index, work / "detections", options.monitor_option
    )
    report = evaluate_monitor(str(detections), str(mixes / TRUTH_FILE), str(work / "report.json"))
    console = Console()
    console.print(report_table(report))
    console.print(targets_table(report))
    audio_s = len(recordings) * options.duration_s
    scan = (
        f"; the scans' own: {min(scan_speeds):.0f}-{max(scan_speeds):.0f}x" if scan_speeds else ""
    )
    print(f"monitoring: {audio_s / 60:.0f} min of audio in {wall_s:.0f} s = "
          f"{audio_s / wall_s:.1f}x real time (processes, start-up included){scan}")  # fmt: skip
    print(f"index: {index_s:.0f} s; report: {work / 'report.json'}")
    print("machine:", machine())


if __name__ == "__main__":
    main()

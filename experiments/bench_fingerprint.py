"""Benchmark the landmark-fingerprint engine: index speed and size, top-1 accuracy per query
degradation, query latency.

Indexing decodes and extracts in worker processes (spawned, one torch thread each), as a
deployment would; the index is saved, loaded back and then queried with 3-s clips cut at seeded
random offsets and damaged by acr.augment.degrade.

    python experiments/bench_fingerprint.py --catalog /work/corpus/debian-music/tracks.csv \
        --tracks 150 --queries-per-track 2 --seed 0
"""

from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from acr.audio import audio_info, load_audio
from acr.augment.degradations import degrade
from acr.retrieval.fingerprint.engine import FingerprintEngine, FingerprintSettings
from acr.retrieval.fingerprint.landmarks import LandmarkExtractor, Landmarks
from acr.runs.environment import machine

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".opus", ".mp3")
DEGRADATIONS = ("clean", "noise", "reverb", "speed", "pitch")
# Clips quieter than this (-60 dBFS RMS) are silent passages no system can identify; game
# soundtracks have some (one of the 150 default tracks is silent after its first 20 s).
SILENT_RMS = 1e-3
# A query reads this much more than it keeps, so a sped-up clip still fills the query length.
QUERY_READ_MARGIN = 1.1


@dataclass(frozen=True)
class CatalogTrack:
    track_id: str
    path: Path
    duration_s: float


def read_catalog(catalog: Path) -> list[CatalogTrack]:
    """Tracks from a tracks.csv (track_id, path relative to it, duration_s) or an audio folder."""
    if catalog.is_dir():
        paths = sorted(path for path in catalog.rglob("*") if path.suffix.lower() in AUDIO_SUFFIXES)
        return [
            CatalogTrack(str(path.relative_to(catalog)), path, audio_info(path).duration_s)
            for path in paths
        ]
    with catalog.open(newline="") as file:
        return [
            CatalogTrack(row["track_id"], catalog.parent / row["path"], float(row["duration_s"]))
            for row in csv.DictReader(file)
        ]


def choose_tracks(
    tracks: list[CatalogTrack], count: int, min_duration_s: float, seed: int
) -> list[CatalogTrack]:
    """A seeded random sample of tracks long enough to cut queries from, in catalog order."""
    long_enough = [track for track in tracks if track.duration_s >= min_duration_s]
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(long_enough), size=min(count, len(long_enough)), replace=False)
    return [long_enough[i] for i in sorted(chosen)]


def _cpu_s() -> float:
    """User and system CPU seconds of this process and its finished children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def _start_worker() -> None:
    torch.set_num_threads(1)


def _decode_and_extract(
    job: tuple[CatalogTrack, LandmarkExtractor],
) -> tuple[str, Landmarks, float]:
    track, extractor = job
    audio = load_audio(track.path, extractor.sample_rate)
    return track.track_id, extractor(audio), len(audio) / extractor.sample_rate


def build_index(
    engine: FingerprintEngine, tracks: list[CatalogTrack], workers: int, directory: Path
) -> dict[str, float]:
    """Decode, extract (in ``workers`` spawned processes), add and save; returns the figures."""
    start_s, start_cpu_s = time.perf_counter(), _cpu_s()
    extractor = engine.extractor()
    audio_s = 0.0
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker) as pool:
        jobs = [(track, extractor) for track in tracks]
        for track_id, landmarks, duration_s in pool.imap(_decode_and_extract, jobs):
            engine.add(track_id, landmarks)
            audio_s += duration_s
        pool.close()
        pool.join()  # so the workers' CPU time is counted
    engine.save(directory)
    wall_s, cpu_s = time.perf_counter() - start_s, _cpu_s() - start_cpu_s
    index_bytes = sum(path.stat().st_size for path in directory.iterdir())
    return {
        "audio_h": audio_s / 3600,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "real_time_factor": audio_s / wall_s,
        "cpu_real_time_factor": audio_s / cpu_s,
        "hashes_per_audio_s": engine.item_count / audio_s,
        "index_bytes_per_audio_h": index_bytes / (audio_s / 3600),
    }


@dataclass(frozen=True)
class QueryResult:
    degradation: str
    silent: bool
    correct: bool
    offset_correct: bool
    latency_s: float


def run_queries(
    engine: FingerprintEngine,
    tracks: list[CatalogTrack],
    degradations: list[str],
    queries_per_track: int,
    query_length_s: float,
    seed: int,
) -> Iterator[QueryResult]:
    """Every degradation on ``queries_per_track`` clips of every track, at seeded offsets."""
    rng = np.random.default_rng(seed)
    sample_rate = engine.sample_rate
    read_s = query_length_s * QUERY_READ_MARGIN
    for track in tracks:
        for _ in range(queries_per_track):
            for degradation in degradations:
                start_s = float(rng.uniform(0.0, track.duration_s - read_s))
                clip = load_audio(track.path, sample_rate, start_s, read_s)
                if np.sqrt(np.mean(np.square(clip))) < SILENT_RMS:
                    yield QueryResult(degradation, True, False, False, 0.0)
                    continue
                query, _ = degrade(clip, sample_rate, degradation, rng)
                query = query[: round(query_length_s * sample_rate)]
                search_start_s = time.perf_counter()
                matches = engine.search(query, top_k=5)
                latency_s = time.perf_counter() - search_start_s
                correct = bool(matches) and matches[0].track_id == track.track_id
                offset_correct = correct and abs(matches[0].offset_s - start_s) <= 0.1
                yield QueryResult(degradation, False, correct, offset_correct, latency_s)


def peak_rss_mib() -> tuple[float, float]:
    """Peak resident memory of this process and of its largest finished child (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def report_accuracy(results: list[QueryResult], degradations: list[str]) -> None:
    """Top-1 and offset accuracy per degradation over the non-silent clips, and latency."""
    print(f"{'degradation':12s} {'queries':>7s} {'silent':>7s} {'top-1':>7s} {'offset±0.1s':>12s}")
    for degradation in degradations:
        rows = [result for result in results if result.degradation == degradation]
        audible = [result for result in rows if not result.silent]
        correct = sum(result.correct for result in audible)
        offset_correct = sum(result.offset_correct for result in audible)
        print(
            f"{degradation:12s} {len(audible):7d} {len(rows) - len(audible):7d} "
            f"{correct / len(audible):7.1%} {offset_correct / len(audible):12.1%}"
        )
    latencies_ms = 1000 * np.array([result.latency_s for result in results if not result.silent])
    print(
        f"latency per {len(latencies_ms)} queries: p50 {np.percentile(latencies_ms, 50):.1f} ms, "
        f"p95 {np.percentile(latencies_ms, 95):.1f} ms, max {latencies_ms.max():.1f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True, help="tracks.csv or audio folder")
    parser.add_argument("--tracks", type=int, default=150)
    parser.add_argument("--queries-per-track", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--query-length-s", type=float, default=3.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--degradations", nargs="+", default=list(DEGRADATIONS))
    parser.add_argument("--settings", type=json.loads, default={}, help="engine keywords, JSON")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    imports_mib, _ = peak_rss_mib()

    catalog = read_catalog(args.catalog)
    tracks = choose_tracks(catalog, args.tracks, 2 * args.query_length_s, args.seed)
    print(f"catalog: {args.catalog} ({len(catalog)} tracks), indexing {len(tracks)}")
    with tempfile.TemporaryDirectory() as directory:
        figures = build_index(
            FingerprintEngine(FingerprintSettings(**args.settings)),
            tracks,
            args.workers,
            Path(directory),
        )
        print(
            f"indexed {figures['audio_h']:.2f} h in {figures['wall_s']:.1f} s with "
            f"{args.workers} workers: {figures['real_time_factor']:.0f}x real time "
            f"({figures['cpu_s']:.1f} CPU s: {figures['cpu_real_time_factor']:.0f}x real time "
            f"per busy core), "
            f"{figures['hashes_per_audio_s']:.1f} hashes per audio second, "
            f"{figures['index_bytes_per_audio_h'] / 2**20:.2f} MiB index per audio hour"
        )
        engine = FingerprintEngine.load(Path(directory))
    print(f"settings: {json.dumps(engine.recorded_settings())}")
    print(f"search hypotheses (shift bins, time scale): {len(engine.hypotheses)}")
    results = list(
        run_queries(
            engine,
            tracks,
            args.degradations,
            args.queries_per_track,
            args.query_length_s,
            args.seed,
        )
    )
    report_accuracy(results, args.degradations)
    own_mib, child_mib = peak_rss_mib()
    print(
        f"peak RSS: main {own_mib:.0f} MiB ({imports_mib:.0f} MiB of it after imports), "
        f"largest worker {child_mib:.0f} MiB"
    )
    print("machine:", machine("numpy"))


if __name__ == "__main__":
    sys.exit(main())

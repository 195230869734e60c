"""Compare landmark settings on real queries without re-decoding: top-1 per degradation, the
postings per second of audio, and how often two postings share a hash.

The peaks of the first --tracks catalog tracks that the query table names are computed once
per peak density (cached in --work); each variant of the settings (JSON objects of
FingerprintSettings fields) re-forms the landmarks from them, indexes them in memory and runs
the 3-s queries of those tracks (hums left out: no landmark finds a hum).

    python experiments/tune_landmarks.py --catalog /work/corpus/debian-music/tracks.csv \
        --queries queries-test/queries.csv --work /scratch/tune --tracks 100 \
        --variants '{}' '{"hash_peaks": 3}' '{"hash_peaks": 3, "fanout": 5}'

How the triplet presets were chosen (LandmarkExtractor.PRESETS; 100 corpus tracks, 700
queries): pairs 0.989; triplets from 30 peaks/s with 3, 4, 5 targets 0.874, 0.923, 0.939 at
85, 172, 288 postings/s; from 22 peaks/s with 4 targets 0.903 at 128/s, and with the query's
6 targets and 1/6-semitone pitch steps 0.937 (pitch 0.82 -> 0.97); live mix stays the weak
case (0.70 against 0.94 for pairs).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tqdm

from acr.audio import load_audio
from acr.data.manifests import read_queries
from acr.retrieval.fingerprint.engine import FingerprintEngine, FingerprintSettings
from acr.retrieval.fingerprint.landmarks import Peaks
from acr.runs.environment import machine


def catalog_peaks(catalog: str, track_ids: list[str], density: float, work: Path) -> dict:
    """Each track's peaks at ``density`` peaks per second, cached per density."""
    cache = work / f"peaks-{density:g}-{len(track_ids)}.npz"
    if cache.is_file():
        saved = np.load(cache)
        return {t: Peaks(saved[f"{t}/frames"], saved[f"{t}/bins"]) for t in track_ids}
    table = pd.read_csv(catalog).set_index("track_id")
    extractor = FingerprintSettings().extractor()
    peaks = {}
    for track_id in tqdm.tqdm(track_ids, desc=f"peaks at {density:g}/s"):
        audio = load_audio(Path(catalog).parent / table.loc[track_id, "path"], 8000)
        peaks[track_id] = extractor.peaks(audio, density)
    arrays = {f"{t}/{k}": getattr(p, k) for t, p in peaks.items() for k in ("frames", "bins")}
    np.savez(cache, **arrays)
    return peaks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", required=True, help="tracks.csv of the real catalog")
    parser.add_argument("--queries", required=True, help="its test queries (acr data make-queries)")
    parser.add_argument("--work", required=True, help="where the peaks are cached")
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--variants", nargs="+", default=["{}"], help="JSON settings each")
    options = parser.parse_args()
    print("machine:", machine("numba"))
    work = Path(options.work)
    work.mkdir(parents=True, exist_ok=True)
    queries = read_queries(options.queries, require_truth=True)
    queries = queries[(queries["length_s"] == 3.0) & (queries["degradation"] != "humming_like")]
    track_ids = sorted(set(queries["track_id"]))[: options.tracks]
    queries = queries[queries["track_id"].isin(track_ids)].reset_index(drop=True)
    clips = [load_audio(path, 8000) for path in queries["path"]]
    for variant in map(json.loads, options.variants):
        settings = FingerprintSettings(**variant)
        peaks = catalog_peaks(options.catalog, track_ids, settings.peaks_per_second, work)
        engine, extractor = FingerprintEngine(settings), settings.extractor()
        postings, seconds, hashes = 0, 0.0, []
        for track_id in track_ids:
            track = peaks[track_id]
            landmarks = extractor.of_peaks(track)
            engine.add(track_id, landmarks)
            hashes.append(landmarks.hashes)
            postings += len(landmarks.hashes)
            seconds += (int(track.frames.max()) + 1) * settings.hop_size / settings.sample_rate
        _, counts = np.unique(np.concatenate(hashes), return_counts=True)
        shared = np.sum(counts * (counts - 1.0)) / (postings * (postings - 1.0))
        engine.search(clips[0])
        right, latencies = [], []
        for clip, track_id in zip(clips, queries["track_id"]):
            started = time.perf_counter()
            matches = engine.search(clip, 5)
            latencies.append(time.perf_counter() - started)
            right.append(bool(matches) and matches[0].track_id == track_id)
        right = np.array(right)
        per = {
            name: round(float(right[queries["degradation"] == name].mean()), 3)
            for name in sorted(set(queries["degradation"]))
        }
        print(json.dumps({
            "variant": variant, "postings_per_s": round(postings / seconds),
            "shared_hash_one_in": round(1 / shared), "top1": round(float(right.mean()), 3),
            "queries": len(right), "p50_ms": round(1000 * float(np.median(latencies)), 1),
            "top1_per_degradation": per,
        }))  # fmt: skip


if __name__ == "__main__":
    main()

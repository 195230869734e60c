"""Recognition latency with the index already loaded: p50/p95 per engine and end to end.

    python experiments/bench_latency.py --index INDEX_DIR --queries QUERIES.csv [--count 200]

End to end is what ``acr recognize`` spends on one query file: decode, the engines (all of
them, or the early-exit engine alone when it is sure), fusion.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from acr.audio import audio_info, load_audio, resample
from acr.data.manifests import read_queries
from acr.retrieval.recognizer import Recognizer
from acr.runs.environment import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--queries", required=True)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--length_s", type=float, default=3.0)
    options = parser.parse_args()
    print("machine:", machine())
    started = time.perf_counter()
    recognizer = Recognizer.load(options.index)
    print(f"index loaded in {time.perf_counter() - started:.1f} s: {list(recognizer.engines)}")
    queries = read_queries(options.queries, require_truth=False)
    queries = queries[queries["length_s"] == options.length_s].head(options.count)
    per_engine: dict[str, list[float]] = {name: [] for name in recognizer.engines}
    end_to_end, early_exits = [], 0
    for path in queries["path"]:
        started = time.perf_counter()
        recognition = recognizer.recognize_file(path)
        end_to_end.append(time.perf_counter() - started)
        early_exits += len(recognition.engine_matches) < len(recognizer.engines)
        audio, rate = load_audio(path), audio_info(path).sample_rate
        for name, engine in recognizer.engines.items():
            resampled = resample(audio, rate, engine.sample_rate)
            started = time.perf_counter()
            engine.search(resampled, 20)
            per_engine[name].append(time.perf_counter() - started)
    print(f"{len(end_to_end)} queries of {options.length_s:g} s; {early_exits} answered by the")
    print("fusion's early-exit engine alone (the others did not run)")
    for name, seconds in [*per_engine.items(), ("end to end", end_to_end)]:
        p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
        print(f"  {name:12s} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")


if __name__ == "__main__":
    main()

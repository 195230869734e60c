"""How each cost grows with the catalog: 10^3, 10^4, 10^5 tracks of 3 minutes.

    python experiments/bench_scale.py --fingerprint PART --embedding PART --queries QUERIES.csv \
        --work DIR [--sizes 1000 10000 100000] [--query_count 300] [--plot scale.png]
        [--nlist 4096 --pq_m 64 --nbits 4 --nprobe 16] [--rescore 0 32]

PART is an engine folder of a real index's segment (``INDEX/segment-NNNNNN/fingerprint``,
``.../embedding``): the real catalog (the soundtrack corpus), whose 3-s test queries
(``acr data make-queries``) must find their tracks at every size. The rest of each catalog is
drawn to match the real one's statistics, with no audio, from the real tracks no query comes
from (``--distractors_from others``; ``all`` also uses the queries' own recordings, which makes
every synthetic track a possible cover version of a query's answer):
- fingerprint: per synthetic track, a collage of 5-s chunks of the real tracks' peak maps
  (``--catalog``: their audio), each transposed beyond the search's pitch hypotheses and
  time-stretched, then hashed like a catalog track (see ``collage``). Above --full_up_to
  tracks only the postings of hashes some query looks up are written: top-1 and the postings a
  query visits are exact, the index's size is counted (8 bytes a posting, 12 a distinct hash),
  and latency is a lower bound (fewer distinct hashes to search among, a smaller page cache);
- embedding: per synthetic track, 1-s windows every 0.5 s in 5-s runs, each run the
  normalised sum of two runs of consecutive real windows (random tracks and moments) and a
  little Gaussian noise: points among the real ones, not in an empty corner of the sphere,
  and coherent in time as music is (see ``synthetic_windows``). Each query is ranked with
  every --rescore value (0: the neighbours' votes alone).

Each size is written as segments of at most --segment_tracks tracks, then compacted (``acr
index compact``'s code): that time, bytes on disk per hour of audio, resident memory after
load (a fresh process), 3-s query latency p50/p95 (warm page cache, one thread of search per
query) and top-1 of the real queries, with Wilson 95 % intervals. The embedding is searched
with FAISS IVF-PQ at every size, and at the smaller sizes also with HNSW and exact search
(window recall@1 against exact, track top-1 against HNSW). Prints the machine and a table;
--plot writes the log-log curves and --json the figures.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import multiprocessing
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import tqdm

from acr.audio import load_audio
from acr.data.manifests import read_queries
from acr.retrieval.embedding import EmbeddingEngine, EmbeddingSettings
from acr.retrieval.fingerprint.engine import FingerprintEngine
from acr.retrieval.fingerprint.landmarks import Landmarks, Peaks
from acr.retrieval.metrics import proportion_interval
from acr.retrieval.neighbors import SearchSettings
from acr.retrieval.windows import WindowIndex
from acr.runs.environment import machine

TRACK_S = 180.0
CHUNK_S = 5.0  # a synthetic fingerprint track is a collage of real peak maps this long
ARRAYS = ("frames", "bins")  # of the cached real peaks
HASHES = {2: "pairs", 3: "triplets"}  # FingerprintSettings.hash_peaks
SEED = 0


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def resident_mb_after_load(kind: str, part: Path) -> float:
    """VmRSS of a fresh process that opened the part (an interpreter, numpy, the engine)."""
    module, name = {
        "fingerprint": ("acr.retrieval.fingerprint.engine", "FingerprintEngine"),
        "embedding": ("acr.retrieval.windows", "WindowIndex"),
    }[kind]
    code = (
        f"import sys\nfrom {module} import {name}\n"
        f"engine = {name}.load(sys.argv[1])\n"
        "print([l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(part)], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(out.stderr)
    return int(out.stdout.strip()) / 1024


def percentiles_ms(seconds: list[float]) -> tuple[float, float]:
    p50, p95 = np.percentile(np.asarray(seconds) * 1000, [50, 95])
    return float(p50), float(p95)


class Queries:
    """The real 3-s queries, decoded once at each engine's rate."""

    def __init__(self, table: str, count: int) -> None:
        queries = read_queries(table, require_truth=True)
        # Tracks any query (of any length) comes from: no synthetic track is made of them.
        self.tracks = set(queries["track_id"])
        queries = queries[queries["length_s"] == 3.0]
        rng = np.random.default_rng(SEED)
        picked = rng.choice(len(queries), min(count, len(queries)), replace=False)
        self.table = queries.iloc[np.sort(picked)].reset_index(drop=True)

    def audio(self, rate: int) -> list[np.ndarray]:
        return [load_audio(path, rate) for path in self.table["path"]]

    @property
    def truth(self) -> list[str]:
        return list(self.table["track_id"])

    def top1_by_degradation(self, hits: list[bool]) -> dict[str, float]:
        """Top-1 per degradation (where a larger catalog costs answers)."""
        found = pd.Series(hits, dtype=float).groupby(self.table["degradation"].to_numpy())
        return {name: round(share, 3) for name, share in found.mean().items()}


def real_peaks(catalog: str, extractor, work: Path) -> list[Peaks]:
    """The spectral peaks of every real catalog track (decoded at the engine's rate), cached
    per peak density (a pair and a triplet index keep different numbers of peaks)."""
    cache = work / f"real-peaks-{extractor.peaks_per_second:g}.npz"
    if cache.is_file():
        saved = np.load(cache)
        cuts = saved["ends"][:-1]
        return [Peaks(*arrays) for arrays in zip(*(np.split(saved[k], cuts) for k in ARRAYS))]
    table = pd.read_csv(catalog)
    paths = [str(Path(catalog).parent / path) for path in table["path"]]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        found = list(pool.imap(functools.partial(_peaks_of, extractor), paths))
    np.savez(cache, frames=np.concatenate([p.frames for p in found]),
             bins=np.concatenate([p.bins for p in found]),
             ends=np.cumsum([len(p.frames) for p in found]))  # fmt: skip
    return found


def _peaks_of(extractor, path: str) -> Peaks:
    return extractor.peaks(load_audio(path, extractor.sample_rate), extractor.peaks_per_second)


def distractor_sources(track_ids: list[str], queries: Queries, options) -> list[int]:
    """The real tracks (numbers in ``track_ids``) whose audio synthetic tracks are made of:
    those no query comes from, unless --distractors_from all. A synthetic track cut from a
    query's own recording holds that recording's motifs and rhythms (transposed, stretched):
    a cover version of the answer, which a catalog of other music does not hold (at 10^5
    tracks it would hold ~250 such covers of every query track)."""
    if options.distractors_from == "all":
        return list(range(len(track_ids)))
    return [number for number, track_id in enumerate(track_ids) if track_id not in queries.tracks]


def collage(peaks: list[Peaks], extractor, rng: np.random.Generator) -> Landmarks:
    """A synthetic 3-min track's landmarks: 5-s chunks of real tracks' peak maps, each from a
    random track (of ``distractor_sources``) and moment, transposed by 9-24 log bins up or
    down (3-8 semitones: beyond every pitch and speed hypothesis of the search, so no chunk is
    a findable copy of the real track) and time-stretched by 0.9-1.1, hashed like a catalog
    track. Real music's structure (which peaks follow which) stays, so common landmarks stay
    common, and the catalog's variety grows with its size as a real catalog's does."""
    chunk = int(round(CHUNK_S * extractor.sample_rate / extractor.hop_size))
    frames, bins = [], []
    for number in range(int(TRACK_S / CHUNK_S)):
        source = peaks[rng.integers(len(peaks))]
        stretch = rng.uniform(0.9, 1.1)
        length = chunk / stretch
        last = int(source.frames[-1]) if len(source.frames) else 0
        begin = rng.uniform(0, max(last - length, 0))
        first, stop = np.searchsorted(source.frames, [begin, begin + length])
        shift = rng.integers(9, 25) * rng.choice([-1, 1])
        chunk_bins = source.bins[first:stop] + shift
        inside = (chunk_bins >= 0) & (chunk_bins <= extractor.bin_count - 1)
        moved = np.rint((source.frames[first:stop][inside] - begin) * stretch)
        frames.append(moved.astype(np.int32) + number * chunk)
        bins.append(chunk_bins[inside].astype(np.float32))
    frames, bins = np.concatenate(frames), np.concatenate(bins)
    order = np.lexsort((bins, frames))
    return extractor.of_peaks(Peaks(frames[order], bins[order]))


def fingerprint_curve(options, queries: Queries) -> list[dict]:
    real = FingerprintEngine.load(options.fingerprint)
    (part,) = real._all_parts()
    real_tracks = len(real.track_ids)
    real_s = float(options.real_audio_s) if options.real_audio_s else real_tracks * TRACK_S
    clips = queries.audio(real.settings.sample_rate)
    work = Path(options.work) / "fingerprint"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.perf_counter()
    extractor = real.settings.extractor()
    peaks = real_peaks(options.catalog, extractor, Path(options.work))
    sources = distractor_sources(list(pd.read_csv(options.catalog)["track_id"]), queries, options)
    peaks = [peaks[number] for number in sources]
    print(f"fingerprint: real catalog {real_tracks} tracks, {len(part.tracks):,} postings"
          f" ({len(part.tracks) / real_s:.0f}/s); peaks of its audio in"
          f" {time.perf_counter() - started:.0f} s")  # fmt: skip
    # Every hash a query looks up, under every hypothesis: above --full_up_to tracks only the
    # postings of these hashes are written (the search reads no others, so top-1 and the
    # postings a query visits are exact), and the full index's size is counted, not written.
    looked_up = np.unique(np.concatenate([real.query_hashes(clip) for clip in clips]))
    seen = np.zeros(2**real.settings.hash_bits, dtype=np.bool_)
    seen[np.asarray(part.keys)] = True
    shutil.copytree(options.fingerprint, work / "part-real")
    parts, made, rows = [work / "part-real"], real_tracks, []
    postings = len(part.tracks)
    rng = np.random.default_rng(SEED)
    for size in options.sizes:
        started = time.perf_counter()
        restricted = size > options.full_up_to
        while made < size:
            count = min(options.segment_tracks, size - made)
            engine = FingerprintEngine(real.settings)
            for number in tqdm.trange(made, made + count, desc=f"synthetic tracks to {size}"):
                landmarks = collage(peaks, extractor, rng)
                postings += len(landmarks.hashes)
                seen[landmarks.hashes] = True
                if restricted:
                    position = np.minimum(np.searchsorted(looked_up, landmarks.hashes),
                                          len(looked_up) - 1)  # fmt: skip
                    kept = looked_up[position] == landmarks.hashes
                    landmarks = Landmarks(landmarks.hashes[kept], landmarks.frames[kept])
                engine.add(f"synthetic{number:07d}", landmarks)
            engine.save(work / f"part-{made:07d}")
            parts.append(work / f"part-{made:07d}")
            made += count
        generated_s = time.perf_counter() - started
        started = time.perf_counter()
        merged = work / f"merged-{size}"
        shutil.rmtree(merged, ignore_errors=True)
        FingerprintEngine.open(parts).save(merged)
        compact_s = time.perf_counter() - started
        # What the full index holds: postings 8 bytes each, a distinct hash 12 (keys, starts).
        full_bytes = postings * 8 + int(np.count_nonzero(seen)) * 12
        for settings_name, max_postings in options.max_postings:
            rows.append(
                measure_fingerprint(
                    merged,
                    size,
                    real_tracks,
                    real_s,
                    clips,
                    queries,
                    compact_s,
                    generated_s,
                    settings_name,
                    max_postings,
                    None if not restricted else full_bytes,
                )  # fmt: skip
            )
            print(json.dumps(rows[-1]))
        if size != options.sizes[-1]:
            shutil.rmtree(merged)
    return rows


def measure_fingerprint(
    merged,
    size,
    real_tracks,
    real_s,
    clips,
    queries: Queries,
    compact_s,
    generated_s,
    name,
    max_postings,
    counted_bytes=None,
) -> dict:
    engine = FingerprintEngine.load(merged)
    if max_postings:
        from dataclasses import replace

        engine.settings = replace(engine.settings, max_postings_per_hash=max_postings)
    engine.search(clips[0])  # compiles numba, maps the first pages
    latencies, hits, visited = [], [], []
    for clip, track_id in zip(clips, queries.truth):
        started = time.perf_counter()
        matches = engine.search(clip, 5)
        latencies.append(time.perf_counter() - started)
        hits.append(bool(matches) and matches[0].track_id == track_id)
        hashes = engine.query_hashes(clip)
        found = sum(end - first for first, end in (p.ranges(hashes) for p in engine._all_parts()))
        visited.append(int(found[found <= engine.settings.max_postings_per_hash].sum()))
    hours = (real_s + (size - real_tracks) * TRACK_S) / 3600
    disk = counted_bytes if counted_bytes is not None else folder_bytes(merged)
    p50, p95 = percentiles_ms(latencies)
    right = sum(hits)
    low, high = proportion_interval(right, len(clips))
    return {
        "engine": "fingerprint",
        "search": f"{HASHES[engine.settings.hash_peaks]}, max_postings_per_hash"
        f"={engine.settings.max_postings_per_hash} ({name})",
        "tracks": size,
        "hours": round(hours, 1),
        "compact_s": round(compact_s, 1),
        "generate_s": round(generated_s, 1),
        "index": "query hashes only, size counted" if counted_bytes is not None else "whole",
        "disk_gb": round(disk / 1e9, 3),
        "mb_per_hour": round(disk / 1e6 / hours, 2),
        "rss_after_load_mb": None
        if counted_bytes is not None
        else round(resident_mb_after_load("fingerprint", merged), 0),
        "postings_per_query": int(np.median(visited)),
        "p50_ms": round(p50, 1),
        "p95_ms": round(p95, 1),
        "top1": round(right / len(clips), 4),
        "top1_wilson95": [round(low, 4), round(high, 4)],
        "top1_by_degradation": queries.top1_by_degradation(hits),
        "queries": len(clips),
    }


def embedding_curve(options, queries: Queries) -> list[dict]:
    engine = EmbeddingEngine.load(Path(options.embedding))
    real = engine.index
    labels = np.arange(sum(p.vectors.size for p in real._parts))
    vectors = real._vectors(labels)
    tracks, starts = real.window_metadata(labels)
    real_tracks = len(real.track_ids)
    # The windows synthetic ones are mixed from, selected once (not per synthetic track).
    sources = np.isin(tracks, distractor_sources(real._all_ids, queries, options))
    pool = Pool(vectors[sources], tracks[sources], int(round(CHUNK_S / engine.settings.hop_s)))
    print(f"embedding: real catalog {real_tracks} tracks, {len(vectors):,} windows of"
          f" {vectors.shape[1]} dimensions")  # fmt: skip
    started = time.perf_counter()
    query_windows = []
    for clip in queries.audio(engine.sample_rate):
        windows, starts_s = engine.windows(clip, engine.settings.query_hop_s)
        query_windows.append((engine.embed(windows), starts_s))
    model_ms = (time.perf_counter() - started) * 1000 / len(query_windows)
    per_track = int(TRACK_S / engine.settings.hop_s)
    rows = []
    backends = {
        "ivfpq": SearchSettings(
            "ivfpq",
            nlist=options.nlist,
            pq_m=options.pq_m,
            nbits=options.nbits,
            nprobe=options.nprobe,
        ),
        "flat": SearchSettings("flat"),
        "hnsw": SearchSettings("hnsw"),
    }
    for size in options.sizes:
        results = {}
        for name, search in backends.items():
            if name not in options.backends:
                continue
            limit = {"flat": options.exact_up_to, "hnsw": options.hnsw_up_to}.get(name, size)
            if size > limit:
                continue  # one-thread HNSW builds and exact search in RAM do not scale here
            # IVF-PQ trained once, on real and synthetic windows alike, before any is added.
            index = WindowIndex(vectors.shape[1], search, template(vectors, pool, search, size))
            started = time.perf_counter()
            for number, track_id in enumerate(real._all_ids):
                rows_of = np.flatnonzero(tracks == number)
                index.add(track_id, vectors[rows_of], starts[rows_of])
            synthetic = np.random.default_rng(SEED)  # the same windows for every backend
            for number in range(real_tracks, size):
                mixed = synthetic_windows(pool, per_track, synthetic)
                index.add(f"synthetic{number:07d}", mixed, np.arange(per_track) * 0.5)
            build_s = time.perf_counter() - started
            folder = Path(options.work) / f"embedding-{name}-{size}"
            shutil.rmtree(folder, ignore_errors=True)
            index.save(folder)
            loaded = WindowIndex.load(folder)
            first_labels = np.concatenate(
                [loaded.search(embeddings, 1)[0][:, 0] for embeddings, _ in query_windows]
            )
            windows = len(loaded)
            graph = folder / ("hnsw.bin" if name == "hnsw" else "faiss.index")
            built = {
                "engine": "embedding",
                "search": name
                if name != "ivfpq"
                else f"ivfpq nlist={search.nlist} pq_m={search.pq_m} nbits={search.nbits}"
                f" nprobe={search.nprobe}",
                "tracks": size,
                "windows": windows,
                "build_s": round(build_s, 1),
                "bytes_per_window": round(graph.stat().st_size / windows, 1),
                "disk_gb": round(folder_bytes(folder) / 1e9, 3),
                "rss_after_load_mb": round(resident_mb_after_load("embedding", folder), 0),
                "model_ms_per_query": round(model_ms, 1),
                "queries": len(query_windows),
                "_first": first_labels,
            }
            for neighbors, rescore in itertools.product(
                options.neighbors or [engine.settings.neighbors], options.rescore
            ):
                rank = functools.partial(
                    loaded.rank_tracks,
                    top_k=5,
                    neighbors=neighbors,
                    offset_bin_s=engine.settings.hop_s,
                    rescore=rescore,
                )
                rank(*query_windows[0])  # warm: IVF-PQ builds its direct map for rescoring
                latencies, hits = [], []
                for (embeddings, starts_s), track_id in zip(query_windows, queries.truth):
                    began = time.perf_counter()
                    matches = rank(embeddings, starts_s)
                    latencies.append(time.perf_counter() - began)
                    hits.append(bool(matches) and matches[0].track_id == track_id)
                p50, p95 = percentiles_ms(latencies)
                right = sum(hits)
                low, high = proportion_interval(right, len(query_windows))
                results[name, neighbors, rescore] = {
                    **built,
                    "neighbors": neighbors,
                    "rescore": rescore,
                    "search_p50_ms": round(p50, 2),
                    "search_p95_ms": round(p95, 2),
                    "top1": round(right / len(query_windows), 4),
                    "top1_wilson95": [round(low, 4), round(high, 4)],
                    "top1_by_degradation": queries.top1_by_degradation(hits),
                }
            shutil.rmtree(folder)
        exact = next((r["_first"] for (n, *_), r in results.items() if n == "flat"), None)
        for (name, *search), row in results.items():
            first = row.pop("_first")
            if exact is not None:
                row["window_recall1_vs_exact"] = round(float(np.mean(first == exact)), 4)
            if ("hnsw", *search) in results and name != "hnsw":
                hnsw = results[("hnsw", *search)]["top1"]
                row["top1_minus_hnsw"] = round(row["top1"] - hnsw, 4)
            rows.append(row)
            print(json.dumps(row))
    return rows


def synthetic_windows(pool: Pool, count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` windows of synthetic music: runs of CHUNK_S seconds, each the normalised sum of
    two runs of consecutive real windows (two random tracks, random moments) and a little
    noise. Points among the real ones, not in an empty corner of the sphere, and as coherent
    in time as music (a window resembles its neighbours), so that a wrong track can line up
    with a query over several windows as a real one can."""
    run = pool.run
    chunks = -(-count // run)
    steps = np.arange(run)
    first = pool.starts[rng.integers(0, len(pool.starts), chunks)][:, None] + steps
    second = pool.starts[rng.integers(0, len(pool.starts), chunks)][:, None] + steps
    mixed = pool.vectors[first.ravel()[:count]] + pool.vectors[second.ravel()[:count]]
    mixed += 0.05 * rng.standard_normal(mixed.shape).astype(np.float32)
    return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


class Pool:
    """The real windows synthetic ones are mixed from, and where a run of ``run`` consecutive
    windows of one track may start."""

    def __init__(self, vectors: np.ndarray, tracks: np.ndarray, run: int) -> None:
        self.vectors, self.run = vectors, run
        whole = tracks[: len(tracks) - run + 1] == tracks[run - 1 :]
        self.starts = np.flatnonzero(whole)


def template(vectors: np.ndarray, pool: Pool, search: SearchSettings, size: int):
    """An IVF-PQ index trained on real windows and as many synthetic ones as the catalog's
    share (None for the other backends)."""
    if search.backend != "ivfpq":
        return None
    from acr.retrieval.neighbors import train_ivfpq

    rng = np.random.default_rng(SEED + 1)
    real_share = min(1.0, len(vectors) / (len(vectors) + size * TRACK_S * 2))
    real = vectors[rng.choice(len(vectors), int(search.train_windows * real_share) + 1)]
    synthetic = synthetic_windows(pool, search.train_windows - len(real), rng)
    return train_ivfpq(np.concatenate([real, synthetic]), search)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 4, figsize=(17, 3.8))
    series = {}
    for row in rows:
        # The search's kind only (its settings are in the table), and what re-ranks it.
        label = f"{row['engine']} {row['search'].split()[0]}"
        if "rescore" in row:
            label += f", {row['neighbors']} neighbours, rescore {row['rescore']}"
        series.setdefault(label, []).append(row)
    for label, points in series.items():
        sizes = [p["tracks"] for p in points]
        latency = [p.get("p50_ms", p.get("search_p50_ms")) for p in points]
        axes[0].loglog(sizes, latency, "o-", label=label)
        axes[1].loglog(sizes, [p["disk_gb"] for p in points], "o-", label=label)
        resident = [p["rss_after_load_mb"] or np.nan for p in points]  # None: not measured
        axes[2].loglog(sizes, resident, "o-", label=label)
        axes[3].semilogx(sizes, [p["top1"] for p in points], "o-", label=label)
    titles = [
        "3-s query p50, ms (embedding: search only)",
        "index on disk, GB",
        "RSS after load, MB",
        "top-1 of the real 3-s queries",
    ]
    for axis, title in zip(axes, titles):
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("catalog tracks (3 min each)")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fingerprint", help="a fingerprint part of the real catalog")
    parser.add_argument("--embedding", help="an embedding part of the real catalog")
    parser.add_argument("--real_audio_s", type=float, help="hours of the real catalog, in s")
    parser.add_argument("--queries", required=True, help="3-s test queries of the real catalog")
    parser.add_argument("--work", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--query_count", type=int, default=300)
    parser.add_argument("--segment_tracks", type=int, default=2000)
    parser.add_argument("--catalog", help="the real catalog's tracks.csv (fingerprint curve)")
    parser.add_argument(
        "--max_postings_per_hash",
        type=int,
        nargs="+",
        default=[0],
        help="fingerprint searches to measure at every size (0: the index's setting)",
    )
    parser.add_argument(
        "--full_up_to", type=int, default=10000, help="whole fingerprint indexes up to"
    )
    parser.add_argument("--exact_up_to", type=int, default=10000, help="flat search up to")
    parser.add_argument("--hnsw_up_to", type=int, default=1000, help="HNSW builds up to")
    parser.add_argument("--nlist", type=int, default=1024)
    parser.add_argument("--pq_m", type=int, default=32)
    parser.add_argument("--nbits", type=int, default=8, help="4: FAISS fast-scan codes")
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--train_windows", type=int, default=65536)
    parser.add_argument(
        "--neighbors", type=int, nargs="+",
        help="catalog windows per query window (default: the index's); rows per value",
    )  # fmt: skip
    parser.add_argument(
        "--rescore", type=int, nargs="+", default=[EmbeddingSettings.rescore],
        help="cells re-scored with every query window (0: votes alone); one row per value",
    )  # fmt: skip
    parser.add_argument(
        "--backends", nargs="+", default=["ivfpq", "flat", "hnsw"], help="embedding searches"
    )
    parser.add_argument(
        "--distractors_from",
        choices=["others", "all"],
        default="others",
        help="real tracks synthetic ones are made of: those no query comes from, or all",
    )
    parser.add_argument("--plot")
    parser.add_argument("--json")
    options = parser.parse_args()
    options.max_postings = [
        ("default" if cap == 0 else "set", cap) for cap in options.max_postings_per_hash
    ]
    print("machine:", machine("faiss", "numba"))
    queries = Queries(options.queries, options.query_count)
    rows = []
    if options.embedding:
        rows += embedding_curve(options, queries)
    if options.fingerprint:
        rows += fingerprint_curve(options, queries)
    if options.json:
        Path(options.json).write_text(json.dumps(rows, indent=1))
    if options.plot:
        plot(rows, options.plot)


if __name__ == "__main__":
    main()

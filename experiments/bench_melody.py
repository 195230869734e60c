"""Benchmark the melody engine: hummed queries against a synthetic catalog (and real music).

Synthetic: a catalog of procedural songs; queries hum the lead melody (acr.synth.render_humming:
the hummer's own key, timing jitter) from random offsets where the melody is present, at several
lengths; also tempo-stretched hums and clean excerpts of the mix. Real (when --corpus exists):
tracks from a folder with tracks.csv (track_id, path, duration_s); queries hum the predominant
melody of an excerpt back (acr.synth.hum_contour), which is what humming_like queries do.

    python experiments/bench_melody.py --tracks 100 --duration-s 30
    python experiments/bench_melody.py --real-tracks 50 --corpus /work/corpus/debian-music
    python experiments/bench_melody.py --tracks 0 --real-tracks 80 --real-queries 100 --sung \
        --corpus /work/corpus --query-cache /tmp/melody_queries.npz

Top-1 comes with its 95 % Wilson score interval. --sung adds queries sung by an independent
chain (acr.synth.sung: librosa.pyin's pitch of the mix, a singer's key, vibrato and vowels), so
the engine is not graded only on hums of the line its own tracker extracts.
"""

import argparse
import csv
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np

from acr import synth
from acr.audio import load_audio
from acr.augment.degradations import UnusableExcerpt
from acr.pitch import predominant_pitch
from acr.retrieval.melody import MelodyEngine, MelodySettings
from acr.retrieval.metrics import proportion_interval
from acr.runs.environment import machine
from acr.synth.humming import hum_contour
from acr.synth.sung import sung_excerpt

SAMPLE_RATE = 16000


class Tally:
    """Top-1 / top-5 hits and search latency for one query condition."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.ranks: list[int | None] = []
        self.latencies_s: list[float] = []

    def search(self, engine: MelodyEngine, audio: np.ndarray, track_id: str) -> None:
        start_s = time.perf_counter()
        matches = engine.search(audio, top_k=5)
        self.latencies_s.append(time.perf_counter() - start_s)
        found = [match.track_id for match in matches]
        self.ranks.append(found.index(track_id) if track_id in found else None)

    def line(self) -> str:
        count = len(self.ranks)
        top1 = sum(rank == 0 for rank in self.ranks) / count
        top5 = sum(rank is not None for rank in self.ranks) / count
        low, high = proportion_interval(sum(rank == 0 for rank in self.ranks), count)
        latency_ms = 1000 * np.array(self.latencies_s)
        return (
            f"{self.name:<34} n={count:<4} top-1 {top1:.2f} [{low:.2f}, {high:.2f}]  "
            f"top-5 {top5:.2f}  "
            f"search {latency_ms.mean():.0f} ms (p95 {np.percentile(latency_ms, 95):.0f} ms)"
        )


def index_catalog(engine: MelodyEngine, catalog: dict[str, np.ndarray]) -> str:
    """Extract in this process, one track at a time, and report the speed."""
    extract = engine.extractor()
    extract(next(iter(catalog.values()))[: 2 * SAMPLE_RATE])  # compile librosa's Viterbi first
    wall_s = cpu_s = 0.0
    for track_id, audio in catalog.items():
        wall_start_s, cpu_start_s = time.perf_counter(), time.process_time()
        features = extract(audio)
        wall_s += time.perf_counter() - wall_start_s
        cpu_s += time.process_time() - cpu_start_s
        engine.add(track_id, features)
    audio_s = sum(len(audio) for audio in catalog.values()) / SAMPLE_RATE
    return (
        f"catalog: {len(catalog)} tracks, {audio_s / 3600:.2f} h, {engine.item_count} windows; "
        f"extraction {audio_s / wall_s:.0f}x real time (wall), "
        f"{audio_s / cpu_s:.0f}x per CPU second"
    )


def melody_offset(song: synth.Song, length_s: float, rng: np.random.Generator) -> float:
    """A random start whose window has the lead sounding at least half of the time."""
    while True:
        start_s = float(rng.uniform(0, song.duration_s - length_s))
        sung_s = sum(
            max(
                0.0,
                min(note.start_s + note.duration_s, start_s + length_s)
                - max(note.start_s, start_s),
            )
            for note in song.lead
        )
        if sung_s > 0.5 * length_s:
            return start_s


def bench_synthetic(args: argparse.Namespace) -> None:
    songs = [synth.compose_song(seed, args.duration_s) for seed in range(args.tracks)]
    catalog = {str(song.seed): synth.render_song(song, SAMPLE_RATE) for song in songs}
    engine = MelodyEngine(args.settings)
    print(index_catalog(engine, catalog))
    rng = np.random.default_rng(args.seed)
    tallies: dict[str, Tally] = {}

    def tally(name: str) -> Tally:
        return tallies.setdefault(name, Tally(name))

    for index, song in enumerate(songs):
        for length_s in args.lengths:
            start_s = melody_offset(song, length_s, rng)
            hum = synth.render_humming(song, start_s, length_s, SAMPLE_RATE, seed=1000 + index)
            tally(f"hum {length_s:g} s").search(engine, hum, str(song.seed))
            if length_s == max(args.lengths):
                for ratio in (0.9, 1.1):
                    stretched = librosa.effects.time_stretch(hum, rate=1 / ratio)
                    tally(f"hum {length_s:g} s, tempo x{ratio:g}").search(
                        engine, stretched, str(song.seed)
                    )
        start = round(rng.uniform(0, args.duration_s - 5.0) * SAMPLE_RATE)
        excerpt = catalog[str(song.seed)][start : start + 5 * SAMPLE_RATE]
        tally("clean mix excerpt 5 s").search(engine, excerpt, str(song.seed))
    for result in tallies.values():
        print(result.line())


def real_tracks(corpus: Path, count: int, seed: int) -> list[dict[str, str]]:
    """A seeded sample of tracks of 30 s to 6 min from tracks.csv."""
    with open(corpus / "tracks.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if 30 <= float(row["duration_s"]) <= 360]
    rows.sort(key=lambda row: row["track_id"])
    chosen = np.random.default_rng(seed).choice(
        len(rows), size=min(count, len(rows)), replace=False
    )
    return [rows[i] for i in sorted(chosen)]


def bench_real(args: argparse.Namespace) -> None:
    rows = real_tracks(args.corpus, args.real_tracks, args.seed)
    catalog = {row["track_id"]: load_audio(args.corpus / row["path"], SAMPLE_RATE) for row in rows}
    engine = MelodyEngine(args.settings)
    print(f"real music from {args.corpus}")
    print(index_catalog(engine, catalog))
    queries = real_queries(catalog, args)
    for condition, condition_queries in queries.items():
        result = Tally(condition)
        for track_id, audio in condition_queries:
            result.search(engine, audio, track_id)
        print(result.line())


def real_queries(
    catalog: dict[str, np.ndarray], args: argparse.Namespace
) -> dict[str, list[tuple[str, np.ndarray]]]:
    """``--real-queries`` queries per condition, cycling through the catalog: hum_contour of
    acr.pitch's melody (acr's own chain) and, with ``--sung``, acr.synth.sung (pyin and a singer,
    the independent chain), at each of ``--real-lengths``; clean 5-s excerpts. Cached in
    ``--query-cache`` (an .npz) so that runs before and after a change search the same audio."""
    cache = args.query_cache
    if cache is not None and cache.is_file():
        with np.load(cache, allow_pickle=False) as arrays:
            queries: dict[str, list[tuple[str, np.ndarray]]] = {}
            for name in arrays.files:
                if name.endswith("/track_ids"):
                    condition = name.removesuffix("/track_ids")
                    audio = [arrays[f"{condition}/{i}"] for i in range(len(arrays[name]))]
                    queries[condition] = list(zip(arrays[name].tolist(), audio))
        print(f"queries from {cache}: " + ", ".join(f"{c} ({len(q)})" for c, q in queries.items()))
        return queries
    rng = np.random.default_rng(args.seed)
    track_ids = list(catalog)
    chains: list[tuple[str, Callable[[np.ndarray, int], np.ndarray | None]]] = []
    for length_s in args.real_lengths:
        chains.append(
            (
                f"hum_contour {length_s:g} s",
                lambda audio, index, n=length_s: own_hum(audio, n, index, rng),
            )
        )
        if args.sung:
            chains.append(
                (f"sung {length_s:g} s", lambda audio, index, n=length_s: sung_hum(audio, n, rng))
            )
    chains.append(("clean excerpt 5 s", lambda audio, index: excerpt(audio, 5.0, rng)))
    queries, skipped = {}, {}
    for condition, make in chains:
        queries[condition], skipped[condition] = [], 0
        for index in range(args.real_queries):
            track_id = track_ids[index % len(track_ids)]
            query = make(catalog[track_id], index)
            if query is None:
                skipped[condition] += 1
            else:
                queries[condition].append((track_id, query))
    print("queries skipped (no usable excerpt in 20 tries): " + str(skipped))
    if cache is not None:
        arrays = {}
        for condition, condition_queries in queries.items():
            arrays[f"{condition}/track_ids"] = np.array([t for t, _ in condition_queries])
            for i, (_, audio) in enumerate(condition_queries):
                arrays[f"{condition}/{i}"] = audio
        np.savez(cache, **arrays)
    return queries


def excerpt(audio: np.ndarray, length_s: float, rng: np.random.Generator) -> np.ndarray:
    length = round(length_s * SAMPLE_RATE)
    start = int(rng.integers(0, max(1, len(audio) - length)))
    return audio[start : start + length]


def own_hum(
    audio: np.ndarray, length_s: float, seed: int, rng: np.random.Generator, tries: int = 20
) -> np.ndarray | None:
    """acr's own chain: hum_contour of acr.pitch's melody of an excerpt voiced half the time."""
    for _ in range(tries):
        melody = predominant_pitch(excerpt(audio, length_s, rng), SAMPLE_RATE)
        if melody.voiced.mean() >= 0.5:
            return hum_contour(melody, SAMPLE_RATE, seed=seed)
    return None


def sung_hum(
    audio: np.ndarray, length_s: float, rng: np.random.Generator, tries: int = 20
) -> np.ndarray | None:
    """The independent chain: acr.synth.sung (pyin's pitch, sung by a drawn singer)."""
    for _ in range(tries):
        try:
            return sung_excerpt(excerpt(audio, length_s, rng), SAMPLE_RATE, rng)[0]
        except UnusableExcerpt:
            continue
    return None


def parse_setting(text: str) -> tuple[str, object]:
    """``name=value`` -> (name, value as JSON, else the string)."""
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def timed(step: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> None:
    start_s = time.perf_counter()
    step(args)
    print(f"({time.perf_counter() - start_s:.0f} s)\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=100)
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--lengths", type=float, nargs="+", default=[3.0, 5.0, 10.0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=Path("/work/corpus/debian-music"))
    parser.add_argument("--real-tracks", type=int, default=50)
    parser.add_argument("--real-lengths", type=float, nargs="+", default=[3.0, 10.0])
    parser.add_argument("--real-queries", type=int, default=100, help="per condition")
    parser.add_argument(
        "--sung", action="store_true", help="also sung queries (acr.synth.sung, pyin's pitch)"
    )
    parser.add_argument("--query-cache", type=Path, help="an .npz of real queries to reuse")
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a MelodySettings field for both catalogs (e.g. candidates=40); repeatable",
    )
    args = parser.parse_args(argv)
    args.settings = MelodySettings(SAMPLE_RATE, **dict(map(parse_setting, args.setting)))
    print("machine:", machine("numpy", "librosa"))
    print(f"settings: {args.settings}\n")
    if args.tracks:
        timed(bench_synthetic, args)
    if args.real_tracks and (args.corpus / "tracks.csv").is_file():
        timed(bench_real, args)


if __name__ == "__main__":
    sys.exit(main())

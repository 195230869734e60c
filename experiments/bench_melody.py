"""Benchmark the melody engine: hummed queries against a synthetic catalog (and real music).

Synthetic: a catalog of procedural songs; queries hum the lead melody (acr.synth.render_humming:
the hummer's own key, timing jitter) from random offsets where the melody is present, at several
lengths; also tempo-stretched hums and clean excerpts of the mix. Real (when --corpus exists):
tracks from a folder with tracks.csv (track_id, path, duration_s); queries hum the predominant
melody of an excerpt back (acr.synth.hum_contour), which is what humming_like queries do.

    python experiments/bench_melody.py --tracks 100 --duration-s 30
    python experiments/bench_melody.py --real-tracks 50 --corpus /work/corpus/debian-music
"""

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

import librosa
import numpy as np

from acr import synth
from acr.audio import load_audio
from acr.pitch import predominant_pitch
from acr.retrieval.melody import MelodyEngine, MelodySettings
from acr.runs.environment import machine
from acr.synth.humming import hum_contour

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
        latency_ms = 1000 * np.array(self.latencies_s)
        return (
            f"{self.name:<34} n={count:<4} top-1 {top1:.2f}  top-5 {top5:.2f}  "
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
    engine = MelodyEngine(MelodySettings(SAMPLE_RATE))
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
    engine = MelodyEngine(MelodySettings(SAMPLE_RATE))
    print(f"real music from {args.corpus}")
    print(index_catalog(engine, catalog))
    rng = np.random.default_rng(args.seed)
    tallies = {length_s: Tally(f"hum_contour {length_s:g} s") for length_s in args.real_lengths}
    clean = Tally("clean excerpt 5 s")
    skipped = 0
    for index, (track_id, audio) in enumerate(catalog.items()):
        for length_s, result in tallies.items():
            excerpt = voiced_excerpt(audio, length_s, rng)
            if excerpt is None:
                skipped += 1
                continue
            melody = predominant_pitch(excerpt, SAMPLE_RATE)
            result.search(engine, hum_contour(melody, SAMPLE_RATE, seed=index), track_id)
        start = round(rng.uniform(0, len(audio) / SAMPLE_RATE - 5.0) * SAMPLE_RATE)
        clean.search(engine, audio[start : start + 5 * SAMPLE_RATE], track_id)
    for result in [*tallies.values(), clean]:
        print(result.line())
    print(f"queries skipped (no excerpt with half its frames voiced in 20 tries): {skipped}")


def voiced_excerpt(
    audio: np.ndarray, length_s: float, rng: np.random.Generator, tries: int = 20
) -> np.ndarray | None:
    """A random excerpt whose predominant pitch is voiced at least half of the time."""
    length = round(length_s * SAMPLE_RATE)
    for _ in range(tries):
        start = int(rng.integers(0, max(1, len(audio) - length)))
        excerpt = audio[start : start + length]
        if predominant_pitch(excerpt, SAMPLE_RATE).voiced.mean() >= 0.5:
            return excerpt
    return None


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
    parser.add_argument("--real-lengths", type=float, nargs="+", default=[5.0, 10.0])
    args = parser.parse_args(argv)
    print("machine:", machine("numpy", "librosa"))
    print(f"settings: {MelodySettings(SAMPLE_RATE)}\n")
    if args.tracks:
        timed(bench_synthetic, args)
    if args.real_tracks and (args.corpus / "tracks.csv").is_file():
        timed(bench_real, args)


if __name__ == "__main__":
    sys.exit(main())

"""Time `acr data prepare fma` on an FMA-small-sized look-alike: cold, then from its cache.

The look-alike has fma_small's shape: 8,000 tracks of 30 s (44.1 kHz stereo mp3) in
fma_small/NNN/NNNNNN.mp3, three of them without audio as published, and fma_metadata/tracks.csv
with FMA's 52 columns under its three header rows (6,400 training, 800 validation, 800 test
tracks; 8 genres). Its mp3s are hard links to a few rendered songs, so it takes a few MB of disk.
The target is under 60 s cold: headers and a 0.5-s tail decode per file, never a full decode.

    python experiments/bench_prepare.py --tracks 8000
"""

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

from acr.runs.environment import machine
from acr.synth import compose_song, render_song

# FMA's tracks.csv columns, in its order (fma_metadata.zip, Defferrard et al. 2017).
FMA_COLUMNS = {
    "album": "comments date_created date_released engineer favorites id information listens"
    " producer tags title tracks type",
    "artist": "active_year_begin active_year_end associated_labels bio comments date_created"
    " favorites id latitude location longitude members name related_projects tags website"
    " wikipedia_page",
    "set": "split subset",
    "track": "bit_rate comments composer date_created date_recorded duration favorites genre_top"
    " genres genres_all information interest language_code license listens lyricist number"
    " publisher tags title",
}
GENRES = ("Electronic", "Experimental", "Folk", "Hip-Hop", "Instrumental", "International")
GENRES += ("Pop", "Rock")
NO_AUDIO = (99134, 108925, 133297)  # fma_small's published mp3s without audio


def write_metadata(path: Path, track_ids: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """tracks.csv with FMA's two-level columns; set/split 80/10/10 and 8 balanced genres."""
    columns = pd.MultiIndex.from_tuples(
        [(top, field) for top, fields in FMA_COLUMNS.items() for field in fields.split()]
    )
    count = len(track_ids)
    table = pd.DataFrame(index=pd.Index(track_ids, name="track_id"), columns=columns, dtype=object)
    splits = np.array(["training"] * count, dtype=object)
    order = rng.permutation(count)
    splits[order[: count // 10]] = "validation"
    splits[order[count // 10 : count // 5]] = "test"
    table[("set", "split")] = splits
    table[("set", "subset")] = "small"
    table[("track", "genre_top")] = [GENRES[index % len(GENRES)] for index in range(count)]
    table[("track", "duration")] = 30
    table[("track", "title")] = [f"Track {track_id}" for track_id in track_ids]
    table[("track", "bit_rate")] = 320000
    table[("track", "genres")] = "[12]"
    table[("artist", "id")] = rng.integers(1, count // 4, size=count)
    table[("artist", "name")] = [f"Artist {artist}" for artist in table[("artist", "id")]]
    table[("artist", "bio")] = "<p>An artist who makes music, with a biography like FMA's.</p>"
    table[("album", "id")] = rng.integers(1, count // 2, size=count)
    table[("album", "title")] = "An album"
    path.parent.mkdir(parents=True)
    table.to_csv(path)
    return table


def write_audio(root: Path, track_ids: np.ndarray, songs: int, duration_s: float) -> None:
    """fma_small/NNN/NNNNNN.mp3: hard links (copies where links fail) to ``songs`` renders."""
    sources = []
    for seed in range(songs):
        song = render_song(compose_song(seed, duration_s), 44100)
        path = root / "songs" / f"song{seed}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, np.stack([song, 0.9 * song], axis=1), 44100)
        sources.append(path)
    empty = root / "songs" / "no_audio.mp3"
    empty.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00")
    for index, track_id in enumerate(track_ids):
        name = f"{track_id:06d}"
        path = root / "fma_small" / name[:3] / f"{name}.mp3"
        path.parent.mkdir(parents=True, exist_ok=True)
        source = empty if track_id in NO_AUDIO else sources[index % songs]
        try:
            os.link(source, path)
        except OSError:
            shutil.copyfile(source, path)


def run_prepare(root: Path, output: Path, probe_workers: int | None) -> tuple[float, float, str]:
    """`python -m acr data prepare fma`: (wall s, CPU s, startup included; its stdout).

    CPU seconds (user + system) do not depend on what else the machine runs; wall seconds do.
    """
    command = [sys.executable, "-m", "acr", "data", "prepare", "fma", str(root)]
    command += ["--output", str(output)]
    if probe_workers:
        command += ["--probe_workers", str(probe_workers)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode:
        raise SystemExit(f"acr data prepare failed:\n{result.stderr[-2000:]}")
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu_s, result.stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracks", type=int, default=8000)
    parser.add_argument("--songs", type=int, default=8, help="distinct rendered mp3s")
    parser.add_argument("--duration-s", type=float, default=30.0)
    parser.add_argument("--probe-workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    candidates = np.setdiff1d(np.arange(2, 155321), NO_AUDIO)
    track_ids = np.sort(
        np.concatenate(
            [rng.choice(candidates, args.tracks - len(NO_AUDIO), replace=False), NO_AUDIO]
        )
    )
    with tempfile.TemporaryDirectory(prefix="bench_prepare_") as scratch:
        root, output = Path(scratch) / "fma", Path(scratch) / "manifests"
        start = time.perf_counter()
        write_metadata(root / "fma_metadata" / "tracks.csv", track_ids, rng)
        write_audio(root, track_ids, args.songs, args.duration_s)
        print(f"look-alike: {args.tracks} tracks in {time.perf_counter() - start:.1f} s")
        cold_s, cold_cpu_s, cold_out = run_prepare(root, output, args.probe_workers)
        cached_s, cached_cpu_s, cached_out = run_prepare(root, output, args.probe_workers)
        if "reused" not in cached_out:
            raise SystemExit(f"the second run did not reuse the cache:\n{cached_out}")
    print(cold_out, end="")
    print(
        f"cold:   {cold_s:.1f} s wall ({_reported(cold_out)} s in prepare, the rest is startup),"
        f" {cold_cpu_s:.1f} s CPU"
    )
    print(
        f"cached: {cached_s:.1f} s wall ({_reported(cached_out)} s in prepare),"
        f" {cached_cpu_s:.1f} s CPU"
    )
    print("machine:", machine("numpy", "pandas"))


def _reported(stdout: str) -> str:
    """The seconds the command itself reports ("... in 12.3 s" / "...; 0.4 s.")."""
    found = re.search(r"(\d+\.\d) s\b", stdout.splitlines()[0])
    return found.group(1) if found else "?"


if __name__ == "__main__":
    sys.exit(main())

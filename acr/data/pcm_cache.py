"""Decoded-audio cache: each track decoded once into 16-bit PCM at the model's sample rate.

Contrastive training reads tens of thousands of random 1-s segments per epoch. Decoding each
from an mp3 or ogg (seek, decode from an earlier frame, resample) costs more than a training
step on a CPU; a slice of a memory-mapped .npy costs microseconds. So ``prepare_data`` decodes
every training and validation track once, in worker processes, into
``pcm-<rate>/<hash>.pcm16.npy`` beside the manifests (115 MB per hour of audio at 16 kHz), and
the datasets read segments from there. A file is written atomically and named after the
track id and its source's size and modification time, so an interrupted build resumes, and a
re-encoded source is decoded again.
"""

from __future__ import annotations

import functools
import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from acr.audio import AudioError, load_audio
from acr.files import replacing
from acr.workers import spawn_pool

SUFFIX = ".pcm16.npy"
FULL_SCALE = 32767  # int16 <-> [-1, 1]
READ_PATH = "read_path"  # the column datasets read from: a cache file or the audio file


def pcm_path(directory: Path, track_id: str, source: str | Path, sample_rate: int) -> Path:
    """The cache file of one track: changes when the source file does."""
    stat = Path(source).stat()
    key = f"{track_id}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
    name = hashlib.sha1(key).hexdigest() + SUFFIX
    return Path(directory) / f"pcm-{sample_rate}" / name


def cache_tracks(tracks: pd.DataFrame, directory: Path, sample_rate: int, workers: int = 0) -> None:
    """Decode every track of ``tracks`` (track_id, path) that has no cache file yet, in
    ``workers`` spawned processes (0 or 1: in this one, cheaper than spawning for a few)."""
    jobs = []
    for track_id, path in zip(tracks["track_id"], tracks["path"]):
        if not Path(path).is_file():
            continue  # the manifest checks name missing files; nothing to cache
        destination = pcm_path(directory, track_id, path, sample_rate)
        if not destination.is_file():
            jobs.append((track_id, str(path), str(destination), sample_rate))
    if not jobs:
        return
    Path(jobs[0][2]).parent.mkdir(parents=True, exist_ok=True)
    progress = functools.partial(
        tqdm, total=len(jobs), unit="track", desc=f"decoding to PCM at {sample_rate} Hz"
    )
    if workers <= 1:
        failures = [problem for problem in progress(map(_decode_one, jobs)) if problem]
    else:
        with spawn_pool(min(workers, len(jobs))) as pool:
            results = pool.map(_decode_one, jobs, chunksize=2)
            failures = [problem for problem in progress(results) if problem]
    if failures:
        warnings.warn(
            f"{len(failures)} track(s) could not be decoded into the cache and are read from "
            f"their files, e.g. {failures[0]}",
            stacklevel=2,
        )


def _decode_one(job: tuple[str, str, str, int]) -> str:
    """Decode one track and save it atomically; returns a problem description or ''."""
    track_id, path, destination, sample_rate = job
    try:
        audio = load_audio(path, sample_rate)
    except AudioError as error:
        return f"{track_id}: {error}"
    pcm = np.round(np.clip(audio, -1.0, 1.0) * FULL_SCALE).astype(np.int16)
    with replacing(destination) as temporary:
        np.save(temporary, pcm)
    return ""


def with_read_paths(tracks: pd.DataFrame, directory: Path, sample_rate: int) -> pd.DataFrame:
    """``tracks`` plus ``read_path``: the cache file where the track is cached, else its audio
    file. Datasets read from ``read_path``; ``path`` stays the audio file."""
    read_paths = [
        str(candidate)
        if Path(path).is_file()
        and (candidate := pcm_path(directory, track_id, path, sample_rate)).is_file()
        else path
        for track_id, path in zip(tracks["track_id"], tracks["path"])
    ]
    return tracks.assign(**{READ_PATH: read_paths})


def read_segment(
    path: str | Path, sample_rate: int, start_s: float = 0.0, duration_s: float | None = None
) -> np.ndarray:
    """``[start_s, start_s + duration_s)`` as float32: sliced from a cache file (which is at
    ``sample_rate`` by construction), or decoded from an audio file."""
    if not str(path).endswith(SUFFIX):
        return load_audio(path, sample_rate, start_s, duration_s)
    pcm = _open(str(path))
    start = int(round(start_s * sample_rate))
    stop = len(pcm) if duration_s is None else start + int(round(duration_s * sample_rate))
    return pcm[start:stop].astype(np.float32) / FULL_SCALE


@functools.lru_cache(maxsize=4096)
def _open(path: str) -> np.ndarray:
    """A read-only memory map, kept open: a worker reads the same tracks again and again."""
    return np.load(path, mmap_mode="r")

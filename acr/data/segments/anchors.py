"""Training anchors chosen by a segment strategy (acr.data.segments.strategies) instead of uniformly.

Each training track is analysed once (loudness, silence, onsets, beats, repetition) and the
analysis is cached as ``analysis/<hash of track_id>.npz`` beside the manifests, so changing the
strategy costs no second pass over the audio, and an interrupted analysis resumes where it
stopped. The pools (best starts and their probabilities) are what the training dataset draws
from.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from acr.audio import AudioError, load_audio
from acr.data.segments.strategies import (
    ANALYSIS_DIR,
    ANALYSIS_RATE_HZ,
    TrackAnalysis,
    analysis_path,
    analyze,
    get_strategy,
)
from acr.workers import spawn_pool

AnchorPool = tuple[np.ndarray, np.ndarray]  # starts (s) and their probabilities


def analyze_tracks(tracks: pd.DataFrame, directory: Path, workers: int | None = None) -> None:
    """Analyse every track of ``tracks`` (track_id, path) that has no cached analysis yet."""
    missing = [
        (track_id, path, str(analysis_path(directory, track_id)))
        for track_id, path in zip(tracks["track_id"], tracks["path"])
        if not analysis_path(directory, track_id).is_file()
    ]
    if not missing:
        return
    (directory / ANALYSIS_DIR).mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(missing)))
    failures = []
    with spawn_pool(workers) as pool:
        results = pool.map(_analyze_one, missing, chunksize=4)
        for problem in tqdm(results, total=len(missing), unit="track", desc="analysing segments"):
            if problem:
                failures.append(problem)
    if failures:
        warnings.warn(
            f"{len(failures)} track(s) could not be analysed and get uniform anchors, "
            f"e.g. {failures[0]}",
            stacklevel=2,
        )


def _analyze_one(job: tuple[str, str, str]) -> str:
    """Analyse one track and save it atomically; returns a problem description or ''."""
    track_id, path, destination = job
    try:
        audio = load_audio(path, ANALYSIS_RATE_HZ)
    except AudioError as error:
        return f"{track_id}: {error}"
    analyze(audio, ANALYSIS_RATE_HZ).save(destination)
    return ""


def anchor_pools(
    tracks: pd.DataFrame, directory: Path, strategy: str, length_s: float
) -> list[AnchorPool]:
    """Per track (in table order), where ``strategy`` would start a ``length_s`` segment; an
    empty pool (no analysis, or nothing fits) means a uniform draw."""
    chooser = get_strategy(strategy)
    pools = []
    for track_id in tracks["track_id"]:
        path = analysis_path(directory, track_id)
        if path.is_file():
            pools.append(chooser.pool(TrackAnalysis.load(path), length_s))
        else:
            pools.append((np.zeros(0), np.zeros(0)))
    return pools

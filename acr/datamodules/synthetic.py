"""SyntheticDataModule: procedural songs and degraded queries, the default that needs no download.

Training songs and validation songs are different compositions. Some validation songs also have
a second *version* (same notes, other orchestration and mix) in the catalog: queries of those
songs are the ``confused`` hard case. ``humming_like`` queries hum the lead melody.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from acr.audio import audio_info, save_audio
from acr.augment.degradations import (
    DEGRADATION_NAMES,
    HUMMING,
    MARGIN,
    check_degradations,
    degrade,
)
from acr.data.manifests import write_table
from acr.datamodules.base import QUERIES_FILE, TRACKS_FILE, ACRDataModule
from acr.files import replacing
from acr.synth import Song, compose_song, render_humming, render_song
from acr.workers import spawn_pool

# Bump when generation changes what a setting produces, so cached data sets are rebuilt.
GENERATOR_REVISION = 2


@dataclass(frozen=True)
class _SongJob:
    """Everything one worker needs to render a song, its version and its queries."""

    index: int
    seed: int
    split: str
    duration_s: float
    sample_rate: int
    with_version: bool
    query_lengths_s: tuple[float, ...]
    query_degradations: tuple[str, ...]
    directory: str


class SyntheticDataModule(ACRDataModule):
    """Procedural music (``acr.synth``) rendered once into ``data_dir`` and reused.

    Args:
        train_tracks: songs to train on.
        val_tracks: unseen songs in the validation catalog; each gets queries.
        confusable_versions: how many validation songs also have a second version in the catalog.
        train_versions: how many training songs also have a second version to train on; both
            are typed ``confused`` and grouped by song (acr.data.hard_cases), so that
            ``hard_cases`` can draw them more often or as each other's negatives.
        track_duration_s: length of every song.
        query_lengths_s: query lengths; every (degradation, length) pair gets one query per song.
        query_degradations: names from the registry (acr.augment.degradations); a
            ``humming_like`` query here hums the song's lead line from its score.
        generation_seed: seeds every composition, rendering and degradation.
        generation_workers: processes rendering songs (default: one per CPU core).
    """

    def __init__(
        self,
        data_dir: str = "data/synthetic",
        train_tracks: int = 160,
        val_tracks: int = 40,
        confusable_versions: int = 10,
        train_versions: int = 0,
        track_duration_s: float = 30.0,
        query_lengths_s: Sequence[float] = (1.0, 3.0, 5.0),
        query_degradations: Sequence[str] = DEGRADATION_NAMES,
        generation_seed: int = 0,
        generation_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        query_degradations = check_degradations(query_degradations, "query_degradations")
        if confusable_versions > val_tracks:
            raise ValueError("confusable_versions cannot exceed val_tracks")
        if not 0 <= train_versions <= train_tracks:
            raise ValueError(f"train_versions must be in [0, train_tracks], got {train_versions}")
        too_long = [length for length in query_lengths_s if length * MARGIN > track_duration_s]
        if too_long:
            raise ValueError(
                f"query_lengths_s {too_long} do not fit in {track_duration_s} s tracks"
            )
        self.train_tracks_count = train_tracks
        self.val_tracks_count = val_tracks
        self.confusable_versions = confusable_versions
        self.train_versions = train_versions
        self.track_duration_s = track_duration_s
        self.query_lengths_s = tuple(float(length) for length in query_lengths_s)
        self.query_degradations = query_degradations
        self.generation_seed = generation_seed
        self.generation_workers = generation_workers

    def manifest_settings(self) -> dict[str, Any]:
        return {
            **super().manifest_settings(),
            "generator_revision": GENERATOR_REVISION,
            "train_tracks": self.train_tracks_count,
            "val_tracks": self.val_tracks_count,
            "confusable_versions": self.confusable_versions,
            **({"train_versions": self.train_versions} if self.train_versions else {}),
            "track_duration_s": self.track_duration_s,
            "query_lengths_s": self.query_lengths_s,
            "query_degradations": self.query_degradations,
            "generation_seed": self.generation_seed,
        }

    def build_manifests(self, directory: Path) -> None:
        jobs = [self._job(index, directory) for index in range(self._song_count)]
        track_rows: list[dict[str, Any]] = []
        query_rows: list[dict[str, Any]] = []
        with _song_renderer(self.generation_workers) as render:
            results = render(_render_song_assets, jobs)
            for tracks, queries in tqdm(results, total=len(jobs), desc="synthesising songs"):
                track_rows.extend(tracks)
                query_rows.extend(queries)
        write_table(pd.DataFrame(track_rows), directory / TRACKS_FILE)
        write_table(pd.DataFrame(query_rows), directory / QUERIES_FILE)

    @property
    def _song_count(self) -> int:
        return self.train_tracks_count + self.val_tracks_count

    def _job(self, index: int, directory: Path) -> _SongJob:
        is_train = index < self.train_tracks_count
        val_position = index - self.train_tracks_count
        return _SongJob(
            index=index,
            seed=self.generation_seed * 1_000_003 + index,
            split="train" if is_train else "val",
            duration_s=self.track_duration_s,
            sample_rate=self.sample_rate,
            with_version=(
                index < self.train_versions if is_train else val_position < self.confusable_versions
            ),
            query_lengths_s=() if is_train else self.query_lengths_s,
            query_degradations=self.query_degradations,
            directory=str(directory),
        )


@contextmanager
def _song_renderer(workers: int | None) -> Iterator[Callable]:
    """``map`` over songs: in process for one worker, else in a process pool."""
    workers = workers or os.cpu_count() or 1
    if workers == 1:
        yield map
        return
    with spawn_pool(workers) as pool:
        yield partial(pool.map, chunksize=4)


def _render_song_assets(job: _SongJob) -> tuple[list[dict], list[dict]]:
    """Render one song (and its version and queries) to files; return manifest rows.

    Files that already exist are kept, so an interrupted build resumes where it stopped.
    """
    directory = Path(job.directory)
    song = compose_song(job.seed, job.duration_s)
    song_id = f"song{job.index:05d}"
    audio = _render_and_save(directory / "audio" / f"{song_id}.wav", song, 0, job.sample_rate)
    hard_case = "confused" if job.with_version else "none"
    tracks = [_track_row(song_id, song_id, 0, hard_case, job)]
    if job.with_version:
        _render_and_save(directory / "audio" / f"{song_id}-v1.wav", song, 1, job.sample_rate)
        tracks.append(_track_row(f"{song_id}-v1", song_id, 1, hard_case, job))
    queries = []
    rng = np.random.default_rng([job.seed, 7])
    for length_s in job.query_lengths_s:
        for degradation in job.query_degradations:
            query_id = f"{song_id}-{degradation}-{length_s:g}s"
            path = directory / "queries" / f"{query_id}.wav"
            if degradation == HUMMING:
                # The score is known here: the hum follows the lead line itself, not a pitch
                # tracker's reading of the mix (the registry's humming_like).
                offset_s = _sung_offset_s(song, length_s, rng)
                if offset_s is None:
                    continue
                if not path.is_file():
                    hum = render_humming(song, offset_s, length_s, job.sample_rate, seed=job.seed)
                    _save_once(path, hum, job.sample_rate)
                row = _query_row(query_id, song_id, path, offset_s, length_s, HUMMING, HUMMING, {})
                queries.append(row)
                continue
            start = int(rng.uniform(0.0, job.duration_s - MARGIN * length_s) * job.sample_rate)
            offset_s = start / job.sample_rate  # on a sample, so the excerpt is exact
            query_rng = np.random.default_rng([job.seed, len(queries)])
            source = audio[start : start + int(round(MARGIN * length_s * job.sample_rate))]
            degraded, params = degrade(source, job.sample_rate, degradation, query_rng)
            _save_once(path, degraded[: int(round(length_s * job.sample_rate))], job.sample_rate)
            queries.append(
                _query_row(
                    query_id, song_id, path, offset_s, length_s, degradation, hard_case, params
                )
            )
    return tracks, queries


def _sung_offset_s(song: Song, length_s: float, rng: np.random.Generator) -> float | None:
    """A query start where the lead sings most of the time, or None if it never sings.

    A hum of a rest is silence, not a query: such songs (an intro-only excerpt) get no hum.
    """
    candidates = rng.uniform(0.0, song.duration_s - length_s, size=16)
    coverage = [_melody_coverage(song, start_s, length_s) for start_s in candidates]
    good = [start_s for start_s, share in zip(candidates, coverage) if share >= 0.6]
    if good:
        return float(good[0])
    return float(candidates[int(np.argmax(coverage))]) if max(coverage) > 0 else None


def _melody_coverage(song: Song, start_s: float, length_s: float) -> float:
    """Share of ``[start_s, start_s + length_s)`` covered by lead notes."""
    end_s = start_s + length_s
    covered = sum(
        max(0.0, min(end_s, note.start_s + note.duration_s) - max(start_s, note.start_s))
        for note in song.lead
    )
    return min(1.0, covered / length_s)


def _render_and_save(path: Path, song: Song, version: int, sample_rate: int) -> np.ndarray:
    audio = render_song(song, sample_rate, version=version)
    _save_once(path, audio, sample_rate)
    return audio


def _save_once(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Write via a temporary name so a killed build never leaves a truncated file behind."""
    if path.is_file():
        return
    with replacing(path) as temporary:
        save_audio(temporary, audio, sample_rate)


def _track_row(
    track_id: str, group: str, version: int, hard_case: str, job: _SongJob
) -> dict[str, Any]:
    path = Path(job.directory) / "audio" / f"{track_id}.wav"
    return {
        "track_id": track_id,
        "path": str(path.relative_to(job.directory)),
        "duration_s": round(audio_info(path).duration_s, 4),
        "split": job.split,
        "role": "reference",
        "source": "synthetic",
        "group": group,
        "version": version,
        "hard_case": hard_case,
        "seed": job.seed,
    }


def _query_row(
    query_id: str,
    track_id: str,
    path: Path,
    offset_s: float,
    length_s: float,
    degradation: str,
    hard_case: str,
    params: dict[str, float],
) -> dict[str, Any]:
    return {
        "query_id": query_id,
        "track_id": track_id,
        "path": str(path.relative_to(path.parent.parent)),
        "offset_s": offset_s,
        "length_s": length_s,
        "degradation": degradation,
        "hard_case": hard_case,
        "degradation_params": ";".join(f"{k}={v:.4g}" for k, v in params.items()),
    }

"""Decoding catalog tracks and extracting engine features in worker processes.

Imports only what workers need (acr.audio, numpy): spawned workers import this module, and
importing Lightning in each of them would cost seconds and hundreds of MB.

A track longer than ``LONG_TRACK_S`` is decoded and analysed in spans, so no process's memory
grows with a track's length (a 2-hour WAV took 5.4 GB decoded whole).

One track must not abort a build: what cannot be used comes back as the reason it was skipped
(the build writes it to skipped.csv, and a resume does not try it again), and a track whose
worker process dies (the kernel's out-of-memory killer, a crash in a decoder) is retried alone
and skipped once it has killed a worker twice.
"""

from __future__ import annotations

import math
import os
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from typing import Any

import numpy as np

from acr.audio import (
    MIN_MUSIC_S,
    SILENCE_RMS,
    SILENT,
    AudioError,
    Resampled,
    audio_info,
    read_audio,
    resample,
    scan_audio,
)
from acr.workers import spawn_pool

WORKER_DEATHS_BEFORE_SKIP = 2
# Longer tracks are read in spans, by every engine (in_spans): the fingerprint and the melody
# in the worker, the embedding engine in the main process, a batch of windows at a time.
LONG_TRACK_S = 600.0
Extractors = list[tuple[str, int, Callable]]  # (engine name, sample rate, extractor)
Result = tuple[str, str, dict[str, Any] | str, float]

_worker_extractors: Extractors = []


def _use_extractors(extractors: Extractors) -> None:
    global _worker_extractors
    _worker_extractors = extractors


def _decode_and_extract(job: tuple[str, str]) -> Result:
    """(track_id, path, features per engine or the reason it was skipped, duration_s)."""
    track_id, path = job
    duration_s = 0.0
    try:
        info = audio_info(path)
        spans = all(hasattr(extract, "in_spans") for _, _, extract in _worker_extractors)
        if spans and info.duration_s > LONG_TRACK_S:
            # Memory independent of the track's length: a pass for its length and level, then
            # each engine reads the spans it needs.
            duration_s, level = scan_audio(path)
            if reason := _unusable(duration_s, level):
                return track_id, path, reason, duration_s
            # The frames that decode (a truncated file's header claims more).
            info = replace(info, frames=round(duration_s * info.sample_rate))
            features = {
                name: extract.in_spans(Resampled(info, rate))
                for name, rate, extract in _worker_extractors
            }
            return track_id, path, features, duration_s
        audio, sample_rate = read_audio(path)
        duration_s = len(audio) / sample_rate
        # The level only has to clear SILENCE_RMS: a float32 dot product is plenty, at a
        # fraction of the cost of squaring the track in float64 (acr.audio.rms).
        level = math.sqrt(max(float(np.dot(audio, audio)), 0.0) / max(len(audio), 1))
        if reason := _unusable(duration_s, level):
            return track_id, path, reason, duration_s
        features = {
            name: extract(resample(audio, sample_rate, rate))
            for name, rate, extract in _worker_extractors
        }
    except AudioError as error:
        return track_id, path, error.reason, duration_s
    except MemoryError:
        return track_id, path, f"out of memory on {duration_s:.0f} s of audio", duration_s
    return track_id, path, features, duration_s


class CatalogTracks:
    """The jobs as a map-style dataset (a DataLoader's, on each rank of a distributed build):
    item i is job i decoded and extracted as a worker does it, skip reasons included. A plain
    class, so the spawned loader workers that unpickle it import neither Lightning nor acr's
    models."""

    def __init__(self, jobs: list[tuple[str, str]], extractors: Extractors) -> None:
        self.jobs = jobs
        self.extractors = extractors

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, position: int) -> Result:
        _use_extractors(self.extractors)
        return _decode_and_extract(self.jobs[position])


def _unusable(duration_s: float, level: float) -> str | None:
    """Why a decoded track cannot be indexed, or None."""
    if duration_s < MIN_MUSIC_S:
        return f"too short ({duration_s:.3f} s < {MIN_MUSIC_S} s)"
    if level < SILENCE_RMS:
        return SILENT
    return None


def extract_in_workers(
    jobs: list[tuple[str, str]], extractors: Extractors, workers: int
) -> Iterator[Result]:
    """Decode and extract in worker processes (acr.workers), in catalog order so resumes are
    reproducible."""
    if workers <= 1:
        _use_extractors(extractors)
        yield from map(_decode_and_extract, jobs)
        return
    waiting = deque(jobs)
    while waiting:
        # After a worker died the pool is unusable, and any job in flight may have killed it.
        in_flight = yield from _extract_until_a_worker_dies(waiting, extractors, workers)
        finished = 0
        for _, future in in_flight:
            if not future.done() or future.cancelled() or future.exception() is not None:
                break
            yield future.result()
            finished += 1
        yield from _extract_one_by_one([job for job, _ in in_flight[finished:]], extractors)


def _extract_until_a_worker_dies(
    waiting: deque[tuple[str, str]], extractors: Extractors, workers: int
) -> Iterator[Result]:
    """Yield results in catalog order; return the jobs in flight, with their futures, when a
    worker died, or nothing when every job is done."""
    in_flight: deque[tuple[tuple[str, str], Future]] = deque()
    with spawn_pool(workers, _use_extractors, (extractors,)) as pool:
        try:
            while waiting or in_flight:
                # A bounded window of jobs in flight: Executor.map would submit the whole
                # catalog and pile up decoded audio whenever the main process is slower.
                while waiting and len(in_flight) < 2 * workers + 2:
                    job = waiting.popleft()
                    in_flight.append((job, pool.submit(_decode_and_extract, job)))
                result = in_flight[0][1].result()
                in_flight.popleft()
                yield result
        except BrokenProcessPool:
            return list(in_flight)
    return []


def _require_started(pool: ProcessPoolExecutor) -> None:
    """A worker that cannot even start (an import error, a broken environment) is not a track's
    doing: stop the build instead of skipping every track."""
    try:
        pool.submit(os.getpid).result()
    except BrokenProcessPool as error:
        raise RuntimeError(
            "indexing worker processes die as they start (see their messages above); "
            "no track was skipped"
        ) from error


def _extract_one_by_one(jobs: list[tuple[str, str]], extractors: Extractors) -> Iterator[Result]:
    """Run the suspects of a worker's death one at a time in a one-worker pool, so that a
    death is the doing of the job it was running; skip a job after its second."""
    deaths = 0
    waiting = deque(jobs)
    while waiting:
        with spawn_pool(1, _use_extractors, (extractors,)) as pool:
            _require_started(pool)
            try:
                while waiting:
                    result = pool.submit(_decode_and_extract, waiting[0]).result()
                    waiting.popleft()
                    deaths = 0
                    yield result
            except BrokenProcessPool:
                deaths += 1
        if deaths >= WORKER_DEATHS_BEFORE_SKIP:
            track_id, path = waiting.popleft()
            deaths = 0
            yield (
                track_id,
                path,
                (
                    f"its worker process died {WORKER_DEATHS_BEFORE_SKIP} times decoding or "
                    "extracting it (out of memory, or a crash in a decoder)"
                ),
                0.0,
            )

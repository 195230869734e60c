"""Decoding catalog tracks and extracting engine features in worker processes.

Imports only what workers need (acr.audio, numpy): spawned workers import this module, and
importing Lightning in each of them would cost seconds and hundreds of MB.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any

from acr.audio import AudioError, read_audio, resample, rms
from acr.workers import spawn_pool

SILENCE_RMS = 1e-4  # -80 dBFS: a track this quiet holds nothing to recognise
Extractors = list[tuple[str, int, Callable]]  # (engine name, sample rate, extractor)
Result = tuple[str, str, dict[str, Any] | str, float]

_worker_extractors: Extractors = []


def _use_extractors(extractors: Extractors) -> None:
    global _worker_extractors
    _worker_extractors = extractors


def _decode_and_extract(job: tuple[str, str]) -> Result:
    """(track_id, path, features per engine or the reason it was skipped, duration_s)."""
    track_id, path = job
    try:
        audio, sample_rate = read_audio(path)
    except AudioError as error:
        return track_id, path, error.reason, 0.0
    duration_s = len(audio) / sample_rate
    if rms(audio) < SILENCE_RMS:
        return track_id, path, "silent (below -80 dBFS)", duration_s
    features = {
        name: extract(resample(audio, sample_rate, rate))
        for name, rate, extract in _worker_extractors
    }
    return track_id, path, features, duration_s


def extract_in_workers(
    jobs: list[tuple[str, str]], extractors: Extractors, workers: int
) -> Iterator[Result]:
    """Decode and extract in worker processes (acr.workers), in catalog order so resumes are
    reproducible."""
    if workers <= 1:
        _use_extractors(extractors)
        yield from map(_decode_and_extract, jobs)
        return
    with spawn_pool(workers, _use_extractors, (extractors,)) as pool:
        # A bounded window of jobs in flight: Executor.map would submit the whole catalog and
        # pile up decoded audio whenever the main process (e.g. model inference) is slower.
        pending: deque[Future] = deque()
        for job in jobs:
            pending.append(pool.submit(_decode_and_extract, job))
            if len(pending) >= 2 * workers + 2:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()

"""The segment tests' shared analysis: a song with two silences where they are known."""

import pytest

from acr.data.segments.analysis import TrackAnalysis, analyze
from acr.synth import synthesize_track

RATE = 16000


@pytest.fixture(scope="package")
def silences_s() -> tuple[tuple[float, float], ...]:
    """Where the with_silences song is silent (start, end in seconds)."""
    return ((6.0, 9.0), (14.0, 15.0))


@pytest.fixture(scope="package")
def with_silences(silences_s: tuple[tuple[float, float], ...]) -> TrackAnalysis:
    """The analysis of 20 s of song 1 with silences_s zeroed."""
    audio = synthesize_track(1, 20.0, RATE)
    for start_s, end_s in silences_s:
        audio[int(start_s * RATE) : int(end_s * RATE)] = 0.0
    return analyze(audio, RATE)

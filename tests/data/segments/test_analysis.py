"""acr.data.segments.analysis: a track's analysis is small on disk, round-trips exactly, and
does not depend on the sample rate it was made at."""

from pathlib import Path

import numpy as np
import pytest
from fixtures_signals import melody

from acr.data.segments.analysis import TrackAnalysis, analyze
from acr.data.segments.strategies import get_strategy

RATE = 16000


def test_analysis_round_trips_through_npz(with_silences: TrackAnalysis, tmp_path: Path) -> None:
    path = tmp_path / "analysis.npz"
    with_silences.save(path)
    loaded = TrackAnalysis.load(path)
    assert path.stat().st_size < 40_000
    assert loaded.duration_s == with_silences.duration_s == 20.0
    assert loaded.hop_s == with_silences.hop_s == 256 / RATE
    for field in ("rms_db", "non_silent_s", "onset_times_s", "beat_times_s", "repetition"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(with_silences, field))
    for name in ("silence_aware", "hybrid"):
        strategy = get_strategy(name)
        assert strategy.candidates(loaded, 3.0) == strategy.candidates(with_silences, 3.0)


def test_analysis_of_other_sample_rates_agrees() -> None:
    audio = np.concatenate([np.zeros(2 * RATE, np.float32), melody(4, 4.0)])
    at_16k = analyze(audio, RATE)
    at_32k = analyze(np.repeat(audio, 2), 2 * RATE)  # resampled to 22.05 kHz
    assert at_32k.duration_s == at_16k.duration_s == 6.0
    assert at_16k.non_silent_s[0, 0] == pytest.approx(2.0, abs=0.1)
    assert at_32k.non_silent_s[0, 0] == pytest.approx(2.0, abs=0.1)

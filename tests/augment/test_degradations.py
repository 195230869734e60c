"""acr.augment.degradations, the one registry of query degradations: documented parameter
ranges, determinism per seed, and what each named degradation does to the sound."""

import numpy as np
import pytest
from fixtures_signals import SAMPLE_RATE, music_like, power, sine

from acr.augment.degradations import DEGRADATION_NAMES, degrade


def params_in_documented_range(degradation: str, params: dict[str, float]) -> bool:
    if degradation in ("clean", "humming_like"):
        return params == {}
    if degradation == "noise":
        return 0.0 <= params["snr_db"] <= 10.0
    if degradation == "reverb":
        return 0.3 <= params["rt60_s"] <= 1.0
    if degradation == "speed":
        return 0.03 <= abs(params["speed_factor"] - 1.0) <= 0.06
    if degradation == "phone_codec":
        return 250 <= params["low_hz"] <= 400 and 3100 <= params["high_hz"] <= 3600
    if degradation == "live_mix":
        return (
            0.4 <= params["rt60_s"] <= 1.2
            and 5 <= params["snr_db"] <= 15
            and 6 <= params["drive_db"] <= 12
        )
    return 1.0 <= abs(params["semitones"]) <= 2.0


@pytest.mark.parametrize("degradation", DEGRADATION_NAMES)
def test_degrade_draws_documented_parameters_deterministically(degradation: str) -> None:
    audio = music_like()
    for seed in range(3):
        degraded, params = degrade(audio, SAMPLE_RATE, degradation, np.random.default_rng(seed))
        again, params_again = degrade(audio, SAMPLE_RATE, degradation, np.random.default_rng(seed))
        assert params_in_documented_range(degradation, params)
        assert params == params_again and np.array_equal(degraded, again)
        assert degraded.dtype == np.float32 and np.all(np.isfinite(degraded))
        if degradation != "speed":
            assert degraded.shape == audio.shape
        assert np.array_equal(degraded, audio) == (degradation == "clean")


def test_degrade_rejects_unknown_name_and_lists_known_ones() -> None:
    with pytest.raises(
        ValueError, match="clean, noise, reverb, phone_codec, speed, pitch, live_mix"
    ):
        degrade(music_like(), SAMPLE_RATE, "telephone", np.random.default_rng(0))


def test_phone_codec_keeps_the_telephone_band_only() -> None:
    rng = np.random.default_rng(0)
    low, speech_band = sine(100.0), sine(1000.0)
    settled = slice(SAMPLE_RATE // 2, None)
    for audio, kept in ((low, False), (speech_band, True)):
        coded, _ = degrade(audio, SAMPLE_RATE, "phone_codec", rng)
        ratio = power(coded[settled]) / power(audio[settled])
        assert (ratio > 0.3) if kept else (ratio < 0.05)


def test_live_mix_is_noisy_and_clipped() -> None:
    audio = music_like()
    mixed, params = degrade(audio, SAMPLE_RATE, "live_mix", np.random.default_rng(1))
    peak = np.abs(mixed).max()
    assert np.mean(np.abs(mixed) >= 0.999 * peak) > 0.001  # samples sit at the clip level
    assert np.corrcoef(mixed, audio)[0, 1] < 0.95


@pytest.mark.parametrize("degradation", DEGRADATION_NAMES)
def test_every_degradation_runs_at_8_khz(degradation: str) -> None:
    audio = np.sin(2 * np.pi * 440 * np.arange(8000) / 8000).astype(np.float32) * 0.5
    degraded, params = degrade(audio, 8000, degradation, np.random.default_rng(0))
    assert degraded.dtype == np.float32 and np.all(np.isfinite(degraded))
    # Every degradation keeps the length but speed, which scales it by 1 / speed_factor.
    expected = audio.size / params.get("speed_factor", 1.0)
    assert abs(degraded.size - expected) <= 3
    assert np.array_equal(degraded, audio) == (degradation == "clean")

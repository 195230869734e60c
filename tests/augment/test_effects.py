"""acr.augment.effects, measured: SNR, frequency, length, decay, band edges and codec delay."""

import numpy as np
import pytest
import scipy.signal
from fixtures_signals import (
    SAMPLE_RATE,
    band_power,
    measured_snr_db,
    music_like,
    peak_frequency_hz,
    power,
    sine,
)

from acr.augment.effects import (
    add_noise,
    add_reverb,
    apply_gain_db,
    band_limit,
    change_speed,
    clip,
    equalize,
    mp3_codec,
    shift_pitch,
)


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0, 20.0])
def test_add_noise_reaches_requested_snr_with_generated_noise(snr_db: float) -> None:
    clean = music_like()
    noisy = add_noise(clean, snr_db, np.random.default_rng(1))
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    assert abs(measured_snr_db(clean, noisy) - snr_db) < 1.0


@pytest.mark.parametrize("snr_db", [0.0, 5.0, 10.0, 20.0])
@pytest.mark.parametrize("noise_duration_s", [0.3, 2.5])
def test_add_noise_reaches_requested_snr_with_given_noise(
    snr_db: float, noise_duration_s: float
) -> None:
    clean = music_like()
    noise = np.random.default_rng(2).standard_normal(int(noise_duration_s * SAMPLE_RATE))
    noisy = add_noise(clean, snr_db, np.random.default_rng(3), noise=noise)
    assert noisy.shape == clean.shape
    assert abs(measured_snr_db(clean, noisy) - snr_db) < 1.0


def test_add_noise_leaves_silence_silent() -> None:
    silence = np.zeros(SAMPLE_RATE, dtype=np.float32)
    assert np.array_equal(add_noise(silence, 5.0, np.random.default_rng(0)), silence)


@pytest.mark.parametrize("factor", [0.94, 0.9613, 1.0437, 1.06])
def test_change_speed_scales_length_and_frequency(factor: float) -> None:
    audio = sine(440.0)
    faster = change_speed(audio, SAMPLE_RATE, factor)
    assert faster.dtype == np.float32
    assert abs(faster.size - audio.size / factor) <= 3
    assert peak_frequency_hz(faster) == pytest.approx(440.0 * factor, rel=0.01)


def test_change_speed_rejects_nonpositive_factor() -> None:
    with pytest.raises(ValueError, match="factor"):
        change_speed(sine(440.0), SAMPLE_RATE, 0.0)


@pytest.mark.parametrize("semitones", [2.0, -1.0])
def test_shift_pitch_keeps_length_and_moves_frequency(semitones: float) -> None:
    audio = sine(440.0)
    shifted = shift_pitch(audio, SAMPLE_RATE, semitones)
    assert shifted.dtype == np.float32 and shifted.shape == audio.shape
    expected_hz = 440.0 * 2 ** (semitones / 12)
    assert peak_frequency_hz(shifted) == pytest.approx(expected_hz, rel=0.01)


def energy_decay_time_s(audio: np.ndarray, drop_db: float = 20.0) -> float:
    """Time at which Schroeder's backward-integrated energy has fallen by drop_db."""
    remaining_energy = np.cumsum(np.square(audio, dtype=np.float64)[::-1])[::-1]
    remaining_db = 10 * np.log10(remaining_energy / remaining_energy[0] + 1e-30)
    return float(np.argmax(remaining_db < -drop_db)) / SAMPLE_RATE


def test_add_reverb_tail_decays_slower_for_longer_rt60() -> None:
    click = np.zeros(int(1.5 * SAMPLE_RATE), dtype=np.float32)
    click[0] = 1.0
    short_room = add_reverb(click, SAMPLE_RATE, 0.3, np.random.default_rng(0))
    long_room = add_reverb(click, SAMPLE_RATE, 1.0, np.random.default_rng(0))
    assert short_room.shape == long_room.shape == click.shape
    # A click's energy is spread over tens of milliseconds and more.
    assert energy_decay_time_s(short_room) > 0.03
    assert energy_decay_time_s(long_room) > 2 * energy_decay_time_s(short_room)


def test_add_reverb_keeps_length_and_rms() -> None:
    audio = music_like()
    reverberant = add_reverb(audio, SAMPLE_RATE, 0.8, np.random.default_rng(0))
    assert reverberant.dtype == np.float32 and reverberant.shape == audio.shape
    assert 0.5 < np.sqrt(power(reverberant) / power(audio)) < 2.0
    assert not np.allclose(reverberant, audio)


def test_band_limit_removes_low_hum_and_passes_speech_band() -> None:
    def kept_power_ratio(frequency_hz: float) -> float:
        audio = sine(frequency_hz)
        filtered = band_limit(audio, SAMPLE_RATE, 300.0, 3400.0)
        settled = slice(audio.size // 2, None)  # skip the filter's start-up transient
        return power(filtered[settled]) / power(audio[settled])

    assert kept_power_ratio(100.0) < 0.01
    assert kept_power_ratio(1000.0) > 0.8


def test_band_limit_rejects_inverted_band() -> None:
    with pytest.raises(ValueError, match="low_hz"):
        band_limit(sine(440.0), SAMPLE_RATE, 3400.0, 300.0)


def test_apply_gain_db_and_clip() -> None:
    audio = sine(440.0)
    assert np.max(np.abs(apply_gain_db(audio, 6.0))) == pytest.approx(2 * 0.5, rel=0.01)
    clipped = clip(audio, 0.25)
    assert np.max(np.abs(clipped)) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="threshold"):
        clip(audio, 0.0)


def test_mp3_codec_keeps_time_alignment_and_drops_the_top_band() -> None:
    clean = music_like() + 0.2 * sine(7000.0)
    coded = mp3_codec(clean, SAMPLE_RATE, vbr_quality=9.5)
    assert coded.shape == clean.shape and not np.allclose(coded, clean)
    lag = np.argmax(scipy.signal.correlate(coded, clean, mode="full")) - (clean.size - 1)
    assert abs(lag) <= 2
    assert band_power(coded, 6900, 7100) < 0.1 * band_power(clean, 6900, 7100)


def test_equalize_changes_the_tone_within_its_gain_range() -> None:
    clean = music_like(duration_s=2.0)
    flat = equalize(clean, SAMPLE_RATE, np.random.default_rng(0), (0.0, 0.0))
    np.testing.assert_allclose(flat, clean, atol=1e-4)
    boosted = equalize(clean, SAMPLE_RATE, np.random.default_rng(0), (9.0, 9.0))
    gain_db = 10 * np.log10(power(boosted) / power(clean))
    assert 0.5 < gain_db <= 9.0 + 0.5  # each filter boosts part of the band, none past +9 dB

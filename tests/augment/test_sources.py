"""acr.augment.sources: generated noise and rooms, and recordings of them read from folders."""

import numpy as np
import pytest
import scipy.signal
from fixtures_signals import SAMPLE_RATE, band_power, measured_snr_db, power, sine

from acr.audio import save_audio
from acr.augment.effects import add_noise, convolve_room
from acr.augment.sources import (
    babble,
    noise_recording,
    pink_noise,
    room_recording,
    synthetic_room_impulse_response,
)


def test_pink_noise_has_unit_rms_and_power_falling_with_frequency() -> None:
    noise = pink_noise(4 * SAMPLE_RATE, np.random.default_rng(0))
    assert noise.dtype == np.float32
    assert power(noise) == pytest.approx(1.0, rel=1e-3)
    # 1/f predicts a ratio of about 20 between the band centres (150 Hz and 3 kHz).
    assert band_power(noise, 100.0, 200.0) > 10 * band_power(noise, 2000.0, 4000.0)


def test_synthetic_room_impulse_response_has_unit_energy_and_rejects_bad_rt60() -> None:
    impulse_response = synthetic_room_impulse_response(SAMPLE_RATE, 0.5, np.random.default_rng(0))
    assert impulse_response.size > 0.5 * SAMPLE_RATE
    assert np.sum(np.square(impulse_response, dtype=np.float64)) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="rt60_s"):
        synthetic_room_impulse_response(SAMPLE_RATE, 0.0, np.random.default_rng(0))


def test_babble_is_unit_rms_speech_band_noise_that_comes_and_goes() -> None:
    crowd = babble(4 * SAMPLE_RATE, SAMPLE_RATE, np.random.default_rng(0), talkers=2)
    assert crowd.dtype == np.float32 and power(crowd) == pytest.approx(1.0, rel=1e-3)
    assert band_power(crowd, 250, 2500) > 10 * band_power(crowd, 4000, 7000)
    frame_power = np.square(crowd).reshape(-1, SAMPLE_RATE // 20).mean(axis=1)  # 50 ms frames
    assert np.percentile(frame_power, 90) > 5 * np.percentile(frame_power, 10)  # syllables


def test_training_noise_from_a_folder_reaches_the_snr_and_is_that_recording(tmp_path) -> None:
    save_audio(tmp_path / "noise" / "hum.wav", sine(1000.0, 0.7, 0.3), SAMPLE_RATE)
    clean = sine(220.0, 1.2)
    rng = np.random.default_rng(0)
    noise = noise_recording(tmp_path / "noise", clean.size, SAMPLE_RATE, rng)
    assert noise.size == clean.size  # a 0.7-s recording, looped
    noisy = add_noise(clean, 5.0, rng, noise)
    assert measured_snr_db(clean, noisy) == pytest.approx(5.0, abs=1.0)
    assert band_power(noisy - clean, 950, 1050) > 100 * band_power(noisy - clean, 300, 800)


def test_a_measured_room_starts_at_its_direct_path(tmp_path) -> None:
    response = np.zeros(SAMPLE_RATE // 2, np.float32)
    response[200] = 0.9  # 12.5 ms of silence before the direct sound, as recorded
    response[201:] = 0.05 * np.exp(-np.arange(response.size - 201) / 800.0)
    save_audio(tmp_path / "rooms" / "hall.wav", response, SAMPLE_RATE)
    room = room_recording(str(tmp_path / "rooms" / "hall.wav"), SAMPLE_RATE)
    assert np.argmax(np.abs(room)) == 0 and np.sum(np.square(room)) == pytest.approx(1.0, rel=1e-3)
    clean = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)  # broadband
    wet = convolve_room(clean, room)
    assert wet.shape == clean.shape and power(wet) == pytest.approx(power(clean), rel=1e-3)
    lag = np.argmax(scipy.signal.correlate(wet, clean, mode="full")) - (clean.size - 1)
    assert abs(lag) <= 1  # no 12.5-ms shift

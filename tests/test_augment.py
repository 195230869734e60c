"""Measured behaviour of the degradations: SNR, frequency, length, decay and band edges."""

import numpy as np
import pytest
import scipy.signal

from acr.audio import save_audio
from acr.augment.degradations import DEGRADATION_NAMES, degrade
from acr.augment.effects import (
    add_noise,
    add_reverb,
    apply_gain_db,
    band_limit,
    change_speed,
    clip,
    convolve_room,
    equalize,
    mp3_codec,
    shift_pitch,
)
from acr.augment.sources import (
    babble,
    noise_recording,
    pink_noise,
    room_recording,
    synthetic_room_impulse_response,
)
from acr.augment.training import TrainingAugmentation

SAMPLE_RATE = 16000


def sine(frequency_hz: float, duration_s: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    time_s = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * frequency_hz * time_s)).astype(np.float32)


def music_like(duration_s: float = 1.0, seed: int = 0) -> np.ndarray:
    """A few harmonics plus a little noise: enough structure for every degradation to act on."""
    rng = np.random.default_rng(seed)
    audio = sum(sine(frequency_hz, duration_s, 0.2) for frequency_hz in (220.0, 440.0, 1320.0))
    return (audio + 0.01 * rng.standard_normal(audio.size)).astype(np.float32)


def peak_frequency_hz(audio: np.ndarray) -> float:
    """FFT peak of a Hann-windowed, 8x zero-padded signal (resolution well under 1 Hz)."""
    num_fft = 8 * audio.size
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size), n=num_fft))
    return float(np.argmax(spectrum)) * SAMPLE_RATE / num_fft


def power(audio: np.ndarray) -> float:
    return float(np.mean(np.square(audio, dtype=np.float64)))


def measured_snr_db(clean: np.ndarray, noisy: np.ndarray) -> float:
    return 10 * np.log10(power(clean) / power(noisy.astype(np.float64) - clean))


def band_power(audio: np.ndarray, low_hz: float, high_hz: float) -> float:
    """Mean Welch power density between low_hz and high_hz."""
    frequencies_hz, density = scipy.signal.welch(audio, fs=SAMPLE_RATE, nperseg=4096)
    return float(np.mean(density[(frequencies_hz >= low_hz) & (frequencies_hz <= high_hz)]))


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


def test_pink_noise_has_unit_rms_and_power_falling_with_frequency() -> None:
    noise = pink_noise(4 * SAMPLE_RATE, np.random.default_rng(0))
    assert noise.dtype == np.float32
    assert power(noise) == pytest.approx(1.0, rel=1e-3)
    # 1/f predicts a ratio of about 20 between the band centres (150 Hz and 3 kHz).
    assert band_power(noise, 100.0, 200.0) > 10 * band_power(noise, 2000.0, 4000.0)


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


def test_synthetic_room_impulse_response_has_unit_energy_and_rejects_bad_rt60() -> None:
    impulse_response = synthetic_room_impulse_response(SAMPLE_RATE, 0.5, np.random.default_rng(0))
    assert impulse_response.size > 0.5 * SAMPLE_RATE
    assert np.sum(np.square(impulse_response, dtype=np.float64)) == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(ValueError, match="rt60_s"):
        synthetic_room_impulse_response(SAMPLE_RATE, 0.0, np.random.default_rng(0))


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


ALWAYS_ON = dict(
    noise_probability=1.0,
    reverb_probability=1.0,
    speed_probability=1.0,
    pitch_probability=1.0,
    band_limit_probability=1.0,
)


@pytest.mark.parametrize(
    "augmentation", [TrainingAugmentation(), TrainingAugmentation(**ALWAYS_ON)]
)
def test_training_augmentation_keeps_length_and_is_deterministic_per_seed(
    augmentation: TrainingAugmentation,
) -> None:
    audio = music_like(duration_s=1.2)
    for seed in range(4):
        view = augmentation(audio, np.random.default_rng(seed))
        assert view.dtype == np.float32 and view.shape == audio.shape
        assert np.all(np.isfinite(view)) and np.max(np.abs(view)) <= 1.0
        assert np.array_equal(view, augmentation(audio, np.random.default_rng(seed)))
        assert not np.allclose(view, audio)


def test_training_augmentation_views_of_one_segment_differ() -> None:
    audio = music_like(duration_s=1.2)
    rng = np.random.default_rng(0)
    augmentation = TrainingAugmentation(**ALWAYS_ON)
    assert not np.allclose(augmentation(audio, rng), augmentation(audio, rng))


def test_training_augmentation_rejects_bad_probability() -> None:
    with pytest.raises(ValueError, match="noise_probability"):
        TrainingAugmentation(noise_probability=1.5)


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
    degraded, _ = degrade(audio, 8000, degradation, np.random.default_rng(0))
    assert np.all(np.isfinite(degraded)) and len(degraded) > 0


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


def test_overdriven_views_are_clipped_flat() -> None:
    augmentation = TrainingAugmentation(
        **{name: 0.0 for name in ALWAYS_ON}, clip_probability=1.0, drive_db_range=(12.0, 12.0)
    )
    view = augmentation(sine(440.0), np.random.default_rng(0))
    assert np.mean(np.isclose(np.abs(view), np.abs(view).max(), rtol=1e-4)) > 0.3


def test_missing_noise_or_room_folders_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="noise_dir: .*not a folder"):
        TrainingAugmentation(noise_dir=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="rir_dir: .*no audio files"):
        TrainingAugmentation(rir_dir=str(tmp_path / "empty"))

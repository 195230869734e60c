"""acr.synth.sung: a singer's rendition keeps the intervals of what pyin hears, in their own key."""

import librosa
import numpy as np
import pytest

from acr.augment.degradations import UnusableExcerpt
from acr.synth.sung import REGISTER_MIDI, sung_excerpt

SAMPLE_RATE = 16000


def _harmonic_tone(midi: float, duration_s: float) -> np.ndarray:
    time_s = np.arange(round(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    frequency_hz = librosa.midi_to_hz(midi)
    return sum(np.sin(2 * np.pi * k * frequency_hz * time_s) / k for k in range(1, 8))


@pytest.fixture(scope="module")
def two_notes() -> np.ndarray:
    """A3 for a second, then D4 (up a fourth, 5 semitones), harmonic tones."""
    return (0.2 * np.concatenate([_harmonic_tone(57, 1.0), _harmonic_tone(62, 1.0)])).astype(
        np.float32
    )


def _note_medians(audio: np.ndarray) -> tuple[float, float]:
    """Median pyin pitch (MIDI) of the middle 0.6 s of each second."""
    f0_hz, _, _ = librosa.pyin(
        audio, fmin=65, fmax=1000, sr=SAMPLE_RATE, frame_length=1024, hop_length=160
    )
    midi = librosa.hz_to_midi(f0_hz)
    return float(np.nanmedian(midi[20:80])), float(np.nanmedian(midi[120:180]))


@pytest.mark.parametrize("seed", [1, 2, 4])
def test_sung_melody_keeps_the_interval_in_the_singers_key(
    two_notes: np.ndarray, seed: int
) -> None:
    sung, params = sung_excerpt(two_notes, SAMPLE_RATE, np.random.default_rng(seed))
    first, second = _note_medians(sung)
    # measured for these seeds: 5.1-5.4 semitones up, in a key of the singer's own
    assert second - first == pytest.approx(5.0, abs=0.5)
    assert first - 57 == pytest.approx(params["transposition_semitones"], abs=0.5)
    assert REGISTER_MIDI[0] - 0.5 <= min(first, second) <= max(first, second) <= REGISTER_MIDI[1]
    assert params["notes"] == 2
    assert 20 <= params["vibrato_cents"] <= 60 and 5.0 <= params["vibrato_hz"] <= 6.5


def test_a_note_beyond_the_register_is_folded_back_an_octave(two_notes: np.ndarray) -> None:
    """Seed 0 draws a transposition of -13.8 semitones: A3 would fall to MIDI 43.2, below the
    register, and is sung an octave up, so the fourth up becomes a fifth down."""
    sung, params = sung_excerpt(two_notes, SAMPLE_RATE, np.random.default_rng(0))
    first, second = _note_medians(sung)
    assert params["folded_notes"] == 1
    assert params["transposition_semitones"] == pytest.approx(-13.84, abs=0.01)
    assert second - first == pytest.approx(5.0 - 12, abs=0.5)


def test_same_seed_sings_the_same(two_notes: np.ndarray) -> None:
    first, first_params = sung_excerpt(two_notes, SAMPLE_RATE, np.random.default_rng(7))
    again, again_params = sung_excerpt(two_notes, SAMPLE_RATE, np.random.default_rng(7))
    other, _ = sung_excerpt(two_notes, SAMPLE_RATE, np.random.default_rng(8))
    np.testing.assert_array_equal(first, again)
    assert first_params == again_params
    assert not np.allclose(first, other)
    assert all(isinstance(value, float) for value in first_params.values())


@pytest.mark.parametrize("length", [SAMPLE_RATE * 2, SAMPLE_RATE * 2 + 77])
def test_output_has_the_input_length_and_a_peak_within_one(
    two_notes: np.ndarray, length: int
) -> None:
    excerpt = np.resize(two_notes, length)
    sung, _ = sung_excerpt(excerpt, SAMPLE_RATE, np.random.default_rng(3))
    assert sung.dtype == np.float32 and sung.shape == (length,)
    assert 0.5 < np.abs(sung).max() <= 1.0


def test_silence_and_noise_are_unusable() -> None:
    rng = np.random.default_rng(0)
    noise = (0.1 * rng.standard_normal(2 * SAMPLE_RATE)).astype(np.float32)
    for excerpt in (np.zeros(2 * SAMPLE_RATE, np.float32), noise):
        with pytest.raises(UnusableExcerpt, match="pyin hears a pitch in"):
            sung_excerpt(excerpt, SAMPLE_RATE, np.random.default_rng(1))


def test_a_melody_voiced_under_half_the_time_is_unusable(two_notes: np.ndarray) -> None:
    """0.8 s of tone in 2 s of silence: 40 % voiced."""
    excerpt = np.zeros(2 * SAMPLE_RATE, np.float32)
    excerpt[: round(0.8 * SAMPLE_RATE)] = two_notes[: round(0.8 * SAMPLE_RATE)]
    with pytest.raises(UnusableExcerpt):
        sung_excerpt(excerpt, SAMPLE_RATE, np.random.default_rng(1))

"""acr.synth.humming: hums of a song's melody (render_humming) and of a pitch track
(hum_contour) have exact lengths, follow the melody in the hummer's own key, and rest where it
rests."""

import itertools

import librosa
import numpy as np
import pytest
from fixtures_signals import harmonic_tone

from acr import synth
from acr.pitch import PitchTrack, predominant_pitch
from acr.synth.humming import hum_contour

SAMPLE_RATE = 16000


def _lead_window(song: synth.Song, duration_s: float) -> tuple[float, float]:
    """A window that starts just before the first sung note."""
    return max(0.0, song.lead[0].start_s - 0.3), duration_s


@pytest.mark.parametrize("duration_s", [0.5, 3.33, 8.0])
def test_humming_has_exact_length(song: synth.Song, duration_s: float) -> None:
    start_s, _ = _lead_window(song, duration_s)
    audio = synth.render_humming(song, start_s, duration_s)
    assert audio.shape == (round(duration_s * SAMPLE_RATE),)
    assert audio.dtype == np.float32
    assert np.all(np.isfinite(audio)) and np.abs(audio).max() <= synth.PEAK_LIMIT


def test_humming_is_deterministic_and_silent_without_melody(song: synth.Song) -> None:
    start_s, duration_s = _lead_window(song, 4.0)
    first = synth.render_humming(song, start_s, duration_s, seed=2)
    np.testing.assert_array_equal(first, synth.render_humming(song, start_s, duration_s, seed=2))
    after_song = synth.render_humming(song, song.duration_s + 1.0, 2.0)
    np.testing.assert_array_equal(after_song, np.zeros(2 * SAMPLE_RATE, np.float32))


def _hummed_and_written_midi(
    song: synth.Song, start_s: float, audio: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Estimated and written pitch in frames well inside loud sung notes."""
    hop = 256
    f0_hz = librosa.yin(audio, fmin=70, fmax=800, sr=SAMPLE_RATE, frame_length=2048, hop_length=hop)
    times_s = librosa.frames_to_time(np.arange(len(f0_hz)), sr=SAMPLE_RATE, hop_length=hop)
    times_s = times_s + start_s
    written = np.full(len(times_s), np.nan)
    for note in song.lead:
        inside = (times_s >= note.start_s + 0.12) & (
            times_s < note.start_s + note.duration_s - 0.08
        )
        written[inside] = note.pitch_midi
    loudness = librosa.feature.rms(y=audio, frame_length=2048, hop_length=hop)[0][: len(f0_hz)]
    sung = ~np.isnan(written) & (loudness > 0.2 * loudness.max())
    assert sung.sum() > 50
    return librosa.hz_to_midi(f0_hz[sung]), written[sung]


@pytest.mark.parametrize("hum_seed", [0, 1])
def test_humming_follows_the_melody_in_its_own_key(song: synth.Song, hum_seed: int) -> None:
    start_s, duration_s = _lead_window(song, 10.0)
    audio = synth.render_humming(song, start_s, duration_s, seed=hum_seed)
    hummed, written = _hummed_and_written_midi(song, start_s, audio)
    transposition = np.median(hummed - written)
    assert np.mean(np.abs(hummed - written - transposition) < 1.0) > 0.85
    assert np.corrcoef(hummed, written)[0, 1] > 0.9
    assert 40 <= np.median(hummed) <= 72  # a comfortable humming register


def test_hummers_choose_different_keys(song: synth.Song) -> None:
    start_s, duration_s = _lead_window(song, 6.0)
    transpositions = set()
    for seed in range(4):
        audio = synth.render_humming(song, start_s, duration_s, seed=seed)
        hummed, written = _hummed_and_written_midi(song, start_s, audio)
        transpositions.add(round(float(np.median(hummed - written))))
    assert len(transpositions) >= 2


def test_humming_is_silent_where_the_melody_rests(song: synth.Song) -> None:
    start_s, duration_s = _lead_window(song, 12.0)
    audio = synth.render_humming(song, start_s, duration_s)
    sung_rms = np.sqrt(np.mean(audio**2))
    lead = [note for note in song.lead if note.start_s < start_s + duration_s]
    rests = [
        (before.start_s + before.duration_s + 0.15, after.start_s - 0.15)
        for before, after in itertools.pairwise(lead)
        if after.start_s - (before.start_s + before.duration_s) > 0.4
    ]
    assert rests, "the melody should breathe within 12 s"
    for rest_start_s, rest_end_s in rests:
        first, last = (
            round((time_s - start_s) * SAMPLE_RATE) for time_s in (rest_start_s, rest_end_s)
        )
        samples = audio[first:last]
        assert np.sqrt(np.mean(samples**2)) < 0.02 * sung_rms


@pytest.mark.parametrize("samples, sample_rate", [(SAMPLE_RATE * 3, 16000), (40001, 22050)])
def test_hum_contour_has_the_track_duration(samples: int, sample_rate: int) -> None:
    track = predominant_pitch(harmonic_tone(np.full(samples, 220.0)), SAMPLE_RATE)
    hum = hum_contour(track, sample_rate, seed=4)
    assert hum.shape == (round(track.duration_s * sample_rate),) and hum.dtype == np.float32
    assert np.all(np.isfinite(hum)) and 0 < np.abs(hum).max() <= synth.PEAK_LIMIT
    np.testing.assert_array_equal(hum, hum_contour(track, sample_rate, seed=4))


def test_hum_contour_is_silent_where_unvoiced() -> None:
    hop_s = 0.01
    times_s = np.arange(300) * hop_s
    voiced = ((times_s >= 0.5) & (times_s < 1.5)) | ((times_s >= 2.2) & (times_s < 2.6))
    f0_hz = np.where(voiced, 200 * 2 ** (np.floor(times_s * 4) / 12), np.nan)
    track = PitchTrack(times_s, f0_hz, voiced, voiced.astype(float), hop_s)
    hum = hum_contour(track, SAMPLE_RATE, seed=0)
    per_frame = hum.reshape(len(times_s), -1)
    near_voice = np.convolve(voiced, np.ones(21), mode="same") > 0  # within 0.1 s of a voiced frame
    sung_rms = np.sqrt(np.mean(per_frame[voiced] ** 2))
    assert np.sqrt(np.mean(per_frame[~near_voice] ** 2)) < 0.01 * sung_rms
    unvoiced = PitchTrack(times_s, np.full(300, np.nan), np.zeros(300, bool), np.zeros(300), hop_s)
    np.testing.assert_array_equal(hum_contour(unvoiced), np.zeros(3 * SAMPLE_RATE, np.float32))


def test_hum_contour_follows_the_melody_in_its_own_key(mix_melody: PitchTrack) -> None:
    transpositions = set()
    for seed in range(4):
        hummed = predominant_pitch(hum_contour(mix_melody, SAMPLE_RATE, seed), SAMPLE_RATE)
        both = hummed.voiced & mix_melody.voiced
        assert both.mean() > 0.6
        difference = hummed.midi[both] - mix_melody.midi[both]
        transposition = np.median(difference)
        assert np.mean(np.abs(difference - transposition) < 1) > 0.85
        assert 40 <= np.median(hummed.midi[hummed.voiced]) <= 72  # a humming register
        transpositions.add(round(transposition) % 12)
    assert len(transpositions) >= 2

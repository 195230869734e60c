"""acr.synth.rendering: rendered songs are deterministic, exactly as long as asked, music-like
(in key, in tempo, on the beat), and a version keeps the notes but changes the sound."""

import librosa
import numpy as np
import pytest

from acr import synth
from acr.synth.rendering import _orchestrate as orchestrate

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def track(song: synth.Song) -> np.ndarray:
    return synth.render_song(song)


def test_same_seed_gives_identical_song_and_audio(track: np.ndarray) -> None:
    assert synth.compose_song(3, duration_s=20.0) == synth.compose_song(3, duration_s=20.0)
    np.testing.assert_array_equal(synth.synthesize_track(3, duration_s=20.0), track)


@pytest.mark.parametrize("duration_s, sample_rate", [(1.0, 16000), (7.3, 16000), (4.05, 22050)])
def test_track_has_exact_length_and_sane_levels(duration_s: float, sample_rate: int) -> None:
    audio = synth.synthesize_track(11, duration_s=duration_s, sample_rate=sample_rate)
    assert audio.shape == (round(duration_s * sample_rate),)
    assert audio.dtype == np.float32
    assert np.all(np.isfinite(audio))
    assert np.abs(audio).max() <= synth.PEAK_LIMIT
    assert np.sqrt(np.mean(audio**2)) > 0.05


def test_version_keeps_the_notes_but_changes_the_sound(song: synth.Song, track: np.ndarray) -> None:
    version = synth.render_song(song, version=1)
    np.testing.assert_array_equal(version, synth.synthesize_track(3, duration_s=20.0, version=1))
    assert song == synth.compose_song(3, duration_s=20.0)
    assert version.shape == track.shape and version.dtype == np.float32
    assert np.abs(np.corrcoef(version, track)[0, 1]) < 0.3
    mel = [
        librosa.power_to_db(librosa.feature.melspectrogram(y=audio, sr=SAMPLE_RATE, n_mels=64))
        for audio in (track, version)
    ]
    assert np.mean(np.abs(mel[0] - mel[1])) > 3.0  # decibels, averaged over the spectrogram
    orchestrations = [orchestrate(song.seed, index) for index in (0, 1)]
    for part, timbre in orchestrations[0].timbres.items():
        assert orchestrations[1].timbres[part] != timbre


def _scale_energy_fraction(audio: np.ndarray, song: synth.Song) -> float:
    chroma = librosa.feature.chroma_stft(y=audio, sr=SAMPLE_RATE, n_fft=4096, hop_length=1024)
    energy = chroma.sum(axis=1)
    pitch_classes = [(song.key_root_midi + step) % 12 for step in synth.MODE_INTERVALS[song.mode]]
    return float(energy[pitch_classes].sum() / energy.sum())


def test_chroma_concentrates_on_the_song_scale() -> None:
    noise = np.random.default_rng(0).standard_normal(12 * SAMPLE_RATE).astype(np.float32)
    for seed in range(4):
        song = synth.compose_song(seed, duration_s=12.0)
        assert _scale_energy_fraction(synth.render_song(song), song) > 0.67
        assert _scale_energy_fraction(noise, song) < 0.62  # chance is 7/12 = 0.58


def _matches_tempo(estimate_bpm: float, tempo_bpm: float) -> bool:
    """Agreement up to the usual octave errors of tempo estimators."""
    ratio = estimate_bpm / tempo_bpm
    return any(abs(ratio / multiple - 1) < 0.08 for multiple in (0.5, 1.0, 2.0))


def test_onset_tempo_matches_the_song_tempo() -> None:
    songs = [synth.compose_song(seed, duration_s=12.0) for seed in range(6)]
    estimates = [
        float(librosa.feature.tempo(y=synth.render_song(song), sr=SAMPLE_RATE)[0]) for song in songs
    ]
    tempos_bpm = [song.tempo_bpm for song in songs]
    matches = [_matches_tempo(*pair) for pair in zip(estimates, tempos_bpm, strict=True)]
    assert sum(matches) >= 5, list(zip(estimates, tempos_bpm, strict=True))
    noise = np.random.default_rng(0).standard_normal(12 * SAMPLE_RATE).astype(np.float32)
    noise_estimate = float(librosa.feature.tempo(y=noise, sr=SAMPLE_RATE)[0])
    assert sum(_matches_tempo(noise_estimate, tempo_bpm) for tempo_bpm in tempos_bpm) <= 3


@pytest.mark.slow  # the first beat_track call compiles its dynamic programme (seconds)
def test_beat_tracker_follows_the_beat() -> None:
    for seed in range(4):
        song = synth.compose_song(seed, duration_s=20.0)
        estimate, beats = librosa.beat.beat_track(
            y=synth.render_song(song), sr=SAMPLE_RATE, units="time"
        )
        assert _matches_tempo(float(np.atleast_1d(estimate)[0]), song.tempo_bpm)
        beat_s = 60.0 / song.tempo_bpm
        intervals_in_beats = np.diff(beats) / beat_s
        assert np.median(np.abs(intervals_in_beats - np.round(intervals_in_beats * 2) / 2)) < 0.1

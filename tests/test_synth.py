"""acr.synth: determinism, levels, versions, music-likeness and humming."""

import itertools

import librosa
import numpy as np
import pytest

from acr import synth
from acr.synth.rendering import _orchestrate as orchestrate

SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def song() -> synth.Song:
    return synth.compose_song(3, duration_s=20.0)


@pytest.fixture(scope="module")
def track(song: synth.Song) -> np.ndarray:
    return synth.render_song(song)


def _lead_window(song: synth.Song, duration_s: float) -> tuple[float, float]:
    """A window that starts just before the first sung note."""
    return max(0.0, song.lead[0].start_s - 0.3), duration_s


def test_same_seed_gives_identical_song_and_audio(track: np.ndarray) -> None:
    assert synth.compose_song(3, duration_s=20.0) == synth.compose_song(3, duration_s=20.0)
    np.testing.assert_array_equal(synth.synthesize_track(3, duration_s=20.0), track)


def test_different_seeds_give_different_songs_and_audio() -> None:
    first, second = synth.compose_song(1, 10.0), synth.compose_song(2, 10.0)
    assert first != second
    assert first.lead != second.lead
    audio = [synth.synthesize_track(seed, duration_s=5.0) for seed in (1, 2)]
    assert np.abs(np.corrcoef(audio[0], audio[1])[0, 1]) < 0.2


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


def test_longer_song_extends_shorter_one() -> None:
    short, long = synth.compose_song(5, 10.0), synth.compose_song(5, 40.0)
    prefix = [note for note in long.lead if note.start_s < 10.0]
    assert [(note.start_s, note.pitch_midi) for note in short.lead] == [
        (note.start_s, note.pitch_midi) for note in prefix
    ]
    assert short.drums == tuple(hit for hit in long.drums if hit.start_s < 10.0)


def test_recurring_sections_repeat_their_notes() -> None:
    song = synth.compose_song(8, duration_s=90.0)
    choruses = [section for section in song.sections if section.label == "chorus"]
    assert len(choruses) >= 2

    def relative_notes(section: synth.Section) -> list[tuple[float, int]]:
        end_s = section.start_s + section.duration_s
        return [
            (round(note.start_s - section.start_s, 6), note.pitch_midi)
            for note in song.lead + song.bass
            if section.start_s <= note.start_s < end_s
        ]

    assert relative_notes(choruses[0]) == relative_notes(choruses[1])
    assert len({section.label for section in song.sections}) >= 2


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


def test_songs_vary_in_tempo_key_and_mode() -> None:
    songs = [synth.compose_song(seed, duration_s=10.0) for seed in range(10)]
    assert len({song.tempo_bpm for song in songs}) >= 8
    assert len({song.key_root_midi % 12 for song in songs}) >= 4
    assert len({song.mode for song in songs}) >= 2
    assert all(70 <= song.tempo_bpm <= 170 for song in songs)


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

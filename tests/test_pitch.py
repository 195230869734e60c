"""acr.pitch: predominant pitch of tones, hums and synthetic song mixes, and the harmonicity
that tells a hum from a mix."""

import librosa
import numpy as np
import pytest
from fixtures_signals import harmonic_tone

from acr import synth
from acr.pitch import (
    BINS_PER_SEMITONE,
    JUMP_PROBABILITY,
    PATH_CONTEXT_S,
    Line,
    PitchTrack,
    _continuous_path,
    harmonicity,
    pitch_lines,
    pitch_lines_in_spans,
    predominant_pitch,
)
from acr.synth.humming import hum_contour

SAMPLE_RATE = 16000


def _written_midi(
    notes: tuple[synth.Note, ...], times_s: np.ndarray, margin_s: float
) -> np.ndarray:
    """The note sounding at each frame (NaN outside notes and within margin_s of their edges)."""
    written = np.full(len(times_s), np.nan)
    for note in notes:
        inside = (times_s >= note.start_s + margin_s) & (
            times_s < note.start_s + note.duration_s - margin_s
        )
        written[inside] = note.pitch_midi
    return written


@pytest.mark.parametrize("f0_hz", [110.0, 196.0, 440.0, 740.0])
def test_harmonic_tone_gives_its_f0(f0_hz: float) -> None:
    track = predominant_pitch(harmonic_tone(np.full(SAMPLE_RATE, f0_hz)), SAMPLE_RATE)
    assert track.voiced.mean() > 0.9
    assert abs(np.nanmedian(track.f0_hz) / f0_hz - 1) < 0.01


def test_frames_cover_the_clip() -> None:
    audio = harmonic_tone(np.full(12345, 220.0))
    track = predominant_pitch(audio, SAMPLE_RATE, hop_s=0.01)
    assert len(track.times_s) == len(track.f0_hz) == len(track.voiced) == len(track.confidence)
    assert track.duration_s == pytest.approx(0.78)  # 12345 samples rounded up to whole hops
    np.testing.assert_allclose(np.diff(track.times_s), 0.01)
    assert np.all((track.confidence >= 0) & (track.confidence <= 1))
    assert np.array_equal(np.isnan(track.f0_hz), ~track.voiced)
    assert len(predominant_pitch(np.zeros(0, np.float32), SAMPLE_RATE).f0_hz) == 0


def test_note_sequence_is_followed() -> None:
    pitches_midi = [60, 62, 64, 65, 67, 65, 64, 62, 57, 72]
    notes = tuple(
        synth.Note(0.3 * index, 0.3, pitch, 1.0) for index, pitch in enumerate(pitches_midi)
    )
    times_s = np.arange(round(0.3 * len(notes) * SAMPLE_RATE)) / SAMPLE_RATE
    f0_hz = librosa.midi_to_hz(np.array(pitches_midi)[(times_s // 0.3).astype(int)])
    track = predominant_pitch(harmonic_tone(f0_hz), SAMPLE_RATE)
    written = _written_midi(notes, track.times_s, margin_s=0.04)
    inside = ~np.isnan(written)
    assert track.voiced[inside].mean() > 0.95
    assert np.mean(np.abs(track.midi[inside] - written[inside]) < 1) > 0.95


def test_hum_is_followed_up_to_its_transposition() -> None:
    song = synth.compose_song(3, duration_s=20.0)
    start_s = song.lead[0].start_s
    hum = synth.render_humming(song, start_s, 10.0, seed=1)
    track = predominant_pitch(hum, SAMPLE_RATE)
    written = _written_midi(song.lead, track.times_s + start_s, margin_s=0.1)
    sung = ~np.isnan(written) & track.voiced
    assert sung.sum() > 300
    difference = track.midi[sung] - written[sung]
    transposition = np.median(np.round(difference))
    assert np.mean(np.abs(difference - transposition) < 1) > 0.85


def test_silence_and_noise_are_unvoiced() -> None:
    silence = predominant_pitch(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE)
    assert not silence.voiced.any() and np.all(np.isnan(silence.f0_hz))
    noise = 0.1 * np.random.default_rng(0).standard_normal(2 * SAMPLE_RATE).astype(np.float32)
    assert predominant_pitch(noise, SAMPLE_RATE).voiced.mean() < 0.05


def _pitch_class_accuracy(track: PitchTrack, notes: tuple[synth.Note, ...]) -> tuple[float, float]:
    """Fractions of voiced frames inside notes within a semitone: (exact, modulo octaves)."""
    written = _written_midi(notes, track.times_s, margin_s=0.05)
    inside = ~np.isnan(written) & track.voiced
    difference = track.midi[inside] - written[inside]
    folded = (difference + 6) % 12 - 6
    return float(np.mean(np.abs(difference) < 1)), float(np.mean(np.abs(folded) < 1))


def test_mix_melody_follows_the_lead_not_another_song() -> None:
    """Measured on seeds 0-29 (30 s): lead notes found in 89 % of frames, 94 % up to octaves;
    inharmonic (FM bell) leads are the weak case. Seeds 0-3 have harmonic leads."""
    exact, folded, other = [], [], []
    for seed in range(4):
        song = synth.compose_song(seed, duration_s=12.0)
        track = predominant_pitch(synth.render_song(song), SAMPLE_RATE)
        accuracy = _pitch_class_accuracy(track, song.lead)
        exact.append(accuracy[0])
        folded.append(accuracy[1])
        other.append(_pitch_class_accuracy(track, synth.compose_song(seed + 10, 12.0).lead)[1])
    assert min(folded) > 0.85 and np.mean(exact) > 0.8
    assert max(other) < 0.5  # a different song's lead, in the same register


def test_harmonicity_tells_a_hum_from_a_mix(mix_melody: PitchTrack) -> None:
    """What fusion uses to trust the melody engine on hums (measured on real music: hums
    0.9-1.0, mixes 0.1-0.8)."""
    song = synth.compose_song(1, duration_s=10.0)
    mix = synth.render_song(song)[: 3 * SAMPLE_RATE]
    hum = hum_contour(mix_melody, SAMPLE_RATE, seed=2)[: 3 * SAMPLE_RATE]
    noise = 0.1 * np.random.default_rng(0).standard_normal(3 * SAMPLE_RATE).astype(np.float32)
    assert harmonicity(hum, SAMPLE_RATE) > 0.9
    assert harmonicity(mix, SAMPLE_RATE) < 0.8
    assert harmonicity(noise, SAMPLE_RATE) < 0.2
    assert harmonicity(np.zeros(SAMPLE_RATE, np.float32), SAMPLE_RATE) == 0.0


def test_banded_viterbi_finds_librosas_path() -> None:
    """The O(states x band) Viterbi must agree with librosa's dense one on the same model."""
    rng = np.random.default_rng(0)
    for states in (40, 200):
        salience = rng.random((150, states)) ** 4
        likelihood = salience / salience.max(axis=1, keepdims=True)
        local = librosa.sequence.transition_local(
            states, 2 * BINS_PER_SEMITONE + 1, window="triangle"
        )
        transition = (1 - JUMP_PROBABILITY) * local + JUMP_PROBABILITY / states
        transition /= transition.sum(axis=1, keepdims=True)
        expected = librosa.sequence.viterbi(likelihood.T, transition)
        np.testing.assert_array_equal(_continuous_path(salience), expected)


@pytest.mark.parametrize("span_s", [7.0, 12.3])
def test_a_track_tracked_in_spans_has_the_pitch_of_the_whole_track(span_s: float) -> None:
    """Spans of a 40-s mix, cut mid-note: every frame's pitch, voicing and confidence equal the
    whole track's (the voicing is decided over all frames; the path forgets the cuts)."""
    audio = synth.synthesize_track(12, 40.0, SAMPLE_RATE)
    whole = predominant_pitch(audio, SAMPLE_RATE)
    reads: list[tuple[int, int]] = []

    def read(start: int, stop: int) -> np.ndarray:
        reads.append((start, stop))
        return audio[start:stop]

    lines = (Line(), Line(50.0, 1000.0, equal_loudness=False))
    spans = pitch_lines_in_spans(read, SAMPLE_RATE, lines, span_s=span_s)
    longest = (span_s + 2 * PATH_CONTEXT_S + 0.01) * SAMPLE_RATE  # never the whole track
    assert len(reads) >= 40 // span_s and max(b - a for a, b in reads) <= longest
    assert whole.voiced.mean() > 0.5
    for in_spans, at_once in zip(spans, [whole, pitch_lines(audio, SAMPLE_RATE, lines)[1]]):
        np.testing.assert_array_equal(in_spans.voiced, at_once.voiced)
        np.testing.assert_array_equal(in_spans.f0_hz, at_once.f0_hz)
        np.testing.assert_array_equal(in_spans.confidence, at_once.confidence)
        np.testing.assert_array_equal(in_spans.times_s, at_once.times_s)


def test_an_unweighted_line_follows_the_bass_the_lead_line_ignores() -> None:
    """A loud bass (C2 then G2) under a softer lead (A4 then E5): the equal-loudness line
    follows the lead, the unweighted line from 50 Hz the bass, in pitch class (what the melody
    engine matches; the bass line may sit an octave low) within a quarter tone."""
    samples = 2 * SAMPLE_RATE
    second = np.arange(samples) >= SAMPLE_RATE
    bass_hz, lead_hz = np.where(second, 98.0, 65.4), np.where(second, 659.3, 440.0)
    mix = 2 * harmonic_tone(bass_hz) + harmonic_tone(lead_hz)
    lead, bass = pitch_lines(mix, SAMPLE_RATE, (Line(), Line(50.0, 1000.0, equal_loudness=False)))
    for track, hz in ((lead, lead_hz), (bass, bass_hz)):
        frames = np.round(track.times_s * SAMPLE_RATE).astype(int)
        inner = (np.abs(frames - SAMPLE_RATE) > 0.1 * SAMPLE_RATE) & (frames < samples - 800)
        assert track.voiced[inner].mean() > 0.95
        error = track.midi[inner] - librosa.hz_to_midi(hz[frames[inner]])
        assert np.nanmax(np.abs((error + 6) % 12 - 6)) < 0.5
    assert np.nanmax(np.abs(lead.midi[inner] - librosa.hz_to_midi(lead_hz[frames[inner]]))) < 0.5

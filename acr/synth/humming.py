"""Humming resynthesis: a glottal source through vowel formants following the lead melody, or
following any pitch track (the melody extracted from a recording)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import signal

from ._common import (
    HUM_STREAM,
    _filter,
    _harmonic_series,
    _normalise,
    _oscillate,
    _unit_rms,
    _wavetable,
)
from .composition import Note, Song

if TYPE_CHECKING:  # only an annotation here: acr.synth stays free of librosa's import time
    from ..pitch import PitchTrack

# Formants (centre Hz, bandwidth Hz, gain) of a closed-mouth "mm" hum and an "oo" vowel (Peterson &
# Barney 1952 for "oo"; the nasal murmur of "mm" is a low resonance near 250 Hz).
VOWEL_FORMANTS = {
    "mm": ((250.0, 80.0, 1.0), (1000.0, 150.0, 0.08), (2200.0, 250.0, 0.03)),
    "oo": ((300.0, 90.0, 1.0), (870.0, 120.0, 0.35), (2240.0, 200.0, 0.08)),
}

GLOTTAL_HARMONICS = _harmonic_series(40, 2.0)  # glottal source spectrum falls about 12 dB/octave


@dataclass(frozen=True)
class _Voice:
    """How one person hums: their key, register, vibrato, glide, vowel and timing."""

    transposition: int
    centre_midi: float
    vibrato_hz: float
    vibrato_semitones: float
    drift_semitones: float
    glide_s: float
    jitter_s: float
    vowel: str
    breath: float


def _draw_voice(rng: np.random.Generator) -> _Voice:
    return _Voice(
        transposition=int(rng.integers(-4, 5)),
        centre_midi=float(rng.uniform(50, 64)),
        vibrato_hz=float(rng.uniform(5.0, 6.0)),
        vibrato_semitones=float(rng.uniform(0.15, 0.4)),
        drift_semitones=float(rng.uniform(0.05, 0.25)),
        glide_s=float(rng.uniform(0.02, 0.05)),
        jitter_s=float(rng.uniform(0.01, 0.03)),
        vowel=str(rng.choice(list(VOWEL_FORMANTS))),
        breath=float(rng.uniform(0.02, 0.08)),
    )


def render_humming(
    song: Song, start_s: float, duration_s: float, sample_rate: int = 16000, seed: int = 0
) -> np.ndarray:
    """Hum the lead melody heard in [start_s, start_s + duration_s): a glottal source through
    vowel formants, in the hummer's own key and register, with vibrato, drift, glides and jitter."""
    rng = np.random.default_rng([song.seed, HUM_STREAM, seed])
    voice = _draw_voice(rng)
    length = round(duration_s * sample_rate)
    notes = [
        note
        for note in song.lead
        if note.start_s < start_s + duration_s and note.start_s + note.duration_s > start_s
    ]
    if not notes or length == 0:
        return np.zeros(length, np.float32)
    gate, pitch_midi, since_onset_s = _hum_controls(notes, start_s, voice, rng, sample_rate, length)
    time_s = np.arange(length) / sample_rate
    vibrato = voice.vibrato_semitones * np.minimum(since_onset_s / 0.3, 1.0)
    pitch_midi = pitch_midi + vibrato * np.sin(2 * np.pi * voice.vibrato_hz * time_s)
    return _voice_hum(pitch_midi, gate, voice, rng, sample_rate)


def hum_contour(track: PitchTrack, sample_rate: int = 16000, seed: int = 0) -> np.ndarray:
    """Hum a pitch track (say, the melody of a real recording) in the voice render_humming uses:
    a drawn transposition of a few semitones, an octave in the hummer's register, slow drift,
    glides, and silence where the track is unvoiced. The track's own vibrato is kept, none is
    added. Returns round(track.duration_s * sample_rate) samples."""
    rng = np.random.default_rng([HUM_STREAM, seed])
    voice = _draw_voice(rng)
    length = round(track.duration_s * sample_rate)
    if length == 0 or not track.voiced.any():
        return np.zeros(length, np.float32)
    frame_midi = track.midi
    # Hold the last voiced pitch through unvoiced frames (and the first one before it), so that
    # each new phrase glides from where the previous one ended.
    frames = np.arange(len(frame_midi))
    first_voiced = int(np.argmax(track.voiced))
    frame_midi = frame_midi[np.maximum.accumulate(np.where(track.voiced, frames, first_voiced))]
    shift = voice.transposition
    shift += 12 * np.round((voice.centre_midi - np.median(frame_midi) - shift) / 12)
    time_s = np.arange(length) / sample_rate
    nearest_frame = np.minimum(np.round(time_s / track.hop_s).astype(int), len(frames) - 1)
    gate = _smooth(track.voiced[nearest_frame].astype(float), 0.03, sample_rate)
    target_midi = np.interp(time_s, frames * track.hop_s, frame_midi + shift)
    pitch_midi = _smooth(target_midi, voice.glide_s, sample_rate)
    return _voice_hum(pitch_midi, gate, voice, rng, sample_rate)


def _voice_hum(
    pitch_midi: np.ndarray,
    gate: np.ndarray,
    voice: _Voice,
    rng: np.random.Generator,
    sample_rate: int,
) -> np.ndarray:
    """Sing a per-sample pitch (MIDI) under a loudness gate: slow drift, a glottal source through
    the vowel's formants, and breath noise."""
    length = len(pitch_midi)
    time_s = np.arange(length) / sample_rate
    for drift_hz in rng.uniform(0.1, 0.5, size=2):
        phase = rng.uniform(0, 2 * np.pi)
        pitch_midi = pitch_midi + voice.drift_semitones * np.sin(
            2 * np.pi * drift_hz * time_s + phase
        )
    frequency_hz = 440.0 * 2 ** ((pitch_midi - 69) / 12)
    count = max(1, min(len(GLOTTAL_HARMONICS), int(sample_rate / 2 / frequency_hz.max())))
    source = _oscillate(_wavetable(GLOTTAL_HARMONICS, count), np.cumsum(frequency_hz) / sample_rate)
    hum = _formants(source, voice.vowel, sample_rate) * gate
    breath = _filter(rng.standard_normal(length), 1500, sample_rate, "highpass") * gate
    hum = _unit_rms(hum) + voice.breath * _unit_rms(breath)
    return _normalise(hum)


def _hum_controls(
    notes: list[Note],
    start_s: float,
    voice: _Voice,
    rng: np.random.Generator,
    sample_rate: int,
    length: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loudness gate, gliding pitch in MIDI and time since the last onset, per sample."""
    onsets_s = np.array([note.start_s for note in notes]) - start_s
    offsets_s = onsets_s + np.array([note.duration_s for note in notes])
    onsets_s = onsets_s + rng.normal(0, voice.jitter_s, len(notes))
    offsets_s = np.maximum(offsets_s + rng.normal(0, voice.jitter_s, len(notes)), onsets_s + 0.05)
    gaps_s = onsets_s[1:] - offsets_s[:-1]
    offsets_s[:-1] = np.where(gaps_s < 0.15, onsets_s[1:], offsets_s[:-1])  # legato over short gaps
    pitches = np.array([note.pitch_midi for note in notes], dtype=float) + voice.transposition
    pitches += 12 * np.round((voice.centre_midi - np.median(pitches)) / 12)
    onsets = np.clip(np.round(onsets_s * sample_rate).astype(int), 0, length - 1)
    offsets = np.clip(np.round(offsets_s * sample_rate).astype(int), 0, length)
    gate = np.zeros(length)
    target = np.full(length, np.nan)
    last_onset = np.zeros(length, dtype=int)
    for onset, offset, pitch, note in zip(onsets, offsets, pitches, notes, strict=True):
        gate[onset:offset] = 0.6 + 0.4 * note.velocity
        target[onset:offset] = pitch
        last_onset[onset] = onset
    held = np.maximum.accumulate(np.where(np.isnan(target), 0, np.arange(length)))
    target = np.where(np.isnan(target[held]), pitches[0], target[held])  # hold pitch through rests
    since_onset_s = (np.arange(length) - np.maximum.accumulate(last_onset)) / sample_rate
    return (
        _smooth(gate, 0.03, sample_rate),
        _smooth(target, voice.glide_s, sample_rate),
        since_onset_s,
    )


def _smooth(control: np.ndarray, time_constant_s: float, sample_rate: int) -> np.ndarray:
    """One-pole low-pass that starts settled at the first value: glides and soft onsets."""
    pole = np.exp(-1.0 / (time_constant_s * sample_rate))
    initial = signal.lfilter_zi([1 - pole], [1, -pole]) * control[0]
    return signal.lfilter([1 - pole], [1, -pole], control, zi=initial)[0]


def _formants(source: np.ndarray, vowel: str, sample_rate: int) -> np.ndarray:
    """Parallel formant resonators plus the low-passed source, which keeps the fundamental."""
    voiced = _filter(source, 800, sample_rate, "lowpass").astype(np.float64)
    for centre_hz, bandwidth_hz, gain in VOWEL_FORMANTS[vowel]:
        if centre_hz < 0.45 * sample_rate:
            numerator, denominator = signal.iirpeak(
                centre_hz, centre_hz / bandwidth_hz, sample_rate
            )
            voiced += gain * signal.lfilter(numerator, denominator, source)
    return voiced

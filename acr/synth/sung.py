"""Sung or hummed queries made independently of acr's melody extractor: what a person might sing
after hearing an excerpt, for testing the melody engine without grading it on its own tracker.

The pitch comes from librosa.pyin (Mauch & Dixon 2014), a monophonic tracker with an HMM voicing
decision, run on the mix: it hears the strongest periodicity, which is the lead in some excerpts
and the bass, an accompaniment line or an octave of the lead in others, as a listener who
mis-hears the tune would. It shares nothing with acr.pitch (harmonic summation over an
equal-loudness spectrum, Viterbi on salience) or acr.synth.humming (wavetable glottal source, two
formant sets, no vibrato), so agreement between the two chains is not built in. pyin was chosen
over a piptrack peak picker because its voiced flag is a calibrated decision that needs no
threshold of ours.

The singer: additive harmonics with a glottal spectral tilt (about -12 dB/octave, Fant 1960), a
key of their own (a drawn offset of a few semitones, the line moved into the octave of their
register and notes beyond MIDI 45-67 folded back by an octave, as untrained singers do), a
per-note intonation error and slow drift, vibrato of 5-6.5 Hz and 20-60 cents (Sundberg 1987),
a vowel per note through formant resonators (Peterson & Barney 1952; /m/ as a nasal murmur),
breath noise, and attack/release ramps.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

from acr.audio import rms

TRACK_RATE_HZ = 8000  # pyin runs on the excerpt resampled to this rate: 1 kHz pitch, half the cost
TRACK_HOP_S = 0.01
FMIN_HZ = 65.0
FMAX_HZ = 1000.0
MIN_VOICED_SHARE = 0.5  # fewer voiced frames than this share: nothing to sing (UnusableExcerpt)

REGISTER_MIDI = (45.0, 67.0)  # a singer's comfortable range, bass to mezzo (A2 to G4)
MIN_NOTE_S = 0.08  # pitch steps shorter than this are glides within a note, not new notes

# Formants (centre Hz, bandwidth Hz, gain) of sung vowels (Peterson & Barney 1952, male voices)
# and of a closed-mouth hum, whose nasal murmur is a low resonance near 250 Hz.
FORMANTS = {
    "a": ((730.0, 90.0, 1.0), (1090.0, 110.0, 0.5), (2440.0, 160.0, 0.12)),
    "o": ((570.0, 80.0, 1.0), (840.0, 100.0, 0.45), (2410.0, 160.0, 0.08)),
    "u": ((300.0, 70.0, 1.0), (870.0, 100.0, 0.25), (2240.0, 160.0, 0.05)),
    "m": ((250.0, 60.0, 1.0), (1200.0, 200.0, 0.05), (2500.0, 250.0, 0.02)),
}
VOWELS = tuple(FORMANTS)


def sung_excerpt(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """A person singing (or humming) the pitch librosa.pyin hears in ``audio``, in their own
    key, register, vibrato and vowels. Returns float32 audio of the input's length with peak
    at most 1, and the drawn parameters. Raises acr.augment.degradations.UnusableExcerpt when
    under half of the excerpt is voiced."""
    from acr.augment.degradations import UnusableExcerpt  # acr.synth is imported by augment

    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    midi, voiced = _track(audio, sample_rate)
    if len(voiced) == 0 or voiced.mean() < MIN_VOICED_SHARE:
        share = voiced.mean() if len(voiced) else 0.0
        raise UnusableExcerpt(f"pyin hears a pitch in {share:.0%} of it (singing needs half)")
    notes = _notes(midi, voiced)
    singer = _draw_singer(rng)
    key_offset = singer["key_offset_semitones"]
    note_midi = np.array([np.median(midi[start:stop]) for start, stop in notes])
    shift = key_offset + 12 * np.round(
        (singer["centre_midi"] - np.median(note_midi) - key_offset) / 12
    )
    sung_midi = note_midi + shift
    low, high = REGISTER_MIDI  # notes beyond the register come back by whole octaves
    folds = 12 * (
        np.ceil(np.maximum(low - sung_midi, 0) / 12) - np.ceil(np.maximum(sung_midi - high, 0) / 12)
    )
    intonation = rng.normal(0, singer["intonation_cents"] / 100, len(notes))
    frame_pitch, frame_gate, frame_vowel = _score(
        midi, notes, shift + folds + intonation, singer, rng
    )

    length = len(audio)
    time_s = np.arange(length) / sample_rate
    frame_times_s = np.arange(len(frame_pitch)) * TRACK_HOP_S
    pitch_midi = np.interp(time_s, frame_times_s, frame_pitch)
    pitch_midi = _glide(pitch_midi, singer["glide_s"], sample_rate)
    gate = np.interp(time_s, frame_times_s, frame_gate)
    gate = _envelope(gate, singer["attack_s"], singer["release_s"], sample_rate)
    pitch_midi += _drift(time_s, singer["drift_cents"] / 100, rng)
    pitch_midi += _vibrato(gate, singer, sample_rate, rng)

    source = _glottal_source(pitch_midi, singer["tilt"], sample_rate, rng)
    voice = _through_vowels(source, frame_vowel, frame_times_s, time_s, sample_rate)
    voice = _unit_rms(voice * gate)
    breath = _breath(length, gate, sample_rate, rng)
    sung = voice + singer["breath"] * breath
    sung = 0.9 * sung / max(float(np.abs(sung).max()), 1e-9)
    params = {
        **{name: float(value) for name, value in singer.items()},
        "transposition_semitones": float(shift),
        "folded_notes": float(np.count_nonzero(folds)),
        "notes": float(len(notes)),
        "voiced_share": float(voiced.mean()),
    }
    return sung.astype(np.float32), params


def _track(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """pyin's pitch (MIDI, NaN unvoiced) and voiced flag, one frame per TRACK_HOP_S."""
    import librosa  # acr.synth stays free of librosa's import time until a query is sung

    frames = -(-len(audio) * TRACK_RATE_HZ // (sample_rate * round(TRACK_HOP_S * TRACK_RATE_HZ)))
    if len(audio) < sample_rate * 0.1 or not np.any(audio):
        return np.full(frames, np.nan), np.zeros(frames, bool)
    resampled = librosa.resample(audio, orig_sr=sample_rate, target_sr=TRACK_RATE_HZ)
    f0_hz, voiced, _ = librosa.pyin(
        resampled,
        fmin=FMIN_HZ,
        fmax=FMAX_HZ,
        sr=TRACK_RATE_HZ,
        frame_length=512,  # 64 ms: two periods of 65 Hz, as pyin's YIN needs
        hop_length=round(TRACK_HOP_S * TRACK_RATE_HZ),
        resolution=0.25,  # quarter-semitone states: 4x fewer than the default, same medians
    )
    voiced = voiced[:frames] & np.isfinite(f0_hz[:frames])
    midi = np.where(voiced, librosa.hz_to_midi(np.where(voiced, f0_hz[:frames], 1.0)), np.nan)
    return midi, voiced


def _notes(midi: np.ndarray, voiced: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) frames of notes: voiced runs, split where the pitch (median-filtered over
    five frames) steps by more than 0.7 semitone and stays there at least MIN_NOTE_S."""
    min_frames = max(1, round(MIN_NOTE_S / TRACK_HOP_S))
    notes = []
    padded = np.r_[False, voiced, False]
    starts = np.flatnonzero(~padded[:-1] & padded[1:])
    stops = np.flatnonzero(padded[:-1] & ~padded[1:])
    for start, stop in zip(starts, stops):
        smooth = ndimage.median_filter(midi[start:stop], size=5, mode="nearest")
        first = 0
        for frame in range(1, len(smooth)):
            held = np.median(smooth[first:frame])
            if (
                abs(smooth[frame] - held) > 0.7
                and frame - first >= min_frames
                and stop - start - frame >= min_frames
                and abs(np.median(smooth[frame : frame + min_frames]) - held) > 0.7
            ):
                notes.append((start + first, start + frame))
                first = frame
        notes.append((start + first, stop))
    return notes


def _draw_singer(rng: np.random.Generator) -> dict[str, float]:
    hummed = rng.random() < 0.4  # a closed-mouth hum, or syllables with a vowel per note
    return {
        "key_offset_semitones": float(rng.uniform(-4, 4)),
        "centre_midi": float(rng.uniform(50, 62)),
        "intonation_cents": float(rng.uniform(5, 20)),
        "drift_cents": float(rng.uniform(5, 25)),
        "vibrato_hz": float(rng.uniform(5.0, 6.5)),
        "vibrato_cents": float(rng.uniform(20, 60)),
        "glide_s": float(rng.uniform(0.02, 0.06)),
        "attack_s": float(rng.uniform(0.02, 0.06)),
        "release_s": float(rng.uniform(0.03, 0.08)),
        "tilt": float(rng.uniform(1.6, 2.2)),  # harmonic k at k**-tilt: 10-13 dB/octave
        "breath": float(rng.uniform(0.02, 0.1)),
        "hummed": float(hummed),
    }


def _score(
    midi: np.ndarray,
    notes: list[tuple[int, int]],
    note_shifts: np.ndarray,
    singer: dict[str, float],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame: the pitch to sing (the tracked pitch, shifted note by note, held through
    rests), the gate (1 inside notes; legato over gaps under 0.1 s) and the vowel index."""
    frames = len(midi)
    pitch = np.full(frames, np.nan)
    gate = np.zeros(frames)
    vowel = np.zeros(frames, dtype=int)
    vowel_choices = [VOWELS.index("m")] if singer["hummed"] else [VOWELS.index(v) for v in "aou"]
    for (start, stop), shift in zip(notes, note_shifts):
        # within a note, keep the tracked pitch's slow shape (its scoops and glides) but not
        # its frame-to-frame wobble
        pitch[start:stop] = ndimage.median_filter(midi[start:stop], size=5, mode="nearest") + shift
        gate[start:stop] = 1.0
        vowel[start:stop] = vowel_choices[int(rng.integers(len(vowel_choices)))]
    for (_, stop), (start, _) in zip(notes[:-1], notes[1:]):
        if start - stop < round(0.1 / TRACK_HOP_S):
            gate[stop:start] = 1.0
    frame = np.arange(frames)
    known = np.isfinite(pitch)
    held = np.maximum.accumulate(np.where(known, frame, 0))
    first = int(np.argmax(known))
    pitch = np.where(known[held], pitch[held], pitch[first])
    vowel = np.where(known[held], vowel[held], vowel[first])
    return pitch, gate, vowel


def _glide(pitch_midi: np.ndarray, time_constant_s: float, sample_rate: int) -> np.ndarray:
    """Portamento: a one-pole low-pass on the pitch, started at its first value."""
    pole = np.exp(-1.0 / (time_constant_s * sample_rate))
    initial = signal.lfilter_zi([1 - pole], [1, -pole]) * pitch_midi[0]
    return signal.lfilter([1 - pole], [1, -pole], pitch_midi, zi=initial)[0]


def _envelope(gate: np.ndarray, attack_s: float, release_s: float, sample_rate: int) -> np.ndarray:
    """Attack and release ramps: a rising gate follows a fast pole, a falling one a slower one."""
    smoothed = np.empty_like(gate)
    attack = np.exp(-1.0 / (attack_s * sample_rate))
    release = np.exp(-1.0 / (release_s * sample_rate))
    # the gate is piecewise constant, so filter each rise and fall with its own pole
    level, changes = 0.0, np.flatnonzero(np.diff(np.r_[np.nan, gate]) != 0)
    for start, stop in zip(changes, np.r_[changes[1:], len(gate)]):
        target = gate[start]
        pole = attack if target > level else release
        decay = pole ** np.arange(1, stop - start + 1)
        smoothed[start:stop] = target + (level - target) * decay
        level = smoothed[stop - 1]
    return smoothed


def _drift(time_s: np.ndarray, depth_semitones: float, rng: np.random.Generator) -> np.ndarray:
    """Slow wandering of the singer's tuning: two sinusoids of 0.1-0.4 Hz."""
    drift = np.zeros_like(time_s)
    for rate_hz in rng.uniform(0.1, 0.4, size=2):
        drift += np.sin(2 * np.pi * rate_hz * time_s + rng.uniform(0, 2 * np.pi))
    return depth_semitones / 2 * drift


def _vibrato(
    gate: np.ndarray, singer: dict[str, float], sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Vibrato that grows in over the first 0.3 s of each sung stretch (singers start straight),
    its rate wavering by 3 %."""
    sung = gate > 0.5
    sample = np.arange(len(gate))
    onsets = np.maximum.accumulate(np.where(sung & ~np.r_[False, sung[:-1]], sample, 0))
    since_onset_s = (sample - onsets) / sample_rate
    rate_hz = singer["vibrato_hz"] * (1 + 0.03 * np.sin(2 * np.pi * 0.7 * sample / sample_rate))
    phase = 2 * np.pi * np.cumsum(rate_hz) / sample_rate + rng.uniform(0, 2 * np.pi)
    depth = singer["vibrato_cents"] / 100 * np.minimum(since_onset_s / 0.3, 1.0)
    return depth * np.sin(phase)


def _glottal_source(
    pitch_midi: np.ndarray, tilt: float, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Additive harmonics k at k**-tilt (a glottal pulse's falling spectrum), each faded out as it
    nears Nyquist, with a little jitter (cycle-to-cycle pitch noise) and shimmer."""
    jitter = signal.lfilter([0.05], [1, -0.95], rng.normal(0, 0.08, len(pitch_midi)))
    frequency_hz = 440.0 * 2 ** ((pitch_midi + jitter - 69) / 12)
    phase = 2 * np.pi * np.cumsum(frequency_hz) / sample_rate
    nyquist_hz = sample_rate / 2
    source = np.zeros(len(pitch_midi))
    for harmonic in range(1, int(nyquist_hz / frequency_hz.min()) + 1):
        fade = np.clip((0.9 * nyquist_hz - harmonic * frequency_hz) / (0.1 * nyquist_hz), 0, 1)
        if not fade.any():
            break
        source += harmonic**-tilt * fade * np.sin(harmonic * phase + rng.uniform(0, 2 * np.pi))
    shimmer = 1 + signal.lfilter([0.05], [1, -0.95], rng.normal(0, 0.3, len(source)))
    return source * shimmer


def _through_vowels(
    source: np.ndarray,
    frame_vowel: np.ndarray,
    frame_times_s: np.ndarray,
    time_s: np.ndarray,
    sample_rate: int,
) -> np.ndarray:
    """The source through each vowel's parallel formant resonators (plus the low-passed source,
    which keeps the fundamental), cross-faded over 30 ms where the vowel changes."""
    lowpass = signal.butter(2, 700, "lowpass", fs=sample_rate, output="sos")
    base = signal.sosfilt(lowpass, source)
    voice = np.zeros_like(source)
    nearest = np.minimum(np.searchsorted(frame_times_s, time_s), len(frame_vowel) - 1)
    for index in np.unique(frame_vowel):
        weight = (frame_vowel[nearest] == index).astype(float)
        weight = ndimage.uniform_filter1d(weight, max(1, round(0.03 * sample_rate)))
        shaped = 0.5 * base
        for centre_hz, bandwidth_hz, gain in FORMANTS[VOWELS[index]]:
            if centre_hz < 0.45 * sample_rate:
                b, a = signal.iirpeak(centre_hz, centre_hz / bandwidth_hz, sample_rate)
                shaped = shaped + gain * signal.lfilter(b, a, source)
        voice += weight * shaped
    return voice


def _breath(
    length: int, gate: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """Aspiration: band-passed noise (1-4 kHz) under the gate, with a puff at each onset."""
    high_hz = min(4000.0, 0.45 * sample_rate)
    band = signal.butter(2, (1000.0, high_hz), "bandpass", fs=sample_rate, output="sos")
    noise = signal.sosfilt(band, rng.standard_normal(length))
    rising = np.clip(np.diff(np.r_[0.0, gate]) * sample_rate * 0.02, 0, 1)
    puff = ndimage.uniform_filter1d(rising, max(1, round(0.05 * sample_rate)))
    return _unit_rms(noise) * (0.7 * gate + 3.0 * puff)


def _unit_rms(audio: np.ndarray) -> np.ndarray:
    level = rms(audio) if len(audio) else 0.0
    return audio / level if level > 1e-12 else audio

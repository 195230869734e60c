"""Rendering songs to audio: timbres, orchestrations, note synthesis, drums, mixing and room."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ._common import (
    RENDER_STREAM,
    _filter,
    _harmonic_series,
    _normalise,
    _oscillate,
    _unit_rms,
    _wavetable,
)
from .composition import Note, Song, compose_song

VIBRATO_HZ = 5.5

MAX_NOTE_S = 8.0


@dataclass(frozen=True)
class Timbre:
    """An additive harmonic profile (or a two-operator FM voice) with an ADSR envelope;
    bright_decay_s > 0 makes a pluck whose brightness fades."""

    harmonics: tuple[float, ...]
    attack_s: float
    decay_s: float
    sustain: float
    release_s: float
    fm_ratio: float = 0.0
    fm_index: float = 0.0
    bright_decay_s: float = 0.0


TIMBRES = {
    "saw": Timbre(_harmonic_series(48, 1.0), 0.01, 0.25, 0.7, 0.08),
    "square": Timbre(_harmonic_series(48, 1.0, odd_only=True), 0.01, 0.25, 0.7, 0.08),
    "flute": Timbre(_harmonic_series(9, 2.0, odd_only=True), 0.06, 0.2, 0.85, 0.12),
    "organ": Timbre((1.0, 0.8, 0.5, 0.6, 0.0, 0.4, 0.0, 0.3), 0.005, 0.05, 0.95, 0.04),
    "soft_pad": Timbre(_harmonic_series(16, 1.6), 0.3, 0.6, 0.8, 0.5),
    "sub": Timbre((1.0, 0.35, 0.1), 0.005, 0.3, 0.8, 0.06),
    "pluck": Timbre(_harmonic_series(48, 1.0), 0.002, 0.35, 0.0, 0.05, bright_decay_s=0.12),
    "bell": Timbre((1.0,), 0.002, 0.9, 0.0, 0.3, fm_ratio=3.5, fm_index=2.5),
    "electric_piano": Timbre((1.0,), 0.003, 0.6, 0.25, 0.15, fm_ratio=1.0, fm_index=1.8),
}

PART_TIMBRES = {
    "lead": ("saw", "square", "flute", "organ", "bell", "pluck", "electric_piano"),
    "bass": ("sub", "saw", "square", "pluck", "electric_piano"),
    "chords": ("soft_pad", "organ", "electric_piano", "pluck", "saw", "bell"),
}

GAIN_RANGES_DB = {"lead": (-2, 2), "bass": (-5, -1), "chords": (-9, -4), "drums": (-6, -2)}

LOWPASS_RANGES_HZ = {"lead": (2500, 7000), "bass": (500, 1800), "chords": (1500, 6000)}

SWINGS = (0.0, 0.5, 1.0)  # 1.0 moves off-beat eighths to the last triplet (1/6 beat late)

KIT_RANGES = {
    "kick_start_hz": (100, 220),
    "kick_end_hz": (38, 60),
    "kick_decay_s": (0.12, 0.35),
    "snare_tone_hz": (150, 260),
    "snare_noise_hz": (800, 2500),
    "snare_decay_s": (0.06, 0.2),
    "hat_hz": (4000, 7000),
    "hat_decay_s": (0.02, 0.06),
    "open_hat_decay_s": (0.15, 0.4),
}


@dataclass(frozen=True)
class _Orchestration:
    """Everything a version changes: timbres, mix, filters, drum kit, groove feel, room."""

    timbres: dict[str, str]
    gains_db: dict[str, float]
    lowpass_hz: dict[str, float]
    vibrato_depth: float  # relative frequency deviation of the lead
    swing: float
    kit: dict[str, float]
    room_s: float
    room_mix: float


def _orchestrate(seed: int, version: int) -> _Orchestration:
    """Draw a version's orchestration; versions > 0 change every part's timbre and the swing."""
    rng = np.random.default_rng([seed, RENDER_STREAM, version])
    original = _orchestrate(seed, 0) if version else None

    def uniform(ranges: dict[str, tuple[float, float]]) -> dict[str, float]:
        return {name: float(rng.uniform(*bounds)) for name, bounds in ranges.items()}

    def choose(options: tuple, avoid: object) -> object:
        return rng.choice([option for option in options if option != avoid])

    return _Orchestration(
        timbres={
            part: str(choose(names, original.timbres[part] if original else None))
            for part, names in PART_TIMBRES.items()
        },
        gains_db=uniform(GAIN_RANGES_DB),
        lowpass_hz=uniform(LOWPASS_RANGES_HZ),
        vibrato_depth=float(rng.uniform(0.0, 0.008)),
        swing=float(choose(SWINGS, original.swing if original else None)),
        kit=uniform(KIT_RANGES),
        room_s=float(rng.uniform(0.03, 0.12)),
        room_mix=float(rng.uniform(0.1, 0.4)),
    )


def render_song(song: Song, sample_rate: int = 16000, version: int = 0) -> np.ndarray:
    """Render a song: version 0 is the original orchestration, k > 0 re-orchestrates the notes."""
    orchestration = _orchestrate(song.seed, version)
    rng = np.random.default_rng([song.seed, RENDER_STREAM, version, 1])
    length = round(song.duration_s * sample_rate)
    buses = {
        part: _render_part(
            getattr(song, part),
            TIMBRES[orchestration.timbres[part]],
            rng,
            sample_rate,
            length,
            orchestration.vibrato_depth if part == "lead" else 0.0,
        )
        for part in PART_TIMBRES
    }
    buses = {
        part: _filter(bus, orchestration.lowpass_hz[part], sample_rate, "lowpass")
        for part, bus in buses.items()
    }
    sounds = _drum_sounds(orchestration.kit, rng, sample_rate)
    buses["drums"] = _render_drums(song, sounds, orchestration.swing, sample_rate, length)
    mix = sum(
        _unit_rms(bus) * 10 ** (orchestration.gains_db[part] / 20) for part, bus in buses.items()
    )
    mix = _room(mix, rng, sample_rate, orchestration.room_s, orchestration.room_mix)
    return _normalise(mix)


def synthesize_track(
    seed: int, duration_s: float = 30.0, sample_rate: int = 16000, version: int = 0
) -> np.ndarray:
    """Compose and render a song of exactly round(duration_s * sample_rate) samples."""
    return render_song(compose_song(seed, duration_s), sample_rate, version)


@functools.lru_cache(maxsize=4)
def _time_base(sample_rate: int) -> np.ndarray:
    """Seconds since a note's onset, long enough for any note (at most 4 beats at 70 BPM)."""
    return (np.arange(round(MAX_NOTE_S * sample_rate)) / sample_rate).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _decay(decay_s: float, sample_rate: int) -> np.ndarray:
    return np.exp(-_time_base(sample_rate) / np.float32(decay_s))


@functools.lru_cache(maxsize=4)
def _vibrato(sample_rate: int) -> np.ndarray:
    """Phase offset (in cycles per Hz of depth) of a sinusoidal frequency wobble at VIBRATO_HZ."""
    wobble = 1 - np.cos(2 * np.pi * VIBRATO_HZ * _time_base(sample_rate))
    return (wobble / (2 * np.pi * VIBRATO_HZ)).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _envelope(timbre: Timbre, sample_rate: int) -> np.ndarray:
    """Linear attack and exponential decay to the sustain level; the release is applied per note."""
    attack = np.minimum(_time_base(sample_rate) / np.float32(timbre.attack_s), 1.0)
    return attack * (timbre.sustain + (1.0 - timbre.sustain) * _decay(timbre.decay_s, sample_rate))


def _tone(timbre: Timbre, phase: np.ndarray, frequency_hz: float, sample_rate: int) -> np.ndarray:
    """The raw waveform of one note, band-limited to below Nyquist."""
    nyquist_hz = sample_rate / 2
    count = len(phase)
    if timbre.fm_ratio:
        index = timbre.fm_index * min(1.0, nyquist_hz / (6 * timbre.fm_ratio * frequency_hz))
        depth = np.float32(index) * _decay(0.5 * timbre.decay_s, sample_rate)[:count]
        modulator = np.sin(np.float32(2 * np.pi * timbre.fm_ratio) * phase)
        return np.sin(np.float32(2 * np.pi) * phase + depth * modulator)
    harmonic_count = max(1, min(len(timbre.harmonics), int(nyquist_hz / (1.02 * frequency_hz))))
    wave = _oscillate(_wavetable(timbre.harmonics, harmonic_count), phase)
    if timbre.bright_decay_s:
        dark = _oscillate(_wavetable(timbre.harmonics, min(harmonic_count, 3)), phase)
        wave = dark + (wave - dark) * _decay(timbre.bright_decay_s, sample_rate)[:count]
    return wave


def _render_part(
    notes: tuple[Note, ...],
    timbre: Timbre,
    rng: np.random.Generator,
    sample_rate: int,
    length: int,
    vibrato_depth: float,
) -> np.ndarray:
    """Sum the notes of one part, each synthesised in one vectorised shot from a random phase
    (free-running oscillators, so two versions of a note are not phase-locked)."""
    bus = np.zeros(length, np.float32)
    time_base, envelope = _time_base(sample_rate), _envelope(timbre, sample_rate)
    release_count = max(1, round(timbre.release_s * sample_rate))
    release = np.linspace(1.0, 0.0, release_count, dtype=np.float32)
    for note in notes:
        start = round(note.start_s * sample_rate)
        held = round(note.duration_s * sample_rate)
        count = min(held + release_count, length - start, len(time_base))
        if count <= 0:
            continue
        frequency_hz = 440.0 * 2 ** ((note.pitch_midi - 69) / 12)
        phase = np.float32(frequency_hz) * time_base[:count] + np.float32(rng.random())
        if vibrato_depth:
            phase += np.float32(frequency_hz * vibrato_depth) * _vibrato(sample_rate)[:count]
        wave = _tone(timbre, phase, frequency_hz, sample_rate) * envelope[:count]
        wave[held:] *= release[: max(0, count - held)]
        bus[start : start + count] += np.float32(note.velocity**1.5) * wave
    return bus


def _drum_sounds(
    kit: dict[str, float], rng: np.random.Generator, sample_rate: int
) -> dict[str, np.ndarray]:
    """One-shots of the kit: pitch-dropping sine kick, tone-plus-noise snare, high-passed noise
    hats and crash."""

    def decay(duration_s: float, decay_s: float) -> np.ndarray:
        return np.exp(-np.arange(int(duration_s * sample_rate)) / sample_rate / decay_s)

    def noise(duration_s: float, cutoff_hz: float, decay_s: float) -> np.ndarray:
        burst = rng.standard_normal(int(duration_s * sample_rate))
        return _filter(burst, cutoff_hz, sample_rate, "highpass") * decay(duration_s, decay_s)

    time_s = np.arange(int(0.5 * sample_rate)) / sample_rate
    kick_hz = kit["kick_end_hz"] + (kit["kick_start_hz"] - kit["kick_end_hz"]) * np.exp(
        -time_s / 0.03
    )
    kick = np.sin(2 * np.pi * np.cumsum(kick_hz) / sample_rate) * decay(0.5, kit["kick_decay_s"])
    kick[: len(time_s)] += 0.3 * noise(0.5, 2000, 0.004)
    snare_tone = np.sin(2 * np.pi * kit["snare_tone_hz"] * time_s[: int(0.3 * sample_rate)])
    snare = 0.6 * snare_tone * decay(0.3, 0.05) + noise(
        0.3, kit["snare_noise_hz"], kit["snare_decay_s"]
    )
    return {
        "kick": kick,
        "snare": snare,
        "hat": 0.6 * noise(0.15, kit["hat_hz"], kit["hat_decay_s"]),
        "open_hat": 0.5 * noise(0.6, kit["hat_hz"], kit["open_hat_decay_s"]),
        "crash": 0.5 * noise(2.0, 3000, 0.9),
    }


def _render_drums(
    song: Song, sounds: dict[str, np.ndarray], swing: float, sample_rate: int, length: int
) -> np.ndarray:
    """Place the one-shots; swing delays off-beat eighths by up to a sixth of a beat."""
    beat_s = 60.0 / song.tempo_bpm
    bus = np.zeros(length + max(len(sound) for sound in sounds.values()) + sample_rate, np.float32)
    for hit in song.drums:
        off_beat = abs((hit.start_s / beat_s) % 1.0 - 0.5) < 1e-6
        start = round((hit.start_s + (swing * beat_s / 6 if off_beat else 0.0)) * sample_rate)
        sound = sounds[hit.kind]
        bus[start : start + len(sound)] += hit.velocity * sound
    return bus[:length]


def _room(
    audio: np.ndarray, rng: np.random.Generator, sample_rate: int, size_s: float, mix: float
) -> np.ndarray:
    """A cheap room: a handful of early reflections with decaying gains."""
    wet = np.zeros_like(audio)
    delays_s = np.sort(rng.uniform(0.01, size_s, size=6))
    for delay_s in delays_s:
        delay = max(1, round(delay_s * sample_rate))
        wet[delay:] += np.float32(np.exp(-delay_s / size_s)) * audio[:-delay]
    return (1 - mix) * audio + mix * wet / len(delays_s) ** 0.5

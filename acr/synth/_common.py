"""Shared by rendering and humming: random streams, wavetable oscillator, filter, levels."""

from __future__ import annotations

import functools

import numpy as np
from scipy import signal

COMPOSE_STREAM, RENDER_STREAM, HUM_STREAM = 0, 1, 2

TARGET_RMS = 0.1

PEAK_LIMIT = 0.95

TABLE_SIZE = 2048


def _harmonic_series(count: int, slope: float, odd_only: bool = False) -> tuple[float, ...]:
    """Amplitudes 1/k**slope: slope 1 is saw- or square-like, 2 is triangle-like."""
    return tuple(0.0 if odd_only and k % 2 == 0 else k**-slope for k in range(1, count + 1))


@functools.lru_cache(maxsize=512)
def _wavetable(harmonics: tuple[float, ...], count: int) -> np.ndarray:
    """One cycle of the first count harmonics, with a wrap-around sample for interpolation."""
    phase = np.arange(TABLE_SIZE + 1) / TABLE_SIZE
    numbers = np.arange(1, count + 1)[:, None]
    table = (np.asarray(harmonics[:count])[:, None] * np.sin(2 * np.pi * numbers * phase)).sum(0)
    return (table / np.abs(table).max()).astype(np.float32)


def _oscillate(table: np.ndarray, phase_cycles: np.ndarray) -> np.ndarray:
    """Linear-interpolated wavetable lookup."""
    position = (phase_cycles - np.floor(phase_cycles)) * np.float32(TABLE_SIZE)
    index = position.astype(np.int32)
    fraction = position - index
    below = table[index]
    return below + fraction * (table[index + 1] - below)


def _filter(audio: np.ndarray, cutoff_hz: float, sample_rate: int, kind: str) -> np.ndarray:
    """Second-order Butterworth low- or high-pass, in float32 for speed."""
    if len(audio) == 0:
        return audio.astype(np.float32)
    cutoff_hz = min(cutoff_hz, 0.45 * sample_rate)
    sos = signal.butter(2, cutoff_hz, kind, fs=sample_rate, output="sos").astype(np.float32)
    return signal.sosfilt(sos, audio.astype(np.float32, copy=False))


def _unit_rms(audio: np.ndarray) -> np.ndarray:
    rms = float(np.sqrt(np.mean(audio * audio))) if len(audio) else 0.0
    return audio / rms if rms > 1e-9 else audio


def _normalise(audio: np.ndarray) -> np.ndarray:
    """Fixed RMS, then scaled down if needed so the peak stays below PEAK_LIMIT."""
    audio = _unit_rms(audio) * TARGET_RMS
    peak = np.abs(audio).max() if len(audio) else 0.0
    if peak > PEAK_LIMIT:
        audio = audio * (PEAK_LIMIT / peak)
    return audio.astype(np.float32)

"""Test signals whose structure is known, and the measurements tests make on them: tones, a
music-like mixture, plucked melodies; SNR, band power and the spectral peak (16 kHz)."""

import numpy as np
import scipy.signal

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


def pluck(midi: int, duration_s: float) -> np.ndarray:
    """A plucked harmonic tone: sharp attack, decay to -35 dB, a 20 ms fade (no offset click)."""
    time_s = np.arange(int(duration_s * SAMPLE_RATE)) / SAMPLE_RATE
    frequency_hz = 440.0 * 2 ** ((midi - 69) / 12)
    harmonics = sum(np.sin(2 * np.pi * frequency_hz * k * time_s) / k for k in range(1, 5))
    fade = np.clip((duration_s - time_s) / 0.02, 0.0, 1.0)
    return (0.3 * harmonics * np.exp(-4 * time_s / duration_s) * fade).astype(np.float32)


def melody(seed: int, duration_s: float = 6.0, note_s: float = 0.25) -> np.ndarray:
    """Plucks of random pitches (MIDI 55-79), one every ``note_s``, drawn from ``seed``."""
    pitches = np.random.default_rng(seed).integers(55, 80, int(duration_s / note_s))
    return np.concatenate([pluck(int(pitch), note_s) for pitch in pitches])


def harmonic_tone(f0_hz: np.ndarray) -> np.ndarray:
    """Five harmonics with 1/h amplitudes following a per-sample f0."""
    phase = np.cumsum(f0_hz) / SAMPLE_RATE
    tone = sum(np.sin(2 * np.pi * harmonic * phase) / harmonic for harmonic in range(1, 6))
    return (0.1 * tone).astype(np.float32)

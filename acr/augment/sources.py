"""What a degradation adds to a recording: background noise (generated pink noise or crowd
babble, or recordings from a folder) and rooms (synthetic impulse responses, or measured ones).
"""

import functools
from pathlib import Path

import numpy as np
import scipy.signal

from acr.audio import audio_files, audio_info, load_audio, power

# Early reflections arrive within this time of the direct sound (first-order wall bounces
# in a living room or small hall).
EARLY_REFLECTION_MAX_S = 0.03
EARLY_REFLECTION_COUNT = 4
# Reverberant-to-direct energy ratio is rt60_s / this: 0 dB at 0.5 s, growing with rt60 as
# Sabine's law predicts for a fixed room volume and source distance.
EQUAL_ENERGY_RT60_S = 0.5
# Babble: talkers' voice pitch, syllable rate and first two formants (adult speech).
BABBLE_PITCH_HZ_RANGE = (90.0, 250.0)
BABBLE_SYLLABLES_PER_S = 4.0
BABBLE_FORMANT_HZ_RANGES = ((300.0, 900.0), (900.0, 2500.0))


def pink_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise with a 1/f power spectrum, the usual stand-in for room and crowd noise.

    Hand-written spectral shaping (amplitude 1/sqrt(f)) of white noise: none of our
    dependencies generates coloured noise.
    """
    if num_samples < 0:
        raise ValueError(f"num_samples must be >= 0, got {num_samples}")
    if num_samples < 2:  # no frequency but DC to shape; a random sign keeps unit RMS
        return rng.choice([-1.0, 1.0], size=num_samples).astype(np.float32)
    # White Gaussian noise has independent complex Gaussian frequency bins, so draw those
    # directly instead of transforming white noise.
    num_bins = num_samples // 2 + 1
    spectrum = rng.standard_normal(num_bins) + 1j * rng.standard_normal(num_bins)
    spectrum[0] = 0.0
    spectrum[1:] /= np.sqrt(np.arange(1, num_bins))
    noise = np.fft.irfft(spectrum, n=num_samples)
    return (noise / np.sqrt(power(noise))).astype(np.float32)


def babble(
    num_samples: int, sample_rate: int, rng: np.random.Generator, talkers: int = 6
) -> np.ndarray:
    """Unit-RMS crowd babble: ``talkers`` voices at once, each a buzzing glottal-like source
    with a wandering pitch, switched on and off at the syllable rate and shaped by two random
    formants. Hand-written: none of our dependencies makes babble, and no recordings ship.
    """
    time_s = np.arange(num_samples) / sample_rate
    crowd = np.zeros(num_samples)
    for _ in range(talkers):
        pitch_hz = rng.uniform(*BABBLE_PITCH_HZ_RANGE) * (
            1 + 0.1 * np.sin(2 * np.pi * rng.uniform(0.5, 2.0) * time_s + rng.uniform(0, 6.3))
        )
        source = scipy.signal.sawtooth(2 * np.pi * np.cumsum(pitch_hz) / sample_rate)
        syllables = rng.random(int(num_samples / sample_rate * BABBLE_SYLLABLES_PER_S) + 2) < 0.6
        envelope = np.interp(
            time_s * BABBLE_SYLLABLES_PER_S, np.arange(len(syllables)), syllables.astype(float)
        )
        voice = np.zeros(num_samples)
        for low_hz, high_hz in BABBLE_FORMANT_HZ_RANGES:
            centre_hz = min(rng.uniform(low_hz, high_hz), 0.4 * sample_rate)
            band = scipy.signal.butter(
                2, (centre_hz / 1.25, centre_hz * 1.25), "bandpass", fs=sample_rate, output="sos"
            )
            voice += scipy.signal.sosfilt(band, source)
        crowd += envelope * voice * rng.uniform(0.5, 1.0)
    crowd_power = power(crowd)
    return (crowd / np.sqrt(crowd_power) if crowd_power > 0 else crowd).astype(np.float32)


def recordings(folder: str | Path) -> tuple[str, ...]:
    """The audio files under ``folder`` (noise or room impulse responses), listed once per
    process; an error names a folder that is missing or holds no audio."""
    return _listed(str(Path(folder).expanduser().absolute()))


@functools.lru_cache(maxsize=16)
def _listed(folder: str) -> tuple[str, ...]:
    if not Path(folder).is_dir():
        raise ValueError(f"{folder}: not a folder")
    files = tuple(str(path) for path in audio_files(Path(folder)))
    if not files:
        raise ValueError(f"{folder}: no audio files in it")
    return files


@functools.lru_cache(maxsize=4096)
def _duration_s(path: str) -> float:
    info = audio_info(path)
    return info.frames / info.sample_rate


def noise_recording(
    folder: str | Path, num_samples: int, sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """A random stretch of a random noise file from ``folder`` (looped when it is shorter)."""
    path = str(rng.choice(recordings(folder)))
    duration_s = num_samples / sample_rate
    offset_s = float(rng.uniform(0.0, max(0.0, _duration_s(path) - duration_s)))
    noise = load_audio(path, sample_rate, offset_s, duration_s)
    return np.resize(noise, num_samples) if noise.size else np.zeros(num_samples, np.float32)


@functools.lru_cache(maxsize=256)
def room_recording(path: str, sample_rate: int) -> np.ndarray:
    """A measured room impulse response: from its direct path (the peak) on, unit energy."""
    response = load_audio(path, sample_rate)
    response = response[int(np.argmax(np.abs(response))) :]
    energy = float(np.sum(np.square(response, dtype=np.float64)))
    if energy == 0.0:
        raise ValueError(f"{path}: the impulse response is silent")
    return (response / np.sqrt(energy)).astype(np.float32)


def synthetic_room_impulse_response(
    sample_rate: int, rt60_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Unit-energy room impulse response: direct path, early reflections, decaying noise tail.

    Hand-written because no library we depend on ships measured or simulated RIRs. The
    direct path sits at sample 0 so reverberant audio stays aligned with its source.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if rt60_s <= 0:
        raise ValueError(f"rt60_s must be > 0, got {rt60_s}")
    num_samples = int(sample_rate * max(rt60_s, EARLY_REFLECTION_MAX_S)) + 1
    time_s = np.arange(num_samples) / sample_rate
    # Amplitude falls by 60 dB (a factor of 1000) at rt60_s.
    tail = rng.standard_normal(num_samples) * np.exp(-np.log(1000.0) * time_s / rt60_s)
    tail[0] = 0.0
    tail *= np.sqrt((rt60_s / EQUAL_ENERGY_RT60_S) / np.sum(tail**2))

    impulse_response = tail
    impulse_response[0] = 1.0
    max_delay = int(EARLY_REFLECTION_MAX_S * sample_rate)
    delays = rng.integers(1, max_delay + 1, size=EARLY_REFLECTION_COUNT)
    gains = rng.uniform(0.2, 0.6, size=EARLY_REFLECTION_COUNT)
    signs = rng.choice([-1.0, 1.0], size=EARLY_REFLECTION_COUNT)
    np.add.at(impulse_response, delays, gains * signs)
    return (impulse_response / np.sqrt(np.sum(impulse_response**2))).astype(np.float32)

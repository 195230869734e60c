"""Degradations shared by contrastive training views and simulated evaluation queries.

One implementation serves both uses, so a model is trained on the same kinds of damage it is
evaluated on. Every function takes and returns mono float32 numpy audio; every random choice
comes from an explicit ``np.random.Generator``, so results are reproducible given the seed.
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import pedalboard
import scipy.signal
import torch
import torchaudio.functional

from acr.audio import audio_info, fit_length, load_audio
from acr.data.manifests import audio_files

# Rational approximations of a speed factor use denominators up to this. The resampling
# kernel has one phase per denominator step: 200 costs under 1 ms per second of 16 kHz audio
# (1000 costs 8 ms) and keeps the factor within 1/400 (0.04 semitone) of the request.
MAX_SPEED_DENOMINATOR = 200
# Phase-vocoder STFT for pitch shifting: a 64 ms window at 16 kHz, 75 % overlap.
PITCH_SHIFT_FFT_SIZE = 1024
PITCH_SHIFT_HOP = 256
# Early reflections arrive within this time of the direct sound (first-order wall bounces
# in a living room or small hall).
EARLY_REFLECTION_MAX_S = 0.03
EARLY_REFLECTION_COUNT = 4
# Reverberant-to-direct energy ratio is rt60_s / this: 0 dB at 0.5 s, growing with rt60 as
# Sabine's law predicts for a fixed room volume and source distance.
EQUAL_ENERGY_RT60_S = 0.5

QUERY_SNR_DB_RANGE = (0.0, 10.0)
QUERY_RT60_S_RANGE = (0.3, 1.0)
QUERY_SPEED_CHANGE_RANGE = (0.03, 0.06)
QUERY_PITCH_SEMITONES_RANGE = (1.0, 2.0)
PHONE_LOW_HZ_RANGE = (250.0, 400.0)
PHONE_HIGH_HZ_RANGE = (3100.0, 3600.0)
LIVE_RT60_S_RANGE = (0.4, 1.2)
LIVE_SNR_DB_RANGE = (5.0, 15.0)
LIVE_LOW_HZ_RANGE = (100.0, 250.0)
LIVE_HIGH_HZ_RANGE = (4000.0, 7000.0)
LIVE_DRIVE_DB_RANGE = (6.0, 12.0)
# Random EQ (a cheap loudspeaker or a phone's microphone): the low shelf's corner, the peak's
# band and Q, and the high shelf's corner as a share of the sample rate.
EQ_LOW_SHELF_HZ_RANGE = (80.0, 300.0)
EQ_PEAK_LOWEST_HZ = 200.0
EQ_PEAK_HIGHEST_SHARE = 0.4
EQ_PEAK_Q_RANGE = (0.5, 2.0)
EQ_HIGH_SHELF_SHARE_RANGE = (0.15, 0.35)
# Babble: talkers' voice pitch, syllable rate and first two formants (adult speech).
BABBLE_PITCH_HZ_RANGE = (90.0, 250.0)
BABBLE_SYLLABLES_PER_S = 4.0
BABBLE_FORMANT_HZ_RANGES = ((300.0, 900.0), (900.0, 2500.0))


def _as_mono_float32(audio: np.ndarray) -> np.ndarray:
    """Check that audio is one non-empty channel and return it as float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(
            f"expected non-empty mono audio with shape (num_samples,), got {audio.shape}"
        )
    return audio


def _power(audio: np.ndarray) -> float:
    """Mean square in float64, so the SNR arithmetic stays exact for long clips."""
    return float(np.mean(np.square(audio, dtype=np.float64)))


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
    return (noise / np.sqrt(_power(noise))).astype(np.float32)


def _fit_noise(noise: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Tile or crop a noise recording to num_samples, starting at a random offset."""
    noise = _as_mono_float32(noise)
    offset = int(rng.integers(noise.size))
    return np.take(noise, np.arange(offset, offset + num_samples), mode="wrap")


def add_noise(
    audio: np.ndarray,
    snr_db: float,
    rng: np.random.Generator,
    noise: np.ndarray | None = None,
) -> np.ndarray:
    """Add noise scaled so that 10*log10(signal power / added noise power) equals snr_db.

    Without a noise recording, pink noise is generated. Silent audio gets no noise, since
    any noise power would make the SNR undefined.
    """
    audio = _as_mono_float32(audio)
    signal_power = _power(audio)
    if signal_power == 0.0:
        return audio.copy()
    if noise is None:
        noise = pink_noise(audio.size, rng)
    else:
        noise = _fit_noise(noise, audio.size, rng)
    noise_power = _power(noise)
    if noise_power == 0.0:
        raise ValueError("noise is silent; it cannot be scaled to an SNR")
    scale = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (audio + scale * noise).astype(np.float32)


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
    power = _power(crowd)
    return (crowd / np.sqrt(power) if power > 0 else crowd).astype(np.float32)


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


def add_reverb(
    audio: np.ndarray,
    sample_rate: int,
    rt60_s: float,
    rng: np.random.Generator,
    wet: float = 1.0,
) -> np.ndarray:
    """Convolve with a synthetic room; keep the input length (the tail is dropped) and RMS."""
    audio = _as_mono_float32(audio)
    if not 0.0 <= wet <= 1.0:
        raise ValueError(f"wet must be in [0, 1], got {wet}")
    impulse_response = synthetic_room_impulse_response(sample_rate, rt60_s, rng)
    return convolve_room(audio, impulse_response, wet)


def convolve_room(audio: np.ndarray, impulse_response: np.ndarray, wet: float = 1.0) -> np.ndarray:
    """Play audio in a room (its impulse response, direct path first); input length and RMS."""
    audio = _as_mono_float32(audio)
    reverberant = scipy.signal.fftconvolve(audio, impulse_response, mode="full")[: audio.size]
    mixed = (1.0 - wet) * audio + wet * reverberant
    mixed_power = _power(mixed)
    if mixed_power > 0.0:
        mixed *= np.sqrt(_power(audio) / mixed_power)
    return mixed.astype(np.float32)


def change_speed(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Play faster (factor > 1) or slower, changing tempo and pitch together like a turntable.

    Resampling by a rational approximation of the factor (within 1/400 of it) and reading
    the result at the original rate; the output has about len(audio) / factor samples.
    """
    audio = _as_mono_float32(audio)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if factor <= 0:
        raise ValueError(f"speed factor must be > 0, got {factor}")
    ratio = Fraction(factor).limit_denominator(MAX_SPEED_DENOMINATOR)
    if ratio == 1:
        return audio.copy()
    resampled = torchaudio.functional.resample(
        torch.from_numpy(audio), orig_freq=ratio.numerator, new_freq=ratio.denominator
    )
    return resampled.numpy().astype(np.float32)


def _time_stretch(audio: np.ndarray, rate: float) -> np.ndarray:
    """Change tempo by rate (> 1 is faster) with pitch kept, via torchaudio's phase vocoder."""
    window = torch.hann_window(PITCH_SHIFT_FFT_SIZE)
    spectrogram = torch.stft(
        torch.from_numpy(audio),
        PITCH_SHIFT_FFT_SIZE,
        PITCH_SHIFT_HOP,
        window=window,
        pad_mode="constant",
        return_complex=True,
    )
    # Expected phase advance per hop of each bin, as torchaudio's phase_vocoder documents.
    phase_advance = torch.linspace(0, np.pi * PITCH_SHIFT_HOP, spectrogram.shape[0])[:, None]
    stretched = torchaudio.functional.phase_vocoder(spectrogram, rate, phase_advance)
    return torch.istft(
        stretched,
        PITCH_SHIFT_FFT_SIZE,
        PITCH_SHIFT_HOP,
        window=window,
        length=round(audio.size / rate),
    ).numpy()


def _resample_stretched(
    audio: np.ndarray, sample_rate: int, speed_factor: float, semitones: float
) -> np.ndarray:
    """Change speed by speed_factor and pitch alone by semitones with a single resampling.

    Stretching the tempo by the pitch ratio and then changing speed by speed_factor times it
    is the phase vocoder plus resampling of librosa.effects.pitch_shift, built from torchaudio.
    """
    pitch_ratio = 2.0 ** (semitones / 12.0)
    stretched = _time_stretch(audio, 1.0 / pitch_ratio) if semitones else audio
    return change_speed(stretched, sample_rate, speed_factor * pitch_ratio)


def shift_pitch(audio: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Shift pitch by semitones while keeping tempo and length.

    Phase vocoder plus resampling in torchaudio. Measured at 16 kHz on one thread: 4-5 ms
    per 1-s clip and 15-22 ms per 5-s clip, against 7-10 / 33-37 ms for
    librosa.effects.pitch_shift (the same algorithm) and 22-26 / 64-74 ms for
    pedalboard.PitchShift (Rubber Band, which also came out 0.7 % flat on a +2-semitone
    440 Hz sine); the training chain needs the speed. torchaudio's own pitch_shift
    resamples between integer rates whose gcd is near 1, which takes seconds.
    """
    audio = _as_mono_float32(audio)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be > 0, got {sample_rate}")
    if semitones == 0:
        return audio.copy()
    return fit_length(_resample_stretched(audio, sample_rate, 1.0, semitones), audio.size)


def band_limit(audio: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """Keep only low_hz..high_hz, like a phone line or a small loudspeaker.

    A causal 4th-order Linkwitz-Riley band-pass (each edge two cascaded 2nd-order
    Butterworths: -6 dB at the edge, 24 dB/octave beyond), as a real channel would be.
    Filtering 1.2 s takes 0.8 ms against 1.3-1.7 ms for scipy's 4th-order Butterworth
    band-pass, most of which goes to its zpk2sos conversion.
    """
    audio = _as_mono_float32(audio)
    if not 0.0 < low_hz < high_hz < sample_rate / 2:
        raise ValueError(
            f"need 0 < low_hz < high_hz < sample_rate / 2, got low_hz={low_hz}, "
            f"high_hz={high_hz}, sample_rate={sample_rate}"
        )
    # A 2nd-order (b, a) pair laid end to end is one second-order section.
    highpass = np.concatenate(scipy.signal.butter(2, low_hz, btype="highpass", fs=sample_rate))
    lowpass = np.concatenate(scipy.signal.butter(2, high_hz, btype="lowpass", fs=sample_rate))
    sections = np.stack([highpass, highpass, lowpass, lowpass])
    return scipy.signal.sosfilt(sections, audio).astype(np.float32)


def apply_gain_db(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale amplitude by gain_db decibels."""
    return (_as_mono_float32(audio) * 10.0 ** (gain_db / 20.0)).astype(np.float32)


def clip(audio: np.ndarray, threshold: float) -> np.ndarray:
    """Hard-clip to +-threshold, the distortion of an overdriven input."""
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    return np.clip(_as_mono_float32(audio), -threshold, threshold)


def gsm_codec(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The GSM full-rate phone codec (13 kbit/s, 8 kHz), via pedalboard; time-aligned output."""
    coded = pedalboard.GSMFullRateCompressor()(_as_mono_float32(audio), sample_rate)
    return fit_length(coded.astype(np.float32), len(audio))


def mp3_codec(audio: np.ndarray, sample_rate: int, vbr_quality: float) -> np.ndarray:
    """LAME mp3 round trip via pedalboard; VBR quality 0 (best) to 9.5 (lowest bitrate)."""
    coded = pedalboard.MP3Compressor(vbr_quality=vbr_quality)(_as_mono_float32(audio), sample_rate)
    return fit_length(coded.astype(np.float32), len(audio))


def equalize(
    audio: np.ndarray,
    sample_rate: int,
    rng: np.random.Generator,
    gain_db_range: tuple[float, float],
) -> np.ndarray:
    """A random tone: low and high shelves and one peak, each with a gain from the range, as a
    cheap loudspeaker or a phone's microphone colours sound (pedalboard biquads)."""
    peak_hz = float(
        np.exp(rng.uniform(np.log(EQ_PEAK_LOWEST_HZ), np.log(EQ_PEAK_HIGHEST_SHARE * sample_rate)))
    )
    board = pedalboard.Pedalboard(
        [
            pedalboard.LowShelfFilter(
                float(rng.uniform(*EQ_LOW_SHELF_HZ_RANGE)), float(rng.uniform(*gain_db_range))
            ),
            pedalboard.PeakFilter(
                peak_hz, float(rng.uniform(*gain_db_range)), float(rng.uniform(*EQ_PEAK_Q_RANGE))
            ),
            pedalboard.HighShelfFilter(
                float(rng.uniform(*EQ_HIGH_SHELF_SHARE_RANGE) * sample_rate),
                float(rng.uniform(*gain_db_range)),
            ),
        ]
    )
    return board(_as_mono_float32(audio), sample_rate).astype(np.float32)


def _random_sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def _degrade_clean(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    return audio.copy(), {}


def _degrade_noise(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    snr_db = float(rng.uniform(*QUERY_SNR_DB_RANGE))
    return add_noise(audio, snr_db, rng), {"snr_db": snr_db}


def _degrade_reverb(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    rt60_s = float(rng.uniform(*QUERY_RT60_S_RANGE))
    return add_reverb(audio, sample_rate, rt60_s, rng), {"rt60_s": rt60_s}


def _degrade_speed(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    speed_factor = 1.0 + _random_sign(rng) * float(rng.uniform(*QUERY_SPEED_CHANGE_RANGE))
    return change_speed(audio, sample_rate, speed_factor), {"speed_factor": speed_factor}


def _degrade_pitch(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    semitones = _random_sign(rng) * float(rng.uniform(*QUERY_PITCH_SEMITONES_RANGE))
    return shift_pitch(audio, sample_rate, semitones), {"semitones": semitones}


def _degrade_phone_codec(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """A phone call: telephone band (~300-3400 Hz) then the GSM codec."""
    low_hz = float(rng.uniform(*PHONE_LOW_HZ_RANGE))
    high_hz = float(rng.uniform(*PHONE_HIGH_HZ_RANGE))
    coded = gsm_codec(band_limit(audio, sample_rate, low_hz, high_hz), sample_rate)
    return coded, {"low_hz": low_hz, "high_hz": high_hz}


def _degrade_live_mix(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """A phone filming a loud venue: room, crowd noise, a small microphone, an overdriven input."""
    rt60_s = float(rng.uniform(*LIVE_RT60_S_RANGE))
    snr_db = float(rng.uniform(*LIVE_SNR_DB_RANGE))
    low_hz = float(rng.uniform(*LIVE_LOW_HZ_RANGE))
    high_hz = min(float(rng.uniform(*LIVE_HIGH_HZ_RANGE)), 0.45 * sample_rate)  # below Nyquist
    drive_db = float(rng.uniform(*LIVE_DRIVE_DB_RANGE))
    mixed = add_noise(add_reverb(audio, sample_rate, rt60_s, rng), snr_db, rng)
    mixed = band_limit(mixed, sample_rate, low_hz, high_hz)
    peak = float(np.abs(mixed).max()) or 1.0
    clipped = clip(apply_gain_db(mixed / peak, drive_db), 1.0) * peak
    params = {
        "rt60_s": rt60_s,
        "snr_db": snr_db,
        "low_hz": low_hz,
        "high_hz": high_hz,
        "drive_db": drive_db,
    }
    return clipped.astype(np.float32), params


_QUERY_DEGRADERS: dict[
    str, Callable[[np.ndarray, int, np.random.Generator], tuple[np.ndarray, dict[str, float]]]
] = {
    "clean": _degrade_clean,
    "noise": _degrade_noise,
    "reverb": _degrade_reverb,
    "phone_codec": _degrade_phone_codec,
    "speed": _degrade_speed,
    "pitch": _degrade_pitch,
    "live_mix": _degrade_live_mix,
}
QUERY_DEGRADATIONS: tuple[str, ...] = tuple(_QUERY_DEGRADERS)


def degrade(
    audio: np.ndarray, sample_rate: int, degradation: str, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """Apply one named query degradation with randomly drawn parameters.

    Returns the audio and the drawn parameters. Ranges: noise SNR uniform in [0, 10] dB;
    reverb RT60 uniform in [0.3, 1.0] s; speed factor 1 +- uniform [0.03, 0.06];
    pitch +- uniform [1, 2] semitones; phone_codec: a 250-400 Hz to 3.1-3.6 kHz band then GSM;
    live_mix: RT60 0.4-1.2 s, SNR 5-15 dB, a 100-250 Hz to 4-7 kHz band and 6-12 dB of drive
    into clipping; clean is an unchanged copy. Speed changes the length and is not cropped
    here: callers read a slightly longer source segment and crop.
    """
    if degradation not in _QUERY_DEGRADERS:
        raise ValueError(
            f"unknown degradation {degradation!r}; known: {', '.join(QUERY_DEGRADATIONS)}"
        )
    return _QUERY_DEGRADERS[degradation](_as_mono_float32(audio), sample_rate, rng)


@dataclass
class TrainingAugmentation:
    """The random degradation chain that makes one contrastive training view.

    Order follows the signal path of a recorded query: playback speed and pitch at the source,
    the loudspeaker's tone, the room, background noise, the microphone's band limit, a codec,
    then gain and an overdriven input. Every probability and range is a field so a config file
    can set it. Noise comes from ``noise_dir`` (any audio files) or is generated, pink or
    babble; rooms from ``rir_dir`` (impulse responses) or are synthetic.
    """

    sample_rate: int = 16000
    noise_probability: float = 0.8
    snr_db_range: tuple[float, float] = (0.0, 20.0)
    noise_dir: str | None = None
    babble_share: float = 0.5
    reverb_probability: float = 0.5
    rt60_s_range: tuple[float, float] = (0.2, 1.0)
    rir_dir: str | None = None
    speed_probability: float = 0.3
    max_speed_change: float = 0.06
    pitch_probability: float = 0.3
    max_pitch_semitones: float = 2.0
    eq_probability: float = 0.3
    eq_gain_db_range: tuple[float, float] = (-10.0, 10.0)
    band_limit_probability: float = 0.3
    band_low_hz_range: tuple[float, float] = (50.0, 400.0)
    band_high_hz_range: tuple[float, float] = (3000.0, 7000.0)
    codec_probability: float = 0.2
    mp3_vbr_quality_range: tuple[float, float] = (4.0, 9.5)
    gain_db_range: tuple[float, float] = (-6.0, 6.0)
    clip_probability: float = 0.1
    drive_db_range: tuple[float, float] = (3.0, 12.0)

    def __post_init__(self) -> None:
        """Reject a bad config when it is loaded rather than inside a DataLoader worker."""
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be > 0, got {self.sample_rate}")
        for name in ("noise", "reverb", "speed", "pitch", "eq", "band_limit", "codec", "clip"):
            probability = getattr(self, f"{name}_probability")
            if not 0.0 <= probability <= 1.0:
                raise ValueError(f"{name}_probability must be in [0, 1], got {probability}")
        if not 0.0 <= self.babble_share <= 1.0:
            raise ValueError(f"babble_share must be in [0, 1], got {self.babble_share}")
        for name in (
            "snr_db",
            "rt60_s",
            "eq_gain_db",
            "band_low_hz",
            "band_high_hz",
            "mp3_vbr_quality",
            "gain_db",
            "drive_db",
        ):
            low, high = getattr(self, f"{name}_range")
            if low > high:
                raise ValueError(f"{name}_range must be (low, high), got ({low}, {high})")
        if not 0.0 <= self.max_speed_change < 1.0:
            raise ValueError(f"max_speed_change must be in [0, 1), got {self.max_speed_change}")
        if self.rt60_s_range[0] <= 0:
            raise ValueError(f"rt60_s_range must be positive, got {self.rt60_s_range}")
        for name in ("noise_dir", "rir_dir"):
            if getattr(self, name) is not None:
                try:
                    recordings(getattr(self, name))
                except ValueError as error:
                    raise ValueError(f"{name}: {error}") from error

    def __call__(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Return one augmented view with exactly len(audio) samples and peak at most 1."""
        view = self.source_view(audio, rng)
        if rng.random() < self.eq_probability:
            view = equalize(view, self.sample_rate, rng, self.eq_gain_db_range)
        if rng.random() < self.reverb_probability:
            view = self._room(view, rng)
        if rng.random() < self.noise_probability:
            view = add_noise(
                view, float(rng.uniform(*self.snr_db_range)), rng, self._noise(view, rng)
            )
        if rng.random() < self.band_limit_probability:
            view = self._band_limit(view, rng)
        if rng.random() < self.codec_probability:
            view = self.codec(view, rng)
        view = apply_gain_db(view, float(rng.uniform(*self.gain_db_range)))
        if rng.random() < self.clip_probability:
            view = self._overdrive(view, rng)
        return self._peak_safe(view)

    def _noise(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Background: a recording from noise_dir, or generated babble or pink noise."""
        if self.noise_dir is not None:
            return noise_recording(self.noise_dir, audio.size, self.sample_rate, rng)
        if rng.random() < self.babble_share:
            return babble(audio.size, self.sample_rate, rng)
        return pink_noise(audio.size, rng)

    def _room(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.rir_dir is None:
            return add_reverb(audio, self.sample_rate, float(rng.uniform(*self.rt60_s_range)), rng)
        path = str(rng.choice(recordings(self.rir_dir)))
        return convolve_room(audio, room_recording(path, self.sample_rate))

    def codec(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A low-bitrate mp3, or half the time the GSM phone codec."""
        if rng.random() < 0.5:
            return gsm_codec(audio, self.sample_rate)
        return mp3_codec(audio, self.sample_rate, float(rng.uniform(*self.mp3_vbr_quality_range)))

    def _overdrive(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Drive the peak ``drive_db`` past full scale into a hard clip."""
        peak = float(np.abs(audio).max()) or 1.0
        driven = apply_gain_db(audio / peak, float(rng.uniform(*self.drive_db_range)))
        return (clip(driven, 1.0) * peak).astype(np.float32)

    def source_view(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Random speed and pitch changes in one resampling, back at the input length: the
        part of the chain that acts at the source, and the part that acr.augment.batch leaves
        to the workers (every view has its own resampling ratio).

        A faster view is zero-padded at the end, a slower one cropped.
        """
        audio = _as_mono_float32(audio)
        speed_factor, semitones = 1.0, 0.0
        if rng.random() < self.speed_probability:
            speed_factor += float(rng.uniform(-self.max_speed_change, self.max_speed_change))
        if rng.random() < self.pitch_probability:
            semitones = float(rng.uniform(-self.max_pitch_semitones, self.max_pitch_semitones))
        if speed_factor == 1.0 and semitones == 0.0:
            return audio
        resampled = _resample_stretched(audio, self.sample_rate, speed_factor, semitones)
        return fit_length(resampled, audio.size)

    def _band_limit(self, audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Band-limit with random edges; the upper edge stays below Nyquist at any rate."""
        low_hz = float(rng.uniform(*self.band_low_hz_range))
        high_hz = min(float(rng.uniform(*self.band_high_hz_range)), 0.45 * self.sample_rate)
        return band_limit(audio, self.sample_rate, low_hz, high_hz)

    @staticmethod
    def _peak_safe(audio: np.ndarray) -> np.ndarray:
        """Scale down, rather than clip, when the chain pushed the peak beyond 1."""
        peak = float(np.max(np.abs(audio)))
        return audio / peak if peak > 1.0 else audio

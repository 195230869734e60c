"""The effects a recording goes through between the loudspeaker and the query: noise, a room,
speed and pitch changes, EQ, a band limit, codecs, gain and clipping.

One implementation serves contrastive training views (acr.augment.training) and simulated
evaluation queries (acr.augment.degradations), so a model is trained on the same kinds of damage
it is evaluated on. Every function takes and returns mono float32 numpy audio; every random
choice comes from an explicit ``np.random.Generator``, so results are reproducible given the
seed.
"""

from fractions import Fraction

import numpy as np
import pedalboard
import scipy.signal
import torch
import torchaudio.functional

from acr.audio import fit_length, power
from acr.augment.sources import pink_noise, synthetic_room_impulse_response

# Rational approximations of a speed factor use denominators up to this. The resampling
# kernel has one phase per denominator step: 200 costs under 1 ms per second of 16 kHz audio
# (1000 costs 8 ms) and keeps the factor within 1/400 (0.04 semitone) of the request.
MAX_SPEED_DENOMINATOR = 200
# Phase-vocoder STFT for pitch shifting: a 64 ms window at 16 kHz, 75 % overlap.
PITCH_SHIFT_FFT_SIZE = 1024
PITCH_SHIFT_HOP = 256
# Random EQ (a cheap loudspeaker or a phone's microphone): the low shelf's corner, the peak's
# band and Q, and the high shelf's corner as a share of the sample rate.
EQ_LOW_SHELF_HZ_RANGE = (80.0, 300.0)
EQ_PEAK_LOWEST_HZ = 200.0
EQ_PEAK_HIGHEST_SHARE = 0.4
EQ_PEAK_Q_RANGE = (0.5, 2.0)
EQ_HIGH_SHELF_SHARE_RANGE = (0.15, 0.35)


def mono_float32(audio: np.ndarray) -> np.ndarray:
    """Check that audio is one non-empty channel and return it as float32."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1 or audio.size == 0:
        raise ValueError(
            f"expected non-empty mono audio with shape (num_samples,), got {audio.shape}"
        )
    return audio


def _fit_noise(noise: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Tile or crop a noise recording to num_samples, starting at a random offset."""
    noise = mono_float32(noise)
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
    audio = mono_float32(audio)
    signal_power = power(audio)
    if signal_power == 0.0:
        return audio.copy()
    if noise is None:
        noise = pink_noise(audio.size, rng)
    else:
        noise = _fit_noise(noise, audio.size, rng)
    noise_power = power(noise)
    if noise_power == 0.0:
        raise ValueError("noise is silent; it cannot be scaled to an SNR")
    scale = np.sqrt(signal_power / (noise_power * 10.0 ** (snr_db / 10.0)))
    return (audio + scale * noise).astype(np.float32)


def add_reverb(
    audio: np.ndarray,
    sample_rate: int,
    rt60_s: float,
    rng: np.random.Generator,
    wet: float = 1.0,
) -> np.ndarray:
    """Convolve with a synthetic room; keep the input length (the tail is dropped) and RMS."""
    audio = mono_float32(audio)
    if not 0.0 <= wet <= 1.0:
        raise ValueError(f"wet must be in [0, 1], got {wet}")
    impulse_response = synthetic_room_impulse_response(sample_rate, rt60_s, rng)
    return convolve_room(audio, impulse_response, wet)


def convolve_room(audio: np.ndarray, impulse_response: np.ndarray, wet: float = 1.0) -> np.ndarray:
    """Play audio in a room (its impulse response, direct path first); input length and RMS."""
    audio = mono_float32(audio)
    reverberant = scipy.signal.fftconvolve(audio, impulse_response, mode="full")[: audio.size]
    mixed = (1.0 - wet) * audio + wet * reverberant
    mixed_power = power(mixed)
    if mixed_power > 0.0:
        mixed *= np.sqrt(power(audio) / mixed_power)
    return mixed.astype(np.float32)


def change_speed(audio: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Play faster (factor > 1) or slower, changing tempo and pitch together like a turntable.

    Resampling by a rational approximation of the factor (within 1/400 of it) and reading
    the result at the original rate; the output has about len(audio) / factor samples.
    """
    audio = mono_float32(audio)
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
    audio = mono_float32(audio)
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
    audio = mono_float32(audio)
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
    return (mono_float32(audio) * 10.0 ** (gain_db / 20.0)).astype(np.float32)


def clip(audio: np.ndarray, threshold: float) -> np.ndarray:
    """Hard-clip to +-threshold, the distortion of an overdriven input."""
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    return np.clip(mono_float32(audio), -threshold, threshold)


def gsm_codec(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """The GSM full-rate phone codec (13 kbit/s, 8 kHz), via pedalboard; time-aligned output."""
    coded = pedalboard.GSMFullRateCompressor()(mono_float32(audio), sample_rate)
    return fit_length(coded.astype(np.float32), len(audio))


def mp3_codec(audio: np.ndarray, sample_rate: int, vbr_quality: float) -> np.ndarray:
    """LAME mp3 round trip via pedalboard; VBR quality 0 (best) to 9.5 (lowest bitrate)."""
    coded = pedalboard.MP3Compressor(vbr_quality=vbr_quality)(mono_float32(audio), sample_rate)
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
    return board(mono_float32(audio), sample_rate).astype(np.float32)

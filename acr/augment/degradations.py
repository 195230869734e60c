"""The one registry of query degradations: every simulated query set, every data source's
validation queries and every benchmark draws its damage by these names.

Each degradation draws its parameters from the generator it is given and returns them with the
audio, so a query table can say exactly what was done to each clip.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from acr.augment import field
from acr.augment.effects import (
    add_noise,
    add_reverb,
    apply_gain_db,
    band_limit,
    change_speed,
    clip,
    gsm_codec,
    mono_float32,
    shift_pitch,
)
from acr.pitch import predominant_pitch
from acr.synth.humming import hum_contour

MIN_VOICED_SHARE = 0.5  # a hum needs a melody in at least half of the excerpt

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


def _degrade_humming(
    audio: np.ndarray, sample_rate: int, rng: np.random.Generator
) -> tuple[np.ndarray, dict[str, float]]:
    """A person humming the excerpt's predominant melody (acr.pitch), with a voice of their own
    (acr.synth.humming.hum_contour)."""
    pitch = predominant_pitch(audio, sample_rate)
    if pitch.voiced.mean() < MIN_VOICED_SHARE:
        raise UnusableExcerpt(f"melody in {pitch.voiced.mean():.0%} of it (a hum needs half)")
    return hum_contour(pitch, sample_rate, seed=int(rng.integers(2**31))), {}


class UnusableExcerpt(ValueError):
    """This excerpt cannot carry the degradation (a hum of an excerpt without a melody): the
    caller draws another."""


Degrader = Callable[[np.ndarray, int, np.random.Generator], tuple[np.ndarray, dict[str, float]]]


@dataclass(frozen=True)
class Degradation:
    """A named kind of damage: ``apply`` draws its parameters and degrades an excerpt.

    ``margin``: the excerpt given is 10 % longer than the query (room for a speed-up) and the
    result is cropped after; without it the excerpt is exactly the query's length.
    """

    name: str
    apply: Degrader
    margin: bool = True


HUMMING = "humming_like"
DEGRADATIONS: dict[str, Degradation] = {
    degradation.name: degradation
    for degradation in (
        Degradation("clean", _degrade_clean),
        Degradation("noise", _degrade_noise),
        Degradation("reverb", _degrade_reverb),
        Degradation("phone_codec", _degrade_phone_codec),
        Degradation("speed", _degrade_speed),
        Degradation("pitch", _degrade_pitch),
        Degradation("live_mix", _degrade_live_mix),
        Degradation(HUMMING, _degrade_humming, margin=False),
    )
}
DEGRADATION_NAMES: tuple[str, ...] = tuple(DEGRADATIONS)
# The same kinds of damage from generators the training chain does not share (acr.augment.field):
# the benchmark split whose figures are reported beside the own split's.
FIELD_DEGRADATIONS: dict[str, Degradation] = {
    degradation.name: degradation
    for degradation in (
        Degradation("clean", _degrade_clean),  # an unchanged copy: nothing to generate
        Degradation("noise", field.field_noise),
        Degradation("reverb", field.field_reverb),
        Degradation("phone_codec", field.field_phone),
        Degradation("speed", field.field_speed),
        Degradation("pitch", field.field_pitch),
        Degradation("live_mix", field.field_live_mix),
        Degradation(HUMMING, field.field_humming, margin=False),
    )
}
SUITES: dict[str, dict[str, Degradation]] = {"acr": DEGRADATIONS, "field": FIELD_DEGRADATIONS}
Suite = Literal["acr", "field"]
MARGIN = 1.1  # excerpts with a margin are this many times the query's length


def check_degradations(names: Sequence[str], field: str = "degradations") -> tuple[str, ...]:
    """``names`` as a tuple, or a ValueError naming ``field`` and the unknown names."""
    unknown = sorted(set(names) - set(DEGRADATIONS))
    if unknown:
        raise ValueError(f"{field}: unknown {unknown}; known: {', '.join(DEGRADATION_NAMES)}")
    return tuple(names)


def check_suite(suite: str) -> dict[str, Degradation]:
    """The degradations of ``suite``, or a ValueError listing the suites."""
    if suite not in SUITES:
        raise ValueError(f"suite: unknown {suite!r}; known: {', '.join(SUITES)}")
    return SUITES[suite]


def degrade(
    audio: np.ndarray,
    sample_rate: int,
    degradation: str,
    rng: np.random.Generator,
    suite: Suite = "acr",
    speech_dir: str | None = None,
) -> tuple[np.ndarray, dict[str, float]]:
    """Apply one named query degradation with randomly drawn parameters.

    Returns the audio and the drawn parameters. Ranges: noise SNR uniform in [0, 10] dB;
    reverb RT60 uniform in [0.3, 1.0] s; speed factor 1 +- uniform [0.03, 0.06];
    pitch +- uniform [1, 2] semitones; phone_codec: a 250-400 Hz to 3.1-3.6 kHz band then GSM;
    live_mix: RT60 0.4-1.2 s, SNR 5-15 dB, a 100-250 Hz to 4-7 kHz band and 6-12 dB of drive
    into clipping; humming_like: the excerpt's melody hummed (UnusableExcerpt where it has
    none); clean is an unchanged copy. Speed changes the length and is not cropped here:
    callers read a slightly longer source segment (``margin``) and crop. ``suite`` "field"
    applies the same names from independent generators (acr.augment.field), its crowds
    speaking the recordings under ``speech_dir`` when one is given (else espeak-ng).
    """
    check_degradations([degradation], "degradation")
    apply = check_suite(suite)[degradation].apply
    with field.speech_from(speech_dir):
        return apply(mono_float32(audio), sample_rate, rng)

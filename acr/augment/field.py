"""The field suite: query degradations made independently of the training chain.

acr's own suite (acr.augment.degradations) and the training views (acr.augment.training) share
one implementation of every effect (acr.augment.effects) and one noise bank
(acr.augment.sources): a model is trained on exactly the damage it is then scored on, and its
own-split figures flatter it. The field suite names the same kinds of damage, so its results
sit beside the own split bucket by bucket, but shares no generator with that chain:

- noise: crowd babble of espeak-ng talkers (real synthesised speech, not the buzz-and-formant
  babble of acr.augment.sources) plus pink noise from the Voss-McCartney algorithm (not
  spectral shaping), at 0-10 dB SNR, as in a bar or on a street;
- reverb: Freeverb (pedalboard.Reverb: comb and all-pass filters, not an impulse response);
- phone_codec: a VoIP call, Opus at 6-12 kbit/s through FFmpeg (not GSM), behind
  pedalboard's filters;
- speed: soxr resampling (librosa), not acr's polyphase kernel;
- pitch: Rubber Band (pedalboard.PitchShift), not acr's phase vocoder;
- live_mix: Freeverb, crowd at 5-15 dB, a band limit and a soft-clipping overdrive
  (pedalboard.Distortion), then an mp3 of a phone's recorder;
- humming_like: a singer of the pitch librosa's pYIN hears in the mix (acr.synth.sung), not a
  hum of acr.pitch's melody.

Parameter ranges follow the issue that asked for it and acr's own suite where they name the same
thing, so the two splits differ in generators, not in severity.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import io
import shutil
import subprocess
from collections.abc import Callable, Iterator

import av
import librosa
import numpy as np
import pedalboard

from acr.audio import fit_length, load_audio, power
from acr.augment.sources import recordings

CROWD_SNR_DB_RANGE = (0.0, 10.0)
CROWD_TALKERS_RANGE = (4, 9)  # talkers at once: a busy room
CROWD_PINK_SHARE_RANGE = (0.2, 0.6)  # of the noise power: traffic, air conditioning
# Freeverb rooms as reverberant as acr's own (RT60 0.3-1 s, direct-to-reverberant +2 to -3 dB):
# measured on a click, these give a decay of 0.5-1.5 s and +3 to -2 dB.
FREEVERB_ROOM_RANGE = (0.3, 0.7)
FREEVERB_WET_RANGE = (0.55, 0.75)
SPEED_CHANGE_RANGE = (0.03, 0.06)
PITCH_SEMITONES_RANGE = (1.0, 2.0)
OPUS_BITRATE_RANGE = (6000, 12000)
PHONE_LOW_HZ_RANGE = (200.0, 400.0)
PHONE_HIGH_HZ_RANGE = (3000.0, 3800.0)
LIVE_ROOM_RANGE = (0.4, 0.8)  # at wet 0.65: a decay of 0.7-2 s, as acr's 0.4-1.2 s
LIVE_SNR_DB_RANGE = (5.0, 15.0)
LIVE_LOW_HZ_RANGE = (100.0, 250.0)
LIVE_HIGH_HZ_RANGE = (4000.0, 7000.0)
LIVE_DRIVE_DB_RANGE = (6.0, 12.0)
LIVE_MP3_VBR_RANGE = (5.0, 9.0)

ESPEAK = "espeak-ng"
# The crowd's talkers: espeak-ng voices and the variants that give each its own timbre and pitch.
CROWD_VOICES = ("en-us", "en", "en-gb-x-rp", "de", "fr", "es", "it", "nl")
CROWD_VARIANTS = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")
CROWD_WORDS = tuple(
    "we should go there after the game did you see what she said I think so no way really "
    "tomorrow night another round for the table where is the bathroom it was amazing honestly "
    "last week my brother called about the car can you believe it yes of course maybe later "
    "order some food this place is packed how have you been".split()
)
CROWD_BANK_TALKERS = 16  # distinct talkers in a process's bank
CROWD_BANK_S = 40.0  # seconds of speech per talker in the bank
# Recorded speech for the crowds instead of espeak-ng (make_queries' speech_dir), set per call.
_SPEECH_DIR: contextvars.ContextVar[str | None] = contextvars.ContextVar("speech_dir", default=None)


@contextlib.contextmanager
def speech_from(folder: str | None) -> Iterator[None]:
    """Crowds made inside this block speak the recordings under ``folder`` (None: espeak-ng)."""
    token = _SPEECH_DIR.set(folder)
    try:
        yield
    finally:
        _SPEECH_DIR.reset(token)


def _voss_pink(num_samples: int, rng: np.random.Generator, rows: int = 16) -> np.ndarray:
    """Unit-RMS pink noise by the Voss-McCartney algorithm: a sum of ``rows`` random holds,
    row k renewed every 2**k samples. Hand-written (a dozen lines): no dependency ships it, and
    acr.augment.sources makes its pink noise another way on purpose."""
    total = np.zeros(num_samples)
    positions = np.arange(num_samples)
    for row in range(rows):
        period = 2**row
        holds = rng.standard_normal(num_samples // period + 2)
        total += holds[(positions + int(rng.integers(period))) // period]
    total += rng.standard_normal(num_samples)  # the white top octave
    total -= total.mean()
    level = np.sqrt(power(total))
    return (total / level if level > 0 else total).astype(np.float32)


def _espeak_sentence(
    voice: str, words: str, speed: int, pitch: int, sample_rate: int
) -> np.ndarray:
    """One sentence from espeak-ng at ``sample_rate`` (its stdout WAV, decoded in memory)."""
    command = [ESPEAK, "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", words]
    try:
        wav = subprocess.run(command, check=True, capture_output=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as error:
        raise ValueError(f"field noise: {ESPEAK} failed ({error})") from error
    with av.open(io.BytesIO(wav)) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = [
            resampled.to_ndarray().reshape(-1)
            for frame in container.decode(audio=0)
            for resampled in resampler.resample(frame)
        ]
    return np.concatenate(chunks) if chunks else np.zeros(0, np.float32)


def _talker(
    say: Callable[[], np.ndarray], sample_rate: int, rng: np.random.Generator
) -> np.ndarray:
    """CROWD_BANK_S of one talker at unit RMS: utterances from ``say`` with pauses between."""
    parts, have = [], 0
    while have < CROWD_BANK_S * sample_rate:
        utterance = say()
        pause = np.zeros(int(rng.uniform(0.1, 0.8) * sample_rate), np.float32)
        parts += [utterance, pause]
        have += len(utterance) + len(pause)
    speech = np.concatenate(parts)
    level = np.sqrt(power(speech))
    if level == 0.0:
        raise ValueError("the crowd's speech is silent")
    return (speech / level).astype(np.float32)


@functools.lru_cache(maxsize=4)
def crowd_bank(sample_rate: int, speech_dir: str | None = None) -> tuple[np.ndarray, ...]:
    """CROWD_BANK_TALKERS talkers, CROWD_BANK_S of speech each (with pauses), unit RMS: espeak-ng
    voices, or utterances recorded under ``speech_dir`` (experiments/fetch_speech.sh gets five
    voices of real recorded speech).

    Made once per process from a fixed seed, so every worker draws from the same bank and a
    query set is the same whichever worker makes which query. Needs espeak-ng on PATH, or
    ``speech_dir``.
    """
    rng = np.random.default_rng(20261206)
    if speech_dir is not None:
        files = recordings(speech_dir)

        def recorded() -> np.ndarray:
            return load_audio(str(rng.choice(files)), sample_rate)

        try:
            return tuple(_talker(recorded, sample_rate, rng) for _ in range(CROWD_BANK_TALKERS))
        except ValueError as error:
            raise ValueError(f"speech_dir {speech_dir}: {error}") from error
    if shutil.which(ESPEAK) is None:
        raise ValueError(
            f"the field suite's crowd noise needs {ESPEAK} on PATH (apt-get install espeak-ng)"
        )
    bank = []
    for talker in range(CROWD_BANK_TALKERS):
        voice = f"{CROWD_VOICES[talker % len(CROWD_VOICES)]}+{rng.choice(CROWD_VARIANTS)}"
        speed, pitch = int(rng.integers(130, 200)), int(rng.integers(15, 85))

        def spoken(voice: str = voice, speed: int = speed, pitch: int = pitch) -> np.ndarray:
            words = " ".join(rng.choice(CROWD_WORDS, size=int(rng.integers(5, 15))))
            return _espeak_sentence(voice, words, speed, pitch, sample_rate)

        bank.append(_talker(spoken, sample_rate, rng))
    return tuple(bank)


def crowd(num_samples: int, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Unit-RMS crowd noise: 4-8 talkers (espeak-ng, or the recordings of speech_from) at random
    levels and offsets, plus Voss-McCartney pink noise for 20-60 % of the power."""
    bank = crowd_bank(sample_rate, _SPEECH_DIR.get())
    talkers = int(rng.integers(*CROWD_TALKERS_RANGE))
    speech = np.zeros(num_samples)
    for index in rng.choice(len(bank), size=talkers, replace=False):
        voice = bank[index]
        start = int(rng.integers(len(voice)))
        speech += rng.uniform(0.4, 1.0) * np.take(
            voice, np.arange(start, start + num_samples), mode="wrap"
        )
    pink_share = float(rng.uniform(*CROWD_PINK_SHARE_RANGE))
    level = np.sqrt(power(speech))
    speech = speech / level if level > 0 else speech
    mixed = np.sqrt(1 - pink_share) * speech + np.sqrt(pink_share) * _voss_pink(num_samples, rng)
    mixed /= np.sqrt(power(mixed)) or 1.0
    return mixed.astype(np.float32), {"talkers": float(talkers), "pink_share": pink_share}


def _mix_at_snr(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    signal_power = power(audio)
    if signal_power == 0.0:
        return audio.copy()
    scale = np.sqrt(signal_power / (power(noise) * 10.0 ** (snr_db / 10.0)))
    return (audio + scale * noise).astype(np.float32)


def _freeverb(audio: np.ndarray, sample_rate: int, room_size: float, wet: float) -> np.ndarray:
    room = pedalboard.Reverb(room_size=room_size, damping=0.5, wet_level=wet, dry_level=1 - wet)
    return room(audio, sample_rate).astype(np.float32)


def _band(audio: np.ndarray, sample_rate: int, low_hz: float, high_hz: float) -> np.ndarray:
    """A band limit of 24 dB an octave either side: each pedalboard filter is 12 dB, so two."""
    board = pedalboard.Pedalboard(
        [
            pedalboard.HighpassFilter(cutoff_frequency_hz=low_hz),
            pedalboard.HighpassFilter(cutoff_frequency_hz=low_hz),
            pedalboard.LowpassFilter(cutoff_frequency_hz=min(high_hz, 0.45 * sample_rate)),
            pedalboard.LowpassFilter(cutoff_frequency_hz=min(high_hz, 0.45 * sample_rate)),
        ]
    )
    return board(audio, sample_rate).astype(np.float32)


def opus_call(audio: np.ndarray, sample_rate: int, bitrate: int) -> np.ndarray:
    """A round trip through FFmpeg's libopus at ``bitrate`` bit/s (a VoIP call), back at
    ``sample_rate`` and aligned with the input within a millisecond (FFmpeg's decoder drops
    Opus's pre-skip)."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=48000)
        stream.bit_rate = bitrate
        stream.layout = "mono"
        resampler = av.AudioResampler(format="s16", layout="mono", rate=48000)
        frame = av.AudioFrame.from_ndarray(
            (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None], format="s16", layout="mono"
        )
        frame.sample_rate = sample_rate
        for resampled in [*resampler.resample(frame), *resampler.resample(None)]:
            container.mux(stream.encode(resampled))
        container.mux(stream.encode(None))
    buffer.seek(0)
    with av.open(buffer) as container:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        chunks = [
            resampled.to_ndarray().reshape(-1)
            for decoded in container.decode(audio=0)
            for resampled in [*resampler.resample(decoded)]
        ]
        chunks += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
    return fit_length(np.concatenate(chunks).astype(np.float32), len(audio))


def _sign(rng: np.random.Generator) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


def field_noise(audio: np.ndarray, sample_rate: int, rng: np.random.Generator):
    snr_db = float(rng.uniform(*CROWD_SNR_DB_RANGE))
    noise, params = crowd(len(audio), sample_rate, rng)
    return _mix_at_snr(audio, noise, snr_db), {"snr_db": snr_db, **params}


def field_reverb(audio: np.ndarray, sample_rate: int, rng: np.random.Generator):
    room_size = float(rng.uniform(*FREEVERB_ROOM_RANGE))
    wet = float(rng.uniform(*FREEVERB_WET_RANGE))
    return _freeverb(audio, sample_rate, room_size, wet), {"room_size": room_size, "wet": wet}


def field_phone(audio: np.ndarray, sample_rate: int, rng: np.random.Generator):
    low_hz = float(rng.uniform(*PHONE_LOW_HZ_RANGE))
    high_hz = float(rng.uniform(*PHONE_HIGH_HZ_RANGE))
    bitrate = int(rng.integers(*OPUS_BITRATE_RANGE))
    coded = opus_call(_band(audio, sample_rate, low_hz, high_hz), sample_rate, bitrate)
    return coded, {"low_hz": low_hz, "high_hz": high_hz, "bitrate": float(bitrate)}


def field_speed(audio: np.ndarray, sample_rate: int, rng: np.random.Generator):
    factor = 1.0 + _sign(rng) * float(rng.uniform(*SPEED_CHANGE_RANGE))
    # Played faster = the same samples read at a higher rate: resample to sample_rate / factor.
    played = librosa.resample(
        audio, orig_sr=sample_rate * factor, target_sr=sample_rate, res_type="soxr_hq"
    )
    return played.astype(np.float32), {"speed_factor": factor}


def field_pitch(audio: np.ndarray, sample_rate: int, rng: np.random.Generator):
    semitones = _sign(rng) * float(rng.uniform(*PITCH_SEMITONES_RANGE))
    shifted = pedalboard.PitchShift(semitones=semitones)(audio, sample_rate)
    return fit_length(shifted.astype(np.float32), len(audio)), {"semitones": semitones}


def field_live_mix(audio: np.ndarray, sample_rate: int, rng: np.random.Generator):
    room_size = float(rng.uniform(*LIVE_ROOM_RANGE))
    snr_db = float(rng.uniform(*LIVE_SNR_DB_RANGE))
    low_hz = float(rng.uniform(*LIVE_LOW_HZ_RANGE))
    high_hz = float(rng.uniform(*LIVE_HIGH_HZ_RANGE))
    drive_db = float(rng.uniform(*LIVE_DRIVE_DB_RANGE))
    vbr = float(rng.uniform(*LIVE_MP3_VBR_RANGE))
    noise, params = crowd(len(audio), sample_rate, rng)
    mixed = _mix_at_snr(_freeverb(audio, sample_rate, room_size, 0.65), noise, snr_db)
    mixed = _band(mixed, sample_rate, low_hz, high_hz)
    peak = float(np.abs(mixed).max()) or 1.0
    driven = pedalboard.Distortion(drive_db=drive_db)(mixed / peak, sample_rate)
    recorded = pedalboard.MP3Compressor(vbr_quality=vbr)(driven.astype(np.float32), sample_rate)
    params = {"room_size": room_size, "snr_db": snr_db, "low_hz": low_hz, "high_hz": high_hz,
              "drive_db": drive_db, "mp3_vbr": vbr, **params}  # fmt: skip
    return fit_length(recorded.astype(np.float32), len(audio)), params


def field_humming(audio: np.ndarray, sample_rate: int, rng: np.random.Generator):
    from acr.synth.sung import sung_excerpt  # pYIN and the singer load only for hums

    return sung_excerpt(audio, sample_rate, rng)

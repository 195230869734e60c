"""Speech for evaluation recordings: a presenter talking between and over music, spoken by
espeak-ng when it is installed, else generated one-talker babble (acr.augment.sources).

It lives here, beside the generated music, because a mix (acr.data.mixes) needs a voice that
no catalog holds, and the same voice must come back from the same seed.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from acr.audio import load_audio, power
from acr.augment.sources import babble

ESPEAK = "espeak-ng"
SPEECH_RMS = 10 ** (-20 / 20)  # a presenter at -20 dBFS
ESPEAK_WORDS = tuple(
    "the a this next that coming up right now on air you are listening to our station with "
    "news weather traffic after music song new from stay tuned call us today morning evening "
    "show live great again here and more sunny cloudy road city".split()
)


def speech_voice(speech: str) -> str:
    """The voice ``speech`` asks for: espeak-ng or babble (auto: espeak-ng when installed)."""
    if speech == "auto":
        return ESPEAK if shutil.which(ESPEAK) else "babble"
    if speech == ESPEAK and not shutil.which(ESPEAK):
        raise ValueError(f"speech: {ESPEAK} is not installed (not on PATH); use babble or auto")
    if speech not in (ESPEAK, "babble"):
        raise ValueError(f"speech: unknown {speech!r}; use auto, {ESPEAK} or babble")
    return speech


def presenter_speech(
    samples: int, sample_rate: int, rng: np.random.Generator, voice: str
) -> np.ndarray:
    """``samples`` of one talker at SPEECH_RMS: espeak-ng saying random words, or generated
    one-talker babble (acr.augment.sources.babble)."""
    if samples == 0:
        return np.zeros(0, dtype=np.float32)
    if voice == ESPEAK:
        audio = espeak(samples, sample_rate, rng)
    else:
        audio = babble(samples, sample_rate, rng, talkers=1)
    level = math.sqrt(power(audio))
    return (audio * (SPEECH_RMS / level if level > 0 else 0.0)).astype(np.float32)


def espeak(samples: int, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Sentences of random radio words from espeak-ng (speed 140-190 words/min, pitch 20-80),
    with pauses of 0.2-0.6 s, cut to ``samples``."""
    parts, have = [], 0
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "speech.wav"
        while have < samples:
            words = " ".join(rng.choice(ESPEAK_WORDS, size=int(rng.integers(6, 14))))
            command = [ESPEAK, "-s", str(int(rng.integers(140, 191))),
                       "-p", str(int(rng.integers(20, 81))), "-w", str(wav), words]  # fmt: skip
            try:
                subprocess.run(command, check=True, capture_output=True, timeout=60)
            except (OSError, subprocess.SubprocessError) as error:
                raise ValueError(f"speech: {ESPEAK} failed ({error})") from error
            sentence = load_audio(wav, sample_rate)
            pause = np.zeros(int(rng.uniform(0.2, 0.6) * sample_rate), dtype=np.float32)
            parts += [sentence, pause]
            have += len(sentence) + len(pause)
    return np.concatenate(parts)[:samples]

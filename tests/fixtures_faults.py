"""Faults injected into real machinery, importable by spawned workers (tests/ is on their path)."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class KillsItsWorker:
    """An extractor that SIGKILLs the process running it on audio of exactly ``samples``
    samples (as the out-of-memory killer would), and otherwise returns the audio's length."""

    samples: int

    def __call__(self, audio: np.ndarray) -> int:
        if len(audio) == self.samples:
            os.kill(os.getpid(), signal.SIGKILL)
        return len(audio)

"""Fixtures of the monitoring tests: a generated catalog and its fingerprint index, and mixes
of catalog excerpts at known places between music that is not in the catalog, noise and
silence, with their truth."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from acr.audio import resample, save_audio
from acr.cli import main
from acr.synth import synthesize_track

RATE = 16000
CATALOG_TRACKS = 6
CATALOG_S = 40.0
OTHER_SEED = 1000  # seeds of music that is not in the catalog


@dataclass(frozen=True)
class Truth:
    """A catalog excerpt placed in a mix."""

    track_id: str
    start_s: float
    end_s: float
    reference_start_s: float
    speed_factor: float = 1.0


@dataclass
class Mix:
    audio: np.ndarray
    truth: list[Truth]
    outside: list[tuple[float, float]]  # stretches holding no catalog track

    @property
    def duration_s(self) -> float:
        return len(self.audio) / RATE


def song(seed: int, duration_s: float = CATALOG_S) -> np.ndarray:
    return synthesize_track(seed, duration_s, RATE)


def track_id(number: int) -> str:
    return f"track_{number:02d}"


class MixBuilder:
    """Appends stretches to a mix and records where the catalog's excerpts went."""

    def __init__(self) -> None:
        self.parts: list[np.ndarray] = []
        self.truth: list[Truth] = []
        self.outside: list[tuple[float, float]] = []
        self.length = 0

    @property
    def now_s(self) -> float:
        return self.length / RATE

    def add(self, audio: np.ndarray) -> None:
        self.parts.append(np.asarray(audio, dtype=np.float32))
        self.length += len(audio)

    def other(self, seed: int, duration_s: float) -> None:
        start = self.now_s
        self.add(song(OTHER_SEED + seed, duration_s) * 0.8)
        self.outside.append((start, self.now_s))

    def noise(self, duration_s: float, level: float = 0.03) -> None:
        start = self.now_s
        self.add(np.random.default_rng(7).normal(0, level, round(duration_s * RATE)))
        self.outside.append((start, self.now_s))

    def silence(self, duration_s: float) -> None:
        start = self.now_s
        self.add(np.zeros(round(duration_s * RATE), np.float32))
        self.outside.append((start, self.now_s))

    def excerpt(self, number: int, reference_start_s: float, duration_s: float, speed=1.0):
        """``duration_s`` of the mix taken from catalog track ``number``, played ``speed``
        times as fast (tempo and pitch, as a turntable) from ``reference_start_s``."""
        reference = song(number)
        first = round(reference_start_s * RATE)
        span = reference[first : first + round(duration_s * speed * RATE) + RATE]
        if speed != 1.0:
            span = resample(span, round(RATE * speed), RATE)  # read at RATE: speed x faster
        start = self.now_s
        self.add(span[: round(duration_s * RATE)])
        self.truth.append(Truth(track_id(number), start, self.now_s, reference_start_s, speed))

    def build(self) -> Mix:
        return Mix(np.concatenate(self.parts), self.truth, self.outside)


@pytest.fixture(scope="session")
def catalog_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fingerprint index of CATALOG_TRACKS generated songs of CATALOG_S (track_00...)."""
    root = tmp_path_factory.mktemp("monitor-catalog")
    for number in range(CATALOG_TRACKS):
        save_audio(root / "catalog" / f"{track_id(number)}.wav", song(number), RATE)
    index = root / "index"
    assert main(["index", "--catalog", str(root / "catalog"), "--output", str(index),
                 "--workers", "1"]) == 0  # fmt: skip
    return index


@pytest.fixture(scope="session")
def radio_mix() -> Mix:
    """~2.5 min: excerpts of 8-30 s (one from a track's start, one 7 % fast, one 6 % slow)
    between music not in the catalog, noise and silence."""
    mix = MixBuilder()
    mix.other(0, 12.0)
    mix.excerpt(0, 5.0, 20.0)
    mix.noise(4.0)
    mix.excerpt(1, 12.0, 8.0)
    mix.other(1, 14.0)
    mix.excerpt(2, 0.0, 30.0)
    mix.silence(2.0)
    mix.excerpt(3, 6.0, 18.0, speed=1.07)
    mix.other(2, 10.0)
    mix.excerpt(4, 3.0, 16.0, speed=0.94)
    mix.other(3, 12.0)
    return mix.build()


@pytest.fixture(scope="session")
def mix_builder() -> type[MixBuilder]:
    """MixBuilder: ``mix = mix_builder(); mix.other(0, 12.0); mix.excerpt(1, 5.0, 20.0)...``."""
    return MixBuilder


@pytest.fixture(scope="session")
def radio_mix_file(radio_mix: Mix, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """radio_mix as a 16-bit WAV file."""
    path = tmp_path_factory.mktemp("monitor-mix") / "radio.wav"
    save_audio(path, radio_mix.audio, RATE)
    return path


@pytest.fixture(scope="session")
def radio_segments(catalog_index: Path, radio_mix_file: Path, tmp_path_factory) -> list[dict]:
    """`acr monitor` of radio_mix_file (CSV, in process): its rows, as read back."""
    output = tmp_path_factory.mktemp("monitor-out") / "segments.csv"
    assert main(["monitor", str(radio_mix_file), "--index", str(catalog_index),
                 "--output", str(output)]) == 0  # fmt: skip
    with open(output, newline="") as rows:
        return list(csv.DictReader(rows))

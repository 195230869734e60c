"""The engine interface every retrieval path implements (fingerprint, embedding, melody).

Indexing is split in two so that the expensive, stateless part runs in worker processes:
``extractor()`` returns a small picklable callable that turns a track's audio into features
(peak-pair hashes, a pitch contour, audio windows) in any process; ``add`` puts them into the
engine's index in the main process.

An engine's settings are one frozen dataclass (``settings``): the command line and index YAML
files derive their options from it, and ``index.json`` records it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class IndexDirectoryError(RuntimeError):
    """An index directory that cannot be built, resumed or read as asked."""


@dataclass(frozen=True)
class TrackMatch:
    """One ranked track for a query: score and where in the track the query was found."""

    track_id: str
    score: float
    offset_s: float


@dataclass(frozen=True)
class AudioPassthrough:
    """An extractor whose features are the audio itself, for engines that need a model."""

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(audio, dtype=np.float32)


class Engine(ABC):
    """One retrieval path over one catalog.

    Subclasses set ``name`` (the ``--engine`` value) and ``settings`` (a frozen dataclass with
    a ``sample_rate``: what ``extractor`` and ``search`` expect; callers resample).
    """

    name: ClassVar[str]
    settings: Any

    @property
    def sample_rate(self) -> int:
        return int(self.settings.sample_rate)

    def recorded_settings(self) -> dict[str, Any]:
        """What ``index.json`` records about this engine."""
        return asdict(self.settings)

    @abstractmethod
    def extractor(self) -> Callable[[np.ndarray], Any]:
        """A picklable function: one track's mono float32 audio -> its (picklable) features."""

    @abstractmethod
    def add(self, track_id: str, features: Any) -> int:
        """Index one track's features; returns how many items (hashes, vectors) it added."""

    @abstractmethod
    def search(self, audio: np.ndarray, top_k: int = 5) -> list[TrackMatch]:
        """Ranked tracks for a query clip, best first, with the matched offset in each."""

    @property
    @abstractmethod
    def track_ids(self) -> list[str]:
        """Tracks in the index, in the order they were added."""

    @property
    @abstractmethod
    def item_count(self) -> int:
        """Items (hashes, vectors) in the index."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the whole engine state into an empty ``directory``."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> Engine:
        """Read an engine written by :meth:`save`."""

    def add_audio(self, track_id: str, audio: np.ndarray) -> int:
        """Extract and add in one call (tests, small catalogs)."""
        return self.add(track_id, self.extractor()(audio))

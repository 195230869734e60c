"""The engine interface every retrieval path implements (fingerprint, embedding, melody).

Indexing is split in two so that the expensive, stateless part runs in worker processes:
``extractor()`` returns a small picklable callable that turns a track's audio into features
(peak-pair hashes, a pitch contour, audio windows) in any process; ``add`` puts them into the
engine's index in the main process.

An engine's settings are one frozen dataclass (``settings``): the command line and index YAML
files derive their options from it, and ``index.json`` records it.
"""

from __future__ import annotations

import json
import pickle
import zipfile
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

if TYPE_CHECKING:
    from acr.audio import Resampled

T = TypeVar("T")

# What a missing, truncated or garbled file raises from the readers an index uses: numpy
# (ValueError, EOFError), .npz archives (BadZipFile, zlib.error), hnswlib and torch
# (RuntimeError), pickled checkpoints (UnpicklingError), the file system (OSError).
CORRUPT_FILE_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    RuntimeError,
    zipfile.BadZipFile,
    zlib.error,
    pickle.UnpicklingError,
)


class IndexDirectoryError(RuntimeError):
    """An index directory that cannot be built, resumed or read as asked."""


class IndexLockedError(IndexDirectoryError):
    """Another process is writing the index (acr.retrieval.build.index_lock): trying again
    later will do."""


@contextmanager
def reading(path: Path) -> Iterator[Path]:
    """Read one file of an index: what a missing or corrupt file raises inside the block becomes
    a one-line IndexDirectoryError naming it (a user error, never a traceback)."""
    try:
        yield path
    except IndexDirectoryError:
        raise
    except FileNotFoundError as error:
        raise IndexDirectoryError(f"{path}: missing") from error
    except CORRUPT_FILE_ERRORS as error:
        detail = (str(error).strip().splitlines() or [""])[0]
        raise IndexDirectoryError(
            f"{path}: truncated or corrupt ({type(error).__name__}: {detail})"
        ) from error


def read_index_json(path: Path, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A JSON object file of an index that has the ``required`` keys, else IndexDirectoryError."""
    with reading(path):
        content = json.loads(path.read_text())
    if not isinstance(content, dict):
        raise IndexDirectoryError(f"{path}: expected a JSON object, found {type(content).__name__}")
    missing = [key for key in required if key not in content]
    if missing:
        raise IndexDirectoryError(f"{path}: missing {', '.join(missing)}")
    return content


def read_settings(settings_class: type[T], recorded: object, path: Path) -> T:
    """An engine's settings dataclass from what ``path`` recorded; unknown or impossible
    settings (TypeError, ValueError from the dataclass) raise IndexDirectoryError. A setting
    the class added since takes its ``UNRECORDED`` value (what files without it did)."""
    if not isinstance(recorded, dict):
        raise IndexDirectoryError(f"{path}: settings must be a JSON object")
    recorded = {**getattr(settings_class, "UNRECORDED", {}), **recorded}
    try:
        return settings_class(**recorded)
    except (TypeError, ValueError) as error:
        raise IndexDirectoryError(f"{path}: settings: {error}") from error


def check_index(condition: bool, path: Path, problem: str) -> None:
    """Raise IndexDirectoryError ``{path}: {problem}`` unless ``condition`` holds (cheap
    consistency checks of a loaded index, so that a damaged one fails at load, not mid-search)."""
    if not condition:
        raise IndexDirectoryError(f"{path}: {problem}")


def check_track_ids(track_ids: Any, path: Path) -> list[str]:
    """The track ids an index file lists, checked: a list of distinct strings."""
    check_index(
        isinstance(track_ids, list) and all(isinstance(t, str) for t in track_ids),
        path,
        "track_ids must be a list of strings",
    )
    check_index(len(set(track_ids)) == len(track_ids), path, "duplicate track ids")
    return list(track_ids)


@dataclass(frozen=True)
class TrackMatch:
    """One ranked track for a query: score and where in the track the query was found, and
    where the engine measures it (the fingerprint's hypotheses), how the query differs from
    the reference: ``speed_factor`` (turntable speed, pitch and tempo together; 1.03 plays 3 %
    fast) and ``pitch_semitones`` (a pitch shift at the same tempo)."""

    track_id: str
    score: float
    offset_s: float
    speed_factor: float = 1.0
    pitch_semitones: float = 0.0


@dataclass(frozen=True)
class AudioPassthrough:
    """An extractor whose features are the audio itself, for engines that need a model."""

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(audio, dtype=np.float32)

    def in_spans(self, read: Resampled) -> Resampled:
        """A long track stays a reader of its file: its samples would be hundreds of MB
        through the pipe to the main process, where the engine reads a batch's span at a
        time."""
        return read


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

    def empty(self) -> Engine:
        """An engine with the same settings (and model) and no track: what the next segment
        is built in."""
        return type(self)(self.settings)

    def saved(self, directory: Path) -> None:  # noqa: B027 (a hook most engines need not)
        """The part :meth:`save` wrote now lives at ``directory`` (the store writes a segment
        under a temporary name, then renames it)."""

    @abstractmethod
    def remove(self, track_ids: Collection[str]) -> None:
        """Stop returning these tracks (KeyError for one not in the engine); their data stays
        in the parts read from disk until they are merged by :meth:`save`."""

    @classmethod
    @abstractmethod
    def open(cls, directories: Sequence[Path], removed: Sequence[Collection[str]] = ()) -> Engine:
        """The parts (segments) written by :meth:`save`, searched as one engine, without the
        ``removed`` tracks of each part; a missing, corrupt or inconsistent file raises
        IndexDirectoryError naming it. :meth:`save` then writes the live tracks as one part."""

    @classmethod
    def load(cls, directory: Path) -> Engine:
        """Read one part written by :meth:`save`."""
        return cls.open([directory])

    def add_audio(self, track_id: str, audio: np.ndarray) -> int:
        """Extract and add in one call (tests, small catalogs)."""
        return self.add(track_id, self.extractor()(audio))

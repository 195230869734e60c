"""The index a service answers from: its recognizer (one per engine as well, for ``?engine=``)
and its track list, reloaded when ``index.json`` changes, whether this process changed it
(POST and DELETE /v1/tracks) or another did (another worker, ``acr index add``)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from acr.retrieval.changes import list_index
from acr.retrieval.recognizer import Recognizer
from acr.retrieval.store import INDEX_FILE


@dataclass
class Loaded:
    recognizer: Recognizer
    by_engine: dict[str, Recognizer]
    tracks: pd.DataFrame  # track_id, segment, audio_s, path; indexed by track_id
    version: tuple[int, int]


class Catalog:
    def __init__(self, index: str | Path) -> None:
        self.index = Path(index)
        self._lock = threading.Lock()
        self._loaded = self._load()

    def current(self) -> Loaded:
        """The loaded index, reloaded first when index.json changed (a stat per call)."""
        if self._version() != self._loaded.version:
            with self._lock:
                if self._version() != self._loaded.version:
                    self._loaded = self._load()
        return self._loaded

    def reload(self) -> Loaded:
        with self._lock:
            self._loaded = self._load()
            return self._loaded

    def _version(self) -> tuple[int, int]:
        stat = os.stat(self.index / INDEX_FILE)
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> Loaded:
        version = self._version()
        recognizer = Recognizer.load(self.index)
        by_engine = {name: recognizer for name in recognizer.engines}
        if len(recognizer.engines) > 1:
            calibration = recognizer.calibration
            by_engine = {
                name: Recognizer(
                    {name: engine},
                    calibration=(
                        calibration if calibration and name in calibration.systems else None
                    ),
                )
                for name, engine in recognizer.engines.items()
            }
        tracks = list_index(str(self.index)).tracks.set_index("track_id", drop=False)
        return Loaded(recognizer, by_engine, tracks, version)

"""The catalog a service answers from: its recognizer (one per engine as well, for
``?engine=``) and its track list. ``Catalog`` reads an index directory and loads it again when
``index.json`` changes, whether this process changed it (POST and DELETE /v1/tracks) or another
did (another worker, ``acr index add``); ``DatabaseCatalog`` reads PostgreSQL (acr.database),
where every search sees the tracks as they are, and only the track list is read again when
the catalog version changes."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from acr.retrieval.calibration import CALIBRATION_FILE
from acr.retrieval.changes import list_index
from acr.retrieval.recognizer import FUSION_FILE, Recognizer
from acr.retrieval.store import INDEX_FILE


@dataclass
class Loaded:
    recognizer: Recognizer
    by_engine: dict[str, Recognizer]
    tracks: pd.DataFrame  # track_id, segment, audio_s, path; indexed by track_id
    version: object  # what tells that the catalog changed (index.json stat, database version)


class Catalog:
    """An index directory's catalog, loaded again first when ``_version`` changed."""

    def __init__(self, index: str | Path) -> None:
        self.index = Path(index)
        self._lock = threading.Lock()
        self._loaded = self._load()

    def current(self) -> Loaded:
        """The loaded catalog, loaded again first when its version changed."""
        if self._version() != self._loaded.version:
            with self._lock:
                if self._version() != self._loaded.version:
                    self._loaded = self._load()
        return self._loaded

    def reload(self) -> Loaded:
        with self._lock:
            self._loaded = self._load()
            return self._loaded

    def _version(self) -> object:
        """The modification time and size of index.json, fusion.json and calibration.json
        (``acr fuse`` and ``acr calibrate`` change no segment): three stats per call."""
        stat = os.stat(self.index / INDEX_FILE)
        return (stat.st_mtime_ns, stat.st_size), *map(self._stat, (FUSION_FILE, CALIBRATION_FILE))

    def _stat(self, name: str) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.index / name)
        except FileNotFoundError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def _load(self) -> Loaded:
        version = self._version()
        recognizer = Recognizer.load(self.index)
        tracks = list_index(str(self.index)).tracks.set_index("track_id", drop=False)
        return Loaded(recognizer, one_per_engine(recognizer), tracks, version)


class DatabaseCatalog(Catalog):
    """The catalog of an acr database, loaded again as Catalog is."""

    def __init__(self, database: str) -> None:
        from acr.database.engines import database_recognizer
        from acr.database.reader import DatabaseReader

        self.reader = DatabaseReader(database)
        self._recognizer = database_recognizer(self.reader)
        self._lock = threading.Lock()
        self._loaded = self._load()

    def _version(self) -> int:
        """The database's catalog version: a query per call, which also tells that the
        database is reachable, and a replica that another one changed the catalog."""
        return self.reader.version()

    def _load(self) -> Loaded:
        from acr.database.engines import database_recognizer

        version = self._version()
        meta = self.reader.read_meta()
        if _settings(meta) != _settings(self.reader.meta):  # a push: another fusion, calibration
            self.reader.meta = meta
            self._recognizer = database_recognizer(self.reader)
        table = self.reader.tracks().assign(segment=None, path=None)
        tracks = table[["track_id", "segment", "audio_s", "path"]].set_index("track_id", drop=False)
        return Loaded(self._recognizer, one_per_engine(self._recognizer), tracks, version)


def _settings(meta: dict) -> dict:
    """What the recognizer is made of: acr_meta without the version every change bumps."""
    return {key: value for key, value in meta.items() if key != "version"}


def one_per_engine(recognizer: Recognizer) -> dict[str, Recognizer]:
    """A recognizer per engine (``?engine=``), with the engine's own calibration."""
    if len(recognizer.engines) == 1:
        return {name: recognizer for name in recognizer.engines}
    calibration = recognizer.calibration
    return {
        name: Recognizer(
            {name: engine},
            calibration=calibration if calibration and name in calibration.systems else None,
        )
        for name, engine in recognizer.engines.items()
    }

"""The index directory: what ``index.json`` records, the engines by name, and loading them.

Layout of an index directory::

    index.json        engines and their settings, model hash, acr version, totals, snapshot
    skipped.csv       tracks that could not be indexed, with the reason
    snapshot-NNNNNN/  the engines' state after NNNNNN catalog tracks were processed
    fusion.json       optional, written by ``acr fuse``
    .lock             held by the build that is writing (a second one is refused)
    status.json       the build's heartbeat, for ``acr status`` (acr.status)

This is the read side, shared by the build (acr.retrieval.build) and every reader (the
Recognizer, fusion, evaluation); readers never import the build.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

import acr
from acr.files import write_json
from acr.retrieval.engine import Engine, IndexDirectoryError

INDEX_FILE = "index.json"
SKIPPED_FILE = "skipped.csv"
SKIPPED_COLUMNS = ["track_id", "path", "reason"]
# Imported on use: a fingerprint index never loads torch models, nor Lightning.
ENGINES = {
    "fingerprint": "acr.retrieval.fingerprint.engine.FingerprintEngine",
    "embedding": "acr.retrieval.embedding.EmbeddingEngine",
    "melody": "acr.retrieval.melody.MelodyEngine",
}
HYBRID = "hybrid"  # every engine


def engine_class(name: str) -> type[Engine]:
    """The engine class registered as ``name``."""
    if name not in ENGINES:
        raise IndexDirectoryError(
            f"unknown engine {name!r}; choose from {', '.join([*ENGINES, HYBRID])}"
        )
    module, class_name = ENGINES[name].rsplit(".", 1)
    return getattr(importlib.import_module(module), class_name)


def engine_names(engine: str) -> list[str]:
    """The engines an ``--engine`` value stands for: one, or all of them for ``hybrid``."""
    names = list(ENGINES) if engine == HYBRID else [engine]
    for name in names:
        engine_class(name)  # an unknown name fails here
    return names


@dataclass
class IndexState:
    """What ``index.json`` records."""

    engines: dict[str, dict[str, Any]]
    snapshot: str = ""
    processed: int = 0
    tracks: int = 0
    skipped: int = 0
    items: dict[str, int] = field(default_factory=dict)
    audio_s: float = 0.0
    complete: bool = False
    acr_version: str = acr.__version__
    catalog: str = ""
    updated: str = ""

    @classmethod
    def read(cls, directory: Path) -> IndexState:
        path = Path(directory) / INDEX_FILE
        if not path.is_file():
            raise IndexDirectoryError(f"{directory}: not an acr index (no {INDEX_FILE})")
        return cls(**json.loads(path.read_text()))

    def write(self, directory: Path) -> None:
        self.updated = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(Path(directory) / INDEX_FILE, asdict(self))


def load_engines(directory: str | Path) -> dict[str, Engine]:
    """The engines of an index directory, as of its last snapshot."""
    directory = Path(directory)
    state = IndexState.read(directory)
    snapshot = directory / state.snapshot
    return {name: engine_class(name).load(snapshot / name) for name in state.engines}


def read_skipped(directory: Path) -> pd.DataFrame:
    """``skipped.csv`` of an index or a snapshot (empty when there is none)."""
    path = Path(directory) / SKIPPED_FILE
    if path.is_file():
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.DataFrame(columns=SKIPPED_COLUMNS)

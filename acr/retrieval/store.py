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
import re
import reprlib
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

import acr
from acr.files import SKIPPED_COLUMNS, SKIPPED_FILE, write_json
from acr.retrieval.engine import Engine, IndexDirectoryError, read_index_json, reading

INDEX_FILE = "index.json"
# Imported on use: a fingerprint index never loads torch models, nor Lightning.
ENGINES = {
    "fingerprint": "acr.retrieval.fingerprint.engine.FingerprintEngine",
    "embedding": "acr.retrieval.embedding.EmbeddingEngine",
    "melody": "acr.retrieval.melody.MelodyEngine",
}
HYBRID = "hybrid"  # every engine
SNAPSHOT_NAME = re.compile(r"snapshot-\d{6,}")  # a folder of the index, never a path
LOAD_ATTEMPTS = 5  # index.json re-read when the build replaced the snapshot being loaded
# JSON types of IndexState's fields, by their annotation (bool is an int: checked apart).
_FIELD_TYPES = {"str": str, "int": int, "float": (int, float), "bool": bool, "dict": dict}


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
        """``index.json``, checked: known fields of the right types, known engines, and a
        snapshot that is a folder of this index (a name such as ``../`` is refused)."""
        path = Path(directory) / INDEX_FILE
        if not path.is_file():
            raise IndexDirectoryError(f"{directory}: not an acr index (no {INDEX_FILE})")
        recorded = read_index_json(path, required=("engines", "snapshot"))
        known = {item.name: item.type for item in fields(cls)}
        unknown = sorted(set(recorded) - set(known))
        if unknown:
            raise IndexDirectoryError(
                f"{path}: unknown field(s) {', '.join(map(repr, unknown))} (this is acr"
                f" {acr.__version__}; the index says {recorded.get('acr_version')!r})"
            )
        for name, value in recorded.items():
            annotation = known[name]
            expected = _FIELD_TYPES.get(annotation.split("[")[0], object)
            if not isinstance(value, expected) or (
                isinstance(value, bool) and expected not in (bool, object)
            ):
                raise IndexDirectoryError(
                    f"{path}: {name} is {reprlib.repr(value)}, not a {annotation}"
                )
        engines = recorded["engines"]
        if not engines or not all(isinstance(value, dict) for value in engines.values()):
            raise IndexDirectoryError(f"{path}: engines must map engine names to their settings")
        for name in engines:
            if name not in ENGINES:
                raise IndexDirectoryError(
                    f"{path}: unknown engine {name!r}; acr {acr.__version__} has"
                    f" {', '.join(ENGINES)}"
                )
        snapshot = recorded["snapshot"]  # the build writes folders, never links
        if not SNAPSHOT_NAME.fullmatch(snapshot) or (Path(directory) / snapshot).is_symlink():
            raise IndexDirectoryError(
                f"{path}: snapshot {snapshot!r} is not a snapshot-NNNNNN folder of this index"
            )
        return cls(**recorded)

    def write(self, directory: Path) -> None:
        self.updated = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(Path(directory) / INDEX_FILE, asdict(self))


def load_engines(directory: str | Path) -> dict[str, Engine]:
    """The engines of an index directory, as of its last snapshot.

    A build running beside the reader may switch index.json to a newer snapshot and delete the
    one the reader was told to open (acr.retrieval.build): the reader then follows index.json
    again, a bounded number of times. A damaged index raises IndexDirectoryError naming the file.
    """
    directory = Path(directory)
    state = IndexState.read(directory)
    for _ in range(LOAD_ATTEMPTS - 1):
        try:
            return _load_snapshot(directory, state)
        except IndexDirectoryError:
            newer = IndexState.read(directory)
            if newer.snapshot == state.snapshot:
                raise  # the index is damaged, not replaced
            state = newer
    return _load_snapshot(directory, state)


def _load_snapshot(directory: Path, state: IndexState) -> dict[str, Engine]:
    snapshot = directory / state.snapshot
    if not snapshot.is_dir():
        raise IndexDirectoryError(f"{snapshot}: missing (named by {INDEX_FILE})")
    return {name: engine_class(name).load(snapshot / name) for name in state.engines}


def read_skipped(directory: Path) -> pd.DataFrame:
    """``skipped.csv`` of an index or a snapshot (empty when there is none)."""
    path = Path(directory) / SKIPPED_FILE
    if not path.is_file():
        return pd.DataFrame(columns=SKIPPED_COLUMNS)
    with reading(path):
        skipped = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not set(SKIPPED_COLUMNS) <= set(skipped.columns):
        raise IndexDirectoryError(f"{path}: needs the columns {', '.join(SKIPPED_COLUMNS)}")
    return skipped

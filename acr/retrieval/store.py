"""The index directory: what ``index.json`` records, the engines by name, and loading them.

Layout of an index directory::

    index.json        engines and their settings, model hash, acr version, totals, and the
                      live segments, each with the tracks removed from it (tombstones)
    segment-NNNNNN/   an immutable part of the catalog: segment.json (its tracks, their audio
                      seconds, items and source files), skipped.csv (tracks that could not be
                      indexed while it was built) and one folder per engine
    skipped.csv       every skipped track, with the reason (a copy for the user)
    fusion.json       optional, written by ``acr fuse``
    .lock             held by the process that writes (a second one is refused)
    status.json       the build's heartbeat, for ``acr status`` (acr.status)

A writer (acr.retrieval.build) adds segments and tombstones and switches ``index.json``
atomically; a segment is never changed once listed, and one no longer listed is deleted. A
reader opens the listed segments as one engine each (the engines' ``open``), memory-mapped
where the engine can.

This is the read side, shared by the build and every reader (the Recognizer, fusion,
evaluation); readers never import the build.
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
SEGMENT_FILE = "segment.json"
SEGMENT_NAME = re.compile(r"segment-\d{6,}")  # a folder of the index, never a path
LOAD_ATTEMPTS = 5  # index.json re-read when a writer replaced a segment being loaded
# JSON types of IndexState's fields, by their annotation (bool is an int: checked apart).
_FIELD_TYPES = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "dict": dict,
    "list": list,
}


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
class Segment:
    """A live segment as ``index.json`` lists it."""

    name: str
    tracks: int  # tracks written into it, removed ones included
    removed: list[str] = field(default_factory=list)  # its tracks removed since (tombstones)
    level: int = 0  # 0 when written by a build or an add; a merge of level-L segments is L+1


@dataclass
class SegmentContents:
    """What ``segment.json`` and ``skipped.csv`` of one segment say, in adding order."""

    track_ids: list[str]
    audio_s: list[float]
    items: dict[str, list[int]]  # per engine, per track
    sources: list[list]  # per track: [path, bytes, modified_ns] of the file it was read from
    skipped: pd.DataFrame

    def to_json(self) -> dict[str, Any]:
        return {
            "track_ids": self.track_ids,
            "audio_s": self.audio_s,
            "items": self.items,
            "sources": self.sources,
        }


@dataclass
class IndexState:
    """What ``index.json`` records."""

    engines: dict[str, dict[str, Any]]
    segments: list[Segment] = field(default_factory=list)
    next_segment: int = 1
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
        """``index.json``, checked: known fields of the right types, known engines, and
        segments that are folders of this index (a name such as ``../`` is refused)."""
        path = Path(directory) / INDEX_FILE
        if not path.is_file():
            raise IndexDirectoryError(f"{directory}: not an acr index (no {INDEX_FILE})")
        recorded = read_index_json(path, required=("engines", "segments"))
        if "snapshot" in recorded:
            raise IndexDirectoryError(
                f"{path}: an index of acr {recorded.get('acr_version')!r} (one snapshot, before"
                f" segments); acr {acr.__version__} cannot change it: build it again"
            )
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
        recorded["segments"] = [
            _segment(entry, Path(directory), path) for entry in recorded.get("segments", [])
        ]
        names = [segment.name for segment in recorded["segments"]]
        if len(set(names)) != len(names):
            raise IndexDirectoryError(f"{path}: a segment is listed twice")
        return cls(**recorded)

    def write(self, directory: Path) -> None:
        self.updated = datetime.now(UTC).isoformat(timespec="seconds")
        write_json(Path(directory) / INDEX_FILE, asdict(self))


def _segment(entry: object, directory: Path, path: Path) -> Segment:
    """One entry of ``segments``, checked."""
    if not isinstance(entry, dict) or set(entry) - {f.name for f in fields(Segment)}:
        raise IndexDirectoryError(f"{path}: a segment entry is {reprlib.repr(entry)}")
    name, removed = entry.get("name"), entry.get("removed", [])
    # The writers make folders, never links: a link could lead outside the index.
    if (
        not isinstance(name, str)
        or not SEGMENT_NAME.fullmatch(name)
        or (directory / name).is_symlink()
    ):
        raise IndexDirectoryError(
            f"{path}: segment {reprlib.repr(name)} is not a segment-NNNNNN folder of this index"
        )
    tracks, level = entry.get("tracks"), entry.get("level", 0)
    if type(tracks) is not int or type(level) is not int or tracks < 0:
        raise IndexDirectoryError(f"{path}: {name}: tracks and level must be whole numbers")
    if not isinstance(removed, list) or not all(isinstance(t, str) for t in removed):
        raise IndexDirectoryError(f"{path}: {name}: removed must be a list of track ids")
    return Segment(name, tracks, list(removed), level)


def read_segment(directory: Path, segment: Segment) -> SegmentContents:
    """A segment's ``segment.json`` and ``skipped.csv``, checked against ``index.json``."""
    folder = Path(directory) / segment.name
    if not folder.is_dir():
        raise IndexDirectoryError(f"{folder}: missing (named by {INDEX_FILE})")
    path = folder / SEGMENT_FILE
    recorded = read_index_json(path, ("track_ids", "audio_s", "items", "sources"))
    track_ids = recorded["track_ids"]
    if not isinstance(track_ids, list) or not all(isinstance(t, str) for t in track_ids):
        raise IndexDirectoryError(f"{path}: track_ids must be a list of strings")
    count = len(track_ids)
    columns = [recorded["audio_s"], recorded["sources"], *dict(recorded["items"]).values()]
    if (
        len(set(track_ids)) != count
        or count != segment.tracks
        or not all(isinstance(column, list) and len(column) == count for column in columns)
    ):
        raise IndexDirectoryError(
            f"{path}: {count} tracks (ids distinct, one value each) where {INDEX_FILE} says"
            f" {segment.tracks}"
        )
    unknown = sorted(set(segment.removed) - set(track_ids))
    if unknown:
        raise IndexDirectoryError(
            f"{Path(directory) / INDEX_FILE}: removed track {unknown[0]!r} is not in {segment.name}"
        )
    return SegmentContents(
        track_ids,
        [float(value) for value in recorded["audio_s"]],
        {name: list(values) for name, values in recorded["items"].items()},
        recorded["sources"],
        read_skipped(folder),
    )


def live_tracks(directory: Path, state: IndexState) -> dict[str, tuple[Segment, int]]:
    """Each live track id -> its segment and its position there, in adding order."""
    live: dict[str, tuple[Segment, int]] = {}
    for segment in state.segments:
        removed = set(segment.removed)
        for position, track_id in enumerate(read_segment(directory, segment).track_ids):
            if track_id in removed:
                continue
            if track_id in live:
                raise IndexDirectoryError(
                    f"{Path(directory) / INDEX_FILE}: track {track_id!r} is live in"
                    f" {live[track_id][0].name} and {segment.name}"
                )
            live[track_id] = (segment, position)
    return live


def load_engines(directory: str | Path) -> dict[str, Engine]:
    """The engines of an index directory, each over all its live segments.

    A writer running beside the reader may switch index.json to new segments and delete ones
    the reader was told to open (acr.retrieval.build): the reader then follows index.json
    again, a bounded number of times. A damaged index raises IndexDirectoryError naming the file.
    """
    directory = Path(directory)
    state = IndexState.read(directory)
    for _ in range(LOAD_ATTEMPTS - 1):
        try:
            return _open_segments(directory, state)
        except IndexDirectoryError:
            newer = IndexState.read(directory)
            if newer.segments == state.segments:
                raise  # the index is damaged, not replaced
            state = newer
    return _open_segments(directory, state)


def _open_segments(directory: Path, state: IndexState) -> dict[str, Engine]:
    if not state.segments:
        raise IndexDirectoryError(
            f"{directory / INDEX_FILE}: no segment yet (the build has indexed no track)"
        )
    for segment in state.segments:
        if not (directory / segment.name).is_dir():
            raise IndexDirectoryError(
                f"{directory / segment.name}: missing (named by {INDEX_FILE})"
            )
    removed = [segment.removed for segment in state.segments]
    return {
        name: engine_class(name).open(
            [directory / segment.name / name for segment in state.segments], removed
        )
        for name in state.engines
    }


def read_skipped(directory: Path) -> pd.DataFrame:
    """``skipped.csv`` of an index or a segment (empty when there is none)."""
    path = Path(directory) / SKIPPED_FILE
    if not path.is_file():
        return pd.DataFrame(columns=SKIPPED_COLUMNS)
    with reading(path):
        skipped = pd.read_csv(path, dtype=str, keep_default_na=False)
    if not set(SKIPPED_COLUMNS) <= set(skipped.columns):
        raise IndexDirectoryError(f"{path}: needs the columns {', '.join(SKIPPED_COLUMNS)}")
    return skipped

"""Track and query tables: the schema every data source is normalised to, with validation.

A *track table* lists recordings (``track_id, path, duration_s, split, role, source, ...``); a
*query table* lists clips to identify (``query_id, track_id, path`` or ``source + offset_s``,
``length_s``, plus bucket columns such as ``degradation``). Both are CSV or JSONL on disk, with
paths relative to the table's own folder so a data directory can move.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from acr.audio import AUDIO_EXTENSIONS, audio_files, load_audio, read_audio
from acr.files import replacing

TRACK_COLUMNS = ("track_id", "path", "duration_s", "split", "role", "source")
QUERY_COLUMNS = ("query_id", "track_id", "length_s")
SPLITS = ("train", "val", "test")
EVAL_SPLITS = ("val", "test")
ROLES = ("reference", "query")
# Query columns that say where a clip is and how it was made, not which bucket it falls into.
QUERY_DETAIL_COLUMNS = (
    "query_id",
    "track_id",
    "path",
    "source",
    "offset_s",
    "seed",
    "degradation_params",
)


class ManifestError(ValueError):
    """A table that breaks the schema; the message names the table and the field."""

    def __init__(self, table: str | Path, reason: str) -> None:
        super().__init__(f"{table}: {reason}")


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a CSV or JSONL table; id columns stay strings (``007`` is not ``7``)."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, "file does not exist")
    id_types = {"track_id": str, "query_id": str, "path": str, "source": str}
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype=id_types, keep_default_na=False, na_values=[""])
    if path.suffix in (".jsonl", ".json"):
        return pd.read_json(path, lines=True, dtype=id_types)
    raise ManifestError(path, "unknown table format (use .csv or .jsonl)")


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write atomically (temp file + rename), so an interrupted run leaves no half table."""
    path = Path(path)
    if path.suffix not in (".csv", ".jsonl", ".json"):
        raise ManifestError(path, "unknown table format (use .csv or .jsonl)")
    with replacing(path) as temporary:
        if path.suffix == ".csv":
            table.to_csv(temporary, index=False)
        else:
            table.to_json(temporary, orient="records", lines=True)


def resolve_paths(table: pd.DataFrame, root: str | Path, columns: Iterable[str]) -> pd.DataFrame:
    """Make relative paths in ``columns`` absolute against ``root`` (the table's folder)."""
    table = table.copy()
    root = Path(root)
    for column in columns:
        if column in table:
            table[column] = [
                value if pd.isna(value) or Path(value).is_absolute() else str(root / value)
                for value in table[column]
            ]
    return table


def _require_columns(table: pd.DataFrame, columns: Iterable[str], name: str | Path) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ManifestError(name, f"missing column(s) {missing}; found {list(table.columns)}")


def _require_unique(table: pd.DataFrame, column: str, name: str | Path) -> None:
    duplicated = table.loc[table[column].duplicated(), column].unique().tolist()
    if duplicated:
        raise ManifestError(name, f"duplicate {column} {duplicated[:5]}")


def _require_existing_files(paths: Iterable[str], column: str, name: str | Path) -> None:
    missing = [path for path in paths if not pd.isna(path) and not Path(path).is_file()]
    if missing:
        raise ManifestError(
            name, f"{len(missing)} {column} file(s) do not exist, e.g. {missing[0]}"
        )


def validate_tracks(tracks: pd.DataFrame, name: str | Path, check_files: bool = True) -> None:
    """Schema, unique ids, known splits and roles, positive durations, files present."""
    _require_columns(tracks, TRACK_COLUMNS, name)
    _require_unique(tracks, "track_id", name)
    unknown_splits = sorted(set(tracks["split"]) - set(SPLITS))
    if unknown_splits:
        raise ManifestError(name, f"unknown split(s) {unknown_splits}; expected one of {SPLITS}")
    unknown_roles = sorted(set(tracks["role"]) - set(ROLES))
    if unknown_roles:
        raise ManifestError(name, f"unknown role(s) {unknown_roles}; expected one of {ROLES}")
    bad_durations = tracks.loc[~(tracks["duration_s"] > 0), "track_id"].tolist()
    if bad_durations:
        raise ManifestError(name, f"duration_s must be > 0 for tracks {bad_durations[:5]}")
    if check_files:
        _require_existing_files(tracks["path"], "path", name)
    check_no_leakage(tracks, name)


def check_no_leakage(tracks: pd.DataFrame, name: str | Path) -> None:
    """No group (song, artist: the ``group`` column when present) in both train and eval."""
    if "group" not in tracks:
        return
    train_groups = set(tracks.loc[tracks["split"] == "train", "group"].dropna())
    eval_groups = set(tracks.loc[tracks["split"].isin(EVAL_SPLITS), "group"].dropna())
    leaked = sorted(train_groups & eval_groups)
    if leaked:
        raise ManifestError(name, f"train/eval leakage: group(s) {leaked[:5]} are in both")


def validate_queries(
    queries: pd.DataFrame,
    tracks: pd.DataFrame,
    name: str | Path,
    check_files: bool = True,
) -> None:
    """Schema, unique ids, a location for every query, known and non-training tracks."""
    _require_columns(queries, QUERY_COLUMNS, name)
    _require_unique(queries, "query_id", name)
    has_path = queries["path"].notna() if "path" in queries else pd.Series(False, queries.index)
    has_source = (
        queries["source"].notna() & queries["offset_s"].notna()
        if {"source", "offset_s"} <= set(queries.columns)
        else pd.Series(False, queries.index)
    )
    unlocated = queries.loc[~(has_path | has_source), "query_id"].tolist()
    if unlocated:
        raise ManifestError(name, f"queries {unlocated[:5]} have neither path nor source+offset_s")
    unknown = sorted(set(queries["track_id"]) - set(tracks["track_id"]))
    if unknown:
        raise ManifestError(name, f"queries point at unknown track_id(s) {unknown[:5]}")
    training = set(tracks.loc[tracks["split"] == "train", "track_id"])
    leaked = sorted(set(queries["track_id"]) & training)
    if leaked:
        raise ManifestError(name, f"train/eval leakage: queries of training track(s) {leaked[:5]}")
    if check_files:
        if "path" in queries:
            _require_existing_files(queries.loc[has_path, "path"], "path", name)
        if "source" in queries:
            _require_existing_files(queries.loc[has_source & ~has_path, "source"], "source", name)


def read_queries(path: str | Path, require_truth: bool = True) -> pd.DataFrame:
    """A query table with ``query_id`` and ``path`` (or ``source`` + ``offset_s`` +
    ``length_s``), and ``track_id`` when the truth is needed; relative paths resolve against
    the table's folder."""
    path = Path(path)
    queries = resolve_paths(read_table(path), path.parent, ["path", "source"])
    required = ["query_id", *(["track_id"] if require_truth else [])]
    if "path" not in queries and "source" not in queries:
        required.append("path")
    _require_columns(queries, required, path)
    _require_unique(queries, "query_id", path)
    return queries


@dataclass(frozen=True)
class QueryClip:
    """Where a query's audio is: its own file (``offset_s`` 0, to its end), or the stretch
    ``[offset_s, offset_s + duration_s)`` of a ``source`` recording."""

    path: str
    offset_s: float = 0.0
    duration_s: float | None = None

    @classmethod
    def of(cls, query: Mapping[str, Any]) -> QueryClip:
        """The clip of a query-table row (``path``, or ``source``, ``offset_s``, ``length_s``)."""
        path = query.get("path")
        if isinstance(path, str) and path:
            return cls(path)
        return cls(query["source"], float(query["offset_s"]), float(query["length_s"]))

    def window(self, start_s: float, duration_s: float | None = None) -> QueryClip:
        """``[start_s, start_s + duration_s)`` of this clip, cut at the clip's end."""
        if self.duration_s is not None:
            remaining_s = self.duration_s - start_s
            duration_s = remaining_s if duration_s is None else min(duration_s, remaining_s)
        return QueryClip(self.path, self.offset_s + start_s, duration_s)

    def read(self) -> tuple[np.ndarray, int]:
        """The clip's audio at its file's own rate, and that rate (acr.audio.read_audio)."""
        return read_audio(self.path, self.offset_s, self.duration_s)

    def load(self, sample_rate: int) -> np.ndarray:
        """The clip's audio at ``sample_rate``."""
        return load_audio(self.path, sample_rate, self.offset_s, self.duration_s)


PARENT = "parent"  # a folder track's folder relative to the root ("." at the top)


def track_id_of(path: str | Path, root: str | Path) -> str:
    """The track id of an audio file under a folder: its path below the folder without the
    extension (``album1/song3``), so equal file names in different folders stay apart. The one
    rule for every folder of audio (``acr index``, ``acr data prepare folder``, training)."""
    relative = Path(path)
    if relative.is_absolute() and relative.is_relative_to(root):
        relative = relative.relative_to(root)
    return relative.with_suffix("").as_posix()


def folder_tracks(root: Path, exclude: Callable[[Path], bool] | None = None) -> pd.DataFrame:
    """``track_id, path, parent`` of every audio file under ``root``, sorted by id.

    Hidden files and folders (names starting with ".") and paths ``exclude`` flags are left out;
    two files with one id (``song.ogg`` beside ``song.mp3``) are an error naming both.
    """
    paths = [
        path
        for path in audio_files(root)
        if not any(part.startswith(".") for part in path.relative_to(root).parts)
        and not (exclude is not None and exclude(path))
    ]
    if not paths:
        raise ManifestError(root, f"no audio file ({', '.join(AUDIO_EXTENSIONS)}) in any folder")
    relative = [path.relative_to(root) for path in paths]
    tracks = pd.DataFrame(
        {
            "track_id": [track_id_of(r, root) for r in relative],
            "path": [str(path) for path in paths],
            PARENT: [r.parent.as_posix() for r in relative],
        }
    )
    _require_unique_track_ids(tracks, root)
    return tracks


def read_catalog(catalog: str | Path) -> pd.DataFrame:
    """``track_id, path`` for every track of a catalog: a folder of audio or a CSV/JSONL table.

    A folder is read with :func:`folder_tracks` (a track's id is its path below the folder
    without the extension); in a table, relative paths resolve against the table's folder.
    Extra table columns are kept.
    """
    catalog = Path(catalog)
    if catalog.is_dir():
        table = folder_tracks(catalog)
    elif catalog.is_file():
        table = read_table(catalog)
        _require_columns(table, ("track_id", "path"), catalog)
        table = resolve_paths(table, catalog.parent, ["path"])
    else:
        raise ManifestError(catalog, "catalog does not exist (expected a folder or a CSV/JSONL)")
    if table.empty:
        raise ManifestError(catalog, "catalog holds no audio files")
    _require_unique_track_ids(table, catalog)
    return table.reset_index(drop=True)


def _require_unique_track_ids(table: pd.DataFrame, name: str | Path) -> None:
    duplicated = table[table["track_id"].duplicated(keep=False)].sort_values("track_id")
    if not duplicated.empty:
        track_id, paths = duplicated["track_id"].iloc[0], duplicated.head(2)["path"].tolist()
        raise ManifestError(name, f"duplicate track_id {track_id!r} ({' and '.join(paths)})")


def bucket_columns(queries: pd.DataFrame) -> list[str]:
    """Every other query column is a bucket (degradation, length_s, genre, hard_case...)."""
    return [column for column in queries.columns if column not in QUERY_DETAIL_COLUMNS]

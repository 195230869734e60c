"""Track and query tables: the schema every data source is normalised to, with validation.

A *track table* lists recordings (``track_id, path, duration_s, split, role, source, ...``); a
*query table* lists clips to identify (``query_id, track_id, path`` or ``source + offset_s``,
``length_s``, plus bucket columns such as ``degradation``). Both are CSV or JSONL on disk, with
paths relative to the table's own folder so a data directory can move.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

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
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=path.suffix + ".tmp")
    os.close(handle)
    if path.suffix == ".csv":
        table.to_csv(temporary, index=False)
    elif path.suffix in (".jsonl", ".json"):
        table.to_json(temporary, orient="records", lines=True)
    else:
        os.unlink(temporary)
        raise ManifestError(path, "unknown table format (use .csv or .jsonl)")
    os.replace(temporary, path)


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


AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff")


def audio_files(root: Path) -> list[Path]:
    """Every audio file (by extension) under ``root``, recursively, sorted."""
    return sorted(
        path
        for path in root.rglob("*")
        if path.suffix.lower() in AUDIO_EXTENSIONS and path.is_file()
    )


def read_catalog(catalog: str | Path) -> pd.DataFrame:
    """``track_id, path`` for every track of a catalog: a folder of audio or a CSV/JSONL table.

    In a folder (searched recursively) the track id is the file name without extension; in a
    table, relative paths resolve against the table's folder. Extra table columns are kept.
    """
    catalog = Path(catalog)
    if catalog.is_dir():
        paths = audio_files(catalog)
        table = pd.DataFrame({"track_id": [p.stem for p in paths], "path": [str(p) for p in paths]})
    elif catalog.is_file():
        table = read_table(catalog)
        _require_columns(table, ("track_id", "path"), catalog)
        table = resolve_paths(table, catalog.parent, ["path"])
    else:
        raise ManifestError(catalog, "catalog does not exist (expected a folder or a CSV/JSONL)")
    if table.empty:
        raise ManifestError(catalog, "catalog holds no audio files")
    duplicated = table[table["track_id"].duplicated(keep=False)].sort_values("track_id")
    if not duplicated.empty:
        track_id, paths = duplicated["track_id"].iloc[0], duplicated.head(2)["path"].tolist()
        raise ManifestError(catalog, f"duplicate track_id {track_id!r} ({' and '.join(paths)})")
    return table.reset_index(drop=True)


def bucket_columns(queries: pd.DataFrame) -> list[str]:
    """Every other query column is a bucket (degradation, length_s, genre, hard_case...)."""
    return [column for column in queries.columns if column not in QUERY_DETAIL_COLUMNS]

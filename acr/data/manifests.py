"""Track and query tables: the schema every data source is normalised to, with validation.

A *track table* lists recordings (``track_id, path, duration_s, split, role, source, ...``); a
*query table* lists clips to identify (``query_id, track_id, path`` or ``source + offset_s``,
``length_s``, plus bucket columns such as ``degradation``). Both are CSV or JSONL on disk, with
paths relative to the table's own folder so a data directory can move.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from acr.audio import load_audio, read_audio
from acr.files import json_default, replacing

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
    "in_catalog",  # false on out-of-catalog queries (make-queries --out_of_catalog)
)


# A file name that is not valid UTF-8 reaches Python as surrogate escapes (PEP 383); tables keep
# its bytes as they were, so the path in a table still opens the file.
FILE_NAME_ERRORS = "surrogateescape"


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
        table = pd.read_csv(
            path,
            dtype=id_types,
            keep_default_na=False,
            na_values=[""],
            encoding_errors=FILE_NAME_ERRORS,
        )
    elif path.suffix in (".jsonl", ".json"):
        table = pd.read_json(path, lines=True, dtype=id_types)
    else:
        raise ManifestError(path, "unknown table format (use .csv or .jsonl)")
    table.attrs["first_line"] = 2 if path.suffix == ".csv" else 1  # a CSV's header is line 1
    return table


def line_numbers(table: pd.DataFrame) -> range:
    """The file line of each row of a table from :func:`read_table`, for messages (a cell
    holding a line break puts the rows after it one line further)."""
    first = table.attrs.get("first_line", 1)
    return range(first, first + len(table))


def write_table(table: pd.DataFrame, path: str | Path) -> None:
    """Write atomically (temp file + rename), so an interrupted run leaves no half table."""
    path = Path(path)
    if path.suffix not in (".csv", ".jsonl", ".json"):
        raise ManifestError(path, "unknown table format (use .csv or .jsonl)")
    with replacing(path) as temporary:
        if path.suffix == ".csv":
            # RFC 4180 line ends: the csv module quotes a field holding any character of the
            # line terminator, so with "\n" alone a "\r" in an id went out bare, splitting a row.
            table.to_csv(temporary, index=False, lineterminator="\r\n", errors=FILE_NAME_ERRORS)
        else:
            # json, not pandas: pandas refuses the surrogates of a non-UTF-8 file name, which
            # json writes as \udcXX escapes and reads back as they were.
            rows = table.astype(object).where(table.notna(), None).to_dict(orient="records")
            lines = (json.dumps(row, allow_nan=False, default=json_default) for row in rows)
            temporary.write_text("".join(line + "\n" for line in lines))


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


def require_columns(table: pd.DataFrame, columns: Iterable[str], name: str | Path) -> None:
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ManifestError(name, f"missing column(s) {missing}; found {list(table.columns)}")


def _require_unique(table: pd.DataFrame, column: str, name: str | Path) -> None:
    """Non-empty values of ``column`` are unique (an empty one is its row's own problem)."""
    values = table[column].where([not blank(value) for value in table[column]])
    duplicated = values[values.notna() & values.duplicated()].unique().tolist()
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
    require_columns(tracks, TRACK_COLUMNS, name)
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
    require_columns(queries, QUERY_COLUMNS, name)
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
    the table's folder. A row without a usable id or clip is kept: it is that row's error
    (:func:`id_problem`, :meth:`QueryClip.of`), not the table's."""
    path = Path(path)
    queries = resolve_paths(read_table(path), path.parent, ["path", "source"])
    required = ["query_id", *(["track_id"] if require_truth else [])]
    if "path" not in queries and "source" not in queries:
        required.append("path")
    require_columns(queries, required, path)
    _require_unique(queries, "query_id", path)
    return queries


def blank(value: Any) -> bool:
    """No id: a missing cell (NaN, null), or spaces only."""
    return not isinstance(value, str) or not value.strip()


def id_problem(value: Any, column: str = "track_id") -> str | None:
    """Why ``value`` is not a usable track id, or None: a track id is non-empty text with no
    control character (a newline, a NUL, an escape), as file names and terminals need."""
    if blank(value):
        return f"empty {column}"
    control = next((c for c in value if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return f"{column} {value!r} holds a control character (U+{ord(control):04X})"
    return None


@dataclass(frozen=True)
class QueryClip:
    """Where a query's audio is: its own file (``offset_s`` 0, to its end), or the stretch
    ``[offset_s, offset_s + duration_s)`` of a ``source`` recording."""

    path: str
    offset_s: float = 0.0
    duration_s: float | None = None

    @classmethod
    def of(cls, query: Mapping[str, Any]) -> QueryClip:
        """The clip of a query-table row (``path``, or ``source``, ``offset_s``, ``length_s``);
        a ValueError saying what is missing or wrong when the row names no clip."""
        path = query.get("path")
        if isinstance(path, str) and path:
            return cls(path)
        source = query.get("source")
        if not (isinstance(source, str) and source):
            raise ValueError("no path, and no source with offset_s and length_s")
        offset_s, length_s = _number(query.get("offset_s")), _number(query.get("length_s"))
        if offset_s is None or offset_s < 0:
            raise ValueError(f"offset_s must be a number >= 0, not {_cell(query, 'offset_s')}")
        if length_s is None or length_s <= 0:
            raise ValueError(f"length_s must be a number > 0, not {_cell(query, 'length_s')}")
        return cls(source, offset_s, length_s)

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


def _cell(row: Mapping[str, Any], column: str) -> str:
    """A cell as an error message shows it: ``empty`` for a missing value, else its repr."""
    value = row.get(column)
    missing = value is None or value == "" or (isinstance(value, float) and math.isnan(value))
    return "empty" if missing else repr(value)


def _number(value: Any) -> float | None:
    """``value`` as a finite float, or None (an empty cell, text, a list)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def bucket_columns(queries: pd.DataFrame) -> list[str]:
    """Every other query column is a bucket (degradation, length_s, genre, hard_case...)."""
    return [column for column in queries.columns if column not in QUERY_DETAIL_COLUMNS]

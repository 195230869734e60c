"""Catalogs: the tracks to index or query, from a folder of audio or a track table.

One track-id rule for every folder of audio (``track_id_of``), and what a catalog holds that
cannot be a track (an entry that is not a file, a row without an id or a path) listed with the
reason, so that the caller reports it and goes on with the others.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from acr.audio import AUDIO_EXTENSIONS
from acr.data.manifests import (
    ManifestError,
    blank,
    id_problem,
    line_numbers,
    read_table,
    require_columns,
    resolve_paths,
)

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
    two files with one id (``song.ogg`` beside ``song.mp3``) are an error naming both. An entry
    with an audio extension that is no file to read (a folder named ``x.wav``, a broken link, a
    link loop) or whose id is not usable is listed in ``attrs["rejected"]``, with the reason.
    """
    tracks, rejected = [], []
    for path in sorted(Path(root).rglob("*")):
        relative = path.relative_to(root)
        if (
            path.suffix.lower() not in AUDIO_EXTENSIONS
            or any(part.startswith(".") for part in relative.parts)
            or (exclude is not None and exclude(path))
        ):
            continue
        track_id = track_id_of(relative, root)
        reason = _not_a_file(path) or id_problem(track_id)
        if reason:
            rejected.append({"track_id": "", "path": str(path), "reason": reason})
        else:
            tracks.append(
                {"track_id": track_id, "path": str(path), PARENT: relative.parent.as_posix()}
            )
    if not tracks:
        found = f"; {_rejections(rejected)}" if rejected else ""
        extensions = ", ".join(AUDIO_EXTENSIONS)
        raise ManifestError(root, f"no audio file ({extensions}) in any folder{found}")
    table = pd.DataFrame(tracks)
    _require_unique_track_ids(table, root)
    table.attrs["rejected"] = rejected
    return table


def _not_a_file(path: Path) -> str | None:
    """Why an audio-named entry cannot be read as a file, or None for a regular file."""
    if path.is_file():
        return None
    if path.is_symlink():
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            return "a broken link: its target does not exist"
        except (RuntimeError, OSError):  # RuntimeError: Python < 3.13's "Symlink loop"
            return "a link loop: the link leads back to itself"
        return f"a link to a {'folder' if target.is_dir() else 'special file'}, not an audio file"
    return "a folder, not an audio file" if path.is_dir() else "a special file, not an audio file"


def read_catalog(catalog: str | Path) -> pd.DataFrame:
    """``track_id, path`` for every track of a catalog: a folder of audio or a CSV/JSONL table.

    A folder is read with :func:`folder_tracks` (a track's id is its path below the folder
    without the extension); in a table, relative paths resolve against the table's folder.
    Extra table columns are kept. Rows that cannot be a track (an empty or unusable track_id,
    an empty path) are left out and listed in ``attrs["rejected"]`` as ``track_id, path,
    reason`` (skipped.csv's columns), so the caller can report them and go on with the
    others. The reason names the row by its line (:func:`line_numbers`) and gives its id;
    the track_id column stays empty, so that no rejected id is taken for a track already done
    when a corrected catalog is resumed. Duplicate ids are an error.
    """
    catalog = Path(catalog)
    if catalog.is_dir():
        table = folder_tracks(catalog)
        rejected = table.attrs["rejected"]
    elif catalog.is_file():
        table = read_table(catalog)
        require_columns(table, ("track_id", "path"), catalog)
        if table.empty:
            raise ManifestError(catalog, "catalog holds no audio files")
        table, rejected = _usable_rows(table)
        table = resolve_paths(table, catalog.parent, ["path"])
        if table.empty:
            raise ManifestError(catalog, f"catalog holds no usable row: {_rejections(rejected)}")
    else:
        raise ManifestError(catalog, "catalog does not exist (expected a folder or a CSV/JSONL)")
    _require_unique_track_ids(table, catalog)
    table = table.reset_index(drop=True)
    table.attrs["rejected"] = rejected
    return table


def _usable_rows(table: pd.DataFrame) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """The rows with a usable track_id and a path, and the others with the reason."""
    usable, rejected = [], []
    for line, track_id, path in zip(line_numbers(table), table["track_id"], table["path"]):
        problem = id_problem(track_id) or (
            f"empty path (track_id {track_id!r})" if blank(path) else None
        )
        usable.append(problem is None)
        if problem is not None:
            path = path if isinstance(path, str) else ""
            rejected.append({"track_id": "", "path": path, "reason": f"line {line}: {problem}"})
    return table[usable], rejected


def _rejections(rejected: list[dict[str, str]]) -> str:
    """``N rejected, e.g. PATH: REASON`` for an error message."""
    path, reason = rejected[0]["path"], rejected[0]["reason"]
    return f"{len(rejected)} rejected, e.g. {f'{path}: ' if path else ''}{reason}"


def _require_unique_track_ids(table: pd.DataFrame, name: str | Path) -> None:
    duplicated = table[table["track_id"].duplicated(keep=False)].sort_values("track_id")
    if not duplicated.empty:
        track_id, paths = duplicated["track_id"].iloc[0], duplicated.head(2)["path"].tolist()
        raise ManifestError(name, f"duplicate track_id {track_id!r} ({' and '.join(paths)})")

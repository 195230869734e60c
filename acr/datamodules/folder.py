"""FolderDataModule: any folder of audio files, split by a seeded hash of track or group.

Files are found recursively (the formats acr.audio reads); a track's id is its path relative to
the root without the extension (``album1/song3``), so equal file names in different folders stay
apart. An optional metadata table adds columns (artist, genre, ...) that can be query buckets or
the grouping that keeps an artist or album inside one split.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from acr.data.catalogs import PARENT, folder_tracks, track_id_of
from acr.data.manifests import TRACK_COLUMNS, ManifestError, read_table
from acr.data.splits import check_fractions, seeded_split, unit_keys
from acr.datamodules.catalog import NO_LABEL, CatalogDataModule
from acr.files import sha256_file

GROUP = "group"  # the manifest column check_no_leakage reads


class FolderDataModule(CatalogDataModule):
    """Every audio file under ``root`` (recursively), with a seeded split.

    Tracks carry ``parent`` (their folder). The split is drawn by track, or with ``group_by`` by
    group: ``"parent"`` keeps each folder (album, artist) whole, a metadata column keeps each of
    its values whole. The group goes to the manifest's ``group`` column, so the leakage check
    proves no group is in both training and evaluation. Files are listed once per set of
    settings: after adding audio, change a setting or delete the cached folder under data_dir.

    Args:
        root: the folder of audio; files and folders whose names start with "." are ignored.
        val_fraction: share of tracks (in whole units) in the validation split.
        test_fraction: share of tracks (in whole units) held out for testing.
        split_seed: seeds the split; the same seed gives the same split on any machine.
        group_by: None (split by track), "parent", or a metadata column.
        metadata: a CSV/JSONL with ``track_id`` (``album1/song3``) or ``path`` (relative to root,
            with extension) and extra columns that are copied onto the tracks.
        bucket_columns: track columns (``parent`` or metadata columns) copied onto the validation
            queries, where they become buckets; tracks without a value get "none".
    """

    source = "folder"

    def __init__(
        self,
        data_dir: str = "data/folder",
        root: str = "data/music",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        group_by: str | None = None,
        metadata: str | None = None,
        bucket_columns: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        check_fractions(val_fraction, test_fraction)
        if isinstance(bucket_columns, str):  # "genre,mood" from a command line
            bucket_columns = [column for column in bucket_columns.split(",") if column]
        needs_metadata = sorted({group_by or PARENT, *bucket_columns} - {PARENT})
        if needs_metadata and metadata is None:
            raise ValueError(
                f"group_by/bucket_columns: {needs_metadata} are not folder columns (only"
                f" {PARENT!r} is); give a metadata table that has them"
            )
        super().__init__(data_dir=data_dir, root=root, **kwargs)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.group_by = group_by
        self.metadata = Path(metadata).expanduser().absolute() if metadata else None
        self.label_columns = tuple(bucket_columns)

    def manifest_settings(self) -> dict[str, Any]:
        return {
            **super().manifest_settings(),
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
            "group_by": self.group_by,
            "metadata": str(self.metadata) if self.metadata else None,
            "metadata_sha256": self.metadata and sha256_file(self.metadata),
            "bucket_columns": self.label_columns,
        }

    def list_tracks(self) -> pd.DataFrame:
        if not self.root.is_dir():
            raise FileNotFoundError(f"root: {self.root} is not a folder")
        tracks = folder_tracks(self.root, exclude=self._is_cached_output)
        rejected = tracks.attrs["rejected"]
        if self.metadata is not None:
            tracks = join_metadata(tracks, self.metadata, self.root, self.group_by)
        missing = [c for c in self.label_columns if c not in tracks]
        if missing:
            raise ManifestError(self.metadata, f"bucket_columns: no column(s) {missing}")
        for column in self.label_columns:
            tracks[column] = tracks[column].fillna(NO_LABEL)
        if self.group_by is not None:
            if self.group_by not in tracks:
                raise ManifestError(self.metadata, f"group_by: no column {self.group_by!r}")
            tracks[GROUP] = tracks[self.group_by].astype("string")
        units = unit_keys(tracks["track_id"], tracks.get(GROUP))
        split = seeded_split(units, self.val_fraction, self.test_fraction, self.split_seed)
        tracks.insert(2, "split", split.to_numpy())
        tracks.attrs["rejected"] = rejected  # entries that are no track, for skipped.csv
        return tracks

    def _is_cached_output(self, path: Path) -> bool:
        """A file in one of this class's cache folders (its queries), if data_dir is in root."""
        try:
            relative = path.relative_to(self.data_dir.absolute())
        except ValueError:
            return False
        return relative.parts[0].startswith(f"{type(self).__name__.lower()}-")


def join_metadata(
    tracks: pd.DataFrame, metadata: Path, root: Path, group_by: str | None = None
) -> pd.DataFrame:
    """Add the metadata table's columns, matched on ``track_id`` or on the relative ``path``."""
    table = read_table(metadata)
    key = "track_id" if "track_id" in table else "path" if "path" in table else None
    if key is None:
        raise ManifestError(metadata, f"needs a track_id or path column; found {list(table)}")
    reserved = set(TRACK_COLUMNS) | {PARENT, "in_val_catalog"} | ({GROUP} - {group_by})
    clashing = sorted(reserved & set(table.columns) - {key})
    if clashing:
        raise ManifestError(metadata, f"column(s) {clashing} are set by acr; rename them")
    table = table.dropna(subset=[key]).copy()
    if key == "path":
        table["track_id"] = [track_id_of(value, root) for value in table.pop("path")]
    table["track_id"] = table["track_id"].astype(str)
    duplicated = table.loc[table["track_id"].duplicated(), "track_id"].tolist()
    if duplicated:
        raise ManifestError(metadata, f"more than one row for track(s) {duplicated[:5]}")
    unmatched = sorted(set(table["track_id"]) - set(tracks["track_id"]))
    if unmatched:
        warnings.warn(
            f"{metadata}: {len(unmatched)} row(s) match no audio file under root,"
            f" e.g. {unmatched[0]!r}",
            stacklevel=3,
        )
    return tracks.merge(table, on="track_id", how="left")

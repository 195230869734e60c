"""BusinessDataModule: a business's asset export normalised to manifests by a YAML mapping.

An export (CSV, JSONL or SQL dump; acr.data.exports) lists assets: catalog references and
query clips (live takes, covers, hums, ...) that name the reference they are of. The mapping says
which export column is which manifest field and how export values translate (see
configs/business_mapping.yaml). Rows that cannot be used are listed in ``rejected.csv`` with a
reason and counted in a warning, never dropped silently.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from acr.data.export_mapping import read_mapping
from acr.data.exports import read_export
from acr.data.manifests import (
    TRACK_COLUMNS,
    ManifestError,
    check_no_leakage,
    write_table,
)
from acr.data.splits import check_fractions, seeded_split, unit_keys
from acr.datamodules.base import QUERIES_FILE, TRACKS_FILE
from acr.datamodules.catalog import NO_LABEL, CatalogDataModule, probe_tracks
from acr.files import sha256_file

REJECTED_FILE = "rejected.csv"
REASONS = (
    "missing_id",  # no asset id
    "duplicate_id",  # an earlier row has the same asset id
    "unknown_role",  # role empty or not in the mapping
    "unknown_type",
    "unknown_split",
    "missing_audio",  # no path, or no file there
    "unreadable_audio",  # cannot decode, empty, truncated
    "unknown_reference",  # a query whose reference is empty or not a usable reference row
    "reference_in_train",  # a query of a training reference would leak training audio into eval
)


class BusinessDataModule(CatalogDataModule):
    """A business export's assets as references (tracks.csv) and queries (queries.csv).

    References are split by a seeded hash of the mapped group (or of the track), or by the
    export's own split column; references that have queries go to val/test first, so few queries
    are lost to the training split. Queries carry ``hard_case`` (their mapped type), the
    reference's labels as buckets, and ``length_s`` from the file header. An export with no
    query rows gets degraded validation queries like any CatalogDataModule.

    Args:
        export: the export, ``.csv``, ``.tsv``, ``.jsonl``, ``.json`` or ``.sql`` (or ``.gz``).
        mapping: the YAML mapping (see configs/business_mapping.yaml).
        val_fraction: share of references in the validation split (seeded split only).
        test_fraction: share of references held out for testing (seeded split only).
        split_seed: seeds the split.
        query_length_step_s: a query's ``length_s`` (a bucket) is its duration rounded down to a
            multiple of this, so clips of 3.2 and 3.7 s share the bucket 3; 0 keeps it exact.
            Audio past ``length_s`` is not scored. Shorter clips keep their duration.
    """

    source = "business"

    def __init__(
        self,
        data_dir: str = "data/business",
        export: str = "data/business/export.csv",
        mapping: str = "configs/business_mapping.yaml",
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        split_seed: int = 0,
        query_length_step_s: float = 1.0,
        **kwargs: Any,
    ) -> None:
        check_fractions(val_fraction, test_fraction)
        if query_length_step_s < 0:
            raise ValueError(f"query_length_step_s must be >= 0, got {query_length_step_s}")
        self.export = Path(export).expanduser().absolute()
        self.mapping = read_mapping(Path(mapping).expanduser().absolute())
        audio_root = Path(self.mapping.audio_root or ".").expanduser()
        super().__init__(data_dir=data_dir, root=str(self.export.parent / audio_root), **kwargs)
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.split_seed = split_seed
        self.query_length_step_s = query_length_step_s
        self.label_columns = tuple(self.mapping.labels)

    def manifest_settings(self) -> dict[str, Any]:
        stat = self.export.stat() if self.export.is_file() else None
        return {
            **super().manifest_settings(),
            "export": str(self.export),
            "export_size": stat.st_size if stat else None,
            "export_mtime_ns": stat.st_mtime_ns if stat else None,
            "mapping": str(self.mapping.path),
            "mapping_sha256": sha256_file(self.mapping.path),
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "split_seed": self.split_seed,
            "query_length_step_s": self.query_length_step_s,
        }

    def list_tracks(self) -> pd.DataFrame:
        """The references that pass the row checks, with their split (files not yet probed)."""
        assets, _, _ = self._read_assets()
        return _track_table(self._split(assets), schema=("track_id", "path", "split"))

    def build_manifests(self, directory: Path) -> None:
        assets, rejected, has_queries = self._read_assets()
        total = len(assets) + sum(map(len, rejected))
        split_of = self._split(assets).set_index("track_id")["split"]
        assets["split"] = assets["track_id"].map(split_of)
        probed, unusable = probe_tracks(assets.drop(columns="row"), self.probe_workers)
        probed = probed.merge(assets[["track_id", "row"]], on="track_id")
        unusable = unusable.merge(assets[["track_id", "row"]], on="track_id")
        missing = unusable["reason"] == "file does not exist"
        rejected += [
            _rejections(unusable[missing], "missing_audio", unusable["reason"]),
            _rejections(unusable[~missing], "unreadable_audio", unusable["reason"]),
        ]
        tracks = probed[probed["role"] == "reference"].reset_index(drop=True)
        queries = probed[probed["role"] == "query"].reset_index(drop=True)
        reference_split = queries["reference"].map(tracks.set_index("track_id")["split"])
        reference = "reference " + queries["reference"].fillna("(empty)").astype(str)
        rejected += [
            _rejections(
                queries[reference_split.isna()],
                "unknown_reference",
                reference + " is no usable reference row",
            ),
            _rejections(
                queries[reference_split == "train"],
                "reference_in_train",
                reference + " is in the train split",
            ),
        ]
        queries = queries[reference_split.notna() & (reference_split != "train")]
        self._report(pd.concat(rejected, ignore_index=True), total, directory)
        for split in ("train", "val"):
            if not (tracks["split"] == split).any():
                raise ManifestError(self.export, f"no usable reference in the {split} split")
        tracks = tracks.assign(role="reference", source=self.source)
        if not has_queries:  # make validation queries, as for any catalog
            queried = self._sample(tracks.index[tracks["split"] == "val"], self.val_query_tracks)
            tracks["in_val_catalog"] = self._val_catalog_mask(tracks, queried)
            write_table(_track_table(tracks), directory / TRACKS_FILE)
            write_table(
                self._make_queries(tracks.loc[queried], directory), directory / QUERIES_FILE
            )
            return
        is_queried = tracks["track_id"].isin(queries["reference"])
        queried = tracks.index[(tracks["split"] == "val") & is_queried]
        if queried.empty:
            raise ManifestError(
                self.export, f"no usable query of a val reference; see {directory / REJECTED_FILE}"
            )
        tracks["in_val_catalog"] = self._catalog_mask(tracks, queried)
        write_table(_track_table(tracks), directory / TRACKS_FILE)
        write_table(self._query_table(queries, tracks), directory / QUERIES_FILE)

    def _query_table(self, queries: pd.DataFrame, tracks: pd.DataFrame) -> pd.DataFrame:
        """queries.csv: the export's clips, with hard_case and the reference's labels as buckets."""
        table = pd.DataFrame(
            {
                "query_id": queries["track_id"].to_numpy(),
                "path": queries["path"].to_numpy(),
                "track_id": queries["reference"].to_numpy(),
                "length_s": [self._length_s(duration) for duration in queries["duration_s"]],
            }
        )
        if "type" in self.mapping.columns:
            table["hard_case"] = queries["type"].to_numpy()
        labels = tracks.set_index("track_id")[list(self.label_columns)]
        return table.join(labels, on="track_id")

    def _read_assets(self) -> tuple[pd.DataFrame, list[pd.DataFrame], bool]:
        """(assets that pass the row checks, rejections, whether any row is a query)."""
        export = read_export(self.export, self.mapping.table)
        self.mapping.check_columns(export, self.export)
        raw = {key: _stripped(export[column]) for key, column in self.mapping.columns.items()}
        assets = pd.DataFrame({"row": range(1, len(export) + 1), "track_id": raw["track_id"]})
        assets["path"] = [self._audio_path(path) for path in raw["path"]]
        for name in ("role", "type", "split"):
            if name in raw:
                assets[name] = self.mapping.translate(name, raw[name])
        if "role" not in raw:
            assets["role"] = "reference"
        assets["split"] = assets.get("split")  # probe_tracks reports it; None until split
        assets["reference"] = raw.get("reference")
        if "group" in raw:
            assets["group"] = raw["group"]
        for label, column in self.mapping.labels.items():
            assets[label] = _stripped(export[column]).fillna(NO_LABEL)
        never = pd.Series(False, assets.index)
        first_row = assets.groupby("track_id")["row"].transform("first")
        checks = [
            ("missing_id", assets["track_id"].isna(), "no asset id"),
            (
                "duplicate_id",
                assets["track_id"].duplicated() & assets["track_id"].notna(),
                "row " + first_row.astype("Int64").astype(str) + " has the same id",
            ),
            ("unknown_role", assets["role"].isna(), _described("role", raw)),
            (
                "unknown_type",
                assets["type"].isna() if "type" in raw else never,
                _described("type", raw),
            ),
            (
                "unknown_split",
                (assets["role"] == "reference") & assets["split"].isna()
                if "split" in raw
                else never,
                _described("split", raw),
            ),
            ("missing_audio", assets["path"].isna(), "no audio path"),
        ]
        rejected, keep = [], pd.Series(True, assets.index)
        for reason, failed, detail in checks:
            rejected.append(_rejections(assets[failed & keep], reason, detail))
            keep &= ~failed
        has_queries = bool((assets["role"] == "query").any())
        return assets[keep].reset_index(drop=True), rejected, has_queries

    def _audio_path(self, path: str | None) -> str | None:
        if path is None or pd.isna(path):
            return None
        return str(self.root / Path(path).expanduser())  # an absolute path stays as it is

    def _split(self, assets: pd.DataFrame) -> pd.DataFrame:
        """The references, split as the export says or by a seeded hash of their group.

        In a seeded split, references that some query row names go to val and test first, so
        as few queries as possible are lost to training. The split is drawn before any file is
        probed: a file that breaks or is fixed moves no other track.
        """
        tracks = assets[assets["role"] == "reference"].reset_index(drop=True)
        if "split" not in self.mapping.columns:
            referenced = assets.loc[assets["role"] == "query", "reference"]
            tracks["split"] = seeded_split(
                unit_keys(tracks["track_id"], tracks.get("group")),
                self.val_fraction,
                self.test_fraction,
                self.split_seed,
                first=tracks["track_id"].isin(referenced),
            )
        check_no_leakage(tracks, self.export)
        return tracks

    def _catalog_mask(self, tracks: pd.DataFrame, queried: pd.Index) -> pd.Series:
        """Every queried val reference, plus distractors up to ``val_catalog_tracks``."""
        if self.val_catalog_tracks is not None and len(queried) >= self.val_catalog_tracks:
            return pd.Series(tracks.index.isin(queried), index=tracks.index)
        return self._val_catalog_mask(tracks, queried)

    def _length_s(self, duration_s: float) -> float:
        step = self.query_length_step_s
        if step <= 0 or duration_s < step:
            return round(float(duration_s), 2)
        return round(step * int(duration_s / step + 1e-9), 6)

    def _report(self, rejected: pd.DataFrame, total: int, directory: Path) -> None:
        rejected = rejected.sort_values("row").reset_index(drop=True)
        write_table(rejected, directory / REJECTED_FILE)
        if len(rejected):
            counts = rejected["reason"].value_counts()
            summary = ", ".join(f"{r} {counts[r]}" for r in REASONS if r in counts)
            warnings.warn(
                f"{type(self).__name__}: rejected {len(rejected)} of {total} export rows"
                f" ({summary}); the list is in {directory / REJECTED_FILE}",
                stacklevel=3,
            )


def _stripped(values: pd.Series) -> pd.Series:
    """Export text without surrounding spaces; empty text is missing."""
    text = values.map(lambda value: value.strip() if isinstance(value, str) else value)
    return text.where(text.notna() & (text != ""), None)


def _described(name: str, raw: dict[str, pd.Series]) -> pd.Series | str:
    """Why a row's role/type/split was not understood, for rejected.csv."""
    if name not in raw:
        return ""
    return raw[name].map(
        lambda value: (
            f"no {name}"
            if value is None
            else f"{name} {value!r} is not in the mapping (values.{name})"
        )
    )


def _rejections(rows: pd.DataFrame, reason: str, detail: pd.Series | str) -> pd.DataFrame:
    detail = detail.loc[rows.index] if isinstance(detail, pd.Series) else detail
    return pd.DataFrame(
        {
            "row": rows["row"].to_numpy(),
            "track_id": rows["track_id"].to_numpy(),
            "reason": reason,
            "detail": detail.to_numpy() if isinstance(detail, pd.Series) else detail,
        }
    )


def _track_table(tracks: pd.DataFrame, schema: tuple[str, ...] = TRACK_COLUMNS) -> pd.DataFrame:
    """The schema's columns first, then type, group and labels; no export bookkeeping."""
    others = [c for c in tracks if c not in (*schema, "row", "role", "reference")]
    return tracks[[*(c for c in schema if c in tracks), *others]]

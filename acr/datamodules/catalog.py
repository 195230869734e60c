"""CatalogDataModule: a published collection of audio files (FMA, MTG-Jamendo) as manifests.

It probes every file (header, and a decode of the tail, since truncated mp3s keep their full
length in the header), reports unusable files in ``skipped.csv`` instead of crashing, and makes
degraded validation queries from a seeded sample of the validation tracks.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from acr.audio import MIN_MUSIC_S, NON_FINITE, AudioError, audio_info, load_audio
from acr.augment.degradations import DEGRADATION_NAMES, check_degradations
from acr.data.manifests import ManifestError, write_table
from acr.data.query_sets import make_queries
from acr.data.segments.strategies import StrategyName
from acr.datamodules.base import QUERIES_FILE, TRACKS_FILE, ACRDataModule
from acr.files import SKIPPED_FILE

NO_LABEL = "none"  # bucket value of a track without that label (no genre tag, no genre_top)
# A header can claim more audio than a file holds: a truncated mp3 keeps its Xing frame count.
# Decoding the last TAIL_PROBE_S proves the claimed duration, so no training or validation window
# read at a random offset ever falls off the end; it costs ~5 ms per 30-s mp3, not a full decode.
TAIL_PROBE_S = 0.5


class CatalogDataModule(ACRDataModule):
    """A published collection of audio files with its own splits and labels.

    Subclasses know the layout and implement :meth:`list_tracks`. This class reads each file's
    header (durations come from headers, no full decode), skips and reports unusable files in
    ``skipped.csv``, writes ``tracks.csv`` and makes validation queries with
    :func:`acr.data.query_sets.make_queries` from a seeded sample of the val split.

    Args:
        root: where the collection lives.
        val_query_tracks: val tracks (a seeded sample) that get degraded queries.
        val_catalog_tracks: largest validation catalog: the queried tracks plus a seeded sample of
            other val tracks as distractors; None keeps the whole val split. Every validation
            embeds the whole catalog, which full-length tracks make costly.
        query_lengths_s: query lengths; every (length, degradation) pair gets one query per track.
        query_degradations: names from the registry (acr.augment.degradations).
        query_seed: seeds the track sample, the excerpts and the degradations.
        query_strategy: where validation query excerpts start, a segment strategy
            (acr.data.segments.strategies); anything but random analyses each queried track
            once and caches the analysis beside the manifests.
        probe_workers: threads reading headers (default: one per CPU core).
        query_workers: processes making queries (default: one per CPU core).
    """

    source = "catalog"  # the ``source`` column of tracks.csv
    label_columns: tuple[str, ...] = ()  # track labels copied onto queries as bucket columns

    def __init__(
        self,
        data_dir: str,
        root: str,
        val_query_tracks: int = 100,
        val_catalog_tracks: int | None = None,
        query_lengths_s: Sequence[float] = (1.0, 3.0, 5.0),
        query_degradations: Sequence[str] = DEGRADATION_NAMES,
        query_seed: int = 0,
        query_strategy: StrategyName = "random",
        probe_workers: int | None = None,
        query_workers: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(data_dir=data_dir, **kwargs)
        check_degradations(query_degradations, "query_degradations")
        if val_query_tracks < 1:
            raise ValueError(f"val_query_tracks must be >= 1, got {val_query_tracks}")
        if val_catalog_tracks is not None and val_catalog_tracks < val_query_tracks:
            raise ValueError(
                f"val_catalog_tracks={val_catalog_tracks} cannot be below "
                f"val_query_tracks={val_query_tracks}: every queried track is in the catalog"
            )
        self.root = Path(root).expanduser().absolute()
        self.val_query_tracks = val_query_tracks
        self.val_catalog_tracks = val_catalog_tracks
        self.query_lengths_s = tuple(float(length) for length in query_lengths_s)
        self.query_degradations = tuple(query_degradations)
        self.query_seed = query_seed
        self.query_strategy = query_strategy
        self.probe_workers = probe_workers
        self.query_workers = query_workers

    def list_tracks(self) -> pd.DataFrame:
        """``track_id, path`` (absolute), ``split`` and label columns of the selected tracks."""
        raise NotImplementedError(f"{type(self).__name__} must implement list_tracks")

    def manifest_settings(self) -> dict[str, Any]:
        return {
            **super().manifest_settings(),
            "root": str(self.root),
            "val_query_tracks": self.val_query_tracks,
            "val_catalog_tracks": self.val_catalog_tracks,
            "query_lengths_s": self.query_lengths_s,
            "query_degradations": self.query_degradations,
            "query_seed": self.query_seed,
            **({"query_strategy": self.query_strategy} if self.query_strategy != "random" else {}),
        }

    def catalog_tables(
        self, listed: pd.DataFrame | None = None
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(usable reference tracks with ``duration_s``, ``role``, ``source``; skipped tracks,
        with the listing's ``attrs["rejected"]`` entries first).

        The listing and file probing of :meth:`build_manifests`, without making queries;
        ``listed`` is this source's :meth:`list_tracks`, when the caller already has it.
        """
        if not self.root.is_dir():
            raise FileNotFoundError(f"root: {self.root} is not a folder")
        listed = self.list_tracks() if listed is None else listed
        tracks, skipped = probe_tracks(listed, self.probe_workers)
        # Entries the listing could not make a track of (a folder named x.wav, a broken link).
        rejected = pd.DataFrame(listed.attrs.get("rejected", []), columns=[*skipped.columns])
        if len(rejected):
            skipped = pd.concat([rejected.fillna(""), skipped], ignore_index=True)
        return tracks.assign(role="reference", source=self.source), skipped

    def build_manifests(self, directory: Path) -> None:
        tracks, skipped = self.catalog_tables()
        write_table(skipped, directory / SKIPPED_FILE)
        if len(skipped):
            warnings.warn(
                f"{type(self).__name__}: skipped {len(skipped)} of {len(tracks) + len(skipped)}"
                f" tracks whose audio is missing or unreadable; the list is in"
                f" {directory / SKIPPED_FILE}",
                stacklevel=3,
            )
        for split in ("train", "val"):
            if not (tracks["split"] == split).any():
                raise ManifestError(self.root, f"no usable track in the {split} split")
        queried = self._sample(tracks.index[tracks["split"] == "val"], self.val_query_tracks)
        tracks["in_val_catalog"] = self._val_catalog_mask(tracks, queried)
        write_table(tracks, directory / TRACKS_FILE)
        write_table(self._make_queries(tracks.loc[queried], directory), directory / QUERIES_FILE)

    @property
    def val_catalog(self) -> pd.DataFrame:
        catalog = super().val_catalog
        return catalog[catalog["in_val_catalog"]].reset_index(drop=True)

    def _sample(self, rows: pd.Index, count: int, stream: int = 0) -> pd.Index:
        """A seeded sample of ``count`` rows (all of them if there are fewer), in table order."""
        rng = np.random.default_rng([self.query_seed, stream])
        chosen = rng.choice(len(rows), size=min(count, len(rows)), replace=False)
        return rows[np.sort(chosen)]

    def _val_catalog_mask(self, tracks: pd.DataFrame, queried: pd.Index) -> pd.Series:
        is_val = tracks["split"] == "val"
        if self.val_catalog_tracks is None:
            return is_val
        others = tracks.index[is_val & ~tracks.index.isin(queried)]
        distractors = self._sample(others, self.val_catalog_tracks - len(queried), stream=1)
        return pd.Series(tracks.index.isin(queried.union(distractors)), index=tracks.index)

    def _make_queries(self, queried: pd.DataFrame, directory: Path) -> pd.DataFrame:
        """Degraded excerpts of the queried tracks, with their labels as bucket columns."""
        output = directory / "queries"
        with tempfile.TemporaryDirectory(dir=directory) as scratch:
            catalog = Path(scratch) / "catalog.csv"
            write_table(queried[["track_id", "path"]], catalog)
            queries = make_queries(
                catalog,
                output,
                lengths_s=self.query_lengths_s,
                degradations=self.query_degradations,
                seed=self.query_seed,
                sample_rate=self.sample_rate,
                workers=self.query_workers,
                strategy=self.query_strategy,
            )
        skipped = queries.attrs["skipped"]
        reasons = [f"{track_id}: {reason}" for track_id, reason in
                   zip(skipped["track_id"], skipped["reason"])]  # fmt: skip
        if queries.empty:
            raise ManifestError(output, f"no query could be made: {reasons[:3]}")
        if reasons:
            warnings.warn(
                f"{type(self).__name__}: {len(reasons)} queries could not be made"
                f" (see {output / SKIPPED_FILE}), e.g. {reasons[0]}",
                stacklevel=4,
            )
        queries["path"] = [str(Path(output.name) / path) for path in queries["path"]]
        labels = queried.set_index("track_id")[list(self.label_columns)]
        return queries.join(labels, on="track_id")


def probe_tracks(
    tracks: pd.DataFrame, workers: int | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(usable tracks with ``duration_s``, skipped ``track_id, path, split, reason``).

    Header reads run in threads: libsndfile works outside the GIL.
    """
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        results = list(
            tqdm(
                pool.map(_probe, tracks["path"]),
                total=len(tracks),
                unit="track",
                desc="reading audio headers",
            )
        )
    durations = pd.Series([duration for duration, _ in results], index=tracks.index)
    reasons = pd.Series([reason for _, reason in results], index=tracks.index)
    usable = durations.notna()
    skipped = tracks.loc[~usable, ["track_id", "path", "split"]].assign(reason=reasons[~usable])
    kept = tracks[usable].copy()
    kept.insert(2, "duration_s", durations[usable].round(4))
    return kept.reset_index(drop=True), skipped.reset_index(drop=True)


def _probe(path: str) -> tuple[float | None, str]:
    """(duration_s, "") for a usable file; (None, reason) for one that is not."""
    try:
        info = audio_info(path)
    except AudioError as error:
        return None, error.reason
    if info.duration_s < MIN_MUSIC_S:  # a 1-sample file; a header claiming 2 GB over 20 samples
        return None, f"too short ({info.duration_s:.3f} s < {MIN_MUSIC_S} s)"
    truncated = f"truncated: decodes short of its header's {info.duration_s:.2f} s"
    tail_s = min(TAIL_PROBE_S, info.duration_s)
    try:
        tail = load_audio(path, offset_s=info.duration_s - tail_s, duration_s=tail_s)
    except AudioError as error:
        decoded = error.reason != NON_FINITE  # NaN samples are not a truncation
        return None, f"{truncated} ({error.reason})" if decoded else error.reason
    if len(tail) < 0.5 * tail_s * info.sample_rate:
        return None, truncated
    return info.duration_s, ""

"""Changing an index after its build: add, replace and remove tracks, compact, list.

Each change holds the index's lock and switches ``index.json`` once, at its end
(acr.retrieval.build.IndexWriter): a failure or a kill before that leaves the index as it was,
and a rerun does the whole change (tracks an add already put in from the same file are left
as they are, a track already removed stays removed).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from acr.data.catalogs import read_catalog
from acr.retrieval.build import (
    BuildSummary,
    IndexWriter,
    Pending,
    index_lock,
    source_of,
    warn_of_catalog_size,
)
from acr.retrieval.engine import IndexDirectoryError
from acr.retrieval.extraction import extract_in_workers
from acr.retrieval.store import INDEX_FILE, IndexState, load_engines, read_segment


def add_tracks(
    index: str,
    catalog: str,
    replace: bool = False,
    workers: int | None = None,
    save_every: int = 200,
) -> BuildSummary:
    """Add tracks from a folder or table to an index.

    The tracks are indexed with the engines and settings the index was built with. A track id
    already in the index is an error, unless ``replace``.

    Args:
        index: the index directory (acr index).
        catalog: a folder of audio or a CSV/JSONL table with track_id and path.
        replace: the tracks replace those of the same id (each must be in the index).
        workers: decoding processes (default: one per CPU core).
        save_every: tracks held in memory before they are written out as a segment.
    """
    directory = _index_directory(index)
    tracks = read_catalog(catalog)
    for entry in tracks.attrs["rejected"]:
        raise IndexDirectoryError(
            f"{entry['path'] or catalog}: {entry['reason']} (track {entry['track_id']!r});"
            " nothing was added"
        )
    with index_lock(directory):
        writer = IndexWriter(directory, IndexState.read(directory))
        live = writer.live()
        jobs, replaced = [], []
        for track_id, path in zip(tracks["track_id"], tracks["path"]):
            if track_id in live:
                segment, position = live[track_id]
                if writer.contents[segment.name].sources[position] == source_of(path):
                    continue  # added from this very file already: a rerun after a kill
                if not replace:
                    raise IndexDirectoryError(
                        f"track {track_id!r} is already in {directory}; use `acr index replace`"
                        " to replace it, or `acr index remove` first"
                    )
                replaced.append(track_id)
            elif replace:
                raise IndexDirectoryError(
                    f"track {track_id!r} is not in {directory}: nothing to replace"
                )
            jobs.append((track_id, path))
        with writer.change():
            run = _add(writer, jobs, workers, save_every)
            for track_id in replaced:
                live[track_id][0].removed.append(track_id)
            writer.merge_tiers()
            writer.commit()
    return BuildSummary.of(writer, *run)


def _add(
    writer: IndexWriter, jobs: list[tuple[str, str]], workers: int | None, save_every: int
) -> tuple[float, float]:
    """Extract ``jobs`` into new segments, listed in the state but not committed; any track
    that cannot be indexed stops the change. Returns (audio seconds, seconds taken)."""
    started, audio_s = time.perf_counter(), 0.0
    engines = writer.empty_engines(load_engines(writer.directory))
    warn_of_catalog_size(engines, len(writer.live()) + len(jobs))
    pending = Pending(engines)
    extractors = [(name, e.sample_rate, e.extractor()) for name, e in engines.items()]
    results = extract_in_workers(jobs, extractors, workers or os.cpu_count() or 1)
    new_segments = []
    with tqdm(total=len(jobs), unit="track", desc="adding") as progress:
        for track_id, path, features, duration_s in results:
            if isinstance(features, str):
                raise IndexDirectoryError(
                    f"{path}: {features} (track {track_id!r}); nothing was added"
                )
            pending.add(track_id, path, features, duration_s)
            audio_s += duration_s
            progress.update()
            progress.set_postfix(rt=f"{audio_s / (time.perf_counter() - started):.0f}x")
            if len(pending.track_ids) >= save_every:
                new_segments.append(writer.write_segment(engines, pending.contents()))
                engines = writer.empty_engines(engines)
                pending = Pending(engines)
    if pending:
        new_segments.append(writer.write_segment(engines, pending.contents()))
    writer.state.segments.extend(new_segments)
    return audio_s, time.perf_counter() - started


def remove_tracks(index: str, track_ids: list[str]) -> int:
    """Remove tracks from an index by id.

    They are never returned again; their data goes at the next compaction. Returns how many
    were removed.

    Args:
        index: the index directory (acr index).
        track_ids: the ids of the tracks to remove.
    """
    directory = _index_directory(index)
    with index_lock(directory):
        writer = IndexWriter(directory, IndexState.read(directory))
        live = writer.live()
        removed_before = {t for segment in writer.state.segments for t in segment.removed}
        wanted = list(dict.fromkeys(track_ids))
        for track_id in wanted:
            if track_id not in live and track_id not in removed_before:
                raise IndexDirectoryError(f"track {track_id!r} is not in {directory}")
        removing = [track_id for track_id in wanted if track_id in live]
        for track_id in removing:
            live[track_id][0].removed.append(track_id)
        if removing:
            writer.commit()
    return len(removing)


def compact_index(index: str) -> BuildSummary:
    """Merge every segment of an index into one, without the removed tracks.

    The index then holds only live data and is searched as one part.

    Args:
        index: the index directory (acr index).
    """
    directory = _index_directory(index)
    started = time.perf_counter()
    with index_lock(directory):
        writer = IndexWriter(directory, IndexState.read(directory))
        segments = writer.state.segments
        if len(segments) > 1 or any(segment.removed for segment in segments):
            with writer.change():
                segments[:] = [writer.merge(list(segments))]
                writer.commit()
    return BuildSummary.of(writer, 0.0, time.perf_counter() - started)


@dataclass
class Listing:
    tracks: pd.DataFrame  # track_id, segment, audio_s, path
    segments: pd.DataFrame  # segment, level, tracks, removed


def list_index(index: str) -> Listing:
    """List the live tracks of an index, or its segments.

    A track's row: id, segment, seconds of audio, the file it came from.

    Args:
        index: the index directory (acr index).
    """
    directory = _index_directory(index)
    state = IndexState.read(directory)
    rows, segments = [], []
    for segment in state.segments:
        contents = read_segment(directory, segment)
        removed = set(segment.removed)
        for position, track_id in enumerate(contents.track_ids):
            if track_id not in removed:
                path = contents.sources[position][0]
                rows.append([track_id, segment.name, contents.audio_s[position], path])
        segments.append([segment.name, segment.level, segment.tracks, len(segment.removed)])
    return Listing(
        pd.DataFrame(rows, columns=["track_id", "segment", "audio_s", "path"]),
        pd.DataFrame(segments, columns=["segment", "level", "tracks", "removed"]),
    )


def _index_directory(index: str) -> Path:
    directory = Path(index)
    if not (directory / INDEX_FILE).is_file():
        raise IndexDirectoryError(f"{directory}: not an acr index (no {INDEX_FILE})")
    return directory

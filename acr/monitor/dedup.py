"""The catalog matched against itself: the same recording under two ids, a radio edit inside
an album version, a loop reused across tracks.

Each track is scanned as a recording (acr.monitor.scan) with its own id left out of the
answers; every segment found is a stretch of it that another track holds. A pair is listed
from both sides (A in B, and B in A). ``exact``: the segment covers the whole of both tracks
(to within ``EXACT_TOLERANCE_S``); ``partial`` otherwise.

:func:`find_duplicates` is the hook for other checks: scan any track list against an index
(training tracks against an evaluation catalog's index, say, for leakage).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from acr.audio import AudioError
from acr.monitor.scan import Scanner, ScanSettings, monitor_recognizer
from acr.monitor.segments import Segment
from acr.monitor.stream import open_recording
from acr.retrieval.recognizer import Recognizer
from acr.retrieval.store import IndexState, read_segment

COLUMNS = (
    "track_id",
    "start_s",
    "end_s",
    "duplicate_of",
    "reference_start_s",
    "reference_end_s",
    "kind",
)
# Edges are placed within ~0.5 s (acr.monitor.scan); a track's first and last second may be
# a fade that finds nothing.
EXACT_TOLERANCE_S = 1.5


@dataclass(frozen=True)
class DedupSummary:
    tracks: int
    skipped: int
    exact: int
    partial: int


def indexed_tracks(index: str | Path) -> pd.DataFrame:
    """``track_id, path, audio_s`` of an index's live tracks, from the files they were read
    from (segment.json records them)."""
    directory = Path(index)
    state = IndexState.read(directory)
    rows = []
    for segment in state.segments:
        contents = read_segment(directory, segment)
        removed = set(segment.removed)
        for track_id, source, audio_s in zip(
            contents.track_ids, contents.sources, contents.audio_s
        ):
            if track_id not in removed:
                rows.append((track_id, str(source[0]), float(audio_s)))
    return pd.DataFrame(rows, columns=["track_id", "path", "audio_s"])


def find_duplicates(
    index: str | Path,
    tracks: pd.DataFrame,
    exclude_self: bool = True,
    settings: ScanSettings | None = None,
    on_row: Callable[[dict], None] | None = None,
) -> pd.DataFrame:
    """Stretches of ``tracks`` (``track_id, path``) that tracks of ``index`` hold.

    Each track is scanned as a recording; with ``exclude_self`` its own id in the index is
    never an answer. Returns one row per stretch (``COLUMNS``); ``attrs["skipped"]`` lists
    ``track_id, path, reason`` of the tracks that could not be scanned (unreadable, or
    shorter than one window). ``on_row`` is called with each row as it is found.
    """
    settings = settings or ScanSettings()
    indexed = indexed_tracks(index)
    durations = dict(zip(indexed["track_id"], indexed["audio_s"]))
    scanner = Scanner(monitor_recognizer(Recognizer.load(index), settings), settings)
    rows, skipped = [], []
    for track_id, path in tqdm(
        list(zip(tracks["track_id"], tracks["path"])), unit="track", desc="dedup", file=sys.stderr
    ):
        scanner.exclude = (lambda other, own=track_id: other == own) if exclude_self else None
        try:
            recording = open_recording(str(path), scanner.sample_rate)
            events = list(scanner.scan(recording))
        except AudioError as error:
            skipped.append((track_id, str(path), error.reason))
            continue
        duration_s = recording.duration_s or 0.0
        for event in events:
            if event.kind != "end" or event.segment is None:
                continue
            segment = event.segment
            row = {
                "track_id": track_id,
                "start_s": segment.start_s,
                "end_s": segment.end_s,
                "duplicate_of": segment.track_id,
                "reference_start_s": segment.reference_start_s,
                "reference_end_s": segment.reference_end_s,
                "kind": _kind(segment, duration_s, durations.get(segment.track_id)),
            }
            rows.append(row)
            if on_row is not None:
                on_row(row)
    found = pd.DataFrame(rows, columns=list(COLUMNS))
    found.attrs["skipped"] = skipped
    return found


def _kind(segment: Segment, duration_s: float, reference_s: float | None) -> str:
    """exact when the segment spans the whole of both tracks, else partial."""
    whole = (
        segment.start_s <= EXACT_TOLERANCE_S
        and segment.end_s >= duration_s - EXACT_TOLERANCE_S
        and reference_s is not None
        and segment.reference_start_s <= EXACT_TOLERANCE_S
        and segment.reference_end_s >= reference_s - EXACT_TOLERANCE_S
    )
    return "exact" if whole else "partial"


def dedup(
    index: str,
    output: str | None = None,
    catalog: str | None = None,
    scan: ScanSettings = ScanSettings(),  # noqa: B008 (frozen)
) -> DedupSummary:
    """List the exact and partial duplicates within a catalog, with their time ranges.

    Every track of the index is scanned against the index, its own hits left out. Each
    duplicate is listed from both sides. A CSV: track_id, start_s, end_s, duplicate_of,
    reference_start_s, reference_end_s, kind (exact: the whole of both tracks match).

    Args:
        index: the index directory (acr index) of the catalog.
        output: where to write the CSV (default: standard output).
        catalog: the catalog's audio, when it has moved since it was indexed (a folder or a
            CSV/JSONL table with track_id and path; default: the files the index records).
        scan: how each track is scanned (windows, agreement, edges).
    """
    from acr.files import output_path

    if output:
        output_path(output)
    if catalog:
        from acr.data.catalogs import read_catalog

        tracks = read_catalog(catalog)
    else:
        tracks = indexed_tracks(index)
    stream = open(output, "w", newline="") if output else sys.stdout
    try:
        writer = csv.writer(stream, lineterminator="\n")
        writer.writerow(COLUMNS)

        def write(row: dict) -> None:
            writer.writerow(row.values())
            stream.flush()

        found = find_duplicates(index, tracks, settings=scan, on_row=write)
    finally:
        if output:
            stream.close()
    for track_id, path, reason in found.attrs["skipped"]:
        hint = "" if catalog or Path(path).exists() else " (moved? give --catalog)"
        print(f"dedup: {track_id} ({path}) not scanned: {reason}{hint}", file=sys.stderr)
    kinds = found["kind"].value_counts()
    return DedupSummary(
        len(tracks),
        len(found.attrs["skipped"]),
        int(kinds.get("exact", 0)),
        int(kinds.get("partial", 0)),
    )

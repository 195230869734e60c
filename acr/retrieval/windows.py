"""A searchable index of sliding-window embeddings and track ranking by offset-consistent voting.

Each vector is one window of a catalog track, tagged with (track, start_s). A query is cut into
windows too; every query window votes for the tracks of its nearest catalog windows at the
time offset ``reference_start - query_start``. The right track collects votes from many query
windows at one offset, a wrong track's votes scatter over offsets (the same principle as
landmark offset histograms, Wang 2003; applied to embeddings as in Chang et al. 2021).
The (track, offset) candidates with the most votes can then be scored again with every query
window against the track's stored windows (their sequence search), so that a window whose own
neighbours were all other music still counts. The neighbours come from hnswlib or FAISS
(acr.retrieval.neighbors).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from acr.files import write_json
from acr.retrieval.engine import (
    TrackMatch,
    check_index,
    check_track_ids,
    read_index_json,
    read_settings,
    reading,
)
from acr.retrieval.neighbors import FaissPart, HnswPart, SearchSettings, merge_ivfpq

# Not index.json: that name belongs to the index directory's manifest (acr.retrieval.store).
SETTINGS_FILE = "windows.json"
SETTINGS_KEYS = ("dim", "m", "ef_construction", "ef_search", "track_ids")


@dataclass
class _Part:
    """One part's neighbour search; its labels are the index's labels from ``first_label`` on."""

    vectors: HnswPart | FaissPart
    first_label: int

    def local(self, labels: np.ndarray) -> np.ndarray:
        """Those of the index's ``labels`` that are this part's, as its own labels."""
        end = self.first_label + self.vectors.size
        return labels[(labels >= self.first_label) & (labels < end)] - self.first_label


class WindowIndex:
    """Nearest-neighbour search (inner product on unit vectors) over windows.

    An index directory holds it in parts (segments, acr.retrieval.store), one neighbour index
    each: a search asks every part for its nearest windows and keeps the best over all of them,
    so the neighbours are those of one index over every part (as far as the search is exact).
    A removed track's windows are excluded from its part's answers until the parts are merged.

    Args:
        dim: embedding size.
        search: the neighbour search (hnswlib by default, or FAISS Flat / IVF-PQ).
        template: for IVF-PQ, the trained empty index every part of this index uses.
    """

    def __init__(
        self, dim: int, search: SearchSettings | None = None, template: Any = None
    ) -> None:
        self.dim = dim
        self.search_settings = search or SearchSettings()
        self._template = template
        self._all_ids: list[str] = []  # every track of every part, removed ones too
        self._live: dict[str, int] = {}  # live track id -> its number, in adding order
        self._parts: list[_Part] = []
        self._writable: _Part | None = None  # the part tracks added here go to
        # Per-track parts, concatenated on first use: repeated np.concatenate would be quadratic.
        self._track_parts: list[np.ndarray] = []
        self._start_parts: list[np.ndarray] = []
        self._spans: tuple[int, tuple] | None = None  # _track_spans, for this many windows

    def empty(self) -> WindowIndex:
        """No windows, the same settings and (IVF-PQ) training."""
        return WindowIndex(self.dim, self.search_settings, self._trained_template())

    def _trained_template(self) -> Any:
        for part in self._parts:
            if isinstance(part.vectors, FaissPart) and part.vectors.template is not None:
                return part.vectors.template
        return self._template

    def _new_part(self) -> HnswPart | FaissPart:
        if self.search_settings.backend == "hnsw":
            return HnswPart(self.dim, self.search_settings)
        return FaissPart(self.dim, self.search_settings, template=self._trained_template())

    @property
    def track_ids(self) -> list[str]:
        """Live tracks, in the order they were added."""
        return list(self._live)

    @property
    def _labels(self) -> int:
        """Labels given so far, removed windows included: the next part starts there."""
        return sum(part.vectors.size for part in self._parts)

    def __len__(self) -> int:
        """Searchable windows (those of removed tracks not counted)."""
        return sum(part.vectors.size - part.vectors.removed for part in self._parts)

    @property
    def _vector_track(self) -> np.ndarray:
        self._merge_parts()
        return self._track_parts[0]

    @property
    def _vector_start_s(self) -> np.ndarray:
        self._merge_parts()
        return self._start_parts[0]

    def _merge_parts(self) -> None:
        if len(self._track_parts) != 1:
            self._track_parts = [np.concatenate(self._track_parts or [np.zeros(0, np.int32)])]
            self._start_parts = [np.concatenate(self._start_parts or [np.zeros(0, np.float32)])]

    def add(self, track_id: str, embeddings: np.ndarray, start_s: np.ndarray) -> None:
        """Add one track's window embeddings (unit-norm rows) and their start times."""
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        start_s = np.asarray(start_s, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[1] != self.dim:
            raise ValueError(f"track {track_id!r}: embeddings must be [n, {self.dim}]")
        if len(start_s) != len(embeddings):
            raise ValueError(
                f"track {track_id!r}: {len(start_s)} start times for {len(embeddings)} embeddings"
            )
        if track_id in self._live:
            raise ValueError(f"track {track_id!r} is already in the index")
        if self._writable is None:
            self._writable = _Part(self._new_part(), self._labels)
            self._parts.append(self._writable)
        self._writable.vectors.add(embeddings)
        self._live[track_id] = len(self._all_ids)
        self._track_parts.append(np.full(len(embeddings), len(self._all_ids), dtype=np.int32))
        self._all_ids.append(track_id)
        self._start_parts.append(start_s)

    def remove(self, track_ids: Collection[str]) -> None:
        """Stop returning these tracks' windows."""
        unknown = [track_id for track_id in track_ids if track_id not in self._live]
        if unknown:
            raise KeyError(f"track {unknown[0]!r} is not in the index")
        numbers = [self._live.pop(track_id) for track_id in track_ids]
        labels = np.flatnonzero(np.isin(self._vector_track, numbers))
        for part in self._parts:
            local = part.local(labels)
            if len(local):
                part.vectors.delete(local)

    def search(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest windows: (labels [q, k], cosine similarities [q, k]), best first."""
        k = min(k, len(self))
        if k == 0:
            raise ValueError("the index is empty")
        embeddings = np.ascontiguousarray(embeddings, np.float32)
        labels, similarities = [], []
        for part in self._parts:
            part_k = min(k, part.vectors.size - part.vectors.removed)
            if part_k == 0:
                continue
            found, part_similarities = part.vectors.search(embeddings, part_k)
            labels.append(found + part.first_label)
            similarities.append(part_similarities)
        if len(labels) == 1:
            return labels[0], similarities[0]
        labels, similarities = np.concatenate(labels, axis=1), np.concatenate(similarities, axis=1)
        best = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(labels, best, 1), np.take_along_axis(similarities, best, 1)

    def window_metadata(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Track position and start time of the given vector labels."""
        return self._vector_track[labels], self._vector_start_s[labels]

    def rank_tracks(
        self,
        embeddings: np.ndarray,
        start_s: np.ndarray,
        top_k: int = 5,
        neighbors: int = 20,
        offset_bin_s: float = 0.5,
        rescore: int = 0,
    ) -> list[TrackMatch]:
        """Rank tracks for one query given its window embeddings and window start times
        (``rescore``: see :meth:`rank_from_neighbors`)."""
        labels, similarities = self.search(embeddings, neighbors)
        return self.rank_from_neighbors(
            labels, similarities, start_s, top_k, offset_bin_s, embeddings, rescore
        )

    def rank_from_neighbors(
        self,
        labels: np.ndarray,
        similarities: np.ndarray,
        start_s: np.ndarray,
        top_k: int | None = 5,
        offset_bin_s: float = 0.5,
        embeddings: np.ndarray | None = None,
        rescore: int = 0,
    ) -> list[TrackMatch]:
        """Rank tracks from one query's neighbour lists (as returned by :meth:`search`).

        ``top_k=None`` returns every track that got a vote.

        A track's score is, at its best offset, the sum over query windows of each window's best
        similarity to that track within ±1 offset bin (so tempo drift and window misalignment
        of up to a bin still count). Only positive similarities vote.

        With ``rescore`` > 0 and the query's ``embeddings``, the ``rescore`` (track, offset)
        cells with the most votes are scored again with every query window against the
        track's stored windows at that offset, not only those among its neighbours: Chang et
        al.'s (2021) sequence search. In a large catalog a query window's own reference window
        is often pushed out of its neighbour list by windows of other music; one window that
        finds it brings the whole sequence in.
        """
        tracks, reference_start_s = self.window_metadata(labels)
        start_s = np.asarray(start_s, np.float32)
        offsets_s = reference_start_s - start_s[:, None]
        offset_bins = np.rint(offsets_s / offset_bin_s).astype(np.int64)
        query_windows = np.broadcast_to(np.arange(len(labels))[:, None], labels.shape)
        keep = similarities > 0
        cells, totals = self._vote(
            query_windows[keep], tracks[keep], offset_bins[keep], similarities[keep]
        )
        if rescore > 0 and embeddings is not None and len(cells):
            top = np.argsort(-totals, kind="stable")[:rescore]
            totals = totals.copy()
            totals[top] = np.maximum(
                totals[top],
                self._sequence_scores(embeddings, start_s, cells[top], offset_bin_s),
            )
        return self._ranked(cells, totals, offset_bin_s, top_k)

    def _vote(
        self,
        query_windows: np.ndarray,
        tracks: np.ndarray,
        offset_bins: np.ndarray,
        similarities: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(track, offset bin) cells [n, 2] and their totals: per cell, the sum over query
        windows of each one's best similarity to the track within ±1 bin."""
        if len(tracks) == 0:
            return np.zeros((0, 2), np.int64), np.zeros(0)
        # Each vote also counts for the two neighbouring offset bins, a hair lighter so that the
        # reported offset is the bin the votes actually fell in.
        centers = np.concatenate([offset_bins, offset_bins - 1, offset_bins + 1])
        windows = np.tile(query_windows, 3)
        track_votes = np.tile(tracks, 3)
        spread = np.repeat([1.0, 1.0 - 1e-6, 1.0 - 1e-6], len(similarities))
        weights = np.tile(similarities, 3).astype(np.float64) * spread
        # Best similarity per (track, offset, query window), then summed over query windows.
        keys = np.stack([track_votes, centers, windows], axis=1)
        cells, cell_index = np.unique(keys, axis=0, return_inverse=True)
        best = np.zeros(len(cells))
        np.maximum.at(best, cell_index.ravel(), weights)
        offsets, offset_index = np.unique(cells[:, :2], axis=0, return_inverse=True)
        totals = np.bincount(offset_index.ravel(), weights=best, minlength=len(offsets))
        return offsets, totals

    def _ranked(
        self, cells: np.ndarray, totals: np.ndarray, offset_bin_s: float, top_k: int | None
    ) -> list[TrackMatch]:
        """Each track at its best cell, best tracks first."""
        if len(cells) == 0:
            return []
        order = np.lexsort((-totals, cells[:, 0]))
        first_of_track = np.r_[True, cells[order[1:], 0] != cells[order[:-1], 0]]
        winners = order[first_of_track]
        ranked = winners[np.argsort(-totals[winners], kind="stable")][:top_k]
        # An offset below 0 says the query began before the track (its matched windows come
        # after the track's first); the match then starts at the track's beginning.
        return [
            TrackMatch(
                self._all_ids[cells[i, 0]],
                float(totals[i]),
                max(0.0, float(cells[i, 1] * offset_bin_s)),
            )
            for i in ranked
        ]

    def _sequence_scores(
        self, embeddings: np.ndarray, start_s: np.ndarray, cells: np.ndarray, offset_bin_s: float
    ) -> np.ndarray:
        """Per (track, offset bin) cell, the sum over query windows of max(0, the best
        similarity to the track's windows whose offset from it rounds to within ±1 bin)."""
        first, end, order, sorted_start = self._track_spans()
        window_labels, cell_of, window_of, centre = [], [], [], []
        for number, (track, offset_bin) in enumerate(cells):
            begin, stop = int(first[track]), int(end[track])
            starts = sorted_start[begin:stop]
            low = np.searchsorted(starts, start_s + (offset_bin - 1.5) * offset_bin_s)
            high = np.searchsorted(starts, start_s + (offset_bin + 1.5) * offset_bin_s)
            counts = high - low
            # For each query window, the positions low .. high - 1 of the track's windows.
            position = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            windows = np.repeat(np.arange(len(start_s)), counts)
            positions = begin + np.repeat(low, counts) + position
            offsets = (sorted_start[positions] - start_s[windows]) / offset_bin_s
            window_labels.append(positions)
            window_of.append(windows)
            cell_of.append(np.full(len(positions), number))
            centre.append(np.rint(offsets) == offset_bin)
        positions = np.concatenate(window_labels)
        labels = positions if order is None else order[positions]
        unique, row = np.unique(labels, return_inverse=True)
        similarities = self._vectors(unique) @ np.asarray(embeddings, np.float32).T
        window_of, cell_of = np.concatenate(window_of), np.concatenate(cell_of)
        # A hair lighter off the centre bin, as in _vote, so that of three cells that see the
        # same windows the one they fall in wins.
        weights = similarities[row.ravel(), window_of] * np.where(
            np.concatenate(centre), 1.0, 1.0 - 1e-6
        )
        best = np.zeros((len(cells), len(start_s)))
        np.maximum.at(best, (cell_of, window_of), weights)
        return best.sum(axis=1)

    def _track_spans(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
        """Where each track's windows lie in start order: (first, end) positions per track
        number, the labels in that order (None: the labels themselves) and the start times in
        that order. A track's windows are added together and in time, so the labels usually
        are that order already and no copy is made."""
        track, start = self._vector_track, self._vector_start_s
        if self._spans is not None and self._spans[0] == len(track):
            return self._spans[1]
        order = None
        runs = np.flatnonzero(np.r_[True, track[1:] != track[:-1]])
        in_time = len(track) < 2 or bool(np.all((np.diff(start) > 0) | (track[1:] != track[:-1])))
        if len(np.unique(track[runs])) != len(runs) or not in_time:
            order = np.lexsort((start, track))
            track, start = track[order], start[order]
            runs = np.flatnonzero(np.r_[True, track[1:] != track[:-1]])
        first = np.zeros(len(self._all_ids), np.int64)
        end = np.zeros(len(self._all_ids), np.int64)
        first[track[runs]] = runs
        end[track[runs]] = np.r_[runs[1:], len(track)]
        spans = (first, end, order, start)
        self._spans = (len(track), spans)
        return spans

    def save(self, directory: str | Path) -> None:
        """Write the live windows as one part: the neighbour index, the window table and the
        settings. Parts, or a part with removed tracks, are merged: IVF-PQ codes are moved as
        they are (every part shares one training), other vectors are added again, each live
        track's in adding order."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        merged = self
        removed = any(part.vectors.removed for part in self._parts)
        if len(self._parts) > 1 or removed:
            merged = self._merged()
        vectors = merged._parts[0].vectors if merged._parts else self._new_part()
        vectors.save(directory)
        np.savez(
            directory / "windows.npz", track=merged._vector_track, start_s=merged._vector_start_s
        )
        search = self.search_settings
        settings = {
            "dim": self.dim,
            "m": search.m,
            "ef_construction": search.ef_construction,
            "ef_search": search.ef_search,
            "search": asdict(search),
            "track_ids": merged.track_ids,
        }
        write_json(directory / SETTINGS_FILE, settings, indent=None)

    def _merged(self) -> WindowIndex:
        """One part holding the live tracks' windows, in adding order."""
        merged = WindowIndex(self.dim, self.search_settings, self._trained_template())
        tracks = self._vector_track
        live_numbers = np.array(list(self._live.values()), dtype=np.int64)
        keep = np.isin(tracks, live_numbers)
        new_label = np.where(keep, np.cumsum(keep) - 1, -1)
        if self.search_settings.backend == "ivfpq":
            moved = merge_ivfpq(
                [part.vectors for part in self._parts],
                [
                    new_label[part.first_label : part.first_label + part.vectors.size]
                    for part in self._parts
                ],
            )
            if moved is not None:
                renumber = {number: i for i, number in enumerate(live_numbers)}
                merged._parts = [_Part(moved, 0)]
                merged._all_ids = list(self._live)
                merged._live = {track_id: i for i, track_id in enumerate(self._live)}
                merged._track_parts = [
                    np.array([renumber[n] for n in tracks[keep]], dtype=np.int32)
                ]
                merged._start_parts = [self._vector_start_s[keep]]
                return merged
        for track_id, number in self._live.items():
            labels = np.flatnonzero(tracks == number)
            merged.add(track_id, self._vectors(labels), self._vector_start_s[labels])
        return merged

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        """The stored vectors of the given labels (in one part or across several)."""
        rows = []
        for part in self._parts:
            local = part.local(labels)
            if len(local):
                rows.append(part.vectors.vectors(local))
        return np.concatenate(rows or [np.zeros((0, self.dim), np.float32)])

    @classmethod
    def load(cls, directory: str | Path) -> WindowIndex:
        return cls.open([directory])

    @classmethod
    def open(
        cls, directories: Sequence[str | Path], removed: Sequence[Collection[str]] = ()
    ) -> WindowIndex:
        """The parts written by :meth:`save`, searched as one, without the ``removed`` tracks of
        each; a missing, corrupt or inconsistent file raises IndexDirectoryError naming it."""
        index: WindowIndex | None = None
        for number, directory in enumerate(directories):
            part = _read_part(Path(directory))
            if index is None:
                index = cls(part.dim, part.search_settings)
            check_index(
                part.dim == index.dim and part.search_settings == index.search_settings,
                Path(directory) / SETTINGS_FILE,
                f"{part.dim}-d windows searched by {part.search_settings}; the first part has"
                f" {index.dim} by {index.search_settings}",
            )
            # A track may have no windows (a melody without voiced ones): not in any part.
            gone = set(removed[number]) & set(part._live) if number < len(removed) else set()
            first_track = len(index._all_ids)
            first_label = index._labels
            for track_id, track_number in part._live.items():
                check_index(
                    track_id not in index._live,
                    Path(directory) / SETTINGS_FILE,
                    f"track {track_id!r} is also in another part",
                )
                index._live[track_id] = first_track + track_number
            index._all_ids.extend(part._all_ids)
            index._track_parts.append(part._vector_track + first_track)
            index._start_parts.append(part._vector_start_s)
            (vectors,) = part._parts
            vectors.first_label = first_label
            index._parts.append(vectors)
            if gone:
                index.remove(sorted(gone))
        if index is None:
            raise ValueError("no window index parts to open")
        return index


def _read_part(directory: Path) -> WindowIndex:
    """One part written by :meth:`WindowIndex.save`."""
    settings_path = directory / SETTINGS_FILE
    if not settings_path.is_file() and (directory / "index.json").is_file():
        settings_path = directory / "index.json"  # the name before acr 0.2
    check_index(settings_path.is_file(), settings_path, "missing: not an acr window index")
    settings = read_index_json(settings_path, SETTINGS_KEYS)
    check_index(
        all(type(settings[key]) is int and settings[key] > 0 for key in SETTINGS_KEYS[:4]),
        settings_path,
        f"{', '.join(SETTINGS_KEYS[:4])} must be positive integers",
    )
    track_ids = check_track_ids(settings["track_ids"], settings_path)
    hnsw = {key: settings[key] for key in SETTINGS_KEYS[1:4]}
    search = read_settings(SearchSettings, {**hnsw, **settings.get("search", {})}, settings_path)
    index = WindowIndex(settings["dim"], search)
    windows_path = directory / "windows.npz"
    with reading(windows_path), np.load(windows_path, allow_pickle=False) as windows:
        check_index({"track", "start_s"} <= set(windows.files), windows_path, "not a window table")
        track, start_s = windows["track"], windows["start_s"]
    check_index(
        track.ndim == start_s.ndim == 1
        and len(track) == len(start_s)
        and np.issubdtype(track.dtype, np.integer)
        and np.issubdtype(start_s.dtype, np.floating),
        windows_path,
        f"{track.shape} {track.dtype} track numbers for {start_s.shape} {start_s.dtype}"
        " start times",
    )
    check_index(
        len(track) == 0 or (track.min() >= 0 and track.max() < len(track_ids)),
        windows_path,
        f"track numbers outside the {len(track_ids)} tracks of {settings_path.name}",
    )
    index._all_ids = list(track_ids)
    index._live = {track_id: i for i, track_id in enumerate(track_ids)}
    index._track_parts = [track.astype(np.int32, copy=False)]
    index._start_parts = [start_s.astype(np.float32, copy=False)]
    backend = HnswPart if search.backend == "hnsw" else FaissPart
    index._parts = [_Part(backend.load(directory, index.dim, search, len(track)), 0)]
    return index

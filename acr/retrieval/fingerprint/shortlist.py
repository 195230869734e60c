"""Compiled loops for the fingerprint search's first pass: posting lookup and coarse voting.

A 3-s query under 29 speed/pitch hypotheses (triplets) looks up about 67,000 hashes and, at
10^5 tracks, meets about a million postings. In numpy each step (binary search, gather track
and frame, form the cell, count, look at the neighbours) allocates and walks an array that
long, and that was 80 % of the search time. These loops, compiled with numba (already installed
for librosa), do it without building those arrays. Hand-written because no library does this
inverted-index vote.

- ``find_ranges`` finds each query hash's postings, galloping forward from the previous hash's
  place (the hashes come sorted): a step of a few keys instead of a binary search of hundreds of
  millions, and the row index read in the same loop.
- ``count_cells`` counts votes per coarse (track, hypothesis, ~1-s offset) cell of a hashed
  table and writes each vote's group and offset as it goes: the pass that keeps the best cells'
  votes (``collect_votes``) then reads them in order, where it used to walk the postings (two
  memory-mapped arrays, a random place per hash) a second time. At 10^5 tracks (bench_scale,
  a full search of a 3-s triplet query) these, with ``threshold`` and ``Scratch``, took the
  shortlist from 67 to 41 ms: lookups 21 -> 11, counting and collecting 36 -> 26, choosing
  and marking the kept cells 7.5 -> 1.4.

An index is one or more parts (segments, acr.retrieval.store), each with its own posting arrays
and track numbers from ``first_track`` on; the passes run once per part into one table, so the
shortlist is the one a single index of every part would give. A removed track's postings are
skipped (``live``), and a track number outside the part is counted, not followed: the caller
reports the damaged file (the arrays are memory-mapped and checked as they are read).
"""

from __future__ import annotations

import threading

import numba
import numpy as np

CELL_MULTIPLIER = 1_000_003  # spreads groups over the table before offsets are added
COUNT_CAP = 1 << 12  # vote counts histogrammed exactly up to here when the threshold is found
KEYS_OUT_OF_ORDER, STARTS_OUT_OF_ORDER = 1, 2  # what find_ranges found wrong


@numba.njit(cache=True, inline="always")
def _cell(group: int, offset: float, scale: float, mask: int) -> int:
    """The table cell of a vote: its group and coarse offset, hashed. Both passes must agree."""
    return (group * CELL_MULTIPLIER + np.int64(offset * scale)) & mask


@numba.njit(cache=True, nogil=True)
def find_ranges(
    keys: np.ndarray, starts: np.ndarray, hashes: np.ndarray, posting_count: int
) -> tuple[np.ndarray, np.ndarray, int]:
    """Where each of ``hashes`` has its postings in a part with distinct sorted ``keys`` and
    row index ``starts``: [firsts[q], ends[q]), empty for a hash not there. Returns also 0, or
    KEYS_OUT_OF_ORDER / STARTS_OUT_OF_ORDER where the arrays met are not what they should be.

    Fastest with ``hashes`` sorted (each search gallops from the last place); a hash smaller
    than the one before starts a search from the beginning."""
    firsts = np.zeros(len(hashes), dtype=np.int64)
    ends = np.zeros(len(hashes), dtype=np.int64)
    count = len(keys)
    low = 0
    previous = -1
    for query in range(len(hashes)):
        value = np.int64(hashes[query])
        if value < previous:
            low = 0
        previous = value
        # Gallop: the first step past value bounds it, then a binary search between.
        step = 1
        high = low
        while high < count and np.int64(keys[high]) < value:
            low = high + 1
            high = low + step
            step *= 2
        high = min(high, count)
        while low < high:
            middle = (low + high) // 2
            if np.int64(keys[middle]) < value:
                low = middle + 1
            else:
                high = middle
        # Where it lands the keys must increase (a search cannot see damage it does not
        # visit: a part's keys are checked whole when it is merged).
        if low + 1 < count and keys[low] >= keys[low + 1]:
            return firsts, ends, KEYS_OUT_OF_ORDER
        if low < count and np.int64(keys[low]) == value:
            first, end = starts[low], starts[low + 1]
            if first < 0 or end < first or end > posting_count:  # the loops below trust these
                return firsts, ends, STARTS_OUT_OF_ORDER
            firsts[query] = first
            ends[query] = end
    return firsts, ends, 0


@numba.njit(cache=True, nogil=True)
def count_cells(
    query_frames: np.ndarray,
    query_hypotheses: np.ndarray,
    usable: np.ndarray,
    firsts: np.ndarray,
    ends: np.ndarray,
    posting_tracks: np.ndarray,
    posting_frames: np.ndarray,
    live: np.ndarray,
    first_track: int,
    hypothesis_count: int,
    coarse_frames: int,
    counts: np.ndarray,
    groups: np.ndarray,
    offsets: np.ndarray,
) -> tuple[int, int]:
    """Add one part's votes to ``counts``, per hashed (track, hypothesis, coarse offset) cell,
    and write each vote's group (track * hypotheses + hypothesis) and offset in frames to
    ``groups`` and ``offsets`` (as long as the usable postings); returns the number of votes
    and of postings whose track number is outside ``live``.

    Query hash q's postings in the part are [firsts[q], ends[q]); those that are not ``usable``
    (too common over the whole index) are skipped.
    ``len(counts)`` must be a power of two; a collision only merges two cells' counts.
    """
    mask = len(counts) - 1
    scale = 1.0 / coarse_frames
    votes = 0
    damaged = 0
    for query in range(len(firsts)):
        if not usable[query]:
            continue
        hypothesis = query_hypotheses[query]
        frame = query_frames[query]
        for posting in range(firsts[query], ends[query]):
            track = np.int64(posting_tracks[posting])
            if track < 0 or track >= len(live):
                damaged += 1
            elif live[track]:
                group = (first_track + track) * hypothesis_count + hypothesis
                offset = posting_frames[posting] - frame
                counts[_cell(group, offset, scale, mask)] += 1
                groups[votes] = group
                offsets[votes] = offset
                votes += 1
    return votes, damaged


@numba.njit(cache=True, nogil=True)
def threshold(counts: np.ndarray, cells: int, min_votes: int) -> int:
    """The vote count of the ``cells``-th fullest cell (at least ``min_votes``), or 0 (keep
    every vote) when no more than ``cells`` cells hold any: a histogram of the counts, not a
    sort or partition of the occupied cells."""
    histogram = np.zeros(COUNT_CAP + 1, dtype=np.int64)
    for cell in range(len(counts)):
        histogram[min(counts[cell], COUNT_CAP)] += 1
    occupied = len(counts) - histogram[0]
    if occupied <= cells:
        return 0
    at_least = 0
    for value in range(COUNT_CAP, 0, -1):
        at_least += histogram[value]
        if at_least >= cells:
            if value == COUNT_CAP:  # the cells-th count is at the cap or above: exactly
                return max(int(np.sort(counts[counts >= COUNT_CAP])[-cells]), min_votes)
            return max(value, min_votes)
    return min_votes


@numba.njit(cache=True, nogil=True)
def cells_to_keep(counts: np.ndarray, threshold: int, keep: np.ndarray) -> None:
    """Mark in ``keep`` the cells holding at least ``threshold`` votes, or next to one: a true
    alignment may straddle two coarse cells. One byte per cell (1 MB) stays in cache where
    three reads of the counts (4 MB) per vote did not."""
    mask = len(counts) - 1
    keep[:] = False
    for cell in range(len(counts)):
        if counts[cell] >= threshold:
            keep[cell] = True
            keep[(cell + 1) & mask] = True
            keep[(cell - 1) & mask] = True


@numba.njit(cache=True, nogil=True)
def collect_votes(
    groups: np.ndarray, offsets: np.ndarray, keep: np.ndarray, coarse_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """The votes (as ``count_cells`` returned them) whose cell is kept."""
    mask = len(keep) - 1
    scale = 1.0 / coarse_frames
    kept = np.empty(len(groups), dtype=np.bool_)
    for vote in range(len(groups)):
        kept[vote] = keep[_cell(groups[vote], offsets[vote], scale, mask)]
    return groups[kept], offsets[kept]


class Scratch(threading.local):
    """The arrays one search works in, kept per thread from query to query: fresh ones cost a
    page fault per 4 kB (at 10^5 tracks a 3-s query's votes fill ~20 MB), about 4 of a
    search's 49 ms there. A thread keeps the room its largest query needed."""

    def __init__(self, cells: int) -> None:
        self.counts = np.zeros(cells, dtype=np.int32)
        self.keep = np.zeros(cells, dtype=np.bool_)
        self.groups = np.empty(0, dtype=np.int64)
        self.offsets = np.empty(0, dtype=np.float64)

    def votes(self, capacity: int) -> tuple[np.ndarray, np.ndarray]:
        """Room for ``capacity`` votes (grown by half again, never shrunk)."""
        if capacity > len(self.groups):
            size = max(capacity, len(self.groups) * 3 // 2)
            self.groups = np.empty(size, dtype=np.int64)
            self.offsets = np.empty(size, dtype=np.float64)
        return self.groups[:capacity], self.offsets[:capacity]

"""Compiled loops for the fingerprint search's first pass: posting lookup and coarse voting.

A 3-s query under 17 speed/pitch hypotheses looks up about 14,000 hashes and meets about
700,000 postings. In numpy each step of the count (gather track and frame, form the cell, count,
look at the neighbours) allocates and walks a 700,000-element array, and that was 80 % of the
search time. These loops, compiled with numba (already installed for librosa), visit each
posting twice without building those arrays: once to count votes per coarse cell, once to keep
the votes of the best cells. Hand-written because no library does this inverted-index vote.

An index is one or more parts (segments, acr.retrieval.store), each with its own posting arrays
and track numbers from ``first_track`` on; both passes run once per part into one table, so the
shortlist is the one a single index of every part would give. A removed track's postings are
skipped (``live``), and a track number outside the part is counted, not followed: the caller
reports the damaged file (the arrays are memory-mapped and checked as they are read).
"""

from __future__ import annotations

import numba
import numpy as np

CELL_MULTIPLIER = 1_000_003  # spreads groups over the table before offsets are added


@numba.njit(cache=True, inline="always")
def _cell(group: int, offset: float, scale: float, mask: int) -> int:
    """The table cell of a vote: its group and coarse offset, hashed. Both passes must agree."""
    return (group * CELL_MULTIPLIER + np.int64(offset * scale)) & mask


@numba.njit(cache=True, nogil=True)
def count_cells(
    hashes: np.ndarray,
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
) -> tuple[int, int]:
    """Add one part's votes to ``counts``, per hashed (track, hypothesis, coarse offset) cell;
    returns (votes, postings whose track number is outside ``live``).

    Query hash q's postings in the part are [firsts[q], ends[q]); those that are not ``usable``
    (too common over the whole index) are skipped.
    ``len(counts)`` must be a power of two; a collision only merges two cells' counts.
    """
    mask = len(counts) - 1
    scale = 1.0 / coarse_frames
    votes = 0
    damaged = 0
    for query in range(len(hashes)):
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
                counts[_cell(group, posting_frames[posting] - frame, scale, mask)] += 1
                votes += 1
    return votes, damaged


@numba.njit(cache=True, nogil=True)
def cells_to_keep(counts: np.ndarray, threshold: int) -> np.ndarray:
    """Cells holding at least ``threshold`` votes, or next to one: a true alignment may
    straddle two coarse cells. One byte per cell (1 MB) stays in cache where three reads of
    the counts (4 MB) per vote did not."""
    mask = len(counts) - 1
    keep = np.zeros(len(counts), dtype=np.bool_)
    for cell in range(len(counts)):
        best = max(counts[cell], counts[(cell + 1) & mask], counts[(cell - 1) & mask])
        keep[cell] = best >= threshold
    return keep


@numba.njit(cache=True, nogil=True)
def collect_votes(
    hashes: np.ndarray,
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
    keep: np.ndarray,
    votes: int,
) -> tuple[np.ndarray, np.ndarray]:
    """(group, offset in frames) of one part's votes (``votes`` of them, as counted) whose
    cell is kept."""
    mask = len(keep) - 1
    groups = np.empty(votes, dtype=np.int64)
    offsets = np.empty(votes, dtype=np.float64)
    scale = 1.0 / coarse_frames
    kept = 0
    for query in range(len(hashes)):
        if not usable[query]:
            continue
        hypothesis = query_hypotheses[query]
        frame = query_frames[query]
        for posting in range(firsts[query], ends[query]):
            track = np.int64(posting_tracks[posting])
            if track < 0 or track >= len(live) or not live[track]:
                continue
            group = (first_track + track) * hypothesis_count + hypothesis
            offset = posting_frames[posting] - frame
            if keep[_cell(group, offset, scale, mask)]:
                groups[kept] = group
                offsets[kept] = offset
                kept += 1
    return groups[:kept], offsets[:kept]

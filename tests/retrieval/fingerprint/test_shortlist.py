"""The fingerprint search's compiled first pass: posting lookup, coarse vote counts and the
shortlist."""

import numpy as np
import pytest

from acr.retrieval.fingerprint import shortlist

HYPOTHESES = 2
COARSE_FRAMES = 32
TABLE = 1 << 12


def postings(track_frames: list[tuple[int, int]], hash_count: int) -> tuple[np.ndarray, ...]:
    """A one-posting-per-hash index: hash h holds (track, frame) track_frames[h]."""
    assert len(track_frames) == hash_count
    tracks = np.array([track for track, _ in track_frames], dtype=np.int32)
    frames = np.array([frame for _, frame in track_frames], dtype=np.int32)
    return np.arange(hash_count + 1, dtype=np.int64), tracks, frames


def test_counts_and_keeps_the_votes_of_the_best_cell_and_its_neighbours() -> None:
    rng = np.random.default_rng(0)
    # 40 query hashes align track 3 at offset +100 frames (hypothesis 1); 200 others vote for
    # random tracks at random offsets, at most a handful per cell.
    aligned = [(3, 100 + frame) for frame in range(40)]
    scattered = [
        (int(t), int(f)) for t, f in zip(rng.integers(0, 50, 200), rng.integers(0, 9000, 200))
    ]
    starts, tracks, frames = postings(aligned + scattered, 240)
    query_frames = np.r_[np.arange(40), rng.integers(0, 90, 200)].astype(np.float64)
    query_hypotheses = np.r_[np.ones(40), np.zeros(200)].astype(np.int64)
    arguments = (
        query_frames,
        query_hypotheses,
        np.ones(240, dtype=bool),
        starts[:-1],
        starts[1:],
        tracks,
        frames,
        np.ones(50, dtype=bool),
        0,
        HYPOTHESES,
        COARSE_FRAMES,
    )

    counts = np.zeros(TABLE, dtype=np.int32)
    groups, offsets = np.empty(240, dtype=np.int64), np.empty(240)
    votes, damaged = shortlist.count_cells(*arguments, counts, groups, offsets)
    assert votes == 240 and counts.sum() == 240 and damaged == 0
    assert counts.max() == 40  # offset 100 frames is coarse cell 3 for every aligned vote
    assert shortlist.threshold(counts, 1, 2) == 40

    keep = np.ones(TABLE, dtype=bool)
    shortlist.cells_to_keep(counts, 40, keep)
    assert 1 <= keep.sum() <= 3  # the cell and its neighbours
    groups, offsets = shortlist.collect_votes(groups, offsets, keep, COARSE_FRAMES)
    assert (groups == 3 * HYPOTHESES + 1).sum() == 40
    assert np.all(offsets[groups == 3 * HYPOTHESES + 1] == 100)
    assert len(groups) < 60  # the scattered votes fall away, bar a few in neighbouring cells


def test_unusable_hashes_removed_tracks_and_later_parts() -> None:
    """A hash marked unusable (too common over all parts) is skipped, a removed track's
    postings are not counted, a part's track numbers start at its first_track, and a track
    number beyond the part is reported, never followed."""
    firsts, ends = np.array([0, 5, 6]), np.array([5, 6, 8])  # hash 0: 5 postings, 1: one, 2: two
    tracks = np.array([0, 0, 0, 0, 0, 0, 1, 2], dtype=np.int32)
    frames = np.arange(8, dtype=np.int32)
    live = np.array([True, False])
    usable = np.array([False, True, True])
    arguments = (np.zeros(3), np.zeros(3, dtype=np.int64), usable, firsts, ends, tracks,
                 frames, live, 10, 1, COARSE_FRAMES)  # fmt: skip

    counts = np.zeros(TABLE, dtype=np.int32)
    groups, offsets = np.empty(3, dtype=np.int64), np.empty(3)
    votes, damaged = shortlist.count_cells(*arguments, counts, groups, offsets)
    assert (votes, damaged) == (1, 1) and counts.sum() == 1  # hash 2: track 1 removed, 2 beyond
    assert groups[0] == 10 and offsets[0] == 5.0
    keep = np.zeros(TABLE, dtype=bool)
    shortlist.cells_to_keep(counts, shortlist.threshold(counts, 64, 2), keep)
    assert keep.all()  # no more occupied cells than candidates: every vote stays
    groups, offsets = shortlist.collect_votes(groups[:votes], offsets[:votes], keep, 1)
    assert groups.tolist() == [10] and offsets.tolist() == [5.0]


@pytest.mark.parametrize("cells", [1, 5, 64, 300])
def test_the_threshold_is_the_count_of_the_cells_th_fullest_cell(cells: int) -> None:
    rng = np.random.default_rng(cells)
    counts = np.zeros(TABLE, dtype=np.int32)
    counts[10 + rng.choice(TABLE - 10, 400, replace=False)] = rng.integers(1, 60, 400)
    counts[7] = shortlist.COUNT_CAP + 50  # beyond the histogram: found exactly
    counts[9] = shortlist.COUNT_CAP + 20
    occupied = counts[counts > 0]
    expected = max(int(np.sort(occupied)[-cells]), 2)
    assert shortlist.threshold(counts, cells, 2) == expected
    assert shortlist.threshold(counts, 2, 2) == shortlist.COUNT_CAP + 20
    assert shortlist.threshold(counts, 401, 2) == 2  # the 401st of 402 cells has >= 1 vote
    assert shortlist.threshold(counts, 402, 2) == 0  # every occupied cell is a candidate


def test_ranges_of_sorted_and_unsorted_hashes_match_a_binary_search() -> None:
    rng = np.random.default_rng(3)
    keys = np.unique(rng.integers(0, 2**32, 5000, dtype=np.uint64)).astype(np.uint32)
    starts = np.r_[0, np.cumsum(rng.integers(1, 5, len(keys)))].astype(np.int64)
    hashes = np.r_[rng.choice(keys, 300), rng.integers(0, 2**32, 300, dtype=np.uint64),
                   [0, 2**32 - 1, keys[0], keys[-1]]].astype(np.uint32)  # fmt: skip
    position = np.minimum(np.searchsorted(keys, hashes), len(keys) - 1)
    found = keys[position] == hashes
    expected_first = np.where(found, starts[position], 0)
    expected_end = np.where(found, starts[position + 1], 0)
    for order in (np.argsort(hashes), np.arange(len(hashes))):  # sorted, then as they came
        firsts, ends, problem = shortlist.find_ranges(keys, starts, hashes[order], starts[-1])
        assert problem == 0
        assert np.array_equal(firsts, expected_first[order])
        assert np.array_equal(ends, expected_end[order])
    assert found.sum() >= 302


def test_ranges_report_keys_or_a_row_index_out_of_order() -> None:
    keys = np.array([10, 20, 30, 40], dtype=np.uint32)
    starts = np.array([0, 2, 4, 6, 8], dtype=np.int64)
    hashes = np.array([20, 30], dtype=np.uint32)
    assert shortlist.find_ranges(keys, starts, hashes, 8)[2] == 0
    swapped = np.array([10, 30, 20, 40], dtype=np.uint32)
    assert shortlist.find_ranges(swapped, starts, hashes, 8)[2] == shortlist.KEYS_OUT_OF_ORDER
    backwards = np.array([0, 2, 9, 6, 8], dtype=np.int64)
    assert shortlist.find_ranges(keys, backwards, hashes, 8)[2] == shortlist.STARTS_OUT_OF_ORDER
    assert shortlist.find_ranges(keys, starts, hashes, 5)[2] == shortlist.STARTS_OUT_OF_ORDER

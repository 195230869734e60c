"""The fingerprint search's compiled first pass: coarse vote counts and the shortlist."""

import numpy as np

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
    hashes = np.arange(240, dtype=np.uint32)
    query_frames = np.r_[np.arange(40), rng.integers(0, 90, 200)].astype(np.float64)
    query_hypotheses = np.r_[np.ones(40), np.zeros(200)].astype(np.int64)
    arguments = (
        hashes,
        query_frames,
        query_hypotheses,
        starts,
        tracks,
        frames,
        10,
        HYPOTHESES,
        COARSE_FRAMES,
    )

    counts, votes = shortlist.count_cells(*arguments, TABLE)
    assert votes == 240 and counts.sum() == 240
    assert counts.max() == 40  # offset 100 frames is coarse cell 3 for every aligned vote

    groups, offsets = shortlist.collect_votes(*arguments, counts, 40, votes)
    assert (groups == 3 * HYPOTHESES + 1).sum() == 40
    assert np.all(offsets[groups == 3 * HYPOTHESES + 1] == 100)
    assert len(groups) < 60  # the scattered votes fall away, bar a few in neighbouring cells


def test_hashes_with_too_many_postings_are_skipped() -> None:
    starts = np.array([0, 5, 6], dtype=np.int64)  # hash 0: 5 postings, hash 1: one
    tracks = np.zeros(6, dtype=np.int32)
    frames = np.arange(6, dtype=np.int32)
    hashes = np.array([0, 1], dtype=np.uint32)
    arguments = (
        hashes,
        np.zeros(2),
        np.zeros(2, dtype=np.int64),
        starts,
        tracks,
        frames,
        4,
        1,
        COARSE_FRAMES,
    )
    counts, votes = shortlist.count_cells(*arguments, TABLE)
    assert votes == 1 and counts.sum() == 1
    groups, offsets = shortlist.collect_votes(*arguments, counts, 0, votes)
    assert groups.tolist() == [0] and offsets.tolist() == [5.0]

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
    votes, damaged = shortlist.count_cells(*arguments, counts)
    assert votes == 240 and counts.sum() == 240 and damaged == 0
    assert counts.max() == 40  # offset 100 frames is coarse cell 3 for every aligned vote

    keep = shortlist.cells_to_keep(counts, 40)
    groups, offsets = shortlist.collect_votes(*arguments, keep, votes)
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
    hashes = np.array([0, 1, 2], dtype=np.uint32)
    live = np.array([True, False])

    def arguments(usable):
        return (hashes, np.zeros(3), np.zeros(3, dtype=np.int64), usable, firsts, ends, tracks,
                frames, live, 10, 1, COARSE_FRAMES)  # fmt: skip

    counts = np.zeros(TABLE, dtype=np.int32)
    votes, damaged = shortlist.count_cells(*arguments(np.array([False, True, True])), counts)
    assert (votes, damaged) == (1, 1) and counts.sum() == 1  # hash 2: track 1 removed, 2 beyond
    keep = shortlist.cells_to_keep(counts, 0)
    groups, offsets = shortlist.collect_votes(*arguments(np.array([False, True, True])), keep, 1)
    assert groups.tolist() == [10] and offsets.tolist() == [5.0]

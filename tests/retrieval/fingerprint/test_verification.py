"""acr.retrieval.fingerprint.verification: the reference cells a query is compared with, and
the correlation that ranks candidates."""

import numpy as np

from acr.retrieval.fingerprint import verification
from acr.retrieval.fingerprint.verification import JITTER_FRAMES, aligned, similarity


def _reference(bands: int = 30, frames: int = 400) -> np.ndarray:
    return np.random.default_rng(0).normal(size=(bands, frames)).astype(np.float32)


def test_aligned_cells_follow_the_offset_the_time_scale_and_the_band_shift() -> None:
    reference = _reference()
    cells = aligned(reference, offset_frames=100.0, query_frames=40, time_scale=1.0, shift_bands=0)
    assert cells.shape == (2 * JITTER_FRAMES + 1, 30, 40)
    np.testing.assert_array_equal(cells[JITTER_FRAMES], reference[:, 100:140])
    np.testing.assert_array_equal(cells[0], reference[:, 98:138])  # two frames early
    # A query 5 % fast: query frame t is reference frame 100 + 1.05 t; two bands higher:
    # query band b is reference band b - 2, and the two lowest have no reference.
    faster = aligned(reference, 100.0, 40, 1.05, 2.0)[JITTER_FRAMES]
    frames = np.rint(100 + 1.05 * np.arange(40)).astype(int)
    np.testing.assert_array_equal(faster[2:], reference[:28][:, frames])
    assert np.isnan(faster[:2]).all()
    # Past the track's end: no cells.
    ending = aligned(reference, 390.0, 40, 1.0, 0.0)[JITTER_FRAMES]
    assert np.isnan(ending[:, 10:]).all() and not np.isnan(ending[:, :10]).any()


def test_similarity_ignores_each_bands_level_and_needs_shared_cells() -> None:
    reference = _reference()
    query = reference[:, 100:140].copy()
    cells = aligned(reference, 100.0, 40, 1.0, 0.0)
    assert similarity(query, cells) > 0.9999
    # A band limit or a stationary noise raises or lowers bands by a constant: the same.
    coloured = query + np.linspace(-3.0, 2.0, 30)[:, None]
    assert similarity(coloured, cells) > 0.9999
    # Another stretch of the track (independent noise here) correlates near 0.
    elsewhere = aligned(reference, 250.0, 40, 1.0, 0.0)
    assert abs(similarity(query, elsewhere)) < 0.1
    # Three frames late still correlate at the offsets tried (two either side)...
    assert similarity(query, aligned(reference, 102.0, 40, 1.0, 0.0)) > 0.9999
    # ...and a query past the end shares too few cells for a verdict.
    assert similarity(query, aligned(reference, 401.0, 40, 1.0, 0.0)) == -1.0


def test_the_order_weighs_a_little_of_the_votes() -> None:
    # Equal correlations: more votes first; a clearly better correlation beats 4x the votes.
    assert verification.verified_order([0.5, 0.5], [10.0, 40.0]).tolist() == [1, 0]
    assert verification.verified_order([0.2, 0.5], [40.0, 10.0]).tolist() == [1, 0]
    assert verification.verified_order([0.45, 0.5], [40.0, 10.0]).tolist() == [0, 1]

"""acr.monitor.edges: where a track starts, searched from outside the segment inwards."""

from __future__ import annotations

import pytest

from acr.monitor.edges import locate_edge


def test_the_edge_is_found_from_outside_even_with_holes_inside() -> None:
    """Clips from 3.3 s on find the track, except inside a chorus (6-8 s) that matches the
    track's other chorus better."""
    tried = []

    def found(t: float) -> bool:
        tried.append(t)
        return t >= 3.3 and not 6.0 <= t <= 8.0

    clip_start, at_limit = locate_edge(found, guess=1.0, outer=0.0, inner=9.0)
    assert clip_start == pytest.approx(3.3, abs=0.25) and not at_limit
    assert max(tried) < 6.0  # never looked past the first clip that found it
    assert len(tried) <= 6


def test_a_guess_inside_walks_out_and_a_track_playing_from_the_start_is_at_the_limit() -> None:
    assert locate_edge(lambda t: t >= 3.3, guess=5.0, outer=0.0, inner=9.0)[0] == pytest.approx(
        3.3, abs=0.25
    )
    assert locate_edge(lambda t: True, guess=2.0, outer=0.0, inner=9.0) == (0.0, True)
    assert locate_edge(lambda t: False, guess=2.0, outer=0.0, inner=9.0) is None

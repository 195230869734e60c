"""acr.monitor.segments: windows that agree on a track and its alignment become a segment."""

from __future__ import annotations

import pytest

from acr.monitor.segments import Chain, Joiner, Segment, Tracker, WindowMatch, join, segment_of


def _match(track_id: str, offset_s: float, score: float = 500.0, **kwargs) -> WindowMatch:
    return WindowMatch(track_id, score, offset_s, **kwargs)


def test_two_agreeing_windows_confirm_a_segment_that_closes_after_a_missed_one() -> None:
    tracker = Tracker(min_windows=2, max_missed=1, offset_tolerance_s=1.0)
    assert tracker.observe(0.0, [_match("a", 10.0)]) == ([], [])
    confirmed, closed = tracker.observe(2.5, [_match("a", 12.6)])
    assert [chain.track_id for chain in confirmed] == ["a"] and closed == []
    assert tracker.observe(5.0, []) == ([], [])  # one missed window is allowed
    confirmed, closed = tracker.observe(7.5, [_match("a", 17.5)])
    assert confirmed == [] and closed == []  # and the chain goes on
    tracker.observe(10.0, [])
    confirmed, closed = tracker.observe(12.5, [])
    assert [chain.windows for chain in closed] == [3]


def test_an_offset_off_the_alignment_starts_another_chain() -> None:
    tracker = Tracker(min_windows=2)
    tracker.observe(0.0, [_match("a", 10.0)])
    confirmed, _ = tracker.observe(2.5, [_match("a", 30.0)])  # the chorus, 20 s on
    assert confirmed == []
    assert len(tracker.chains) == 2
    assert tracker.observe(5.0, [])[1] == []  # never confirmed: nothing to report


def test_clamped_offsets_agree_until_the_track_starts() -> None:
    """A window that starts before the track gets offset 0 from the engine."""
    tracker = Tracker(min_windows=2)
    tracker.observe(0.0, [_match("a", 0.0)])
    confirmed, _ = tracker.observe(2.5, [_match("a", 0.0)])
    assert len(confirmed) == 1
    tracker.observe(5.0, [_match("a", 1.0)])  # the track began at 4 s
    tracker.observe(7.5, [_match("a", 3.5)])
    (chain,) = tracker.chains
    assert chain.windows == 4
    assert chain.reference_at(4.0) == (pytest.approx(0.0), False)
    assert not chain.agrees(10.0, _match("a", 0.0), 1.0)  # 6 s in, the track cannot be at 0


def test_the_speed_is_fitted_over_the_segment() -> None:
    chain = Chain("a")
    for step in range(8):  # 7 % fast, found under the 1.06 and 1.08 hypotheses
        start = step * 2.5
        chain.add(start, _match("a", 20.0 + start * 1.07, speed_factor=(1.06, 1.08)[step % 2]))
    assert chain.speed() == pytest.approx(1.07, abs=1e-6)
    assert chain.pitch_semitones(chain.speed()) == 0.0
    row = segment_of(chain, "mix.wav", 1.0, 25.0)
    assert (row.speed_factor, row.reference_start_s, row.reference_end_s) == (1.07, 21.07, 46.75)
    assert row.probability is None and row.windows == 8


def test_a_pitch_shift_at_the_same_tempo_is_reported() -> None:
    chain = Chain("a")
    for step in range(6):
        chain.add(step * 2.5, _match("a", 5.0 + step * 2.5, pitch_semitones=1.0))
    assert chain.speed() == pytest.approx(1.0)
    assert chain.pitch_semitones(chain.speed()) == 1.0


def test_a_segment_s_probability_is_the_best_of_its_windows() -> None:
    chain = Chain("a")
    chain.add(0.0, _match("a", 1.0, probability=0.7))
    chain.add(2.5, _match("a", 3.5))
    chain.add(5.0, _match("a", 6.0, probability=0.95))
    assert segment_of(chain, "mix.wav", 0.0, 15.0).probability == 0.95


def test_weak_windows_confirm_a_segment_only_when_there_are_enough_of_them() -> None:
    """A track through heavy damage: 30-40 votes a window (below min_score), one alignment."""
    tracker = Tracker(min_windows=2, max_missed=1, min_score=50.0, weak_windows=4)
    for step in range(3):
        confirmed, _ = tracker.observe(2.5 * step, [_match("a", 10.0 + 2.5 * step, score=35.0)])
        assert confirmed == []
    confirmed, _ = tracker.observe(7.5, [_match("a", 17.5, score=35.0)])
    assert [chain.windows for chain in confirmed] == [4]
    strong = Tracker(min_windows=2, min_score=50.0, weak_windows=4)
    strong.observe(0.0, [_match("b", 3.0, score=35.0)])
    strong.observe(2.5, [_match("b", 5.5, score=80.0)])
    confirmed, _ = strong.observe(5.0, [_match("b", 8.0, score=90.0)])
    assert [chain.windows for chain in confirmed] == [3]  # two strong windows, with a weak one


def test_another_alignment_of_a_playing_track_waits_for_its_segment_to_close() -> None:
    tracker = Tracker(min_windows=2, max_missed=2)
    tracker.observe(0.0, [_match("a", 10.0)])
    tracker.observe(2.5, [_match("a", 12.5)])  # confirmed at 10 s into the track
    tracker.observe(5.0, [_match("a", 40.0)])  # the chorus 25 s later wins two windows
    confirmed, closed = tracker.observe(7.5, [_match("a", 42.5)])
    assert confirmed == [] and closed == []
    tracker.observe(10.0, [_match("a", 20.0)])  # and the first alignment comes back
    assert [chain.windows for chain in tracker.chains if chain.confirmed] == [3]


def test_the_same_track_again_within_the_join_gap_is_one_play() -> None:
    first = Segment("mix.wav", 10.0, 40.0, "a", 5.0, 35.0, 1.0, 0.0, 0.9, 10)
    second = Segment("mix.wav", 44.0, 90.0, "a", 60.0, 106.0, 1.02, 0.0, None, 15)
    joiner = Joiner(gap_s=8.0, wait_s=30.0)
    joiner.hold(first)
    assert joiner.continued("b", 44.0) is None  # another track
    assert joiner.due(60.0) == []  # 20 s after its end: something may still continue it
    assert joiner.continued("a", 49.0) is None  # 9 s after it: another play
    held = joiner.continued("a", 44.0)
    assert held == first and joiner.held == []
    joined = join(held, second)
    # On the longer part's alignment (60 s into the track at 44 s, 2 % fast), extended.
    assert (joined.start_s, joined.end_s) == (10.0, 90.0)
    assert (joined.reference_start_s, joined.reference_end_s) == (25.32, 106.0)
    assert (joined.speed_factor, joined.probability, joined.windows) == (1.02, 0.9, 25)
    joiner.hold(joined)
    assert joiner.due(110.0) == [] and joiner.due(121.0) == [joined]

"""Window matches merged into segments: the same track at a consistent alignment.

A window's match says which track plays and where in it the window starts (``offset_s``); a
track playing from recording time ``t`` on maps ``t`` to the reference time
``offset + (t - t0) * speed``. Matches of consecutive windows that agree with one line (within
``offset_tolerance_s``) form a chain; a chain of ``min_windows`` windows scoring ``min_score``
or more, of ``weak_windows`` windows in all, or with one window at ``confirm_score``, is a
confirmed segment (unless a confirmed
segment of its track is still open), and one that misses more than ``max_missed`` windows in
a row closes. The line is fitted to
the chain's windows (Theil-Sen: the median of pairwise slopes, robust to a stray offset), so a
segment's speed factor is measured over its whole length, finer than the engine's hypotheses.

An engine clamps an offset below zero to zero (a window that starts before the track does):
such an offset only says the line is at or below zero there.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

# An offset this close to zero may have been clamped (the window began before the track).
CLAMPED_OFFSET_S = 0.05
# Offsets spanning this much recording time measure the speed better than the hypotheses'
# 2-3 % grid (an offset is good to ~0.05 s: 0.5 % over 10 s).
SPEED_FIT_MIN_SPAN_S = 10.0
FIT_WINDOWS = 64  # windows a line is fitted to (the latest ones; pairs grow quadratically)
SPEED_DECIMALS = 3


@dataclass(frozen=True)
class WindowMatch:
    """One ranked track of one window. ``probability`` is the recognizer's P(top-1 is right),
    for the top-1 match of a calibrated index only."""

    track_id: str
    score: float
    offset_s: float
    speed_factor: float = 1.0
    pitch_semitones: float = 0.0
    probability: float | None = None

    @property
    def clamped(self) -> bool:
        return self.offset_s < CLAMPED_OFFSET_S


@dataclass
class Chain:
    """Windows of one recording that agree on a track and its alignment."""

    track_id: str
    starts_s: list[float] = field(default_factory=list)  # window starts, increasing
    matches: list[WindowMatch] = field(default_factory=list)
    missed: int = 0  # windows in a row since the last that agreed
    confirmed: bool = False
    number: int = 0  # which segment of the recording, in order of confirmation
    edge_start_s: float = 0.0  # where it starts, refined when it is confirmed
    joined: Segment | None = None  # the segment of its track it continues (Joiner)

    def add(self, start_s: float, match: WindowMatch) -> None:
        self.starts_s.append(start_s)
        self.matches.append(match)
        self.missed = 0

    def strong_windows(self, min_score: float) -> int:
        return sum(match.score >= min_score for match in self.matches)

    @property
    def windows(self) -> int:
        return len(self.matches)

    @property
    def first_start_s(self) -> float:
        return self.starts_s[0]

    @property
    def last_start_s(self) -> float:
        return self.starts_s[-1]

    def speed(self) -> float:
        """The measured speed factor: the fitted slope over a long enough span, else the
        median of the windows' hypotheses."""
        points = self._unclamped()
        if len(points) >= 2 and points[-1][0] - points[0][0] >= SPEED_FIT_MIN_SPAN_S:
            slopes = [
                (r2 - r1) / (t2 - t1)
                for (t1, r1), (t2, r2) in itertools.combinations(points[-FIT_WINDOWS:], 2)
                if t2 > t1
            ]
            return float(np.median(slopes))
        return float(np.median([match.speed_factor for match in self.matches]))

    def reference_at(self, time_s: float) -> tuple[float, bool]:
        """The reference time the alignment puts at recording time ``time_s``, and whether it
        is only an upper bound (every offset so far clamped)."""
        speed = self.speed()
        points = self._unclamped()
        if not points:
            return (time_s - self.starts_s[-1]) * speed, True
        intercepts = [offset - speed * start for start, offset in points[-FIT_WINDOWS:]]
        return float(np.median(intercepts)) + speed * time_s, False

    def agrees(self, start_s: float, match: WindowMatch, tolerance_s: float) -> bool:
        """Whether ``match`` at window ``start_s`` continues this chain."""
        if match.track_id != self.track_id:
            return False
        predicted, upper_bound = self.reference_at(start_s)
        if match.clamped:  # the track starts after this window does: only an upper bound
            return upper_bound or predicted <= tolerance_s
        if upper_bound:
            return match.offset_s <= predicted + tolerance_s
        return abs(predicted - match.offset_s) <= tolerance_s

    def probability(self) -> float | None:
        known = [m.probability for m in self.matches if m.probability is not None]
        return max(known) if known else None

    def pitch_semitones(self, speed: float) -> float:
        """The pitch shift at the same tempo: the windows' total pitch change (hypothesis
        shift, and the pitch a hypothesis speed implies) less that of the measured speed,
        rounded to a sixth of a semitone; under a quarter tone is none."""
        total = np.median([m.pitch_semitones + 12 * np.log2(m.speed_factor) for m in self.matches])
        pitch = float(total - 12 * np.log2(speed))
        return 0.0 if abs(pitch) < 0.25 else round(pitch * 6) / 6

    def _unclamped(self) -> list[tuple[float, float]]:
        return [(s, m.offset_s) for s, m in zip(self.starts_s, self.matches) if not m.clamped]


@dataclass(frozen=True)
class Segment:
    """One detected segment: the row ``acr monitor`` writes (``COLUMNS``, in that order)."""

    recording: str
    start_s: float
    end_s: float
    track_id: str
    reference_start_s: float
    reference_end_s: float
    speed_factor: float
    pitch_semitones: float
    probability: float | None
    windows: int

    def row(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in COLUMNS}


COLUMNS = (
    "recording",
    "start_s",
    "end_s",
    "track_id",
    "reference_start_s",
    "reference_end_s",
    "speed_factor",
    "pitch_semitones",
    "probability",
    "windows",
)


def segment_of(chain: Chain, recording: str, start_s: float, end_s: float) -> Segment:
    """The row of a chain whose edges are ``start_s`` and ``end_s`` (recording time)."""
    speed = chain.speed()
    reference_start, _ = chain.reference_at(start_s)
    reference_end, _ = chain.reference_at(end_s)
    probability = chain.probability()
    return Segment(
        recording=recording,
        start_s=round(start_s, 2),
        end_s=round(end_s, 2),
        track_id=chain.track_id,
        reference_start_s=round(max(0.0, reference_start), 2),
        reference_end_s=round(max(0.0, reference_end), 2),
        speed_factor=round(speed, SPEED_DECIMALS),
        pitch_semitones=round(chain.pitch_semitones(speed), 3),
        probability=None if probability is None else round(probability, 4),
        windows=chain.windows,
    )


def join(first: Segment, second: Segment) -> Segment:
    """One play of a track from two segments of it, from the first's start to the second's
    end, on the alignment of the longer (a loop or chorus found elsewhere in the track has no
    alignment of its own): its reference times extended to the joined edges at its speed,
    its pitch, the higher probability, the windows of both."""
    longer = max(first, second, key=lambda segment: segment.end_s - segment.start_s)
    start_s, end_s = first.start_s, max(first.end_s, second.end_s)
    speed = longer.speed_factor
    known = [p for p in (first.probability, second.probability) if p is not None]
    return Segment(
        recording=first.recording,
        start_s=start_s,
        end_s=end_s,
        track_id=first.track_id,
        reference_start_s=round(
            max(0.0, longer.reference_start_s - (longer.start_s - start_s) * speed), 2
        ),
        reference_end_s=round(longer.reference_end_s + (end_s - longer.end_s) * speed, 2),
        speed_factor=speed,
        pitch_semitones=longer.pitch_semitones,
        probability=max(known) if known else None,
        windows=first.windows + second.windows,
    )


@dataclass
class Joiner:
    """Closed segments held back a while, so that the same track heard again within
    ``gap_s`` is one play: game and dance music repeats itself, a window then finds another
    pass of a loop or chorus at another alignment, and a talk-over can hide a track longer
    than the tracker waits. A segment is released (its ``end`` reported) once nothing can
    continue it any more: ``wait_s`` after its end, in recording time."""

    gap_s: float
    wait_s: float
    held: list[Segment] = field(default_factory=list)

    def continued(self, track_id: str, start_s: float) -> Segment | None:
        """The held segment of ``track_id`` that a segment starting at ``start_s`` continues
        (taken out of the held ones), if any."""
        for segment in self.held:
            if segment.track_id == track_id and start_s - segment.end_s <= self.gap_s:
                self.held.remove(segment)
                return segment
        return None

    def hold(self, segment: Segment) -> None:
        self.held.append(segment)

    def due(self, now_s: float | None = None) -> list[Segment]:
        """The segments nothing can continue after ``now_s`` (None: all of them), by start."""
        due = [s for s in self.held if now_s is None or now_s - s.end_s > self.wait_s]
        self.held = [s for s in self.held if s not in due]
        return sorted(due, key=lambda segment: segment.start_s)


@dataclass
class Tracker:
    """Chains of one recording, fed a window at a time.

    The rule's settings are acr.monitor.scan.ScanSettings's of the same names.
    """

    min_windows: int = 2
    max_missed: int = 1
    offset_tolerance_s: float = 1.0
    min_score: float = 0.0
    weak_windows: int = 0
    confirm_score: float = 0.0
    chains: list[Chain] = field(default_factory=list)
    confirmed_count: int = 0

    def observe(
        self, start_s: float, matches: list[WindowMatch]
    ) -> tuple[list[Chain], list[Chain]]:
        """Feed one window's matches (already filtered by score); returns the chains
        confirmed by it and the confirmed chains it closed (their last window was earlier)."""
        extended: set[int] = set()
        unused = []
        for match in matches:
            candidates = [
                chain
                for chain in self.chains
                if id(chain) not in extended
                and chain.agrees(start_s, match, self.offset_tolerance_s)
            ]
            if not candidates:
                unused.append(match)
                continue
            chain = max(candidates, key=lambda c: (c.confirmed, c.windows))
            chain.add(start_s, match)
            extended.add(id(chain))
        closed = []
        for chain in list(self.chains):
            if id(chain) in extended:
                continue
            chain.missed += 1
            if chain.missed > self.max_missed:
                self.chains.remove(chain)
                if chain.confirmed:
                    closed.append(chain)
        for match in unused:
            chain = Chain(match.track_id)
            chain.add(start_s, match)
            self.chains.append(chain)
        confirmed = []
        # A track heard at another alignment while its segment is open (a talk-over hides
        # it, and a chorus elsewhere in it wins a window or two) waits until that segment
        # has closed: then it is a track played again, or a DJ's loop, not a blip.
        playing = {chain.track_id for chain in self.chains if chain.confirmed}
        for chain in self.chains:
            if chain.confirmed or not self._enough(chain):
                continue
            if chain.track_id not in playing:
                chain.confirmed = True
                chain.number = self.confirmed_count
                self.confirmed_count += 1
                confirmed.append(chain)
                playing.add(chain.track_id)
        return confirmed, closed

    def _enough(self, chain: Chain) -> bool:
        """``min_windows`` windows at ``min_score`` or more, or ``weak_windows`` in all (a
        track through heavy degradation: a few dozen votes a window, at one alignment), or
        one window at ``confirm_score`` (a track heard clearly: live output a window sooner)."""
        if self.confirm_score and chain.strong_windows(self.confirm_score):
            return True
        strong = chain.strong_windows(self.min_score) >= self.min_windows
        return strong or bool(self.weak_windows) and chain.windows >= self.weak_windows

    def close_all(self) -> list[Chain]:
        """End of the recording (or of a readable stretch): every confirmed chain closes."""
        closed = [chain for chain in self.chains if chain.confirmed]
        self.chains = []
        return closed

"""Segment edges placed to within ~0.5 s with short clips.

A window of ``window_s`` finds a track long before it fills the window, so the windows alone
place an edge only to within a window. The start is refined when a segment is confirmed, the
end when it closes: short clips (``edge_clip_s``), played back at the segment's measured
speed (then searched as they sound, one hypothesis instead of 21), are tried from outside the
segment inwards a second apart and then bisected, for the first (last) clip that finds the
track at the segment's alignment. From the outside in, because a clip inside a chorus may
find the track's other chorus instead. Measured on generated music, a 2-s clip finds the
track once ~0.5 s of it is in the clip (``EDGE_COVERAGE_S``), so the edge is placed that far
inside the clip (10-min mix, 20 excerpts, 4 of them 5-8 % off speed: median error 0.1 s,
worst 0.7 s).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from acr.audio import resample
from acr.monitor.segments import Chain, WindowMatch
from acr.monitor.stream import Ring
from acr.retrieval.recognizer import MIN_QUERY_S

if TYPE_CHECKING:
    from acr.monitor.scan import ScanSettings

EDGE_COVERAGE_S = 0.5  # of the track a 2-s edge clip needs to find it (measured, see above)
EDGE_RESOLUTION_S = 0.5  # bisection stops here, and takes the middle: within 0.25 s
COARSE_STEP_S = 1.0  # clips tried from outside in before the bisection
SPEED_CORRECTION_STEP = 0.005  # edge clips are played back at the reference's speed to this


class Edges:
    """Places the edges of a recording's segments in the audio of its ``ring``; ``search``
    gives the tracks a clip finds (acr.monitor.scan.Scanner.clip_matches)."""

    def __init__(
        self,
        ring: Ring,
        sample_rate: int,
        settings: ScanSettings,
        search: Callable[[np.ndarray, bool], list[WindowMatch]],
    ) -> None:
        self.ring = ring
        self.rate = sample_rate
        self.settings = settings
        self.search = search

    def _found(self, chain: Chain, clip_start_s: float, speed: float, pitch: float) -> bool:
        """Whether the clip starting at ``clip_start_s`` finds the chain's track where the
        alignment puts it. The clip is first played back at the reference's speed: a clip
        7 % fast, between two speed hypotheses, finds its track with a third of the votes."""
        start = round(clip_start_s * self.rate)
        audio = self.ring.read(start, start + round(self.settings.edge_clip_s * self.rate))
        if len(audio) < MIN_QUERY_S * self.rate:
            return False
        # On a 0.5 % grid of rates: a rate ratio of small numbers keeps the resampling
        # kernel small (and cached); the clip is then within 0.25 % of the reference's speed.
        step = max(1, round(self.rate * SPEED_CORRECTION_STEP))
        played_rate = round(self.rate * speed / step) * step
        if played_rate != self.rate:
            audio = resample(audio, self.rate, played_rate)
        return any(
            match.score >= self.settings.edge_min_score
            and chain.agrees(clip_start_s, match, self.settings.offset_tolerance_s)
            for match in self.search(audio, pitch == 0.0)
        )

    def _held_s(self) -> tuple[float, float]:
        """Clip starts the ring can serve: [first, last]."""
        clip = self.settings.edge_clip_s
        return self.ring.start / self.rate, self.ring.end / self.rate - clip

    def start(self, chain: Chain, stretch_start_s: float) -> float:
        """The first moment the track plays. The window before the chain's first missed it,
        so it held at most a second or two of the track: clips are tried from there inwards
        (outwards if that one finds it), a second apart, then bisected. From the outside in,
        because a clip inside a chorus may find the track's other chorus instead."""
        settings = self.settings
        first_held, last_held = self._held_s()
        if not settings.edge_clip_s or last_held < first_held:
            return chain.first_start_s
        outer = max(first_held, chain.first_start_s - settings.hop_s)
        inner = min(last_held, chain.first_start_s + settings.window_s - settings.edge_clip_s)
        guess = chain.first_start_s + settings.window_s - settings.hop_s - 2 * settings.edge_clip_s
        if chain.first_start_s <= stretch_start_s:  # no window before it: the edge may
            guess = outer  # be anywhere up to the start of what was read
        found = self._finder(chain)
        edge = locate_edge(found, max(outer, min(guess, inner)), outer, inner)
        if edge is None:
            return chain.first_start_s
        clip_start, at_limit = edge
        return outer if at_limit else clip_start + settings.edge_clip_s - EDGE_COVERAGE_S

    def end(self, chain: Chain) -> float:
        """The last moment the track plays, as :meth:`start` from the first window
        that missed the chain (or the end of what was read) back towards its last."""
        settings = self.settings
        window_end = chain.last_start_s + settings.window_s
        first_held, last_held = self._held_s()
        fallback = min(window_end, self.ring.end / self.rate)
        if not settings.edge_clip_s or last_held < first_held:
            return fallback
        outer = min(last_held, window_end + settings.hop_s * (settings.max_missed + 1))
        inner = max(first_held, chain.last_start_s)
        if outer <= inner:
            return fallback
        guess = chain.last_start_s + settings.hop_s + settings.edge_clip_s
        found = self._finder(chain)
        edge = locate_edge(lambda u: found(-u), -min(outer, max(guess, inner)), -outer, -inner)
        if edge is None:
            return fallback
        clip_start, at_limit = -edge[0], edge[1]
        return outer + settings.edge_clip_s if at_limit else clip_start + EDGE_COVERAGE_S

    def _finder(self, chain: Chain) -> Callable[[float], bool]:
        """``found(clip_start_s)`` for one edge (each clip searched once)."""
        cache: dict[float, bool] = {}
        speed = chain.speed()
        pitch = chain.pitch_semitones(speed)

        def found(clip_start_s: float) -> bool:
            if clip_start_s not in cache:
                cache[clip_start_s] = self._found(chain, clip_start_s, speed, pitch)
            return cache[clip_start_s]

        return found


def locate_edge(
    found: Callable[[float], bool], guess: float, outer: float, inner: float
) -> tuple[float, bool] | None:
    """Where ``found`` turns true, on an axis that runs from the outside of a segment
    (``outer``) to its inside (``inner``), searched from ``guess``: a second at a time, then
    bisected to EDGE_RESOLUTION_S. Returns where the first clip that finds the track starts
    (the middle of the last interval) and whether that is ``outer`` itself (the track plays
    from at least there); None when no clip finds it."""
    if found(guess):
        inside = guess
        while True:
            if inside <= outer:
                return outer, True
            candidate = max(inside - COARSE_STEP_S, outer)
            if not found(candidate):
                outside = candidate
                break
            inside = candidate
    else:
        outside = inside = guess
        while not found(inside):
            if inside >= inner:
                return None
            outside, inside = inside, min(inside + COARSE_STEP_S, inner)
    while inside - outside > EDGE_RESOLUTION_S:
        middle = (inside + outside) / 2
        if found(middle):
            inside = middle
        else:
            outside = middle
    return (inside + outside) / 2, False

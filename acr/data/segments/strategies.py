"""Segment-selection strategies: where in a track a query excerpt (or a training crop) starts.

Every strategy scores candidate starts from a track's analysis (acr.data.segments.analysis).
Strategies (``STRATEGIES``, ``get_strategy``): ``random``, ``silence_aware``, ``high_energy``,
``onset_aware``, ``beat_aware``, ``repeated_section_aware`` and ``hybrid``. Each gives
``candidates`` (starts whose whole segment fits, scores in [0, 1], best first) and ``choose``
(a seeded draw from the best candidates, weighted by score). ``anchor_pools`` turns them into
the training anchors a data module draws from.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
import pandas as pd

from acr.data.segments.analysis import SILENCE_DBFS, TrackAnalysis, analysis_path

AnchorPool = tuple[np.ndarray, np.ndarray]  # starts (s) and their probabilities


@dataclass(frozen=True)
class Segment:
    """A candidate excerpt start and how well it suits the strategy (0 = not at all, 1 = best)."""

    start_s: float
    score: float


class SegmentStrategy:
    """Scores segment starts from a TrackAnalysis; subclasses define ``scores`` (and ``starts``).

    ``choose`` draws from the best ``pool_fraction`` of candidates (ties at the cut all stay in),
    weighted by score, so queries favour good excerpts without always taking the same one.
    """

    name: ClassVar[str] = ""

    def __init__(self, pool_fraction: float = 0.2) -> None:
        if not 0.0 < pool_fraction <= 1.0:
            raise ValueError(f"pool_fraction must be in (0, 1], got {pool_fraction}")
        self.pool_fraction = pool_fraction

    def starts(self, analysis: TrackAnalysis, length_s: float) -> np.ndarray:
        """Where this strategy looks: every analysis frame by default."""
        return analysis.frame_times_s

    def scores(self, analysis: TrackAnalysis, starts_s: np.ndarray, length_s: float) -> np.ndarray:
        """Score in [0, 1] of a segment at each start (0 = never pick it)."""
        raise NotImplementedError

    def candidates(self, analysis: TrackAnalysis, length_s: float) -> list[Segment]:
        """Starts whose whole segment fits in the track, with score > 0, best first."""
        starts_s = self.starts(analysis, length_s)
        starts_s = starts_s[starts_s + length_s <= analysis.duration_s + 1e-9]
        if not len(starts_s):
            return []
        scores = np.clip(self.scores(analysis, starts_s, length_s), 0.0, 1.0)
        keep = scores > 0
        starts_s, scores = starts_s[keep], scores[keep]
        order = np.lexsort((starts_s, -scores))
        return [Segment(round(float(starts_s[i]), 6), float(scores[i])) for i in order]

    def pool(
        self, analysis: TrackAnalysis, length_s: float, count: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """The starts ``choose`` draws from (the best candidates, at least ``count``) and their
        probabilities; empty arrays when nothing fits. Training draws from it directly."""
        best = self._best(analysis, length_s, count)
        return np.array([s.start_s for s in best]), _probabilities(best)

    def choose(
        self, analysis: TrackAnalysis, length_s: float, rng: np.random.Generator, count: int = 1
    ) -> list[Segment]:
        """Up to ``count`` distinct candidates drawn from the best, weighted by score."""
        best = self._best(analysis, length_s, count) if count >= 1 else []
        if not best:
            return []
        picks = rng.choice(
            len(best), size=min(count, len(best)), replace=False, p=_probabilities(best)
        )
        return [best[i] for i in picks]

    def _best(self, analysis: TrackAnalysis, length_s: float, count: int) -> list[Segment]:
        """The best ``pool_fraction`` of candidates (at least ``count``; ties at the cut stay)."""
        segments = self.candidates(analysis, length_s)
        if not segments:
            return []
        scores = np.array([segment.score for segment in segments])
        cut = scores[min(len(scores), max(count, math.ceil(self.pool_fraction * len(scores)))) - 1]
        return segments[: int(np.sum(scores >= cut))]


def _probabilities(segments: list[Segment]) -> np.ndarray:
    scores = np.array([segment.score for segment in segments])
    return scores / scores.sum() if len(scores) else scores


class RandomStrategy(SegmentStrategy):
    """Every start equally good: the baseline, and the old behaviour of query generation."""

    name = "random"

    def scores(self, analysis: TrackAnalysis, starts_s: np.ndarray, length_s: float) -> np.ndarray:
        return np.ones(len(starts_s))

    def choose(
        self, analysis: TrackAnalysis, length_s: float, rng: np.random.Generator, count: int = 1
    ) -> list[Segment]:
        """Uniform starts in [0, duration - length], not limited to the frame grid."""
        room_s = analysis.duration_s - length_s
        if room_s < 0 or count < 1:
            return []
        return [Segment(float(start), 1.0) for start in rng.uniform(0.0, room_s, count)]


class SilenceAwareStrategy(SegmentStrategy):
    """Only segments inside librosa.effects.split's non-silent intervals: a silent excerpt
    identifies nothing. Score = the segment's non-silent share; below ``min_non_silent`` is 0."""

    name = "silence_aware"

    def __init__(self, min_non_silent: float = 1.0, pool_fraction: float = 0.2) -> None:
        super().__init__(pool_fraction)
        self.min_non_silent = min_non_silent

    def scores(self, analysis: TrackAnalysis, starts_s: np.ndarray, length_s: float) -> np.ndarray:
        share = non_silent_share(analysis, starts_s, length_s)
        return np.where(share >= self.min_non_silent - 1e-9, share, 0.0)


class HighEnergyStrategy(SegmentStrategy):
    """Loud segments (mean frame RMS in dB): choruses and full arrangements rather than intros
    and breakdowns. 1 = the loudest segment, 0 = ``range_db`` or more below it, or silence."""

    name = "high_energy"

    def __init__(self, range_db: float = 30.0, pool_fraction: float = 0.2) -> None:
        super().__init__(pool_fraction)
        self.range_db = range_db

    def scores(self, analysis: TrackAnalysis, starts_s: np.ndarray, length_s: float) -> np.ndarray:
        loudness_db = window_means(analysis.rms_db, analysis.hop_s, starts_s, length_s)
        grid_s = analysis.frame_times_s
        grid_s = grid_s[grid_s + length_s <= analysis.duration_s + 1e-9]
        loudest_db = window_means(
            analysis.rms_db, analysis.hop_s, grid_s if len(grid_s) else starts_s, length_s
        ).max()
        scores = np.clip(1.0 - (loudest_db - loudness_db) / self.range_db, 0.0, 1.0)
        return np.where(loudness_db > SILENCE_DBFS, scores, 0.0)


class OnsetAwareStrategy(SegmentStrategy):
    """Segments that start on a note onset (librosa.onset.onset_detect), so the excerpt begins
    with an attack; stronger onsets score higher. Off an onset the score falls as a Gaussian of
    the distance (sigma ``tolerance_s``), which lets ``hybrid`` score any start."""

    name = "onset_aware"
    events: ClassVar[tuple[str, str]] = ("onset_times_s", "onset_strengths")

    def __init__(self, tolerance_s: float = 0.03, pool_fraction: float = 0.2) -> None:
        super().__init__(pool_fraction)
        self.tolerance_s = tolerance_s

    def starts(self, analysis: TrackAnalysis, length_s: float) -> np.ndarray:
        return np.unique(getattr(analysis, self.events[0]))  # two peaks may share a minimum

    def scores(self, analysis: TrackAnalysis, starts_s: np.ndarray, length_s: float) -> np.ndarray:
        times_s, strengths = (getattr(analysis, name) for name in self.events)
        if not len(times_s):
            return np.zeros(len(starts_s))
        nearest = _nearest(times_s, starts_s)
        distance_s = np.abs(times_s[nearest] - starts_s)
        return strengths[nearest] * np.exp(-0.5 * (distance_s / self.tolerance_s) ** 2)


class BeatAwareStrategy(OnsetAwareStrategy):
    """Segments that start on a beat (librosa.beat.beat_track), as a DJ or a listener cuts;
    beats with a stronger onset (downbeats, kicks) score higher."""

    name = "beat_aware"
    events = ("beat_times_s", "beat_strengths")


class RepeatedSectionStrategy(SegmentStrategy):
    """Segments whose chroma sequence recurs elsewhere in the track (a chorus, a hook): the part
    people remember and would query. Score = mean per-frame repetition over the segment."""

    name = "repeated_section_aware"

    def scores(self, analysis: TrackAnalysis, starts_s: np.ndarray, length_s: float) -> np.ndarray:
        return window_means(analysis.repetition, analysis.hop_s, starts_s, length_s)


HYBRID_WEIGHTS = {
    "high_energy": 1.0,
    "onset_aware": 1.0,
    "beat_aware": 1.0,
    "repeated_section_aware": 1.0,
}


class HybridStrategy(SegmentStrategy):
    """Weighted mean of other strategies' scores, on the union of their starts.

    score(t) = sum_k w_k score_k(t) / sum_k w_k over strategies with w_k > 0 (default
    HYBRID_WEIGHTS, built with default options). ``avoid_silence`` drops starts that
    silence_aware rejects, so no weighting can pick a segment reaching into silence.
    """

    name = "hybrid"

    def __init__(
        self,
        weights: Mapping[str, float] | None = None,
        avoid_silence: bool = True,
        pool_fraction: float = 0.2,
    ) -> None:
        super().__init__(pool_fraction)
        weights = dict(HYBRID_WEIGHTS if weights is None else weights)
        if "hybrid" in weights or any(weight < 0 for weight in weights.values()):
            raise ValueError(f"hybrid weights must be >= 0 and not include hybrid: {weights}")
        self.weights = {name: weight for name, weight in weights.items() if weight > 0}
        if not self.weights:
            raise ValueError("hybrid needs at least one strategy with a positive weight")
        self.components = {name: get_strategy(name) for name in self.weights}
        self.avoid_silence = avoid_silence

    def starts(self, analysis: TrackAnalysis, length_s: float) -> np.ndarray:
        grids = [strategy.starts(analysis, length_s) for strategy in self.components.values()]
        return np.unique(np.round(np.concatenate(grids), 6))

    def scores(self, analysis: TrackAnalysis, starts_s: np.ndarray, length_s: float) -> np.ndarray:
        total = sum(
            self.weights[name] * np.clip(strategy.scores(analysis, starts_s, length_s), 0, 1)
            for name, strategy in self.components.items()
        ) / sum(self.weights.values())
        if self.avoid_silence:
            total = total * (SilenceAwareStrategy().scores(analysis, starts_s, length_s) > 0)
        return total


# The names as a type, so that options and configs list them (a test keeps both in step).
StrategyName = Literal[
    "random",
    "silence_aware",
    "high_energy",
    "onset_aware",
    "beat_aware",
    "repeated_section_aware",
    "hybrid",
]
STRATEGIES: dict[str, type[SegmentStrategy]] = {
    strategy.name: strategy
    for strategy in (
        RandomStrategy,
        SilenceAwareStrategy,
        HighEnergyStrategy,
        OnsetAwareStrategy,
        BeatAwareStrategy,
        RepeatedSectionStrategy,
        HybridStrategy,
    )
}


def get_strategy(name: str, **options) -> SegmentStrategy:
    """The strategy called ``name``, built with ``options``; an unknown name is a ValueError."""
    if name not in STRATEGIES:
        raise ValueError(f"unknown segment strategy {name!r}; known: {', '.join(STRATEGIES)}")
    return STRATEGIES[name](**options)


def window_means(
    values: np.ndarray, hop_s: float, starts_s: np.ndarray, length_s: float
) -> np.ndarray:
    """Mean of frame ``values`` over frames whose time lies in [start, start + length)."""
    starts_s = np.asarray(starts_s, dtype=np.float64)
    if not len(values):
        return np.zeros(len(starts_s))
    totals = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    first = np.clip(np.ceil(starts_s / hop_s - 1e-6).astype(int), 0, len(values) - 1)
    last = np.ceil((starts_s + length_s) / hop_s - 1e-6).astype(int)
    last = np.clip(last, first + 1, len(values))
    return (totals[last] - totals[first]) / (last - first)


def non_silent_share(analysis: TrackAnalysis, starts_s: np.ndarray, length_s: float) -> np.ndarray:
    """Share of each segment inside a non-silent interval, each interval pulled in by
    ``margin_s`` where it borders silence (split marks a frame loud if any of its window is)."""
    intervals = np.array(analysis.non_silent_s, dtype=np.float64).reshape(-1, 2)
    begins = np.where(intervals[:, 0] > 0, intervals[:, 0] + analysis.margin_s, intervals[:, 0])
    ends = np.where(
        intervals[:, 1] < analysis.duration_s - 1e-3, intervals[:, 1] - analysis.margin_s, np.inf
    )
    starts_s = np.asarray(starts_s, dtype=np.float64)[:, None]
    overlap = np.minimum(ends, starts_s + length_s) - np.maximum(begins, starts_s)
    return np.clip(overlap, 0.0, None).sum(axis=1) / length_s


def _nearest(times_s: np.ndarray, query_s: np.ndarray) -> np.ndarray:
    """Index of the nearest entry of sorted ``times_s`` to each query time."""
    if len(times_s) == 1:
        return np.zeros(len(query_s), dtype=int)
    right = np.clip(np.searchsorted(times_s, query_s), 1, len(times_s) - 1)
    left = right - 1
    return np.where(
        np.abs(times_s[left] - query_s) <= np.abs(times_s[right] - query_s), left, right
    )


def anchor_pools(
    tracks: pd.DataFrame, directory: Path, strategy: str, length_s: float
) -> list[AnchorPool]:
    """Per track (in table order), where ``strategy`` would start a ``length_s`` segment; an
    empty pool (no analysis, or nothing fits) means a uniform draw."""
    chooser = get_strategy(strategy)
    pools = []
    for track_id in tracks["track_id"]:
        path = analysis_path(directory, track_id)
        if path.is_file():
            pools.append(chooser.pool(TrackAnalysis.load(path), length_s))
        else:
            pools.append((np.zeros(0), np.zeros(0)))
    return pools

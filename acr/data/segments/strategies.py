"""Segment-selection strategies: where in a track a query excerpt (or a training crop) starts.

A track is analysed once (``analyze``: loudness, non-silent intervals, onsets, beats, chroma
repetition) and every strategy scores candidate starts from that analysis, so trying several
strategies or lengths costs no second pass over the audio. ``TrackAnalysis.save``/``load`` keep
it as one small .npz next to a manifest.

Strategies (``STRATEGIES``, ``get_strategy``): ``random``, ``silence_aware``, ``high_energy``,
``onset_aware``, ``beat_aware``, ``repeated_section_aware`` and ``hybrid``. Each gives
``candidates`` (starts whose whole segment fits, scores in [0, 1], best first) and ``choose``
(a seeded draw from the best candidates, weighted by score).
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import ClassVar

import librosa
import numpy as np

from acr.audio import resample

ANALYSIS_DIR = "analysis"  # beside a manifest: one .npz per track (see analysis_path)
ANALYSIS_VERSION = 1  # bump when a feature changes meaning, so cached analyses are redone
ANALYSIS_RATE_HZ = 22050  # audio outside MIN_RATE_HZ..ANALYSIS_RATE_HZ is resampled to this
MIN_RATE_HZ = 16000  # chroma_cqt's top octave (C8, 4.2 kHz) needs at least this
N_FFT = 2048
FRAME_HOP_S = 0.025  # hop = largest power of two under this: 256 at 16 kHz, 512 at 22.05 kHz
CHROMA_HOP_S = 0.1  # repetition is a section-scale property; 10 chroma frames/s are plenty
CONTEXT_S = 1.0  # chroma sequences this long are compared, so one shared chord is no repeat
MIN_LAG_S = 4.0  # a frame matching itself a moment later is a held note, not a repeat
SILENCE_TOP_DB = 45.0  # frames this far below the loudest frame count as silence,
SILENCE_DBFS = -60.0  # and so do frames below this, however quiet the whole track is
FLOOR_DB = -100.0


@dataclass(frozen=True)
class Segment:
    """A candidate excerpt start and how well it suits the strategy (0 = not at all, 1 = best)."""

    start_s: float
    score: float


@dataclass(frozen=True, eq=False)  # arrays: compare fields, not analyses
class TrackAnalysis:
    """Per-track features every strategy reads; computed once by ``analyze``.

    Frame arrays (``rms_db``, ``repetition``) are on a grid of ``hop_s`` from 0 s; event arrays
    hold times in seconds and a strength in [0, 1] (the onset envelope over its track maximum).
    """

    duration_s: float
    hop_s: float
    rms_db: np.ndarray
    non_silent_s: np.ndarray  # (intervals, 2) start and end in seconds
    onset_times_s: np.ndarray
    onset_strengths: np.ndarray
    beat_times_s: np.ndarray
    beat_strengths: np.ndarray
    tempo_bpm: float
    repetition: np.ndarray  # per frame, in [0, 1]: how closely this moment recurs elsewhere
    margin_s: float  # how far librosa.effects.split's intervals may reach into silence

    @property
    def frame_times_s(self) -> np.ndarray:
        return np.arange(len(self.rms_db)) * self.hop_s

    def save(self, path: str | Path) -> None:
        """One compressed .npz (a few tens of kB for 30 s), written atomically: a killed run
        leaves no half file for the next one to trust."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        np.savez_compressed(temporary, version=ANALYSIS_VERSION, **values)
        os.replace(temporary, path)

    @classmethod
    def load(cls, path: str | Path) -> TrackAnalysis:
        """Read ``save``'s file; a file from another ANALYSIS_VERSION is a ValueError."""
        with np.load(path) as stored:
            if int(stored["version"]) != ANALYSIS_VERSION:
                raise ValueError(
                    f"{path}: analysis version {int(stored['version'])}, "
                    f"expected {ANALYSIS_VERSION}"
                )
            values = {field.name: stored[field.name] for field in fields(cls)}
        scalars = ("duration_s", "hop_s", "tempo_bpm", "margin_s")
        return cls(**{k: float(v) if k in scalars else v for k, v in values.items()})


def analysis_path(directory: Path, track_id: str) -> Path:
    """Where a track's analysis is cached beside a manifest (any track id makes a file name)."""
    digest = hashlib.sha1(track_id.encode()).hexdigest()[:16]
    return Path(directory) / ANALYSIS_DIR / f"{digest}.npz"


def analyze(audio: np.ndarray, sample_rate: int) -> TrackAnalysis:
    """Analyse mono audio once for all strategies (about 0.2 s of one core per 30 s; the first
    call in a process also pays ~5-9 s for librosa.beat's numba compilation)."""
    duration_s = len(audio) / sample_rate
    if not MIN_RATE_HZ <= sample_rate <= ANALYSIS_RATE_HZ:
        audio, sample_rate = resample(audio, sample_rate, ANALYSIS_RATE_HZ), ANALYSIS_RATE_HZ
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    hop = 2 ** int(math.log2(sample_rate * FRAME_HOP_S))
    magnitude = np.abs(librosa.stft(audio, n_fft=N_FFT, hop_length=hop))
    rms = librosa.feature.rms(S=magnitude, frame_length=N_FFT)[0]
    rms_db = np.maximum(20 * np.log10(np.maximum(rms, 1e-10)), FLOOR_DB).astype(np.float32)
    quietest_ref = 10 ** ((SILENCE_DBFS + SILENCE_TOP_DB) / 20)
    non_silent = librosa.effects.split(
        audio,
        top_db=SILENCE_TOP_DB,
        ref=lambda rms: max(float(np.max(rms)), quietest_ref),
        frame_length=N_FFT,
        hop_length=hop,
    )
    onsets_s, onset_strengths, beats_s, beat_strengths, tempo_bpm = _events(
        magnitude, sample_rate, hop
    )
    repetition = _repetition(audio, sample_rate, len(rms_db), hop / sample_rate)
    return TrackAnalysis(
        duration_s=duration_s,
        hop_s=hop / sample_rate,
        rms_db=rms_db,
        non_silent_s=(non_silent / sample_rate).reshape(-1, 2),
        onset_times_s=onsets_s,
        onset_strengths=onset_strengths,
        beat_times_s=beats_s,
        beat_strengths=beat_strengths,
        tempo_bpm=tempo_bpm,
        repetition=repetition,
        margin_s=(N_FFT // 2 + hop) / sample_rate,
    )


def _events(
    magnitude: np.ndarray, sample_rate: int, hop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Onsets (librosa.onset.onset_detect) and beats (librosa.beat.beat_track, Ellis 2007)
    from one spectral-flux envelope (librosa.onset.onset_strength on a log-mel spectrogram).

    Strengths are read at the envelope peaks; times are moved back to the preceding envelope
    minimum (librosa.onset.onset_backtrack, meant for slicing) so an excerpt keeps its attack:
    the peaks lag the attack by 15-45 ms on plucks and drum hits.
    """
    mel = librosa.feature.melspectrogram(S=magnitude**2, sr=sample_rate)
    envelope = librosa.onset.onset_strength(
        S=librosa.power_to_db(mel), sr=sample_rate, hop_length=hop, n_fft=N_FFT
    )
    peak = max(float(envelope.max()), 1e-10)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate, hop_length=hop)
    tempo, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=sample_rate, hop_length=hop)
    seconds = hop / sample_rate
    return (
        _backtrack(onsets, envelope) * seconds,
        (envelope[onsets] / peak).astype(np.float32),
        _backtrack(beats, envelope) * seconds,
        (envelope[beats] / peak).astype(np.float32),
        float(np.atleast_1d(tempo)[0]),
    )


def _backtrack(events: np.ndarray, envelope: np.ndarray) -> np.ndarray:
    """librosa.onset.onset_backtrack, which rejects an empty event list."""
    return librosa.onset.onset_backtrack(events, envelope) if len(events) else events


def _repetition(audio: np.ndarray, sample_rate: int, frames: int, hop_s: float) -> np.ndarray:
    """Per frame, the best cosine match of its chroma sequence at least MIN_LAG_S away.

    A dense form of librosa.segment.recurrence_matrix(mode="affinity") on time-delay-embedded
    chroma_cqt (librosa.feature.stack_memory), as in Serrà et al. 2012; the matrix is small at
    10 frames/s, and its k-NN search would cost more than all other features together.
    """
    chroma_hop = 2 ** round(math.log2(sample_rate * CHROMA_HOP_S))
    with warnings.catch_warnings():  # short tracks: the CQT's octave FFTs exceed the signal
        warnings.filterwarnings("ignore", message="n_fft=.* is too large")
        chroma = librosa.feature.chroma_cqt(
            y=audio, sr=sample_rate, hop_length=chroma_hop, tuning=0.0
        )
    steps = max(1, round(CONTEXT_S * sample_rate / chroma_hop))
    context = librosa.feature.stack_memory(chroma, n_steps=steps)
    context = context / np.maximum(np.linalg.norm(context, axis=0, keepdims=True), 1e-10)
    similarity = context.T @ context
    lag = np.abs(np.subtract.outer(np.arange(len(similarity)), np.arange(len(similarity))))
    similarity[lag < MIN_LAG_S * sample_rate / chroma_hop] = 0.0
    best = similarity.max(axis=1)
    span = float(best.max() - best.min()) if len(best) else 0.0
    if span < 1e-6:  # nothing to compare (silence, or too short to repeat): all neutral
        return np.full(frames, 0.5, np.float32)
    chroma_times_s = np.arange(len(best)) * chroma_hop / sample_rate
    frame_times_s = np.arange(frames) * hop_s
    return np.interp(frame_times_s, chroma_times_s, (best - best.min()) / span).astype(np.float32)


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

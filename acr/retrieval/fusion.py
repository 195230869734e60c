"""Fusing several engines' ranked tracks into one ranking.

Engines score on unrelated scales (hash votes, summed cosine similarities, melody matches), so
scores are first *calibrated*: per engine, a logistic curve on log(1 + score) gives the
probability that a candidate is the right track (Platt scaling, fit on validation queries).
The fused score is a weighted sum of those probabilities; the weights are chosen on the same
validation queries. Until fitted, fusion falls back to reciprocal-rank fusion (Cormack et al.
2009), which needs no scale at all.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from acr.retrieval.index import TrackMatch

RRF_K = 60  # Cormack et al. 2009
EngineMatches = dict[str, list[TrackMatch]]


@dataclass
class Calibration:
    """P(right track | score) = sigmoid(slope * log1p(score) + intercept)."""

    slope: float = 1.0
    intercept: float = 0.0

    def probability(self, score: float) -> float:
        return 1.0 / (1.0 + math.exp(-(self.slope * math.log1p(max(score, 0.0)) + self.intercept)))


@dataclass
class Fusion:
    """Per-engine weights and calibrations; ``calibrated`` False means reciprocal-rank fusion."""

    weights: dict[str, float] = field(default_factory=dict)
    calibrations: dict[str, Calibration] = field(default_factory=dict)
    calibrated: bool = False

    def fuse(self, matches: EngineMatches, top_k: int = 5) -> list[TrackMatch]:
        """One ranking from each engine's ranking; offsets come from the most trusted engine."""
        scores: dict[str, float] = {}
        offsets: dict[str, tuple[float, float]] = {}
        for engine, ranked in matches.items():
            weight = self.weights.get(engine, 1.0)
            for rank, match in enumerate(ranked, start=1):
                if self.calibrated:
                    contribution = weight * self.calibrations[engine].probability(match.score)
                else:
                    contribution = weight / (RRF_K + rank)
                scores[match.track_id] = scores.get(match.track_id, 0.0) + contribution
                if contribution > offsets.get(match.track_id, (-1.0, 0.0))[0]:
                    offsets[match.track_id] = (contribution, match.offset_s)
        ranked_ids = sorted(scores, key=lambda track: -scores[track])[:top_k]
        return [TrackMatch(t, scores[t], offsets[t][1]) for t in ranked_ids]

    @classmethod
    def fit(
        cls,
        results: Sequence[EngineMatches],
        right_track_ids: Sequence[str],
        weight_step: float = 0.1,
    ) -> Fusion:
        """Calibrate each engine and pick the weights (on a simplex grid) with the best top-1,
        ties broken by MRR. Fit on validation queries, not on the ones you report."""
        engines = sorted({engine for result in results for engine in result})
        calibrations = {
            engine: _fit_calibration(
                [result.get(engine, []) for result in results], right_track_ids
            )
            for engine in engines
        }
        # Among equally good weightings, trust engines in proportion to their own top-1.
        alone = [
            _top1_and_mrr(
                cls({engine: 1.0}, calibrations, True),
                [{engine: r.get(engine, [])} for r in results],
                right_track_ids,
            )[0]
            for engine in engines
        ]
        best: tuple[float, ...] = (-1.0,)
        fusion = cls(calibrations=calibrations, calibrated=True)
        for weights in _simplex(len(engines), weight_step):
            candidate = cls(dict(zip(engines, weights)), calibrations, calibrated=True)
            quality = (
                *_top1_and_mrr(candidate, results, right_track_ids),
                float(np.dot(weights, alone)),
            )
            if quality > best:
                best, fusion = quality, candidate
        return fusion

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Fusion:
        raw = json.loads(path.read_text())
        calibrations = {name: Calibration(**c) for name, c in raw["calibrations"].items()}
        return cls(raw["weights"], calibrations, raw["calibrated"])


def _fit_calibration(
    rankings: Sequence[list[TrackMatch]], right_track_ids: Sequence[str]
) -> Calibration:
    """Logistic regression of 'is the right track' on log1p(score), by Newton's method.

    Written by hand: two parameters do not justify a scikit-learn dependency.
    """
    features, labels = [], []
    for ranked, right in zip(rankings, right_track_ids):
        for match in ranked:
            features.append(math.log1p(max(match.score, 0.0)))
            labels.append(float(match.track_id == right))
    if not labels or min(labels) == max(labels):
        return Calibration()
    design = np.stack([np.asarray(features), np.ones(len(features))], axis=1)
    target = np.asarray(labels)
    parameters = np.zeros(2)
    for _ in range(50):
        probability = 1.0 / (1.0 + np.exp(-design @ parameters))
        gradient = design.T @ (probability - target)
        hessian = design.T @ (design * (probability * (1 - probability))[:, None])
        hessian += 1e-6 * np.eye(2)  # keeps the step finite when classes separate perfectly
        step = np.linalg.solve(hessian, gradient)
        parameters -= step
        if np.abs(step).max() < 1e-8:
            break
    return Calibration(float(parameters[0]), float(parameters[1]))


def _simplex(dimensions: int, step: float) -> list[tuple[float, ...]]:
    """All weight vectors on a grid of ``step`` that sum to one."""
    units = round(1 / step)
    return [
        tuple(count * step for count in counts)
        for counts in itertools.product(range(units + 1), repeat=dimensions)
        if sum(counts) == units
    ]


def _top1_and_mrr(
    fusion: Fusion, results: Sequence[EngineMatches], right_track_ids: Sequence[str]
) -> tuple[float, float]:
    top1 = reciprocal = 0.0
    for result, right in zip(results, right_track_ids):
        ranked = [match.track_id for match in fusion.fuse(result, top_k=10)]
        if right in ranked:
            position = ranked.index(right) + 1
            top1 += position == 1
            reciprocal += 1 / position
    return top1 / len(results), reciprocal / len(results)

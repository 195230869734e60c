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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from acr.retrieval.index import TrackMatch

RRF_K = 60  # Cormack et al. 2009
EngineMatches = dict[str, list[TrackMatch]]


@dataclass
class Calibration:
    """P(right track | candidate) = sigmoid(w . [log1p(score), margin, 1]), where margin is
    log1p(score) minus log1p of the next candidate's score in the same ranking: a clear lead
    over the runner-up is what separates a real match from the best of a bad lot."""

    weights: list[float] = field(default_factory=lambda: [1.0, 0.0, 0.0])

    def probabilities(self, ranked: list[TrackMatch]) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-_features(ranked) @ np.asarray(self.weights)))


def _features(ranked: list[TrackMatch]) -> np.ndarray:
    """[candidates, 3]: log1p(score), margin over the next candidate, and a constant."""
    log_scores = np.log1p(np.maximum([match.score for match in ranked], 0.0))
    margins = log_scores - np.r_[log_scores[1:], 0.0]
    return np.stack([log_scores, margins, np.ones(len(ranked))], axis=1).reshape(-1, 3)


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
            if self.calibrated:
                contributions = weight * self.calibrations[engine].probabilities(ranked)
            else:
                contributions = weight / (RRF_K + np.arange(1, len(ranked) + 1))
            for match, contribution in zip(ranked, contributions.tolist()):
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
        groups: Sequence[str] | None = None,
        weight_step: float = 0.1,
    ) -> Fusion:
        """Calibrate each engine, then pick weights on a simplex grid. Fit on validation
        queries, never on the ones you report.

        The weights are chosen, in this order, to (1) lose to no single engine in any group
        (e.g. degradation) when ``groups`` are given, (2) maximise top-1, (3) maximise MRR,
        (4) trust engines in proportion to their own top-1.
        """
        engines = sorted({engine for result in results for engine in result})
        calibrations = {
            engine: _fit_calibration([r.get(engine, []) for r in results], right_track_ids)
            for engine in engines
        }
        group_codes = np.unique(
            np.asarray(groups if groups is not None else [""] * len(results)), return_inverse=True
        )[1]
        alone = [
            _hits(
                cls({engine: 1.0}, calibrations, True),
                [{engine: r.get(engine, [])} for r in results],
                right_track_ids,
            )
            for engine in engines
        ]
        best_alone = np.max([_group_means(hits, group_codes) for hits, _ in alone], axis=0)
        alone_top1 = [hits.mean() for hits, _ in alone]
        best: tuple[float, ...] = (-np.inf,)
        fusion = cls(calibrations=calibrations, calibrated=True)
        for weights in _simplex(len(engines), weight_step):
            candidate = cls(dict(zip(engines, weights)), calibrations, calibrated=True)
            hits, reciprocal = _hits(candidate, results, right_track_ids)
            worst_loss = min(0.0, float(np.min(_group_means(hits, group_codes) - best_alone)))
            quality = (
                worst_loss,
                hits.mean(),
                reciprocal.mean(),
                float(np.dot(weights, alone_top1)),
            )
            if quality > best:
                best, fusion = quality, candidate
        return fusion

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> Fusion:
        raw = json.loads(path.read_text())
        calibrations = {name: Calibration(c["weights"]) for name, c in raw["calibrations"].items()}
        return cls(raw["weights"], calibrations, raw["calibrated"])


def _fit_calibration(
    rankings: Sequence[list[TrackMatch]], right_track_ids: Sequence[str]
) -> Calibration:
    """Logistic regression of 'is the right track' on each candidate's features, by Newton's
    method. Written by hand: three parameters do not justify a scikit-learn dependency."""
    rows = [
        (_features(ranked), [float(m.track_id == right) for m in ranked])
        for ranked, right in zip(rankings, right_track_ids)
        if ranked
    ]
    if not rows:
        return Calibration()
    design = np.concatenate([features for features, _ in rows])
    target = np.concatenate([labels for _, labels in rows])
    if target.min() == target.max():
        return Calibration()
    weights = np.zeros(design.shape[1])
    for _ in range(50):
        probability = 1.0 / (1.0 + np.exp(-design @ weights))
        gradient = design.T @ (probability - target)
        hessian = design.T @ (design * (probability * (1 - probability))[:, None])
        hessian += 1e-3 * np.eye(len(weights))  # finite steps even if the classes separate
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return Calibration([float(w) for w in weights])


def _simplex(dimensions: int, step: float) -> list[tuple[float, ...]]:
    """All weight vectors on a grid of ``step`` that sum to one."""
    units = round(1 / step)
    return [
        tuple(count * step for count in counts)
        for counts in itertools.product(range(units + 1), repeat=dimensions)
        if sum(counts) == units
    ]


def _hits(
    fusion: Fusion, results: Sequence[EngineMatches], right_track_ids: Sequence[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Per query: is the fused top-1 right, and the reciprocal rank of the right track."""
    hits, reciprocal = np.zeros(len(results)), np.zeros(len(results))
    for query, (result, right) in enumerate(zip(results, right_track_ids)):
        ranked = [match.track_id for match in fusion.fuse(result, top_k=10)]
        if right in ranked:
            position = ranked.index(right) + 1
            hits[query], reciprocal[query] = position == 1, 1 / position
    return hits, reciprocal


def _group_means(values: np.ndarray, group_codes: np.ndarray) -> np.ndarray:
    return np.bincount(group_codes, weights=values) / np.bincount(group_codes)

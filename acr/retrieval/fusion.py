"""Fusing several engines' ranked tracks into one ranking.

Engines score on unrelated scales (hash votes, summed cosine similarities, melody matches), and
which engine to believe depends on the query: a hum has no landmarks to match, a noisy full
mix little melody to follow. So fusion is *stacked*: a logistic regression, fit on validation
queries, gives each candidate track the probability that it is the right one, from every
engine's evidence about that candidate (its score, lead over the next candidate, rank) and the
engines' confidence on this query, all of it also scaled by the query's harmonicity (near 1
for a hum or a solo voice, lower for a mix: :func:`acr.pitch.harmonicity`) and by its log
duration (hash votes and melody alignments grow with the length of the query).

A fitted fusion also has an *early exit*: when the most accurate engine's own top-1 is
certain enough, its ranking is the answer and the other engines need not run. Its certainty
depends on the query's harmonicity too: a hum shares tens of aligned landmarks with some other
track now and then (measured: 2 of 417 test hums exited on a wrong fingerprint match with leads
of 17 and 18 votes before harmonicity was a feature). The threshold is the lowest at which
exiting never changed a validation answer for the worse.

Until fitted, fusion is reciprocal-rank fusion (Cormack et al. 2009), which needs no scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from acr.files import write_json
from acr.retrieval.engine import TrackMatch, check_index, read_index_json

RRF_K = 60  # Cormack et al. 2009
EngineMatches = dict[str, list[TrackMatch]]
QueryFeatures = dict[str, float]
QUERY_FEATURES = ("harmonicity", "log_duration_s")
ENGINE_FEATURES = 7  # per engine and candidate, see _candidate_features
EXIT_THRESHOLDS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
EXIT_QUERY_FEATURES = ("harmonicity",)
EXIT_FEATURES = 3 * (1 + len(EXIT_QUERY_FEATURES))  # see _top1_features


@dataclass
class EarlyExit:
    """Answer with ``engine`` alone when P(its top-1 is right) >= ``probability``, where
    P = sigmoid(weights . x) and x is [log1p(top score), lead over the runner-up, 1], then the
    same times each of ``EXIT_QUERY_FEATURES``."""

    engine: str
    weights: list[float]
    probability: float

    def decides(self, ranked: list[TrackMatch], query: QueryFeatures) -> bool:
        if not ranked:
            return False
        return _top1_probability(ranked, query, self.weights) >= self.probability

    def ranking(
        self, ranked: list[TrackMatch], query: QueryFeatures, top_k: int
    ) -> list[TrackMatch]:
        """The engine's ranking, scored like fused rankings: the top-1 gets its probability of
        being right, and the others (all below it) what is left, 1 - P."""
        top1 = _top1_probability(ranked, query, self.weights)
        return [
            replace(m, score=top1 if rank == 0 else 1.0 - top1)
            for rank, m in enumerate(ranked[:top_k])
        ]


@dataclass
class Fusion:
    """A stacked model over ``engines`` (most accurate first); no weights means reciprocal-rank
    fusion."""

    engines: list[str] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    early_exit: EarlyExit | None = None

    @property
    def fitted(self) -> bool:
        return bool(self.weights)

    def fuse(
        self, matches: EngineMatches, query: QueryFeatures | None = None, top_k: int = 5
    ) -> list[TrackMatch]:
        """One ranking from each engine's ranking; a track's offset comes from the most accurate
        engine that found it."""
        if not self.fitted:
            return _reciprocal_rank_fusion(matches, top_k)
        query = query or {}
        exit_rule = self.early_exit
        if exit_rule and exit_rule.decides(matches.get(exit_rule.engine, []), query):
            return exit_rule.ranking(matches[exit_rule.engine], query, top_k)
        candidates, features = _candidate_features(matches, self.engines, query)
        if not candidates:
            return []
        probabilities = sigmoid(features @ np.asarray(self.weights))
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        found = _first_found(matches, self.engines)
        return [replace(found[candidates[i]], score=float(probabilities[i])) for i in order]

    @classmethod
    def fit(
        cls,
        results: Sequence[EngineMatches],
        right_track_ids: Sequence[str],
        queries: Sequence[QueryFeatures] | None = None,
        l2: float = 1e-2,
    ) -> Fusion:
        """Fit the stacked model and the early exit on validation queries (never on the ones
        you report)."""
        queries = queries or [{} for _ in results]
        engines = sorted(  # by name first: equally accurate engines keep one order everywhere
            sorted({engine for result in results for engine in result}),
            key=lambda engine: -_top1_rate([r.get(engine, []) for r in results], right_track_ids),
        )
        design, target = [], []
        for result, right, query in zip(results, right_track_ids, queries):
            candidates, features = _candidate_features(result, engines, query)
            design.append(features)
            target.append([float(candidate == right) for candidate in candidates])
        fusion = cls(
            engines, logistic_regression(np.concatenate(design), np.concatenate(target), l2)
        )
        fusion.early_exit = _fit_early_exit(fusion, results, right_track_ids, queries)
        return fusion

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> Fusion:
        """Read a fusion written by :meth:`save`; a damaged file raises IndexDirectoryError
        naming it, one from an older acr a ValueError saying to refit it."""
        raw = read_index_json(path)
        if "engines" not in raw:
            raise ValueError(f"{path}: fusion from an older acr; fit it again with `acr fuse`")
        early_exit = raw.get("early_exit") or {}
        check_index(
            _strings(raw["engines"])
            and _numbers(raw.get("weights"))
            and isinstance(early_exit, dict)
            and set(early_exit) <= {"engine", "weights", "probability"},
            path,
            "not a fusion written by `acr fuse` (engines: names, weights: numbers)",
        )
        expected = (len(raw["engines"]) * ENGINE_FEATURES + 1) * (1 + len(QUERY_FEATURES))
        if raw["weights"] and len(raw["weights"]) != expected:
            raise ValueError(f"{path}: fusion with other features; fit it again with `acr fuse`")
        if early_exit:
            check_index(
                isinstance(early_exit.get("engine"), str)
                and _numbers(early_exit.get("weights"))
                and _numbers([early_exit.get("probability")]),
                path,
                "early_exit needs an engine, weights and a probability",
            )
            if len(early_exit["weights"]) != EXIT_FEATURES:
                raise ValueError(
                    f"{path}: early exit with other features; fit it again with `acr fuse`"
                )
        return cls(raw["engines"], raw["weights"], EarlyExit(**early_exit) if early_exit else None)


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _numbers(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(item, int | float) and not isinstance(item, bool) for item in value
    )


def _reciprocal_rank_fusion(matches: EngineMatches, top_k: int) -> list[TrackMatch]:
    scores: dict[str, float] = {}
    best: dict[str, tuple[float, TrackMatch]] = {}  # the match that contributed most
    for ranked in matches.values():
        for rank, match in enumerate(ranked, start=1):
            contribution = 1 / (RRF_K + rank)
            scores[match.track_id] = scores.get(match.track_id, 0.0) + contribution
            if contribution > best.get(match.track_id, (-1.0, match))[0]:
                best[match.track_id] = (contribution, match)
    ranked_ids = sorted(scores, key=lambda track: -scores[track])[:top_k]
    return [replace(best[t][1], score=scores[t]) for t in ranked_ids]


def _candidate_features(
    matches: EngineMatches, engines: Sequence[str], query: QueryFeatures
) -> tuple[list[str], np.ndarray]:
    """Every track any engine ranked, and its features: per engine, log1p(score), its lead over
    the engine's next candidate, whether it is the engine's top-1, its log-score gap to that
    top-1, whether the engine ranked it at all, and the engine's top log-score and top lead;
    then a constant; then all of that again times each query feature."""
    candidates = list(dict.fromkeys(m.track_id for e in engines for m in matches.get(e, [])))
    position = {track_id: i for i, track_id in enumerate(candidates)}
    columns = []
    for engine in engines:
        ranked = matches.get(engine, [])
        block = np.zeros((len(candidates), ENGINE_FEATURES))
        log_scores = np.log1p(np.maximum([m.score for m in ranked], 0.0))
        leads = log_scores - np.r_[log_scores[1:], 0.0]
        top, top_lead = (log_scores[0], leads[0]) if len(ranked) else (0.0, 0.0)
        block[:, 3] = -top
        block[:, 5:] = top, top_lead
        rows = [position[m.track_id] for m in ranked]
        block[rows, 0], block[rows, 1] = log_scores, leads
        block[rows, 3] = log_scores - top
        block[rows, 4] = 1.0
        if rows:
            block[rows[0], 2] = 1.0
        columns.append(block)
    base = np.hstack([*columns, np.ones((len(candidates), 1))])
    scaled = [base * query.get(name, 0.0) for name in QUERY_FEATURES]
    return candidates, np.hstack([base, *scaled])


def _first_found(matches: EngineMatches, engines: Sequence[str]) -> dict[str, TrackMatch]:
    """Each track's match by the first (most accurate) engine that found it: where the fused
    answer takes its offset and speed from."""
    found: dict[str, TrackMatch] = {}
    for engine in engines:
        for match in matches.get(engine, []):
            found.setdefault(match.track_id, match)
    return found


def _fit_early_exit(
    fusion: Fusion,
    results: Sequence[EngineMatches],
    right_track_ids: Sequence[str],
    queries: Sequence[QueryFeatures],
) -> EarlyExit | None:
    """Calibrate the most accurate engine's top-1, and exit at the lowest threshold where no
    exiting validation query would have been answered better by the full fusion."""
    engine = fusion.engines[0]
    rankings = [result.get(engine, []) for result in results]
    rows = [(r, q, right) for r, q, right in zip(rankings, queries, right_track_ids) if r]
    if not rows:
        return None
    design = np.stack([_top1_features(r, q) for r, q, _ in rows])
    target = np.array([float(r[0].track_id == right) for r, _, right in rows])
    if target.min() == target.max():
        return None
    weights = logistic_regression(design, target, l2=1e-2)
    for threshold in EXIT_THRESHOLDS:
        exit_rule = EarlyExit(engine, [float(w) for w in weights], threshold)
        costly = False
        for result, right, query, ranked in zip(results, right_track_ids, queries, rankings):
            if exit_rule.decides(ranked, query) and ranked[0].track_id != right:
                fused = fusion.fuse(result, query, top_k=1)
                costly |= bool(fused) and fused[0].track_id == right
        if not costly:
            return exit_rule
    return None


def _top1_features(ranked: list[TrackMatch], query: QueryFeatures) -> np.ndarray:
    scores = np.log1p(np.maximum([m.score for m in ranked[:2]], 0.0))
    base = np.array([scores[0], scores[0] - (scores[1] if len(scores) > 1 else 0.0), 1.0])
    return np.concatenate([base, *(base * query.get(name, 0.0) for name in EXIT_QUERY_FEATURES)])


def _top1_probability(
    ranked: list[TrackMatch], query: QueryFeatures, weights: Sequence[float]
) -> float:
    return float(sigmoid(_top1_features(ranked, query) @ np.asarray(weights)))


def _top1_rate(rankings: Sequence[list[TrackMatch]], right_track_ids: Sequence[str]) -> float:
    return float(
        np.mean([bool(r) and r[0].track_id == t for r, t in zip(rankings, right_track_ids)])
    )


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))


def logistic_regression(design: np.ndarray, target: np.ndarray, l2: float) -> list[float]:
    """L2-regularised logistic regression by Newton's method. Written by hand: a few dozen
    parameters and one call per fit do not justify a scikit-learn dependency."""
    weights = np.zeros(design.shape[1])
    if len(target) == 0:
        return weights.tolist()
    for _ in range(100):
        probability = sigmoid(design @ weights)
        gradient = design.T @ (probability - target) + l2 * weights
        hessian = design.T @ (design * (probability * (1 - probability))[:, None])
        step = np.linalg.solve(hessian + l2 * np.eye(len(weights)), gradient)
        weights -= step
        if np.abs(step).max() < 1e-8:
            break
    return weights.tolist()

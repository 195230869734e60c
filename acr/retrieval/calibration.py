"""Answers that can say "no match": the probability that an answer's top track is right, and
the threshold below which a recognizer answers ``no_match`` at a chosen false-match rate.

Each system (every engine alone, and the fused ``hybrid``) scores on its own scale, and the
meaning of a score depends on the query's length (hash votes and summed similarities grow with
it). So each system gets a logistic model of P(top-1 is right) from its answer alone: the top
score, its lead over the runner-up, the log duration and their products (Platt scaling, Platt
1999, with the query length as a covariate). It is fitted on validation queries of two kinds:
in-catalog ones (the target is whether the top-1 is the right track) and out-of-catalog ones,
made from tracks the index does not hold (the target is always 0). The threshold is then the
lowest probability at which at most ``false_match_rate`` of the out-of-catalog queries would
still get an answer: the empirical quantile of their probabilities.

A probability assumes queries come from the catalog about as often as in the fitting set; the
threshold does not (it is fitted on out-of-catalog queries alone), which is why the decision
rests on it.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from acr.files import write_json
from acr.retrieval.engine import TrackMatch, check_index, read_index_json
from acr.retrieval.fusion import logistic_regression, sigmoid

CALIBRATION_FILE = "calibration.json"
DEFAULT_FALSE_MATCH_RATE = 0.01
ANSWER_FEATURES = 6  # see answer_features
# Fused scores are probabilities (a fitted fusion) or reciprocal ranks: both read as log-odds;
# engine scores (votes, similarity sums) as log1p.
PROBABILITY_SCORES = "logit"
COUNT_SCORES = "log1p"


@dataclass
class SystemCalibration:
    """One system's model, P = sigmoid(weights . answer_features), and its decision threshold."""

    weights: list[float]
    threshold: float
    scores: str = COUNT_SCORES  # how its scores are read: log1p or logit
    # Measured on the fitting queries, at the threshold: out-of-catalog queries answered
    # (false matches) and in-catalog queries answered with the right track.
    false_match_rate: float = math.nan
    true_positive_rate: float = math.nan

    def probability(self, matches: Sequence[TrackMatch], duration_s: float) -> float:
        if not matches:
            return 0.0
        features = answer_features(matches, duration_s, self.scores)
        return float(sigmoid(features @ np.asarray(self.weights)))


@dataclass
class Calibration:
    """Every system's calibration, as ``acr calibrate`` wrote it into INDEX/calibration.json."""

    systems: dict[str, SystemCalibration] = field(default_factory=dict)
    false_match_rate: float = DEFAULT_FALSE_MATCH_RATE
    in_catalog_queries: int = 0
    out_of_catalog_queries: int = 0
    fusion_sha256: str = ""  # the fusion.json the hybrid was calibrated with ("" without one)

    @classmethod
    def fit(
        cls,
        answers: dict[str, Sequence[Sequence[TrackMatch]]],
        durations_s: Sequence[float],
        right_track_ids: Sequence[str | None],
        false_match_rate: float = DEFAULT_FALSE_MATCH_RATE,
        probability_systems: Sequence[str] = (),
        l2: float = 1e-2,
    ) -> Calibration:
        """Fit each system of ``answers`` (system -> each query's ranking) on queries whose
        right track is ``right_track_ids`` (None for an out-of-catalog query)."""
        if not 0 < false_match_rate < 1:
            raise ValueError(f"false_match_rate must be in (0, 1), got {false_match_rate}")
        outside = np.array([right is None for right in right_track_ids])
        if not outside.any():
            raise ValueError("calibration needs out-of-catalog queries (tracks not in the index)")
        if outside.all():
            raise ValueError("calibration needs in-catalog queries as well")
        if outside.sum() < 1 / false_match_rate:
            warnings.warn(
                f"{outside.sum()} out-of-catalog queries cannot measure a false-match rate of"
                f" {false_match_rate}: the threshold falls above all of them; use at least"
                f" {math.ceil(10 / false_match_rate)} for a threshold that is measured",
                stacklevel=2,
            )
        calibration = cls(
            false_match_rate=false_match_rate,
            in_catalog_queries=int((~outside).sum()),
            out_of_catalog_queries=int(outside.sum()),
        )
        for system, rankings in answers.items():
            scores = PROBABILITY_SCORES if system in probability_systems else COUNT_SCORES
            right = np.array(
                [
                    bool(ranking) and truth is not None and ranking[0].track_id == truth
                    for ranking, truth in zip(rankings, right_track_ids)
                ]
            )
            design = np.stack(
                [answer_features(r, d, scores) for r, d in zip(rankings, durations_s)]
            )
            weights = logistic_regression(design, right.astype(float), l2)
            model = SystemCalibration([float(w) for w in weights], 1.0, scores)
            probabilities = np.array(
                [model.probability(r, d) for r, d in zip(rankings, durations_s)]
            )
            model.threshold = threshold_at(probabilities[outside], false_match_rate)
            answered = probabilities >= model.threshold
            model.false_match_rate = float(answered[outside].mean())
            model.true_positive_rate = float((answered & right)[~outside].mean())
            calibration.systems[system] = model
        return calibration

    def save(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> Calibration:
        """Read what :meth:`save` wrote; a damaged file raises IndexDirectoryError naming it."""
        raw = read_index_json(path, required=("systems", "false_match_rate"))
        systems = raw.pop("systems")
        check_index(isinstance(systems, dict), path, "systems must be a JSON object")
        parsed = {}
        for name, system in systems.items():
            check_index(
                isinstance(system, dict)
                and isinstance(system.get("weights"), list)
                and len(system["weights"]) == ANSWER_FEATURES
                and all(isinstance(w, int | float) for w in system["weights"])
                and isinstance(system.get("threshold"), int | float)
                and system.get("scores", COUNT_SCORES) in (COUNT_SCORES, PROBABILITY_SCORES),
                path,
                f"system {name!r}: needs {ANSWER_FEATURES} weights, a threshold and scores"
                f" ({COUNT_SCORES} or {PROBABILITY_SCORES}); fit it again with `acr calibrate`",
            )
            parsed[name] = SystemCalibration(**system)
        known = {"in_catalog_queries", "out_of_catalog_queries", "fusion_sha256"}
        check_index(set(raw) <= known | {"false_match_rate"}, path, "unknown fields")
        return cls(parsed, **raw)


def answer_features(matches: Sequence[TrackMatch], duration_s: float, scores: str) -> np.ndarray:
    """[top score, its lead over the runner-up, log duration, top score x log duration, lead x
    log duration, 1], scores read as log1p (counts) or logit (probabilities)."""
    read = _logit if scores == PROBABILITY_SCORES else _log1p
    top = read(matches[0].score) if matches else read(0.0)
    second = read(matches[1].score) if len(matches) > 1 else read(0.0)
    lead = top - second
    log_duration = math.log(max(duration_s, 1e-3))
    return np.array([top, lead, log_duration, top * log_duration, lead * log_duration, 1.0])


def threshold_at(probabilities: np.ndarray, false_match_rate: float) -> float:
    """The lowest threshold at which at most ``false_match_rate`` of ``probabilities`` (those of
    out-of-catalog queries) reach it: just above the (k+1)-th highest, k = floor(rate x n)."""
    ranked = np.sort(np.asarray(probabilities, dtype=float))[::-1]
    allowed = int(math.floor(false_match_rate * len(ranked) + 1e-9))
    if allowed >= len(ranked):
        return 0.0
    return float(np.nextafter(ranked[allowed], np.inf))


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""


def _log1p(score: float) -> float:
    return math.log1p(max(float(score), 0.0))


def _logit(score: float) -> float:
    p = min(max(float(score), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))

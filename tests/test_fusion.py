"""Fusion: reciprocal ranks before fitting, calibrated weights after, persistence."""

from pathlib import Path

import numpy as np
import pytest

from acr.retrieval.fusion import Calibration, Fusion
from acr.retrieval.index import TrackMatch


def test_reciprocal_rank_fusion_prefers_tracks_both_engines_rank_high() -> None:
    matches = {
        "fingerprint": [TrackMatch("A", 50, 1.0), TrackMatch("B", 5, 2.0)],
        "embedding": [TrackMatch("B", 3.0, 2.5), TrackMatch("A", 2.9, 1.5)],
        "melody": [TrackMatch("A", 1.0, 0.5)],
    }
    fused = Fusion().fuse(matches, top_k=2)
    assert [m.track_id for m in fused] == ["A", "B"]
    assert fused[0].score == pytest.approx(2 / 61 + 1 / 62)
    assert fused[0].offset_s == 1.0  # from the engine that contributed most


def synthetic_results(rng: np.random.Generator, count: int) -> tuple[list[dict], list[str]]:
    """A strong engine that is right 90 % of the time with high scores, a weak one 30 %."""
    results, truth = [], []
    for query in range(count):
        right = f"T{query}"
        strong_right, weak_right = rng.random() < 0.9, rng.random() < 0.3
        strong = [TrackMatch(right if strong_right else "S", 40.0, 0.0), TrackMatch("S2", 3.0, 0.0)]
        weak = [TrackMatch(right if weak_right else "W", 2.0, 0.0), TrackMatch("W2", 1.9, 0.0)]
        results.append({"strong": strong, "weak": weak})
        truth.append(right)
    return results, truth


def test_fit_calibrates_and_weights_towards_the_reliable_engine(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    results, truth = synthetic_results(rng, 200)
    fusion = Fusion.fit(results, truth)
    assert fusion.calibrated
    assert fusion.weights["strong"] > fusion.weights["weak"]
    # Calibration: a high fingerprint-like score means a likely right answer.
    assert fusion.calibrations["strong"].probability(40.0) > 0.8
    assert fusion.calibrations["strong"].probability(3.0) < 0.2
    top1 = np.mean([fusion.fuse(r, 1)[0].track_id == t for r, t in zip(results, truth)])
    assert top1 >= 0.88  # at least the strong engine alone
    fusion.save(tmp_path / "fusion.json")
    loaded = Fusion.load(tmp_path / "fusion.json")
    assert loaded == fusion


def test_calibration_probability_is_monotonic() -> None:
    calibration = Calibration(slope=2.0, intercept=-4.0)
    probabilities = [calibration.probability(score) for score in (0, 1, 5, 50)]
    assert probabilities == sorted(probabilities) and 0 < probabilities[0] < probabilities[-1] < 1

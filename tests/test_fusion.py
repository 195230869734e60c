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
    clear_match = [TrackMatch("T", 40.0, 0.0), TrackMatch("S2", 3.0, 0.0)]
    assert fusion.calibrations["strong"].probabilities(clear_match)[0] > 0.8
    assert fusion.calibrations["strong"].probabilities(clear_match)[1] < 0.2
    top1 = np.mean([fusion.fuse(r, 1)[0].track_id == t for r, t in zip(results, truth)])
    assert top1 >= 0.88  # at least the strong engine alone
    fusion.save(tmp_path / "fusion.json")
    loaded = Fusion.load(tmp_path / "fusion.json")
    assert loaded == fusion


def test_calibration_rewards_score_and_lead_over_the_runner_up() -> None:
    calibration = Calibration([1.0, 2.0, -4.0])
    ranked = [TrackMatch(t, s, 0.0) for t, s in (("A", 50), ("B", 5), ("C", 4.5), ("D", 0))]
    probabilities = calibration.probabilities(ranked)
    assert probabilities[0] > 0.98 and probabilities[0] > probabilities[1:].max()
    close_call = calibration.probabilities([TrackMatch("A", 50, 0), TrackMatch("B", 49, 0)])
    assert close_call[0] < probabilities[0]


def test_fit_does_not_lose_to_a_single_engine_in_any_group() -> None:
    """Engine "clip" is right on clips and wrong on hums; "hum" the opposite. A weighting that
    follows only one of them would lose a whole group."""
    results, truth, groups = [], [], []
    for query in range(120):
        right, is_hum = f"T{query}", query % 3 == 0
        clip = [
            TrackMatch("X" if is_hum else right, 4.0 if is_hum else 60.0, 0.0),
            TrackMatch("Y", 3.5, 0.0),
        ]
        hum = [TrackMatch(right if is_hum else "Z", 9.0, 0.0), TrackMatch("W", 2.0, 0.0)]
        results.append({"clip": clip, "hum": hum})
        truth.append(right)
        groups.append("hum" if is_hum else "clip")
    fusion = Fusion.fit(results, truth, groups)
    fused = [fusion.fuse(r, 1)[0].track_id == t for r, t in zip(results, truth)]
    assert np.mean(fused) == 1.0

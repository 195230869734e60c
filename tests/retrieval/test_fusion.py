"""Fusion: reciprocal ranks before fitting; after, a stacked model that uses the query's
harmonicity, an early exit that costs nothing on validation, and persistence."""

import json
from pathlib import Path

import numpy as np
import pytest

from acr.retrieval.engine import TrackMatch
from acr.retrieval.fusion import Fusion


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
        strong = [
            TrackMatch(right if strong_right else "S", 40.0 if strong_right else 5.0, 1.0),
            TrackMatch("S2", 3.0, 0.0),
        ]
        weak = [TrackMatch(right if weak_right else "W", 2.0, 2.0), TrackMatch("W2", 1.9, 0.0)]
        results.append({"weak": weak, "strong": strong})
        truth.append(right)
    return results, truth


def _top1(fusion: Fusion, results: list[dict], truth: list[str], queries=None) -> float:
    queries = queries or [{}] * len(results)
    fused = [fusion.fuse(r, q, 1) for r, q in zip(results, queries)]
    return float(np.mean([bool(f) and f[0].track_id == t for f, t in zip(fused, truth)]))


def test_fit_trusts_the_reliable_engine_and_exits_early_on_it(tmp_path: Path) -> None:
    results, truth = synthetic_results(np.random.default_rng(0), 200)
    fusion = Fusion.fit(results, truth)
    assert fusion.fitted and fusion.engines == ["strong", "weak"]
    assert _top1(fusion, results, truth) >= np.mean(
        [r["strong"][0].track_id == t for r, t in zip(results, truth)]
    )
    assert fusion.early_exit is not None and fusion.early_exit.engine == "strong"
    clear = {"strong": [TrackMatch("T", 40.0, 7.0), TrackMatch("S2", 3.0, 0.0)], "weak": []}
    assert fusion.early_exit.decides(clear["strong"], {})
    ranked = fusion.fuse(clear, top_k=2)
    assert ranked[0].track_id == "T" and ranked[0].offset_s == 7.0
    assert ranked[0].score > 0.9 and ranked[1].score == pytest.approx(1 - ranked[0].score)
    unsure = {
        "strong": [TrackMatch("S", 5.0, 0.0), TrackMatch("S2", 3.0, 0.0)],
        "weak": [TrackMatch("W", 2.0, 3.0), TrackMatch("W2", 1.9, 0.0)],
    }
    assert not fusion.early_exit.decides(unsure["strong"], {})
    assert 0.0 < fusion.fuse(unsure)[0].score < 0.9  # a probability, from the stacked model
    fusion.save(tmp_path / "fusion.json")
    assert Fusion.load(tmp_path / "fusion.json") == fusion


def test_early_exit_never_costs_a_validation_answer() -> None:
    results, truth = synthetic_results(np.random.default_rng(1), 300)
    fusion = Fusion.fit(results, truth)
    full = Fusion(fusion.engines, fusion.weights)  # the same model without the exit
    for result, right in zip(results, truth):
        if fusion.early_exit.decides(result["strong"], {}):
            exited = fusion.fuse(result, top_k=1)[0].track_id == right
            assert exited or full.fuse(result, top_k=1)[0].track_id != right


def test_fit_does_not_lose_to_a_single_engine_in_any_group() -> None:
    """Engine "clip" is right on clips and wrong on hums; "hum" the opposite. A weighting that
    follows only one of them would lose a whole group."""
    results, truth = [], []
    for query in range(120):
        right, is_hum = f"T{query}", query % 3 == 0
        clip = [
            TrackMatch("X" if is_hum else right, 4.0 if is_hum else 60.0, 0.0),
            TrackMatch("Y", 3.5, 0.0),
        ]
        hum = [TrackMatch(right if is_hum else "Z", 9.0, 0.0), TrackMatch("W", 2.0, 0.0)]
        results.append({"clip": clip, "hum": hum})
        truth.append(right)
    assert _top1(Fusion.fit(results, truth), results, truth) == 1.0


def test_query_harmonicity_decides_which_engine_to_believe() -> None:
    """Both engines look equally sure of themselves; only the query's harmonicity tells that
    "melody" is right on hums and "audio" on everything else."""
    rng = np.random.default_rng(2)
    results, truth, queries = [], [], []
    for query in range(300):
        right, is_hum = f"T{query}", query % 2 == 0
        score = lambda: float(rng.uniform(5, 10))  # noqa: E731
        audio = [TrackMatch("A" if is_hum else right, score(), 0.0), TrackMatch("A2", 1.0, 0.0)]
        melody = [TrackMatch(right if is_hum else "M", score(), 0.0), TrackMatch("M2", 1.0, 0.0)]
        results.append({"audio": audio, "melody": melody})
        truth.append(right)
        queries.append(
            {"harmonicity": float(rng.uniform(0.9, 1.0) if is_hum else rng.uniform(0.2, 0.7))}
        )
    fusion = Fusion.fit(results[:200], truth[:200], queries[:200])
    assert _top1(fusion, results[200:], truth[200:], queries[200:]) == 1.0
    assert _top1(Fusion.fit(results[:200], truth[:200]), results[200:], truth[200:]) <= 0.6


def test_early_exit_distrusts_a_sure_looking_match_on_a_harmonic_query() -> None:
    """Engine "audio" is right on clips with a big lead, and on a third of hums wrong with the
    same lead (a hum can line up with some other track's landmarks); "melody" is right on most
    hums. The exit must take the lead at face value on a mix only."""
    results, truth, queries = [], [], []
    for query in range(300):
        right, is_hum = f"T{query}", query % 2 == 0
        fooled = is_hum and query % 3 == 0
        audio_top = TrackMatch("X" if is_hum else right, 40.0 if fooled or not is_hum else 4.0, 0.0)
        audio = [audio_top, TrackMatch("A2", 3.0, 0.0)]
        sung_right = is_hum and query % 10 != 0  # "audio" stays the more accurate engine
        melody = [TrackMatch(right if sung_right else "M", 9.0, 0.0), TrackMatch("M2", 2.0, 0.0)]
        results.append({"audio": audio, "melody": melody})
        truth.append(right)
        queries.append({"harmonicity": 0.97 if is_hum else 0.4})
    fusion = Fusion.fit(results, truth, queries)
    assert fusion.early_exit is not None and fusion.early_exit.engine == "audio"
    sure = [TrackMatch("X", 40.0, 0.0), TrackMatch("A2", 3.0, 0.0)]
    assert fusion.early_exit.decides(sure, {"harmonicity": 0.4})
    assert not fusion.early_exit.decides(sure, {"harmonicity": 0.97})
    assert _top1(fusion, results, truth, queries) == 270 / 300  # every query either engine gets


def test_fusion_from_an_older_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fusion.json"
    path.write_text('{"weights": {"fingerprint": 1.0}, "calibrations": {}, "calibrated": true}')
    with pytest.raises(ValueError, match="acr fuse"):
        Fusion.load(path)


def test_early_exit_without_query_features_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fusion.json"
    weights = [0.0] * ((2 * 7 + 1) * 3)
    early_exit = {"engine": "a", "weights": [1.0, 2.0, 3.0], "probability": 0.99}
    path.write_text(
        json.dumps({"engines": ["a", "b"], "weights": weights, "early_exit": early_exit})
    )
    with pytest.raises(ValueError, match="acr fuse"):
        Fusion.load(path)

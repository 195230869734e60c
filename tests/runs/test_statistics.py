"""Seed summaries, hierarchical paired bootstrap, Holm adjustment and sweep verdicts."""

import math

import numpy as np
import pytest

import acr.runs.statistics
from acr.runs.statistics import compare_buckets, holm_adjust, paired_bootstrap, seed_summary

QUERIES = 600


def known_gain_arms(seeds: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """A correct with probability 0.6; B also correct on a quarter of A's misses (gain ≈ 0.10)."""
    rng = np.random.default_rng(7)
    correct_a = rng.random((seeds, QUERIES)) < 0.6
    rescued = ~correct_a & (rng.random((seeds, QUERIES)) < 0.25)
    return correct_a.astype(float), (correct_a | rescued).astype(float)


def test_seed_summary_mean_std_and_student_t_interval() -> None:
    summary = seed_summary([0.8, 0.9, 1.0])
    half_width = 4.302653 * 0.1 / math.sqrt(3)  # t_{0.975, 2}
    assert summary["mean"] == pytest.approx(0.9)
    assert summary["std"] == pytest.approx(0.1)
    assert (summary["min"], summary["max"], summary["seeds"]) == (0.8, 1.0, 3)
    assert summary["ci95"] == pytest.approx([0.9 - half_width, 0.9 + half_width], abs=1e-6)
    assert all(type(summary[key]) is float for key in ("mean", "std", "min", "max"))


def test_seed_summary_of_one_seed_has_zero_width_interval() -> None:
    summary = seed_summary([0.7])
    assert summary["std"] == 0.0
    assert summary["ci95"] == [0.7, 0.7]
    assert summary["seeds"] == 1


def test_identical_arms_show_no_difference() -> None:
    scores, _ = known_gain_arms()
    buckets = {"overall": np.ones(QUERIES, dtype=bool), "first half": np.arange(QUERIES // 2)}
    results = compare_buckets(scores, scores.copy(), buckets)
    for result in results.values():
        assert result["difference"] == 0.0
        assert result["p_value"] == 1.0
        assert result["verdict"] == "no significant difference"


def test_known_gain_is_found_overall_and_in_a_bucket() -> None:
    scores_a, scores_b = known_gain_arms()
    buckets = {"overall": np.ones(QUERIES, dtype=bool), "big": np.arange(QUERIES) < 400}
    results = compare_buckets(scores_a, scores_b, buckets)
    for result in results.values():
        assert result["verdict"] == "B better"
        assert result["ci95"][0] > 0 and 0.05 < result["difference"] < 0.15
        assert result["difference"] == pytest.approx(result["mean_b"] - result["mean_a"])
        assert result["p_value"] == pytest.approx(2 / 2001)  # every resample > 0, never exactly 0
    assert results["big"]["queries"] == 400 and results["big"]["seeds"] == 3


def test_swapped_arms_reverse_the_verdict() -> None:
    scores_a, scores_b = known_gain_arms()
    buckets = {"overall": np.ones(QUERIES, dtype=bool)}
    results = compare_buckets(scores_b, scores_a, buckets, names=("old", "new"))
    assert results["overall"]["verdict"] == "old better"
    assert results["overall"]["difference"] < 0


def test_two_changed_queries_are_not_significant() -> None:
    scores_a, _ = known_gain_arms()
    scores_b = scores_a.copy()
    misses = np.flatnonzero(scores_a[0] == 0)[:2]
    scores_b[0, misses] = 1.0
    results = compare_buckets(scores_a, scores_b, {"overall": np.ones(QUERIES, dtype=bool)})
    # Two more hits on one of three seeds: the mean over seeds rises by 2 / (3 x QUERIES).
    assert results["overall"]["difference"] == pytest.approx(2 / (3 * QUERIES))
    assert results["overall"]["verdict"] == "no significant difference"


def test_seed_variance_stops_a_one_seed_winner() -> None:
    scores_a, _ = known_gain_arms()
    scores_b = scores_a.copy()
    scores_b[0, np.flatnonzero(scores_a[0] == 0)[:60]] = 1.0  # +0.10 on seed 0
    for seed in (1, 2):
        scores_b[seed, np.flatnonzero(scores_a[seed] == 1)[:60]] = 0.0  # -0.10 on seeds 1, 2
    overall = {"overall": np.ones(QUERIES, dtype=bool)}
    one_seed = compare_buckets(scores_a[:1], scores_b[:1], overall)["overall"]
    all_seeds = compare_buckets(scores_a, scores_b, overall)["overall"]
    assert one_seed["verdict"] == "B better"
    assert all_seeds["verdict"] == "no significant difference"
    assert all_seeds["ci95"][0] < 0 < all_seeds["ci95"][1]


def test_one_seed_interval_matches_the_normal_approximation() -> None:
    scores_a, scores_b = known_gain_arms(seeds=1)
    differences = scores_b[0] - scores_a[0]
    standard_error = differences.std() / math.sqrt(QUERIES)
    result = paired_bootstrap(scores_a, scores_b, samples=4000)
    width = result["ci95"][1] - result["ci95"][0]
    assert width == pytest.approx(2 * 1.959964 * standard_error, rel=0.1)


def test_holm_adjust_matches_hand_computed_values() -> None:
    # sorted 0.01, 0.03, 0.04, 0.5 -> x4, x3, x2, x1 = 0.04, 0.09, 0.08, 0.5 -> running max
    assert holm_adjust([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm_adjust([0.6, 0.7]) == [1.0, 1.0]  # 1.2 capped at 1
    assert holm_adjust([]) == []


def test_holm_turns_a_borderline_bucket_insignificant() -> None:
    scores_a, scores_b = known_gain_arms()
    borderline = np.arange(40)
    unchanged = np.flatnonzero((scores_a == scores_b).all(axis=0))
    alone = compare_buckets(scores_a, scores_b, {"small": borderline})["small"]
    buckets = {f"unchanged {index}": unchanged for index in range(4)} | {"small": borderline}
    among_five = compare_buckets(scores_a, scores_b, buckets)["small"]
    assert alone["verdict"] == "B better"
    assert among_five["p_value"] == alone["p_value"]
    assert among_five["p_holm"] == pytest.approx(5 * alone["p_value"])
    assert among_five["verdict"] == "no significant difference"


def test_bucket_without_queries_gets_no_queries_verdict() -> None:
    scores_a, scores_b = known_gain_arms()
    buckets = {"overall": np.ones(QUERIES, dtype=bool), "empty": np.zeros(QUERIES, dtype=bool)}
    results = compare_buckets(scores_a, scores_b, buckets)
    assert results["empty"]["verdict"] == "no queries"
    assert "p_value" not in results["empty"]
    assert results["overall"]["p_holm"] == results["overall"]["p_value"]  # one bucket tested


def test_index_array_bucket_equals_boolean_mask() -> None:
    scores_a, scores_b = known_gain_arms()
    mask = np.arange(QUERIES) % 3 == 0
    by_mask = compare_buckets(scores_a, scores_b, {"thirds": mask}, samples=300)
    by_index = compare_buckets(scores_a, scores_b, {"thirds": np.flatnonzero(mask)}, samples=300)
    assert by_mask == by_index


def test_mismatched_shapes_raise_naming_both_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(3, 600\).*\(2, 600\)"):
        paired_bootstrap(np.zeros((3, 600)), np.zeros((2, 600)))
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap(np.zeros((3, 0)), np.zeros((3, 0)))


def test_same_seed_gives_identical_results() -> None:
    scores_a, scores_b = known_gain_arms()
    buckets = {"overall": np.ones(QUERIES, dtype=bool), "big": np.arange(400)}
    first = compare_buckets(scores_a, scores_b, buckets, samples=500, seed=3)
    assert compare_buckets(scores_a, scores_b, buckets, samples=500, seed=3) == first
    other_seed = paired_bootstrap(scores_a, scores_b, samples=500, seed=4)
    assert other_seed["ci95"] != first["overall"]["ci95"]


def test_chunked_resampling_gives_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    scores_a, scores_b = known_gain_arms()
    whole = paired_bootstrap(scores_a, scores_b, samples=500)
    monkeypatch.setattr(acr.runs.statistics, "MEMORY_BUDGET_BYTES", 16 * QUERIES * 7)  # 7 per chunk
    assert paired_bootstrap(scores_a, scores_b, samples=500) == whole

"""acr.runs.analysis: paired comparisons of a sweep's arms on known per-query outcomes."""

from fixtures_runs import tie_and_winner_results

from acr.runs.analysis import aggregate, comparisons
from acr.runs.sweep_report import _cell

GRID = [("k", ["a", "same_as_a", "better"])]


def test_identical_arms_tie_and_a_clearly_better_arm_wins() -> None:
    found = {
        (c["a"], c["b"]): c["buckets"]
        for c in comparisons(tie_and_winner_results(), GRID, samples=1000)
    }
    for bucket in ("overall", "degradation=clean", "degradation=noise"):
        assert found[("k=a", "k=same_as_a")][bucket]["verdict"] == "no significant difference"
        assert found[("k=a", "k=better")][bucket]["verdict"] == "k=better better"
        assert found[("k=same_as_a", "k=better")][bucket]["difference"] > 0.1


def test_perfect_seeds_still_get_an_interval_from_their_queries() -> None:
    """Three seeds at 100/100 agree exactly: Student t over seeds gives [1, 1]; the pooled
    queries' Wilson interval (300 of 300) does not, and sweep.md shows the wider of the two."""
    results = [
        {
            "arm": "base",
            "systems": {"validation": {"overall": {"top1": 1.0, "mrr": 1.0, "queries": 100}}},
        }  # fmt: skip
        for _ in range(3)
    ]
    overall = aggregate(results)["base"]["validation"]["overall"]
    assert overall["top1"]["ci95"] == [1.0, 1.0]
    low, high = overall["top1"]["pooled95"]
    assert 0.98 < low < 0.99 and high == 1.0  # 300 of 300: [0.9874, 1.0]
    assert "pooled95" not in overall["mrr"]
    assert _cell(overall["top1"]) == "1.000 ± 0.000 [0.987, 1.000]"

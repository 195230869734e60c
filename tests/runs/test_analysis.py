"""acr.runs.analysis: paired comparisons of a sweep's arms on known per-query outcomes."""

from fixtures_runs import tie_and_winner_results

from acr.runs.analysis import comparisons

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

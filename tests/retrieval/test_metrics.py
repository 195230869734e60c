"""Top-k accuracy and MRR from ranks, overall and per bucket."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from acr.retrieval.metrics import (
    RetrievalAccuracy,
    confidence_intervals,
    metrics_by_bucket,
    proportion_interval,
    rank_of,
)


def test_rank_of_finds_the_position_or_not_found() -> None:
    assert rank_of("b", ["a", "b", "c"]) == 2.0
    assert rank_of("z", ["a", "b"]) == math.inf


def test_accuracy_and_mrr_from_known_ranks() -> None:
    metric = RetrievalAccuracy(top_k=(1, 5))
    metric.update(torch.tensor([1.0, 2.0]))
    metric.update(torch.tensor([6.0, math.inf]))
    values = metric.compute()
    assert values["top1"].item() == pytest.approx(0.25)
    assert values["top5"].item() == pytest.approx(0.5)
    assert values["mrr"].item() == pytest.approx((1 + 1 / 2 + 1 / 6 + 0) / 4)


def test_metrics_by_bucket_and_crossed_buckets() -> None:
    queries = pd.DataFrame(
        {
            "degradation": ["clean", "clean", "noise", "noise"],
            "length_s": [1.0, 3.0, 1.0, 3.0],
        }
    )
    results = metrics_by_bucket(
        np.array([1, 1, 3, 1]),
        queries,
        ["degradation", "length_s"],
        crossed_buckets=[("degradation", "length_s")],
    )
    assert results["overall"]["top1"] == pytest.approx(0.75)
    assert results["degradation=clean"]["top1"] == 1.0
    assert results["degradation=noise"]["top1"] == 0.5
    assert results["length_s=3"] == {"top1": 1.0, "top5": 1.0, "mrr": 1.0, "queries": 2}
    assert results["degradation=noise,length_s=1"]["top5"] == 1.0
    assert results["degradation=noise,length_s=1"]["top1"] == 0.0


def test_intervals_bracket_the_value_and_shrink_with_more_queries() -> None:
    rng = np.random.default_rng(0)
    few = np.where(rng.random(40) < 0.8, 1.0, math.inf)
    many = np.where(rng.random(4000) < 0.8, 1.0, math.inf)
    narrow, wide = confidence_intervals(many, (1,)), confidence_intervals(few, (1,))
    for name in ("top1", "mrr"):  # Wilson for top-1, bootstrap for MRR
        assert wide[name][0] <= (few <= 1).mean() <= wide[name][1]
        assert narrow[name][1] - narrow[name][0] < (wide[name][1] - wide[name][0]) / 5
    assert 0.15 < wide["top1"][1] - wide["top1"][0] < 0.35  # 2 x 1.96 x sqrt(0.8 x 0.2 / 40) = 0.25


def test_a_perfect_cell_still_has_an_interval_below_one() -> None:
    """100/100 is not proof of 1.00: the Wilson bound is 0.963, where a bootstrap said 1.0."""
    interval = confidence_intervals(np.ones(100), (1, 5))
    assert interval["top1"][0] < 0.97 and interval["top1"][1] == 1.0
    assert interval["top1"][0] == pytest.approx(0.963, abs=5e-4)
    assert proportion_interval(0, 100)[0] == 0.0 and proportion_interval(0, 100)[1] > 0.03
    assert proportion_interval(0, 0) == [0.0, 1.0]  # an empty cell knows nothing
    # The textbook case (Wilson 1927; Newcombe 1998, example 81/263): 0.2553-0.3662.
    assert proportion_interval(81, 263) == pytest.approx([0.2553, 0.3662], abs=1e-4)

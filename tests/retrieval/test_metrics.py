"""Top-k accuracy and MRR from ranks, overall and per bucket."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from acr.retrieval.metrics import (
    RetrievalAccuracy,
    bootstrap_intervals,
    metrics_by_bucket,
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


def test_bootstrap_intervals_bracket_the_value_and_shrink_with_more_queries() -> None:
    rng = np.random.default_rng(0)
    few = np.where(rng.random(40) < 0.8, 1.0, math.inf)
    many = np.where(rng.random(4000) < 0.8, 1.0, math.inf)
    narrow, wide = bootstrap_intervals(many, (1,))["top1"], bootstrap_intervals(few, (1,))["top1"]
    assert wide[0] <= (few <= 1).mean() <= wide[1]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 5  # width falls like 1/sqrt(n)
    assert 0.15 < wide[1] - wide[0] < 0.35  # 2 x 1.96 x sqrt(0.8 x 0.2 / 40) = 0.25


def test_identical_ranks_have_a_zero_width_interval() -> None:
    interval = bootstrap_intervals(np.ones(30), (1, 5))
    assert interval["top1"] == [1.0, 1.0] and interval["mrr"] == [1.0, 1.0]

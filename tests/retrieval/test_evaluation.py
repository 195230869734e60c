"""Scoring recognitions: hand-built predictions with known answers."""

import pandas as pd
import pytest

from acr.retrieval.engine import TrackMatch
from acr.retrieval.evaluation import FUSED, report_table, score_recognitions
from acr.retrieval.recognizer import Recognition


def ranked(*track_ids: str) -> list[TrackMatch]:
    return [TrackMatch(t, 10.0 - i, 0.0) for i, t in enumerate(track_ids)]


@pytest.fixture
def queries() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "query_id": ["q1", "q2", "q3", "q4"],
            "path": ["a.wav", "b.wav", "c.wav", "d.wav"],
            "track_id": ["A", "B", "C", "D"],
            "degradation": ["clean", "clean", "noise", "noise"],
            "length_s": [3.0, 3.0, 3.0, 1.0],
        }
    )


def test_scores_match_hand_computed_values(queries: pd.DataFrame) -> None:
    recognitions = [
        Recognition("q1", matches=ranked("A", "X"), engine_matches={"fingerprint": ranked("A")}),
        Recognition("q2", matches=ranked("X", "B"), engine_matches={"fingerprint": ranked("B")}),
        Recognition(
            "q3",
            matches=ranked("X", "Y", "Z", "W", "V", "C"),
            engine_matches={"fingerprint": ranked("Y")},
        ),
        Recognition("q4", status="error", error="silent (below -60 dBFS)"),
    ]
    report = score_recognitions(
        recognitions, queries, ["fingerprint", FUSED], top_k=5, bootstrap_samples=200
    )
    fused = report["systems"][FUSED]
    assert fused["overall"]["top1"] == pytest.approx(1 / 4)
    assert fused["overall"]["top5"] == pytest.approx(2 / 4)
    assert fused["overall"]["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 6 + 0) / 4)
    assert fused["degradation=clean"]["top5"] == 1.0
    assert fused["degradation=noise,length_s=3"]["mrr"] == pytest.approx(1 / 6)
    fingerprint = report["systems"]["fingerprint"]
    assert fingerprint["overall"]["top1"] == pytest.approx(2 / 4)
    assert fingerprint["degradation=clean"] == {
        "top1": 1.0,
        "top5": 1.0,
        "mrr": 1.0,
        "queries": 2,
        # Two of two right is no proof of 1.0: Wilson's lower bound is 2 / (2 + 1.96^2).
        "ci95": {
            "top1": [pytest.approx(2 / (2 + 1.959964**2)), 1.0],
            "top5": [pytest.approx(0.3424, abs=1e-4), 1.0],
            "mrr": [1.0, 1.0],
        },
    }
    low, high = fused["overall"]["ci95"]["top1"]
    assert low <= 0.25 <= high and high - low > 0.2  # four queries: a wide interval
    assert report["errors"] == [{"query_id": "q4", "error": "silent (below -60 dBFS)"}]
    assert "hybrid" in report_table(report).columns[-1].header

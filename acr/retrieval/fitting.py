"""Fitting what an index answers with on validation queries: the hybrid's fusion (``acr fuse``)
and the calibration that lets every answer say "no match" (``acr calibrate``).

Both are saved into the index directory, read by acr.retrieval.recognizer; use query tables you
will not report on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from acr.data.manifests import read_queries
from acr.retrieval.calibration import (
    CALIBRATION_FILE,
    DEFAULT_FALSE_MATCH_RATE,
    Calibration,
    file_digest,
)
from acr.retrieval.fusion import Fusion
from acr.retrieval.recognizer import FUSION_FILE, Recognizer
from acr.retrieval.store import HYBRID, load_engines


def fit_fusion(index: str, queries: list[str]) -> tuple[Fusion, int]:
    """Fit a hybrid index's fusion (calibration, weights, early exit) on validation queries.

    Use query tables you will not report on. The fusion is saved as INDEX/fusion.json;
    returns it and how many queries it was fitted on (those that could be read). Run
    ``acr calibrate`` after it: a calibration fitted with another fusion is refused.

    Args:
        index: a hybrid index directory (two engines or more).
        queries: validation query tables; several are pooled row by row (tables made with
            other seeds may reuse query ids).
    """
    # Not Recognizer.load: the fusion.json there (perhaps from an older acr) is what is refitted.
    recognizer = Recognizer(load_engines(index), cascade=False)
    if len(recognizer.engines) < 2:
        raise ValueError(f"{index} has one engine; fusion needs a hybrid index")
    table = pd.concat([read_queries(path) for path in queries], ignore_index=True)
    answered = [
        (recognition, right)
        for recognition, right in zip(recognizer.recognize_queries(table, 20), table["track_id"])
        if recognition.status != "error"
    ]
    fusion = Fusion.fit(
        [recognition.engine_matches for recognition, _ in answered],
        [right for _, right in answered],
        [recognition.query_features for recognition, _ in answered],
    )
    fusion.save(Path(index) / FUSION_FILE)
    return fusion, len(answered)


def fit_calibration(
    index: str,
    queries: list[str],
    out_of_catalog: list[str],
    false_match_rate: float = DEFAULT_FALSE_MATCH_RATE,
) -> Calibration:
    """Fit the probability that an answer is right, and the no-match threshold, of every engine
    of an index and of its fused (hybrid) answers; saved as INDEX/calibration.json.

    After it, ``acr recognize`` gives each answer its probability and answers ``no_match``
    below the threshold. Refit after ``acr fuse``.

    Args:
        index: the index directory (acr index; a hybrid one after acr fuse).
        queries: in-catalog validation query tables (query_id, the clip, track_id of the
            index), e.g. from acr data make-queries on the indexed catalog.
        out_of_catalog: query tables of music the index does not hold (acr data make-queries
            --out_of_catalog INDEX); a track_id, when given, must not be in the index.
        false_match_rate: the share of out-of-catalog queries that may still get an answer;
            the threshold is fitted for it (1 % by default). Measuring it needs several times
            1 / rate such queries.
    """
    # scoring imports torchmetrics
    from acr.retrieval.evaluation import require_outside, require_truth

    if not queries or not out_of_catalog:
        raise ValueError("calibration needs --queries (in catalog) and --out_of_catalog tables")
    recognizer = Recognizer.load(index, cascade=False, calibrated=False)
    track_ids = next(iter(recognizer.engines.values())).track_ids
    inside = [read_queries(name) for name in queries]
    outside = [read_queries(name, False) for name in out_of_catalog]
    for name, table in zip(queries, inside):
        require_truth(table, track_ids, name)
    for name, table in zip(out_of_catalog, outside):
        require_outside(table, track_ids, name)
    inside, outside = (pd.concat(tables, ignore_index=True) for tables in (inside, outside))
    table = pd.concat([inside, outside], ignore_index=True)
    truths = [*inside["track_id"], *([None] * len(outside))]
    recognitions, rights = [], []
    for recognition, right in zip(recognizer.recognize_queries(table, 20), truths):
        if recognition.status != "error":
            recognitions.append(recognition)
            rights.append(right)
    systems = [*recognizer.engines, *([HYBRID] if len(recognizer.engines) > 1 else [])]
    answers = {system: [r.ranking(system) for r in recognitions] for system in systems}
    calibration = Calibration.fit(
        answers,
        [recognition.duration_s for recognition in recognitions],
        rights,
        false_match_rate,
        probability_systems=(HYBRID,),
    )
    calibration.fusion_sha256 = file_digest(Path(index) / FUSION_FILE)
    calibration.save(Path(index) / CALIBRATION_FILE)
    return calibration

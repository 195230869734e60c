"""No match at a chosen false-match rate: the calibration model, its threshold, and the
commands around it (make-queries --out_of_catalog, calibrate, recognize, evaluate)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binom

from acr.cli import main
from acr.data.manifests import ManifestError
from acr.retrieval.calibration import CALIBRATION_FILE, Calibration, threshold_at
from acr.retrieval.engine import IndexDirectoryError, TrackMatch
from acr.retrieval.fitting import fit_calibration
from acr.retrieval.recognizer import Recognizer

CATALOG_SEEDS = tuple(range(10))
HELD_OUT_SEEDS = tuple(range(100, 110))


def simulated_answers(rng: np.random.Generator, count: int, outside: bool) -> tuple:
    """Rankings as a vote-counting engine gives them: in catalog, a top score that grows with
    the query length and is right more often the higher it is; out of catalog, chance votes."""
    durations = rng.choice([1.0, 3.0, 10.0], size=count)
    rankings, truths = [], []
    for duration in durations:
        chance = rng.gamma(2.0, 2.0 + duration)
        if outside:
            top, right = chance, False
        else:
            top = chance + rng.gamma(1.5, 4.0 * duration)
            right = rng.random() < 1 - np.exp(-top / (6.0 + duration))
        runner_up = rng.uniform(0.3, 1.0) * min(top, chance + 1)
        rankings.append(
            [TrackMatch("a" if right else "b", top, 0.0), TrackMatch("c", runner_up, 0.0)]
        )
        truths.append(None if outside else "a")
    return rankings, list(durations), truths


def test_the_fitted_threshold_keeps_the_false_match_rate_on_new_queries() -> None:
    rng = np.random.default_rng(7)
    inside = simulated_answers(rng, 3000, outside=False)
    outside = simulated_answers(rng, 6000, outside=True)
    rankings, durations, truths = (a + b for a, b in zip(inside, outside))
    calibration = Calibration.fit({"fingerprint": rankings}, durations, truths, 0.01)
    model = calibration.systems["fingerprint"]
    assert calibration.out_of_catalog_queries == 6000
    assert model.false_match_rate <= 0.01
    assert 0.3 < model.true_positive_rate < 1.0  # a real trade-off, neither trivial end

    fresh, fresh_durations, _ = simulated_answers(np.random.default_rng(8), 4000, outside=True)
    false_matches = sum(
        model.probability(r, d) >= model.threshold for r, d in zip(fresh, fresh_durations)
    )
    low, high = binom.interval(0.95, 4000, 0.01)
    assert low <= false_matches <= high  # 40 expected


def test_probabilities_are_calibrated_and_grow_with_the_score() -> None:
    rng = np.random.default_rng(3)
    inside = simulated_answers(rng, 4000, outside=False)
    outside = simulated_answers(rng, 2000, outside=True)
    rankings, durations, truths = (a + b for a, b in zip(inside, outside))
    model = Calibration.fit({"e": rankings}, durations, truths, 0.05).systems["e"]
    probabilities = np.array([model.probability(r, d) for r, d in zip(rankings, durations)])
    right = np.array([t is not None and r[0].track_id == t for r, t in zip(rankings, truths)])
    for low in (0.1, 0.5, 0.8):  # reliability: the share right in a bin is near its mean P
        rows = (probabilities >= low) & (probabilities < low + 0.1)
        assert rows.sum() > 50
        assert abs(right[rows].mean() - probabilities[rows].mean()) < 0.08
    weak, strong = ([TrackMatch("x", s, 0.0)] for s in (5.0, 80.0))
    assert model.probability(weak, 3.0) < model.probability(strong, 3.0)
    assert model.probability([], 3.0) < model.probability(weak, 3.0)


def test_threshold_at_allows_the_target_share_and_no_more() -> None:
    scores = np.arange(100, dtype=float)
    threshold = threshold_at(scores, 0.05)
    assert (scores >= threshold).sum() == 5
    assert (scores >= threshold_at(scores, 0.001)).sum() == 0  # too few to allow one
    assert threshold_at(np.array([0.2, 0.2, 0.2]), 0.5) > 0.2  # ties: fewer, never more


def test_fit_needs_both_kinds_of_queries() -> None:
    ranking = [[TrackMatch("a", 3.0, 0.0)]]
    with pytest.raises(ValueError, match="out-of-catalog"):
        Calibration.fit({"e": ranking}, [3.0], ["a"])
    with pytest.raises(ValueError, match="in-catalog"):
        Calibration.fit({"e": ranking}, [3.0], [None])
    with pytest.raises(ValueError, match="false_match_rate"):
        Calibration.fit({"e": ranking * 2}, [3.0, 3.0], ["a", None], 1.5)


@pytest.fixture(scope="module")
def calibrated(song_folder: Callable[..., Path], tmp_path_factory) -> dict[str, Path]:
    """A fingerprint index of 10 songs, in-catalog queries of them, out-of-catalog queries of 10
    songs it does not hold (two sets: one to fit, one to measure), and the calibration."""
    work = tmp_path_factory.mktemp("calibration")
    catalog = song_folder(seeds=CATALOG_SEEDS, duration_s=12.0)
    held_out = song_folder(seeds=HELD_OUT_SEEDS, duration_s=12.0)
    index = work / "index"
    main(["index", "--catalog", str(catalog), "--output", str(index), "--workers", "1"])
    common = ["--lengths_s", "[1.0, 3.0]", "--degradations", "[clean, noise, reverb]"]
    common += ["--workers", "1", "--per_track", "4"]
    paths = {"index": index, "catalog": catalog, "held_out": held_out}
    for name, source, seed, outside in (
        ("inside", catalog, 0, False),
        ("outside_fit", held_out, 0, True),
        ("outside_test", held_out, 1, True),
    ):
        extra = ["--out_of_catalog", str(index)] if outside else []
        main(
            ["data", "make-queries", "--catalog", str(source), "--output", str(work / name),
             "--seed", str(seed), *common, *extra]
        )  # fmt: skip
        paths[name] = work / name / "queries.csv"
    main(
        ["calibrate", "--index", str(index), "--queries", f"[{paths['inside']}]",
         "--out_of_catalog", f"[{paths['outside_fit']}]", "--false_match_rate", "0.05"]
    )  # fmt: skip
    return paths


def test_out_of_catalog_queries_are_marked_and_skip_indexed_tracks(
    calibrated: dict[str, Path], tmp_path: Path
) -> None:
    outside = pd.read_csv(calibrated["outside_fit"])
    assert len(outside) == 10 * 2 * 3 * 4 and not outside["in_catalog"].any()
    assert set(outside["track_id"]) == {f"song{seed}" for seed in HELD_OUT_SEEDS}
    main(
        ["data", "make-queries", "--catalog", str(calibrated["catalog"]), "--output",
         str(tmp_path / "q"), "--lengths_s", "[3.0]", "--degradations", "[clean]",
         "--workers", "1", "--out_of_catalog", str(calibrated["index"])]
    )  # fmt: skip
    skipped = pd.read_csv(tmp_path / "q" / "skipped.csv")
    assert len(skipped) == 10 and skipped["reason"].str.contains("not out of catalog").all()
    assert (tmp_path / "q" / "queries.csv").read_text().strip() in ("", "query_id")


def test_recognize_answers_no_match_at_the_fitted_false_match_rate(
    calibrated: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    recognizer = Recognizer.load(calibrated["index"])
    model = recognizer.calibration.systems["fingerprint"]
    assert model.false_match_rate <= 0.05
    fresh = pd.read_csv(calibrated["outside_test"])
    answered = [
        recognizer.recognize_file(calibrated["outside_test"].parent / path).status
        for path in fresh["path"]
    ]
    false_matches = answered.count("ok")
    assert answered.count("no_match") + false_matches == len(fresh)
    assert false_matches <= binom.interval(0.95, len(fresh), 0.05)[1]
    inside = pd.read_csv(calibrated["inside"])
    clean = inside[(inside["degradation"] == "clean") & (inside["length_s"] == 3.0)]
    for path, track in zip(clean["path"], clean["track_id"]):
        recognition = recognizer.recognize_file(calibrated["inside"].parent / path)
        assert recognition.status == "ok" and recognition.matches[0].track_id == track
        assert recognition.probability > model.threshold

    out = tmp_path / "answers.jsonl"
    one = str(calibrated["outside_test"].parent / fresh["path"].iloc[0])
    main(["recognize", "--index", str(calibrated["index"]), "--output", str(out), one])
    answer = json.loads(out.read_text())
    assert answer["status"] == "no_match" and 0 <= answer["probability"] < model.threshold
    main(
        ["recognize", "--index", str(calibrated["index"]), "--output", str(out),
         "--format", "csv", "--min_probability", "0", one]
    )  # fmt: skip
    row = pd.read_csv(out).iloc[0]
    assert row["status"] == "ok" and row["probability"] == pytest.approx(answer["probability"])


def test_evaluate_reports_false_matches_per_bucket_and_a_det_plot(
    calibrated: dict[str, Path], tmp_path: Path
) -> None:
    output = tmp_path / "report.json"
    main(
        ["evaluate", "--index", str(calibrated["index"]), "--queries",
         str(calibrated["inside"]), "--out_of_catalog", str(calibrated["outside_test"]),
         "--output", str(output), "--bootstrap", "0"]
    )  # fmt: skip
    report = json.loads(output.read_text())
    cells = report["no_match"]["fingerprint"]
    assert {"overall", "degradation=noise", "length_s=1"} <= set(cells)
    overall = cells["overall"]
    assert overall["in_catalog"] == overall["out_of_catalog"] == 240
    low, high = overall["ci95"]["false_match_rate"]
    assert low <= overall["false_match_rate"] <= high and high - low > 0
    assert overall["false_match_rate"] <= 0.1
    # At a stricter rate, fewer in-catalog queries are answered right.
    assert overall["tpr_at_fmr_0.001"] <= overall["tpr_at_fmr_0.01"] <= 1.0
    assert not overall["measurable_at_fmr_0.001"] and overall["measurable_at_fmr_0.01"]
    assert cells["length_s=3"]["tpr_at_fmr_0.01"] > cells["length_s=1"]["tpr_at_fmr_0.01"]
    plot = Path(report["det_plot"])
    assert plot.is_file() and plot.read_bytes()[:4] == b"\x89PNG"


def test_out_of_catalog_tables_that_hold_indexed_tracks_are_refused(
    calibrated: dict[str, Path], tmp_path: Path
) -> None:
    table = pd.read_csv(calibrated["outside_fit"])
    table.loc[3, "track_id"] = "song2"  # a track the index holds
    table["path"] = [str(calibrated["outside_fit"].parent / p) for p in table["path"]]
    leaky = tmp_path / "leaky.csv"
    table.to_csv(leaky, index=False)
    with pytest.raises(ManifestError, match=r"line 5: query .* of track 'song2'"):
        fit_calibration(str(calibrated["index"]), [str(calibrated["inside"])], [str(leaky)])


def test_damaged_or_stale_calibrations_are_refused(
    calibrated: dict[str, Path], tmp_path: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(calibrated["index"], index)
    (index / CALIBRATION_FILE).unlink()
    with pytest.raises(ValueError, match="needs a calibrated index"):
        Recognizer.load(index, min_probability=0.5)
    (index / CALIBRATION_FILE).write_text('{"systems": {"fingerprint": {"weights": [1]}}')
    with pytest.raises(IndexDirectoryError, match=CALIBRATION_FILE):
        Recognizer.load(index)
    (index / CALIBRATION_FILE).write_bytes((calibrated["index"] / CALIBRATION_FILE).read_bytes())
    (index / "fusion.json").write_text('{"engines": [], "weights": []}')
    with pytest.raises(IndexDirectoryError, match="fitted with another fusion.json"):
        Recognizer.load(index)


def test_a_hybrid_answer_is_calibrated_on_its_fused_scores() -> None:
    """Two engines: the fused ranking (a fitted fusion's probabilities, read as log-odds) gets
    its own model and threshold beside each engine's."""
    from acr import synth
    from acr.audio import resample
    from acr.retrieval.fingerprint.engine import FingerprintEngine
    from acr.retrieval.fusion import Fusion
    from acr.retrieval.melody import MelodyEngine

    rate = 16000
    engines = {"fingerprint": FingerprintEngine(), "melody": MelodyEngine()}
    for seed in range(4):
        audio = synth.synthesize_track(seed, 20.0, rate)
        for engine in engines.values():
            engine.add_audio(str(seed), resample(audio, rate, engine.sample_rate))
    rng = np.random.default_rng(0)
    clips, truths = [], []
    for seed in (*range(4), *range(50, 54)):
        audio = synth.synthesize_track(seed, 20.0, rate)
        for start in rng.uniform(0, 16, size=5):
            clip = audio[int(start * rate) : int((start + 3) * rate)]
            clips.append(clip + rng.normal(0, 0.005, len(clip)).astype(np.float32))
            truths.append(str(seed) if seed < 4 else None)
    unfused = [Recognizer(engines, cascade=False).recognize(c, rate) for c in clips]
    fitted = [(r, t) for r, t in zip(unfused, truths) if t is not None]
    fusion = Fusion.fit(
        [r.engine_matches for r, _ in fitted], [t for _, t in fitted],
        [r.query_features for r, _ in fitted],
    )  # fmt: skip
    recognitions = [Recognizer(engines, fusion, cascade=False).recognize(c, rate) for c in clips]
    answers = {name: [r.engine_matches[name] for r in recognitions] for name in engines}
    answers["hybrid"] = [r.matches for r in recognitions]
    durations = [r.duration_s for r in recognitions]
    calibration = Calibration.fit(answers, durations, truths, 0.05, ("hybrid",))
    assert calibration.systems["hybrid"].scores == "logit"
    assert calibration.systems["melody"].scores == "log1p"
    recognizer = Recognizer(engines, fusion, calibration=calibration)
    answered = [recognizer.recognize(c, rate) for c in clips]
    inside = [(a, t) for a, t in zip(answered, truths) if t is not None]
    outside = [a for a, t in zip(answered, truths) if t is None]
    assert sum(a.status == "ok" for a in outside) <= 1  # 5 % of 20
    assert sum(a.status == "ok" and a.matches[0].track_id == t for a, t in inside) >= 15
    assert all(0 <= a.probability <= 1 for a in answered)

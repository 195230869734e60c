"""acr.monitor.scoring (acr evaluate-monitor): hand-built truth and detection tables with
hand-computed recall, precision, boundary errors and false alarms per hour; the 50 % overlap
rule's edges, one-to-one matching, Wilson intervals and the errors of bad input."""

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from acr.cli import main
from acr.data.manifests import ManifestError
from acr.data.mixes import TRUTH_COLUMNS
from acr.monitor.scoring import evaluate_monitor

Z95 = 1.959963984540054

# Out-of-catalog time: 10 s of speech, 20 s of music, 10 s of silence = 40 s.
TRUTH = [
    # start_s, end_s, kind, track_id, speed_factor, degradation, talk_over
    (0.0, 10.0, "speech", "", None, "", False),
    (10.0, 40.0, "catalog", "A", 1.0, "clean", False),
    (40.0, 60.0, "music", "", None, "", False),
    (60.0, 90.0, "catalog", "B", 1.05, "noise", True),
    (90.0, 100.0, "silence", "", None, "", False),
    (100.0, 120.0, "catalog", "C", 1.0, "clean", False),
]
DETECTIONS = [
    ("mix_000.wav", 10.0, 40.0, "A"),  # exact
    ("mix_000.wav", 60.8, 90.8, "B"),  # shifted by 0.8 s
    ("mix_000.wav", 100.0, 120.0, "D"),  # the wrong track, inside a catalog excerpt
    ("mix_000.wav", 1.0, 8.0, "A"),  # in speech
]


def write_truth(path: Path, rows=TRUTH, recording: str = "mix_000.wav") -> Path:
    table = pd.DataFrame(
        [
            {
                "recording": recording,
                "start_s": start,
                "end_s": end,
                "kind": kind,
                "track_id": track_id,
                "reference_start_s": 0.0 if kind == "catalog" else None,
                "reference_end_s": (end - start) * (speed or 1) if kind == "catalog" else None,
                "speed_factor": speed,
                "degradation": degradation,
                "talk_over": talk_over,
            }
            for start, end, kind, track_id, speed, degradation, talk_over in rows
        ]
    )
    table.to_csv(path, index=False)
    return path


def write_detections(path: Path, rows) -> Path:
    table = pd.DataFrame(rows, columns=["recording", "start_s", "end_s", "track_id"])
    table["probability"] = 0.9
    if path.suffix == ".jsonl":
        table.to_json(path, orient="records", lines=True)
    else:
        table.to_csv(path, index=False)
    return path


def score(tmp_path: Path, detections, truth=TRUTH, suffix: str = ".csv") -> dict:
    return evaluate_monitor(
        str(write_detections(tmp_path / f"detections{suffix}", detections)),
        str(write_truth(tmp_path / "truth.csv", truth)),
    )


def wilson(successes: int, total: int) -> tuple[float, float]:
    """The Wilson score interval, written out (Wilson 1927)."""
    share = successes / total
    centre = (share + Z95**2 / (2 * total)) / (1 + Z95**2 / total)
    half = (
        Z95
        / (1 + Z95**2 / total)
        * math.sqrt(share * (1 - share) / total + Z95**2 / (4 * total**2))
    )
    return centre - half, centre + half


def test_hand_computed_recall_precision_boundary_error_and_false_alarms(tmp_path: Path) -> None:
    report = score(tmp_path, DETECTIONS, suffix=".jsonl")
    overall = report["overall"]
    assert (overall["truth_segments"], overall["detections"], overall["matched"]) == (3, 4, 2)
    assert overall["recall"] == pytest.approx(2 / 3)
    assert overall["precision"] == pytest.approx(2 / 4)
    assert overall["recall_ci95"] == pytest.approx(wilson(2, 3))
    assert overall["precision_ci95"] == pytest.approx(wilson(2, 4))
    # errors 0, 0 (A) and 0.8, 0.8 (B): pooled median 0.4
    assert overall["median_boundary_error_s"] == pytest.approx(0.4)
    assert overall["median_start_error_s"] == pytest.approx(0.4)
    assert overall["median_end_error_s"] == pytest.approx(0.4)
    # only the detection in speech is a false alarm: the wrong track D lies in an excerpt
    assert overall["false_alarms"] == 1
    assert overall["out_of_catalog_hours"] == pytest.approx(40 / 3600)
    assert overall["false_alarms_per_hour"] == pytest.approx(90.0)
    assert [alarm["line"] for alarm in report["false_alarm_detections"]] == [4]  # JSONL line
    assert [missed["track_id"] for missed in report["missed"]] == ["C"]
    verdicts = {verdict["metric"]: verdict["met"] for verdict in report["targets"]}
    assert verdicts == {"recall": False, "precision": False, "median_boundary_error_s": True,
                        "false_alarms_per_hour": False}  # fmt: skip


def test_buckets_split_by_degradation_talk_over_speed_change_and_length(tmp_path: Path) -> None:
    buckets = score(tmp_path, DETECTIONS)["buckets"]
    assert set(buckets) == {"degradation=clean", "degradation=noise", "talk_over=no",
                            "talk_over=yes", "speed_change=no", "speed_change=yes",
                            "length=10-30s", "length=30-60s"}  # fmt: skip
    assert buckets["degradation=noise"]["recall"] == 1.0
    assert buckets["speed_change=yes"]["median_boundary_error_s"] == pytest.approx(0.8)
    assert buckets["degradation=clean"]["recall"] == pytest.approx(1 / 2)  # A found, C missed
    # C (20 s) is missed, and the wrong-track detection over it is its bucket's only one
    assert buckets["length=10-30s"]["recall"] == 0.0
    assert (buckets["length=10-30s"]["detections"], buckets["length=10-30s"]["precision"]) == (1, 0)
    assert buckets["length=30-60s"]["precision"] == 1.0


@pytest.mark.parametrize(
    ("start_s", "end_s", "matched"),
    [
        (25.0, 40.0, True),  # the intersection is exactly half of the 30-s truth
        (25.01, 40.0, False),  # just under half
        (0.0, 100.0, True),  # the truth is 30 % of the detection: still a match
        (10.0, 24.9, False),
    ],
)
def test_a_match_needs_half_of_the_truth_segment(
    tmp_path: Path, start_s: float, end_s: float, matched: bool
) -> None:
    overall = score(tmp_path, [("mix_000.wav", start_s, end_s, "A")])["overall"]
    assert overall["matched"] == int(matched)


def test_matching_is_one_to_one_by_largest_intersection(tmp_path: Path) -> None:
    truth = [
        (0.0, 20.0, "catalog", "A", 1.0, "clean", False),
        (20.0, 40.0, "catalog", "A", 1.0, "clean", False),  # the same track again
        (40.0, 60.0, "speech", "", None, "", False),
    ]
    detections = [
        ("mix_000.wav", 2.0, 38.0, "A"),  # 18 s of the first, 18 s of the second
        ("mix_000.wav", 0.0, 20.0, "A"),  # all of the first
        ("mix_000.wav", 1.0, 20.0, "A"),  # a duplicate of the first
    ]
    report = score(tmp_path, detections, truth)
    overall = report["overall"]
    # greedy: (det 2, truth 1) = 20 s; det 3 (19 s) and det 1 (18 s) want truth 1, taken;
    # det 1 then takes truth 2 (18 s); det 3 is left
    assert (overall["matched"], overall["recall"], overall["precision"]) == (2, 1.0, 2 / 3)
    # pairs: (0-20 vs 0-20): 0 and 0; (2-38 vs 20-40): start 18, end 2
    assert overall["median_start_error_s"] == pytest.approx(9.0)
    assert overall["median_end_error_s"] == pytest.approx(1.0)
    assert overall["median_boundary_error_s"] == pytest.approx(1.0)
    assert overall["false_alarms"] == 0  # the duplicate lies in catalog time


@pytest.mark.parametrize(("start_s", "false_alarm"), [(99.5, False), (98.0, True)])
def test_a_detection_must_reach_a_second_into_out_of_catalog_time(
    tmp_path: Path, start_s: float, false_alarm: bool
) -> None:
    """A wrong track over C (100-120) that spills into the silence before it."""
    overall = score(tmp_path, [("mix_000.wav", start_s, 120.0, "D")])["overall"]
    assert overall["false_alarms"] == int(false_alarm)


def test_a_short_detection_in_speech_is_a_false_alarm(tmp_path: Path) -> None:
    overall = score(tmp_path, [("mix_000.wav", 3.0, 3.8, "A")])["overall"]
    assert overall["false_alarms"] == 1


@pytest.mark.parametrize(("successes", "total"), [(0, 3), (3, 3), (0, 0), (1, 1)])
def test_intervals_are_never_zero_width(successes: int, total: int) -> None:
    from acr.retrieval.metrics import proportion_interval

    low, high = proportion_interval(successes, total)
    assert 0.0 <= low < high <= 1.0


def test_perfect_and_empty_detections_keep_wide_intervals(tmp_path: Path) -> None:
    perfect = [("mix_000.wav", 10.0, 40.0, "A"), ("mix_000.wav", 60.0, 90.0, "B"),
               ("mix_000.wav", 100.0, 120.0, "C")]  # fmt: skip
    overall = score(tmp_path, perfect)["overall"]
    assert overall["recall"] == overall["precision"] == 1.0
    assert overall["recall_ci95"][0] < 1.0 and overall["false_alarms_per_hour"] == 0.0
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    report = evaluate_monitor(str(empty), str(write_truth(tmp_path / "t.csv")))
    assert report["overall"]["recall"] == 0.0
    assert report["overall"]["precision"] is None
    assert report["overall"]["precision_ci95"] == [0.0, 1.0]


def test_a_recording_given_as_a_path_is_the_truth_recording_of_that_name(tmp_path: Path) -> None:
    report = score(tmp_path, [("/data/mixes/mix_000.wav", 10.0, 40.0, "A")])
    assert report["overall"]["matched"] == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([("other.wav", 1.0, 2.0, "A")], "line 2: column recording: 'other.wav'"),
        (
            [("mix_000.wav", 1.0, 2.0, "A"), ("mix_000.wav", "soon", 2.0, "A")],
            "line 3: column start_s: 'soon' is not a number",
        ),  # fmt: skip
        ([("mix_000.wav", 5.0, 2.0, "A")], "line 2: column end_s: 2.0 is not after start_s"),
        ([("mix_000.wav", 1.0, 2.0, None)], "line 2: column track_id: empty track_id"),
    ],
)
def test_bad_detections_name_the_file_line_and_column(tmp_path: Path, rows, message) -> None:
    with pytest.raises(ManifestError, match=message) as error:
        score(tmp_path, rows)
    assert "detections.csv" in str(error.value)


def test_missing_columns_and_bad_truth_name_the_file(tmp_path: Path) -> None:
    truth = write_truth(tmp_path / "truth.csv")
    detections = tmp_path / "no_track.csv"
    detections.write_text("recording,start_s,end_s\nmix_000.wav,1,2\n")
    with pytest.raises(ManifestError, match=r"no_track.csv: missing column\(s\) \['track_id'\]"):
        evaluate_monitor(str(detections), str(truth))
    bad_kind = write_truth(tmp_path / "bad.csv", [(0.0, 5.0, "jingle", "", None, "", False)])
    with pytest.raises(ManifestError, match="bad.csv: line 2: column kind: 'jingle'"):
        evaluate_monitor(str(detections), str(bad_kind))
    not_json = tmp_path / "detections.jsonl"
    not_json.write_text('{"recording": "mix_000.wav"\n')
    with pytest.raises(ManifestError, match="detections.jsonl: cannot read it as a table"):
        evaluate_monitor(str(not_json), str(truth))


def test_cli_prints_the_table_and_writes_the_report(tmp_path: Path, capsys) -> None:
    detections = write_detections(tmp_path / "d.csv", DETECTIONS)
    truth = write_truth(tmp_path / "truth.csv")
    output = tmp_path / "report.json"
    status = main(["evaluate-monitor", "--detections", str(detections), "--truth", str(truth),
                   "--output", str(output)])  # fmt: skip
    assert status == 0
    printed = capsys.readouterr().out
    assert (
        "degradation=noise" in printed
        and "false_alarms_per_hour" in printed
        and "NOT met" in printed
    )
    assert json.loads(output.read_text())["overall"]["false_alarms"] == 1
    bad = write_detections(tmp_path / "bad.csv", [("nowhere.wav", 1.0, 2.0, "A")])
    assert main(["evaluate-monitor", "--detections", str(bad), "--truth", str(truth)]) == 1
    assert "bad.csv: line 2: column recording" in capsys.readouterr().err


def test_jsonl_events_of_acr_monitor_score_as_their_end_rows(tmp_path: Path) -> None:
    """acr monitor --format jsonl writes start, end and gap events: only ends are segments."""
    truth = tmp_path / "truth.csv"
    pd.DataFrame(
        [
            ("mix_000.wav", 0.0, 20.0, "catalog", "a", 5.0, 25.0, 1.0, "clean", False),
            ("mix_000.wav", 20.0, 40.0, "speech", "", None, None, None, "", False),
        ],
        columns=list(TRUTH_COLUMNS),
    ).to_csv(truth, index=False)
    row = {
        "recording": "mix_000.wav", "track_id": "a", "reference_start_s": 5.0,
        "speed_factor": 1.0, "pitch_semitones": 0.0, "probability": None, "windows": 6,
    }  # fmt: skip
    events = [
        {"event": "start", **row, "start_s": 0.2, "end_s": 7.5, "reference_end_s": 12.3},
        {
            "event": "gap",
            "recording": "mix_000.wav",
            "start_s": 22.0,
            "end_s": 23.0,
            "reason": "silent",
        },  # fmt: skip
        {"event": "end", **row, "start_s": 0.2, "end_s": 19.8, "reference_end_s": 24.6},
    ]
    detections = tmp_path / "detections.jsonl"
    detections.write_text("".join(json.dumps(event) + "\n" for event in events))
    report = evaluate_monitor(str(detections), str(truth))
    assert report["overall"]["recall"] == 1.0 and report["overall"]["precision"] == 1.0
    assert report["overall"]["detections"] == 1

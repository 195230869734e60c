"""acr index / recognize / evaluate (acr.cli.retrieval) in process, on a generated catalog."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import save_audio
from acr.cli import main
from acr.synth import synthesize_track

RATE = 16000


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, song_folder) -> Path:
    """A 5-song catalog, its fingerprint index and a small query set."""
    root = tmp_path_factory.mktemp("workspace")
    song_folder(5, 15.0, RATE, "ogg", folder=root / "catalog")
    assert (
        main(
            [
                "index",
                "--catalog",
                str(root / "catalog"),
                "--output",
                str(root / "index"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "make-queries",
                "--catalog",
                str(root / "catalog"),
                "--output",
                str(root / "queries"),
                "--lengths_s",
                "[3]",
                "--degradations",
                "[clean, noise]",
                "--seed",
                "1",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    save_audio(root / "silent.wav", np.zeros(3 * RATE, np.float32), RATE)
    save_audio(root / "short.wav", synthesize_track(0, 0.2, RATE), RATE)
    (root / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return root


def test_recognize_jsonl_with_error_statuses(workspace: Path, capsys) -> None:
    clip = workspace / "clip.wav"
    save_audio(clip, synthesize_track(2, 15.0, RATE)[5 * RATE : 8 * RATE], RATE)
    files = [
        str(clip),
        str(workspace / "silent.wav"),
        str(workspace / "short.wav"),
        str(workspace / "broken.wav"),
    ]
    assert main(["recognize", "--index", str(workspace / "index"), *files]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_id = {row["query_id"]: row for row in rows}
    assert by_id["clip"]["status"] == "ok"
    assert by_id["clip"]["matches"][0]["track_id"] == "song2"
    assert by_id["clip"]["matches"][0]["offset_s"] == pytest.approx(5.0, abs=0.1)
    assert by_id["silent"]["error"].startswith("silent")
    assert by_id["short"]["error"].startswith("too short (0.20 s")
    assert by_id["broken"]["error"].startswith("unreadable")


def test_recognize_csv_rows_are_best_first(workspace: Path) -> None:
    output = workspace / "answers.csv"
    assert (
        main(
            [
                "recognize",
                "--index",
                str(workspace / "index"),
                "--queries",
                str(workspace / "queries" / "queries.csv"),
                "--format",
                "csv",
                "--top_k",
                "3",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    answers = pd.read_csv(output)
    assert list(answers.columns) == ["query_id", "track_1", "track_2", "track_3", "status"]
    truth = pd.read_csv(workspace / "queries" / "queries.csv").set_index("query_id")["track_id"]
    clean = answers[answers["query_id"].str.contains("-clean-")]
    assert (clean["track_1"].to_numpy() == truth[clean["query_id"]].to_numpy()).all()


def test_evaluate_prints_and_writes_a_report(workspace: Path, capsys) -> None:
    report_path = workspace / "report.json"
    assert (
        main(
            [
                "evaluate",
                "--index",
                str(workspace / "index"),
                "--queries",
                str(workspace / "queries" / "queries.csv"),
                "--output",
                str(report_path),
                "--bootstrap",
                "200",
            ]
        )
        == 0
    )
    assert "95% bootstrap" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    fingerprint = report["systems"]["fingerprint"]
    assert fingerprint["overall"]["queries"] == 10
    assert fingerprint["degradation=clean"]["top1"] == 1.0
    assert set(fingerprint["degradation=clean"]["ci95"]) == {"top1", "top5", "mrr"}


def test_failures_exit_non_zero_with_one_line(workspace: Path, capsys) -> None:
    assert (
        main(["index", "--catalog", str(workspace / "nowhere"), "--output", str(workspace / "x")])
        == 1
    )
    assert "catalog does not exist" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--index",
                str(workspace / "catalog"),
                "--queries",
                str(workspace / "queries" / "queries.csv"),
            ]
        )
        == 1
    )
    assert "not an acr index" in capsys.readouterr().err

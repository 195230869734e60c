"""`acr status` (acr.cli.status) on heartbeats written by hand and by real index and evaluate
jobs."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from acr.cli import main
from acr.retrieval.store import load_engines
from acr.status import Heartbeat, read_status

RATE = 16000


def row(name: str, value: str, printed: str) -> bool:
    """Whether ``acr status`` printed ``name`` and ``value`` as a row."""
    return (
        re.search(rf"^\s*{re.escape(name)}\s+{re.escape(value)}$", printed, re.MULTILINE)
        is not None
    )


def test_status_of_a_finished_job(tmp_path: Path, clock, capsys: pytest.CaptureFixture) -> None:
    heartbeat = Heartbeat(tmp_path, "fit", clock=clock)
    heartbeat.update(stage="training", done=0, total=5000, unit="steps")
    clock.now = 100.0
    heartbeat.update(done=1234, force=True)
    heartbeat.finish(steps=1234)
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert row("job", "fit", out) and row("state", "finished", out)
    assert "1234/5000 steps (24.7 %)" in out and "12.3 steps/s" in out
    assert row("steps", "1234", out)


def test_status_of_a_running_job(tmp_path: Path, clock, capsys: pytest.CaptureFixture) -> None:
    heartbeat = Heartbeat(tmp_path, "fit", clock=clock)
    heartbeat.update(stage="training", done=0, total=5000, unit="steps")
    clock.now = 10.0
    heartbeat.update(done=100, force=True)
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert row("state", "running", out) and row("ETA", "0:08:10", out)


def test_status_says_when_the_process_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    finished = subprocess.Popen(["true"])
    finished.wait()
    Heartbeat(tmp_path, "index").update(stage="decoding/extracting", done=5, total=9)
    status = json.loads((tmp_path / "status.json").read_text())
    status["pid"] = finished.pid
    (tmp_path / "status.json").write_text(json.dumps(status))
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"stopped: process {finished.pid} is gone (killed or crashed)" in out
    assert "last heartbeat" in out


def test_status_without_a_heartbeat_fails(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["status", str(tmp_path)]) == 1
    assert f"no status.json in {tmp_path}" in capsys.readouterr().err


def test_status_of_a_sweep_lists_its_runs(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    Heartbeat(tmp_path / "runs" / "a", "fit").finish(steps=6)
    Heartbeat(tmp_path / "runs" / "b", "fit").fail(RuntimeError("out of memory"))
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "runs" / "a") in out and str(tmp_path / "runs" / "b") in out
    assert "finished" in out and "RuntimeError: out of memory" in out


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory, song_folder) -> Path:
    """Three generated songs, their fingerprint index and clean queries."""
    root = tmp_path_factory.mktemp("catalog")
    song_folder(3, 10.0, RATE, "ogg", folder=root / "songs")
    index = ["index", "--catalog", str(root / "songs"), "--output", str(root / "index")]
    assert main([*index, "--workers", "1"]) == 0
    queries = ["data", "make-queries", "--catalog", str(root / "songs")]
    queries += [
        "--output",
        str(root / "queries"),
        "--lengths_s",
        "[3]",
        "--degradations",
        "[clean]",
    ]
    assert main([*queries, "--seed", "1", "--workers", "1"]) == 0
    return root


def test_a_finished_index_build_reports_its_totals(
    catalog: Path, capsys: pytest.CaptureFixture
) -> None:
    status = read_status(catalog / "index")
    assert (status["job"], status["state"]) == ("index", "finished")
    assert status["progress"] == {"done": 3, "total": 3, "unit": "tracks"}
    assert status["totals"]["tracks"] == 3 and status["totals"]["failed"] == 0
    fingerprint = load_engines(catalog / "index")["fingerprint"]
    assert status["totals"]["items"]["fingerprint"] == fingerprint.item_count > 0
    capsys.readouterr()
    assert main(["status", str(catalog / "index")]) == 0
    out = capsys.readouterr().out
    assert "3/3 tracks (100.0 %)" in out
    assert row("tracks", "3", out) and row("failed", "0", out)


def test_evaluate_reports_its_queries(catalog: Path) -> None:
    queries = catalog / "queries" / "queries.csv"
    report = catalog / "report" / "evaluation.json"
    evaluate = ["evaluate", "--index", str(catalog / "index"), "--queries", str(queries)]
    assert main([*evaluate, "--output", str(report), "--bootstrap", "10"]) == 0
    count = len(json.loads(report.read_text())["per_query"]["fingerprint"]["query_id"])
    status = read_status(report.parent)
    assert (status["job"], status["state"]) == ("evaluate", "finished")
    assert status["progress"] == {"done": count, "total": count, "unit": "queries"}
    assert status["totals"]["queries"] == count and status["totals"]["errors"] == 0
    assert status["totals"]["top1"]["fingerprint"] == pytest.approx(1.0)

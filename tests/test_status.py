"""Heartbeats (acr.status): throttled atomic writes, rates, and `acr status` on real runs."""

import json
import re
import subprocess
import time
from pathlib import Path

import pytest
from lightning.pytorch import Callback, LightningModule, Trainer

from acr.audio import save_audio
from acr.cli import main
from acr.status import Heartbeat, read_status
from acr.synth import synthesize_track

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")
RATE = 16000
# Longer than RunStatus's 2-s write interval: the step after this pause is always written.
PAUSE_S = 2.1


def row(name: str, value: str, printed: str) -> bool:
    """Whether ``acr status`` printed ``name`` and ``value`` as a row."""
    return (
        re.search(rf"^\s*{re.escape(name)}\s+{re.escape(value)}$", printed, re.MULTILINE)
        is not None
    )


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_updates_within_the_interval_write_once(tmp_path: Path) -> None:
    clock = Clock()
    heartbeat = Heartbeat(tmp_path, "fit", min_interval_s=2.0, clock=clock)
    heartbeat.update(stage="training", done=1, total=10, unit="steps")
    assert read_status(tmp_path)["progress"] == {"done": 1, "total": 10, "unit": "steps"}
    clock.now = 1.0
    heartbeat.update(done=2)
    assert read_status(tmp_path)["progress"]["done"] == 1  # throttled
    heartbeat.update(done=3, force=True)
    assert read_status(tmp_path)["progress"]["done"] == 3
    clock.now = 2.5
    heartbeat.update(done=4)
    assert read_status(tmp_path)["progress"]["done"] == 3  # 1.5 s after the forced write
    heartbeat.update(stage="validation")  # a new stage is written at once
    status = read_status(tmp_path)
    assert (status["stage"], status["progress"]["done"]) == ("validation", 4)
    assert not list(tmp_path.glob(".*.tmp"))


def test_throughput_and_eta_over_the_job_since_the_first_progress(tmp_path: Path) -> None:
    clock = Clock()
    heartbeat = Heartbeat(tmp_path, "index", min_interval_s=0.0, clock=clock)
    heartbeat.update(done=40, total=100, unit="tracks")  # resumed: 40 were done before
    status = read_status(tmp_path)
    assert status["throughput"] is None and status["eta_s"] is None
    clock.now = 10.0
    heartbeat.update(done=60)
    status = read_status(tmp_path)
    assert status["throughput"] == pytest.approx(2.0)
    assert status["eta_s"] == pytest.approx(20.0)
    clock.now = 20.0
    heartbeat.update(done=70)
    status = read_status(tmp_path)
    assert status["throughput"] == pytest.approx(1.5)
    assert status["eta_s"] == pytest.approx(20.0)


def test_fail_records_the_error_type_and_message(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="bad"), Heartbeat(tmp_path, "evaluate") as heartbeat:
        heartbeat.update(stage="recognising", done=3, total=9, unit="queries")
        raise ValueError("bad")
    status = read_status(tmp_path)
    assert status["state"] == "failed" and status["last_error"] == "ValueError: bad"
    assert status["progress"]["done"] == 3


def test_finish_records_totals(tmp_path: Path) -> None:
    heartbeat = Heartbeat(tmp_path, "index", clock=Clock())
    heartbeat.update(done=3, total=3, unit="tracks")
    heartbeat.update(details_that_wait="throttled")
    heartbeat.finish(tracks=3, failed=0, items={"fingerprint": 1200})
    status = read_status(tmp_path)
    assert status["state"] == "finished"
    assert status["totals"] == {"tracks": 3, "failed": 0, "items": {"fingerprint": 1200}}
    assert status["details"] == {"details_that_wait": "throttled"}
    assert status["started_at"] <= status["updated_at"]


def test_unwritable_directory_warns_once_and_the_job_goes_on(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    heartbeat = Heartbeat(tmp_path / "file" / "run", "fit", min_interval_s=0.0)
    with pytest.warns(UserWarning, match="goes on without a heartbeat") as warned:
        heartbeat.update(done=1)
        heartbeat.update(done=2)
        heartbeat.fail("still no directory")
    assert len(warned) == 1


def test_status_of_a_finished_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clock = Clock()
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


def test_status_of_a_running_job(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    clock = Clock()
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


class StatusProbe(Callback):
    """Reads status.json during a fit: once the heartbeat has handled step 4."""

    def __init__(self) -> None:
        self.seen: dict | None = None

    def on_train_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: object, index: int
    ) -> None:
        if trainer.global_step == 3:
            time.sleep(PAUSE_S)  # the end of step 4 is then due a write
        if trainer.global_step == 4:
            self.seen = read_status(trainer.default_root_dir)


@pytest.mark.slow
def test_a_running_fit_reports_its_step_and_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    cli = main(
        [
            "fit",
            "--config",
            TINY,
            "--trainer.max_steps",
            "6",
            "--trainer.callbacks+=test_status.StatusProbe",
        ]
    )
    (probe,) = [c for c in cli.trainer.callbacks if type(c).__name__ == "StatusProbe"]
    seen = probe.seen
    assert (seen["job"], seen["state"], seen["stage"]) == ("fit", "running", "training")
    assert seen["progress"] == {"done": 4, "total": 6, "unit": "steps"}
    assert seen["throughput"] > 0 and seen["eta_s"] > 0
    assert Path(seen["last_checkpoint"]).is_file()  # tiny.yaml saves last.ckpt every 2 steps
    assert "train/loss" in seen["details"]
    status = read_status(tmp_path / "runs" / "tiny")
    assert status["state"] == "finished" and status["totals"]["steps"] == 6
    assert Path(status["totals"]["last_checkpoint"]).name == "last.ckpt"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three generated songs, their fingerprint index and clean queries."""
    root = tmp_path_factory.mktemp("catalog")
    for seed in range(3):
        save_audio(root / "songs" / f"song{seed}.ogg", synthesize_track(seed, 10.0, RATE), RATE)
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
    assert status["totals"]["items"]["fingerprint"] > 0
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

"""acr.status: heartbeats are throttled atomic writes with a rate, an ETA, the totals of a
finished job and the error of a failed one."""

from pathlib import Path

import pytest

from acr.status import Heartbeat, read_status


def test_updates_within_the_interval_write_once(tmp_path: Path, clock) -> None:
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


def test_throughput_and_eta_over_the_job_since_the_first_progress(tmp_path: Path, clock) -> None:
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


def test_finish_records_totals(tmp_path: Path, clock) -> None:
    heartbeat = Heartbeat(tmp_path, "index", clock=clock)
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

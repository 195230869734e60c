"""acr pipeline: the synthetic chain end to end, skipped when current, redone from what changed,
and resumed after a SIGKILL in the middle of its fit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from acr.runs.pipeline import PIPELINE_FILE, SUMMARY_FILE, print_summary, run_pipeline
from acr.status import describe, read_status

SYNTHETIC_ORDER = [
    "prepare", "inspect", "validate", "fit", "index", "queries", "fuse", "evaluate", "report",
]  # fmt: skip
CHANGING_EACH_RUN = {SUMMARY_FILE, "status.json", ".pipeline.lock"}


@pytest.fixture
def tiny(tiny_config: str) -> dict[str, Any]:
    """run_pipeline settings for a few seconds of work per stage: tiny.yaml's 4 + 3 six-second
    songs, 2 lengths x 2 degradations of queries per held-out track."""
    return {
        "fit_config": tiny_config,
        "query_lengths_s": [1.0, 3.0],
        "query_degradations": ["clean", "noise"],
        "bootstrap": 100,
        "validate_sample": None,
        "workers": 1,
        "wandb": "disabled",
    }


def files_of(output: Path) -> dict[str, tuple[bytes, int]]:
    """Every file (content and modification time) the pipeline keeps, but the summary and
    heartbeat that each run rewrites."""
    return {
        str(path.relative_to(output)): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(output.rglob("*"))
        if path.is_file() and path.name not in CHANGING_EACH_RUN
    }


@pytest.mark.slow
def test_the_synthetic_chain_runs_skips_when_current_and_redoes_what_changed(
    tmp_path: Path, tiny: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "pipeline"
    summary = run_pipeline(output=str(output), **tiny)

    assert [outcome.stage for outcome in summary.stages] == SYNTHETIC_ORDER
    assert set(summary.statuses().values()) == {"ran"}
    for name, path in summary.artifacts.items():
        assert Path(path).exists(), name
    # The fit trained on the data the pipeline generated and validated: one data set in data/.
    assert [path.name for path in (output / "data").iterdir()] == [
        Path(summary.artifacts["manifest_dir"]).name
    ]
    fit_config = next((output / "fit").glob("csv/version_0/config.yaml")).read_text()
    assert f"data_dir: {output / 'data'}" in fit_config
    # 3 validation songs and 1 second version are held out and indexed: 4 x 2 x 2 queries.
    assert summary.queries == 16
    report = json.loads(Path(summary.artifacts["evaluation"]).read_text())
    assert set(summary.top1) == {"fingerprint", "embedding", "melody", "hybrid"}
    for system, buckets in report["systems"].items():
        assert summary.top1[system] == {bucket: cell["top1"] for bucket, cell in buckets.items()}
        ranks = report["per_query"][system]["rank"]
        assert summary.top1[system]["overall"] == pytest.approx(
            sum(rank == 1 for rank in ranks) / len(ranks)
        )
        assert all(0.0 <= top1 <= 1.0 for top1 in summary.top1[system].values())
    assert {"degradation=clean", "degradation=noise", "length_s=1", "length_s=3"} <= set(
        summary.top1["hybrid"]
    )
    kept = json.loads((output / SUMMARY_FILE).read_text())
    assert kept["top1"] == summary.top1 and kept["artifacts"] == summary.artifacts
    assert read_status(output)["state"] == "finished"
    # The same test excerpts damaged by the field suite's generators, evaluated beside them.
    field_queries = pd.read_csv(summary.artifacts["field_queries"])
    assert set(field_queries["suite"]) == {"field"} and summary.field_queries == 16
    test_queries = pd.read_csv(summary.artifacts["test_queries"])
    assert list(field_queries["offset_s"]) == list(test_queries["offset_s"])
    field_report = json.loads(Path(summary.artifacts["field_evaluation"]).read_text())
    assert set(summary.field_top1) == set(summary.top1)
    for system, buckets in field_report["systems"].items():
        assert summary.field_top1[system] == {b: cell["top1"] for b, cell in buckets.items()}
    assert kept["field_top1"] == summary.field_top1
    print_summary(summary)
    printed = capsys.readouterr().out
    assert "degradation=noise" in printed and "evaluation" in printed
    assert "16 field-suite queries" in printed
    gap = summary.field_top1["hybrid"]["overall"] - summary.top1["hybrid"]["overall"]
    assert f"({gap:+.3f})" in printed

    before = files_of(output)
    again = run_pipeline(output=str(output), **tiny)
    assert set(again.statuses().values()) == {"skipped"}
    assert files_of(output) == before  # nothing rewritten, not even pipeline.json
    assert again.top1 == summary.top1 and again.artifacts == summary.artifacts

    shorter = run_pipeline(
        output=str(output), **{**tiny, "query_lengths_s": [1.0], "field_queries": False}
    )
    statuses = shorter.statuses()
    assert [statuses[stage] for stage in SYNTHETIC_ORDER] == ["skipped"] * 5 + ["ran"] * 4
    assert shorter.queries == 8
    assert shorter.field_top1 == {} and shorter.field_queries == 0
    assert not (output / "queries" / "field").exists()
    assert not (output / "evaluate" / "report-field.json").exists()
    assert not any("length_s=3" in bucket for bucket in shorter.top1["hybrid"])
    checkpoint = summary.artifacts["checkpoint"]
    assert Path(checkpoint).read_bytes() == before[str(Path(checkpoint).relative_to(output))][0]


def test_settings_that_cannot_work_fail_before_any_work(
    tmp_path: Path, tiny_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = tmp_path / "pipeline"
    with pytest.raises(ValueError, match="root: the synthetic source generates"):
        run_pipeline(output=str(output), root=str(tmp_path))
    with pytest.raises(ValueError, match="root: the folder source needs"):
        run_pipeline(output=str(output), source="folder")
    with pytest.raises(FileNotFoundError, match="fit_config: .*missing.yaml does not exist"):
        run_pipeline(output=str(output), fit_config=str(tmp_path / "missing.yaml"))
    folder = {"output": str(output), "source": "folder", "root": str(tmp_path)}
    with pytest.raises(ValueError, match="trains on SyntheticDataModule, not on the folder"):
        run_pipeline(**folder, fit_config=tiny_config)
    with pytest.raises(ValueError, match="train_tracks is not an option of FolderDataModule"):
        run_pipeline(**folder, fit_options={"data.init_args.train_tracks": 4})
    with monkeypatch.context() as patched:
        patched.setenv("PATH", "")
        with pytest.raises(ValueError, match="field_queries: .* need espeak-ng on PATH"):
            run_pipeline(output=str(output), fit_config=tiny_config)
    assert not output.exists()


def fit_checkpointed(fit_dir: Path) -> bool:
    """Whether the fit's heartbeat has recorded a checkpoint (tiny.yaml saves every 2 steps)."""
    try:
        return read_status(fit_dir)["last_checkpoint"] is not None
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_a_pipeline_killed_during_its_fit_resumes_the_fit(
    tmp_path: Path, tiny: dict[str, Any]
) -> None:
    output = tmp_path / "pipeline"
    # tiny.yaml's 6 steps, a checkpoint every 2; one query per track and set after the fit.
    settings = {**tiny, "query_lengths_s": [1.0], "query_degradations": ["clean"]}
    config = tmp_path / "pipeline.yaml"  # the command's --config takes run_pipeline's keys
    config.write_text(yaml.safe_dump({"output": str(output), **settings}))
    command = [sys.executable, "-m", "acr", "pipeline", "--config", str(config)]
    with (tmp_path / "killed.log").open("w") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 300
    while not fit_checkpointed(output / "fit") and time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "killed.log").read_text()
        time.sleep(0.2)
    os.killpg(process.pid, signal.SIGKILL)  # the pipeline and the fit it runs, mid-training
    process.wait()
    steps_before_kill = read_status(output / "fit")["progress"]["done"]
    assert 2 <= steps_before_kill < 6
    record = json.loads((output / PIPELINE_FILE).read_text())["stages"]
    assert [record[stage]["state"] for stage in ("prepare", "inspect", "validate")] == ["done"] * 3
    assert record["fit"]["state"] == "started" and "index" not in record
    assert "stopped: process" in describe(read_status(output))  # the heartbeat tells it died

    finished = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "resumed" in finished.stdout and "top-1 on" in finished.stdout
    summary = json.loads((output / SUMMARY_FILE).read_text())
    statuses = {stage["stage"]: stage["status"] for stage in summary["stages"]}
    assert [statuses[stage] for stage in SYNTHETIC_ORDER] == (
        ["skipped"] * 3 + ["resumed"] + ["ran"] * 5
    )
    log = (output / "fit.log").read_text()
    commands = [line for line in log.splitlines() if line.startswith("$ ")]
    assert len(commands) == 2 and commands[1].endswith("--ckpt_path last")
    assert "Restoring states from the checkpoint path" in log
    # The resumed fit starts at the step of the checkpoint, not at zero, and reaches the end.
    resumed_metrics = (output / "fit" / "csv" / "version_1" / "metrics.csv").read_text()
    steps = [int(line.split(",")[1]) for line in resumed_metrics.splitlines()[1:]]
    assert min(steps) >= 2 and max(steps) == 5
    assert read_status(output / "fit")["totals"]["steps"] == 6
    report = json.loads(Path(summary["artifacts"]["evaluation"]).read_text())
    ranks = report["per_query"]["hybrid"]["rank"]
    assert summary["top1"]["hybrid"]["overall"] == sum(rank == 1 for rank in ranks) / len(ranks)

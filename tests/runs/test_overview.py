"""acr.runs.overview: ``acr status`` without a run directory, on a project built in a tmp dir."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from acr.files import write_json
from acr.runs.overview import describe_project, project_status
from acr.status import Heartbeat

SAMPLE_RATE = 8000
CONFIG = """\
trainer:
  default_root_dir: runs/tiny
data:
  class_path: acr.datamodules.FolderDataModule
  init_args:
    data_dir: data/tiny
    root: music
"""
PLACEHOLDER_CONFIG = """\
data:
  class_path: acr.datamodules.FMADataModule
  init_args:
    data_dir: data/fma
    root: /nonexistent/fma  # placeholder
"""


def age(path: Path, seconds: float) -> None:
    """Make ``path`` look last written ``seconds`` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, song_folder) -> Path:
    """Configs, audio, prepared manifests, four runs, checkpoints and evaluation reports."""
    root = tmp_path_factory.mktemp("project")
    (root / "configs").mkdir()
    (root / "configs" / "tiny.yaml").write_text(CONFIG)
    (root / "configs" / "fma.yaml").write_text(PLACEHOLDER_CONFIG)
    (root / "configs" / "broken.yaml").write_text("data: [unclosed")
    music = song_folder(3, 2.0, SAMPLE_RATE, folder=root / "music")
    (music / "cover.jpg").write_bytes(b"jpeg")
    (music / ".trash").mkdir()
    (music / ".trash" / "old.wav").write_bytes(b"hidden, not counted")
    write_json(root / "data" / "tiny" / "folder-0123456789" / "settings.json", {"root": str(music)})
    write_json(
        root / "data" / "prepared" / "settings.json",
        {"source": "folder", "root": str(music), "tracks": 3},
    )
    (root / "data" / "broken").mkdir()
    (root / "data" / "broken" / "settings.json").write_text("{not json")

    runs = root / "runs"
    finished = runs / "tiny"
    checkpoints = finished / "checkpoints"
    checkpoints.mkdir(parents=True)
    for name in (
        "last.ckpt",
        "best-step300-val_top1=0.700.ckpt",
        "best-step600-val_top1=0.822.ckpt",
    ):
        (checkpoints / name).write_bytes(b"weights")
    with Heartbeat(finished, "fit") as heartbeat:
        heartbeat.update(stage="training", done=600, total=600, unit="steps", force=True)
        heartbeat.finish(
            val_top1=0.822,
            best_checkpoint=str(checkpoints / "best-step600-val_top1=0.822.ckpt"),
        )
    retrieval = finished / "csv" / "version_0" / "retrieval"
    retrieval.mkdir(parents=True)
    write_json(retrieval / "val-latest.json", {"systems": {}, "results": {}})  # not a report

    killed = runs / "killed"
    heartbeat = Heartbeat(killed, "fit")
    heartbeat.status["pid"] = dead_pid()
    heartbeat.update(stage="training", done=150, total=600, unit="steps", force=True)

    named_by_status = runs / "plain"
    with Heartbeat(named_by_status, "fit") as heartbeat:
        heartbeat.finish(val_top1=0.5, best_checkpoint="runs/plain/best.ckpt")  # relative
    (named_by_status / "best.ckpt").write_bytes(b"weights")

    (runs / "corrupt").mkdir()
    (runs / "corrupt" / "status.json").write_text('{"job": "fit", "sta')

    evaluation = runs / "evaluation"
    with Heartbeat(evaluation, "evaluate") as heartbeat:
        heartbeat.finish(queries=40, top1={"fingerprint": 0.9, "hybrid": 0.95})
    report = {
        "queries": 40,
        "errors": [{"query_id": "q7", "error": "silent"}],
        "systems": {
            "fingerprint": {"overall": {"top1": 0.9, "queries": 40}},
            "hybrid": {"overall": {"top1": 0.95, "queries": 40}},
        },
        "per_query": {},
        "index": "runs/index",
    }
    write_json(evaluation / "report.json", report)
    write_json(evaluation / "notes.json", {"comment": "not a report"})
    (evaluation / "truncated.json").write_text('{"queries": 40, "sys')
    too_deep = runs / "a" / "b" / "c" / "d" / "e" / "f" / "g"
    Heartbeat(too_deep, "index").update(stage="embedding", force=True)

    for path, seconds in (
        (finished / "status.json", 3 * 3600),
        (killed / "status.json", 600),
        (named_by_status / "status.json", 7200),
        (named_by_status / "best.ckpt", 7200),
        (runs / "corrupt" / "status.json", 60),
        (evaluation / "status.json", 1800),
        (evaluation / "report.json", 1800),
        (evaluation / "notes.json", 30),
        (evaluation / "truncated.json", 10),
        (checkpoints / "best-step600-val_top1=0.822.ckpt", 3 * 3600),
        (checkpoints / "best-step300-val_top1=0.700.ckpt", 4 * 3600),
    ):
        age(path, seconds)
    return root


@pytest.fixture(scope="module")
def status(project: Path) -> dict:
    return project_status(project, limit=10)


def test_runs_are_listed_newest_first_and_a_dead_process_shows_as_stopped(status: dict) -> None:
    listed = [(run["path"], run["job"], run["state"]) for run in status["runs"]]
    assert listed == [
        ("runs/corrupt", None, "unreadable"),
        ("runs/killed", "fit", "stopped"),
        ("runs/evaluation", "evaluate", "finished"),
        ("runs/plain", "fit", "finished"),
        ("runs/tiny", "fit", "finished"),
    ]
    assert status["counts"]["runs"] == 5  # runs/a/b/c/d/e/f/g is deeper than depth 6
    killed = status["runs"][1]
    assert killed["stage"] == "training"
    assert killed["progress"] == {"done": 150, "total": 600, "unit": "steps"}
    assert status["runs"][0]["error"].startswith("JSONDecodeError")
    assert status["runs"][4]["totals"]["val_top1"] == 0.822


def test_limit_keeps_the_most_recent(project: Path) -> None:
    status = project_status(project, limit=2)
    assert [run["path"] for run in status["runs"]] == ["runs/corrupt", "runs/killed"]
    assert status["counts"]["runs"] == 5
    assert len(status["best_checkpoints"]) == 2 and len(status["reports"]) == 2
    deeper = project_status(project, limit=10, depth=7)
    assert deeper["counts"]["runs"] == 6


def test_best_checkpoint_of_each_run_from_its_name_or_the_fit_totals(status: dict) -> None:
    best = [
        (checkpoint["path"], checkpoint["val_top1"], checkpoint["step"], checkpoint["from"])
        for checkpoint in status["best_checkpoints"]
    ]
    assert best == [
        ("runs/plain/best.ckpt", 0.5, None, "status.json"),
        ("runs/tiny/checkpoints/best-step600-val_top1=0.822.ckpt", 0.822, 600, "file name"),
    ]
    assert [round(checkpoint["age_s"], -2) for checkpoint in status["best_checkpoints"]] == [
        7200,
        3 * 3600,
    ]


def test_reports_give_overall_top1_per_system_and_corrupt_ones_are_listed(status: dict) -> None:
    truncated, report = status["reports"]
    assert truncated["path"] == "runs/evaluation/truncated.json"
    assert truncated["error"].startswith("JSONDecodeError")
    assert report["path"] == "runs/evaluation/report.json"
    assert report["top1"] == {"fingerprint": 0.9, "hybrid": 0.95}
    assert (report["queries"], report["errors"], report["index"]) == (40, 1, "runs/index")


def test_data_roots_from_configs_and_prepared_manifests(project: Path, status: dict) -> None:
    data = {entry["path"]: entry for entry in status["data"]}
    assert list(data) == [
        "data/fma",
        "/nonexistent/fma",
        "data/tiny",
        "music",
        "data/broken",
        "data/prepared",
    ]
    summary = {
        path: (entry["role"], entry["exists"], entry["prepared"], entry["audio_files"])
        for path, entry in data.items()
    }
    assert summary == {
        "data/fma": ("manifests", False, False, None),
        "/nonexistent/fma": ("audio", False, False, None),
        "data/tiny": ("manifests", True, True, 0),
        "music": ("audio", True, True, 3),
        "data/broken": ("manifests", True, False, 0),
        "data/prepared": ("manifests", True, True, 0),
    }
    assert data["music"]["named_by"] == ["tiny"]
    assert data["/nonexistent/fma"]["named_by"] == ["fma"]
    assert [item["path"] for item in data["music"]["prepared_sets"]] == [
        "data/prepared",
        "data/tiny/folder-0123456789",
    ]
    assert data["data/broken"]["prepared_sets"][0]["error"].startswith("unreadable settings.json")


def test_accelerators_are_what_torch_sees(status: dict) -> None:
    accelerators = status["accelerators"]
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert len(accelerators["cuda"]) == count
    if count == 0 and not accelerators["mps"]:
        assert accelerators["summary"] == f"none: CPU only ({os.cpu_count()} CPUs)"
    else:
        assert accelerators["summary"].startswith("cuda:0" if count else "mps")


def test_describe_project_has_one_section_per_concern(status: dict) -> None:
    text = describe_project(status)
    lines = text.splitlines()
    assert lines[2] == f"accelerators  {status['accelerators']['summary']}"
    assert "runs (5 newest of 5)" in lines
    [killed] = [line for line in lines if line.startswith("  runs/killed ")]
    assert killed.split()[1:5] == ["fit", "stopped", "training", "150/600"]
    assert "(25 %)" in killed and "is gone (killed or crashed)" in killed
    [tiny] = [line for line in lines if line.startswith("  runs/tiny ")]
    assert tiny.endswith("val/top1 0.822")
    [music] = [line for line in lines if line.startswith("  music ")]
    assert music.split()[1:6] == ["audio", "prepared", "(2", "sets,", "3"]
    [placeholder] = [line for line in lines if line.startswith("  /nonexistent/fma ")]
    assert placeholder.split()[1:4] == ["audio", "missing", "-"]
    [report] = [line for line in lines if line.startswith("  runs/evaluation/report.json ")]
    assert "40 queries, 1 failed" in report and "fingerprint 0.900, hybrid 0.950" in report
    assert "  runs/tiny/checkpoints/best-step600-val_top1=0.822.ckpt" in text


def test_an_empty_folder_is_described_without_errors(tmp_path: Path) -> None:
    status = project_status(tmp_path)
    assert (status["data"], status["runs"], status["reports"]) == ([], [], [])
    assert status["runs_dir"] is None
    text = describe_project(status)
    assert "  none: no status.json under runs/ (acr fit writes runs/NAME/)" in text
    assert "  none under runs/ (acr evaluate --output runs/NAME.json)" in text
    assert json.loads(json.dumps(status)) == status  # JSON-ready


@pytest.mark.slow  # a fresh interpreter
def test_acr_status_never_imports_lightning(project: Path) -> None:
    """``acr status``, for the project and for a run, through the command line's own entry."""
    code = (
        "import sys\n"
        "from acr.cli import main\n"
        "assert main(['status']) == 0 and main(['status', 'runs/killed']) == 0\n"
        "print(sorted(name for name in sys.modules if 'lightning' in name))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120,
        cwd=project,
    )  # fmt: skip
    assert "runs/killed" in result.stdout and "acr project" in result.stdout
    assert result.stdout.strip().splitlines()[-1] == "[]"

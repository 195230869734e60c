"""acr.runs.reports (acr report): the four artifacts of a real tiny run, of the run evaluated,
and of a sweep."""

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from fixtures_runs import constructed_result

from acr.cli import main
from acr.runs.sweep import SweepPlan
from acr.runs.sweep_report import write_sweep

ARTIFACTS = ("benchmark.md", "model_card.md", "release_checklist.md", "manifest.json")


@pytest.mark.slow
def test_a_fit_gets_a_benchmark_a_card_a_checklist_and_a_manifest(tiny_run: Path, capsys) -> None:
    assert main(["report", str(tiny_run)]) == 0
    report = tiny_run / "report"
    assert all((report / name).is_file() for name in ARTIFACTS)
    assert (report / "plots" / "top1_by_bucket.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((report / "manifest.json").read_text())
    files = {entry["path"]: entry for entry in manifest["files"]}
    last = tiny_run / "checkpoints" / "last.ckpt"
    assert files["checkpoints/last.ckpt"]["sha256"] == hashlib.sha256(last.read_bytes()).hexdigest()
    assert files["checkpoints/last.ckpt"]["bytes"] == last.stat().st_size
    assert not any(path.startswith("report/") for path in files)
    validation = json.loads(next(tiny_run.glob("**/retrieval/val-latest.json")).read_text())
    queries = validation["results"]["overall"]["queries"]
    card = (report / "model_card.md").read_text()
    assert "`ECAPATDNN`" in card and "`SyntheticDataModule`" in card
    overall = next(line for line in card.splitlines() if line.startswith("| overall |"))
    assert overall.startswith(f"| overall | {queries} |") and overall.count("[") == 2
    assert "no third-party rights" in card and "one training seed" in card
    checklist = (report / "release_checklist.md").read_text()
    assert "- [x] the run finished (status: finished)" in checklist
    assert "- [ ] evaluated on held-out queries" in checklist
    assert "- [ ] results over >= 3 training seeds (here 1)" in checklist
    assert "- [ ] every bucket has >= 100 queries (not: overall" in checklist


@pytest.mark.slow
def test_an_evaluated_run_reports_the_evaluation(
    tiny_run: Path, song_folder, tmp_path: Path
) -> None:
    catalog = song_folder(3, 8.0, 16000, folder=tmp_path / "catalog")
    checkpoint = str(tiny_run / "checkpoints" / "last.ckpt")
    workers = ["--workers", "1"]
    assert main(["index", "--catalog", str(catalog), "--output", str(tmp_path / "index"),
                 "--engine", "embedding", "--checkpoint", checkpoint, *workers]) == 0  # fmt: skip
    assert main(["data", "make-queries", "--catalog", str(catalog), "--output",
                 str(tmp_path / "queries"), "--lengths_s", "[3]", "--degradations",
                 "[clean, noise]", *workers]) == 0  # fmt: skip
    evaluation = tmp_path / "report.json"
    assert main(["evaluate", "--index", str(tmp_path / "index"), "--queries",
                 str(tmp_path / "queries" / "queries.csv"), "--output", str(evaluation),
                 "--bootstrap", "100"]) == 0  # fmt: skip
    output = tmp_path / "evaluated"
    assert main(["report", str(tiny_run), "--evaluation", str(evaluation), "--output",
                 str(output)]) == 0  # fmt: skip
    card = (output / "model_card.md").read_text()
    assert "From `acr evaluate` on 6 held-out queries." in card
    assert "- [x] evaluated on held-out queries" in (output / "release_checklist.md").read_text()


def test_a_sweep_gets_its_arms_over_seeds(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    results = [
        constructed_result(arm, seed, rng.random(200) < rate)
        for seed in range(3)
        for arm, rate in (("k=a", 0.5), ("k=b", 0.9))
    ]
    plan = SweepPlan("c.yaml", [0, 1, 2], [("k", ["a", "b"])], tmp_path, "ab")
    write_sweep(plan, results, [], samples=300)
    assert main(["report", str(tmp_path)]) == 0
    benchmark = (tmp_path / "report" / "benchmark.md").read_text()
    assert "top-1 k=a (validation)" in benchmark and "k=b better" in benchmark
    checklist = (tmp_path / "report" / "release_checklist.md").read_text()
    assert "- [x] results over >= 3 training seeds (here 3)" in checklist


def test_a_directory_without_results_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 1
    assert "no results to report" in capsys.readouterr().err


def written_run(run: Path, data: Path, backbone: Path) -> None:
    """A finished fit's files as acr fit writes them, its config naming absolute paths (a
    --data.init_args.data_dir given absolute, a MERT backbone folder)."""
    config = {
        "seed_everything": 0,
        "trainer": {"max_steps": 10, "default_root_dir": str(run)},
        "model": {
            "class_path": "acr.models.EmbedderModule",
            "init_args": {
                "temperature": 0.1,
                "encoder": {
                    "class_path": "acr.models.MERTAdapter",
                    "init_args": {"backbone": str(backbone)},
                },
            },
        },  # fmt: skip
        "data": {
            "class_path": "acr.datamodules.SyntheticDataModule",
            "init_args": {"data_dir": str(data), "query_lengths_s": [1.0, 3.0]},
        },
    }
    (run / "csv/version_0/retrieval").mkdir(parents=True)
    (run / "csv/version_0/config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"top1": 0.5, "top5": 0.9, "mrr": 0.6, "queries": 12}
    validation = {"step": 10, "results": {"overall": metrics, "degradation=clean": metrics}}
    (run / "csv/version_0/retrieval/val-latest.json").write_text(json.dumps(validation))
    (run / "checkpoints").mkdir()
    (run / "checkpoints/last.ckpt").write_bytes(b"weights")
    (run / "status.json").write_text(json.dumps({"state": "finished"}))


def test_reports_record_paths_relative_to_the_run_not_the_machine(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "tiny"
    written_run(run, tmp_path / "data" / "tiny", tmp_path / "models" / "MERT-v1-95M")
    assert main(["report", str(run)]) == 0
    for name in ARTIFACTS:
        assert str(tmp_path) not in (run / "report" / name).read_text(), name
    manifest = json.loads((run / "report" / "manifest.json").read_text())
    assert manifest["directory"] == ".."
    assert (run / "report" / manifest["directory"]).resolve() == run.resolve()
    card = (run / "report" / "model_card.md").read_text()
    assert '"data_dir": "../../data/tiny"' in card
    assert '"backbone": "../../models/MERT-v1-95M"' in card
    assert "- paths are relative to the run directory" in card
    assert "- checkpoint `checkpoints/last.ckpt`: 7 bytes" in card


def test_a_sweep_report_links_its_plots_from_the_report_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    results = [
        constructed_result(arm, seed, rng.random(20) < 0.5)
        for seed in range(2)
        for arm in ("k=a", "k=b")
    ]
    sweep = tmp_path / "sweep"
    plan = SweepPlan(str(tmp_path / "c.yaml"), [0, 1], [("k", ["a", "b"])], sweep, "ab")
    write_sweep(plan, results, [], samples=50)
    output = tmp_path / "elsewhere" / "report"
    assert main(["report", str(sweep), "--output", str(output)]) == 0
    benchmark = (output / "benchmark.md").read_text()
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", benchmark)
    assert links and all((output / link).is_file() for link in links), links
    assert "- config: `../c.yaml`" in benchmark
    assert str(tmp_path) not in benchmark

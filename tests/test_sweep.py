"""acr sweep: the plan, the statistics wiring on known cases, and a real interrupted sweep."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from acr.audio import save_audio
from acr.cli import main
from acr.runs.analysis import comparisons
from acr.runs.sweep import SweepPlan, fit_command, parse_grid
from acr.runs.sweep_report import log_sweep_to_wandb, write_sweep
from acr.synth import synthesize_track

TINY = str(Path(__file__).parent / "conf" / "tiny.yaml")
STRATEGY = "data.init_args.segment_strategy"


def test_grid_and_runs_follow_the_command_line(tmp_path: Path) -> None:
    grid = parse_grid([f"{STRATEGY}=random,high_energy", "model.init_args.temperature=0.05"])
    plan = SweepPlan("c.yaml", [0, 1, 2], grid, tmp_path)
    runs = plan.runs()
    assert [run.name for run in runs] == [
        f"segment_strategy={strategy}/seed{seed}"
        for strategy in ("random", "high_energy")
        for seed in (0, 1, 2)
    ]
    command = fit_command(plan, runs[3], runs[3].directory(tmp_path))
    assert command[1:] == [
        "-m", "acr", "fit", "--config", "c.yaml", "--seed_everything", "0",
        f"--{STRATEGY}=high_energy", "--model.init_args.temperature=0.05",
        f"--trainer.default_root_dir={runs[3].directory(tmp_path)}",
    ]  # fmt: skip
    with pytest.raises(ValueError, match="expected KEY=VALUE1,VALUE2"):
        parse_grid(["no_values"])
    with pytest.raises(ValueError, match="given twice"):
        parse_grid(["a=1", "a=2"])


def constructed_result(arm: str, seed: int, hits: np.ndarray) -> dict:
    """A run's result.json as acr.runs.sweep writes it, with known per-query outcomes; its queries
    alternate clean and noise."""
    degradations = np.array(["clean", "noise"] * (len(hits) // 2))
    cells = {"overall": hits} | {
        f"degradation={name}": hits[degradations == name] for name in ("clean", "noise")
    }
    return {
        "run": f"{arm}/seed{seed}",
        "arm": arm,
        "seed": seed,
        "grid": {"k": arm.split("=")[1]},
        "command": [],
        "seconds": 1.0,
        "systems": {
            "validation": {
                bucket: {
                    "top1": float(np.mean(cell)),
                    "top5": 1.0,
                    "mrr": 0.5,
                    "queries": len(cell),
                }
                for bucket, cell in cells.items()
            }
        },
        "per_query": {
            "validation": {
                "query_id": [f"q{i}" for i in range(len(hits))],
                "rank": [1 if hit else 3 for hit in hits],
                "buckets": {"degradation": degradations.tolist()},
            }
        },
    }


def test_identical_arms_tie_and_a_clearly_better_arm_wins(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    results = []
    for seed in range(3):
        base = rng.random(400) < 0.6
        better = base | (rng.random(400) < 0.3)
        results += [
            constructed_result("k=a", seed, base),
            constructed_result("k=same_as_a", seed, base),
            constructed_result("k=better", seed, better),
        ]
    grid = [("k", ["a", "same_as_a", "better"])]
    found = {(c["a"], c["b"]): c["buckets"] for c in comparisons(results, grid, samples=1000)}
    for bucket in ("overall", "degradation=clean", "degradation=noise"):
        assert found[("k=a", "k=same_as_a")][bucket]["verdict"] == "no significant difference"
        assert found[("k=a", "k=better")][bucket]["verdict"] == "k=better better"
        assert found[("k=same_as_a", "k=better")][bucket]["difference"] > 0.1
    plan = SweepPlan("c.yaml", [0, 1, 2], grid, tmp_path, "constructed")
    sweep = write_sweep(plan, results, [], samples=500)
    assert sweep["summary"]["k=better"]["validation"]["overall"]["top1"]["seeds"] == 3
    markdown = (tmp_path / "sweep.md").read_text()
    assert "k=better better" in markdown and "no significant difference" in markdown
    assert (tmp_path / "plots" / "top1_validation.png").read_bytes()[:4] == b"\x89PNG"
    run = log_sweep_to_wandb(sweep, tmp_path, "offline")
    table = next(run.glob("files/media/table/comparisons_*.table.json"))
    rows = json.loads(table.read_text())["data"]
    assert ["k", "validation", "k=a", "k=better", "overall"] == rows[3][:5]
    assert rows[3][-1] == "k=better better"
    assert list(run.glob("files/media/images/plots/top1_validation_*.png"))
    assert log_sweep_to_wandb(sweep, tmp_path, "disabled") is None


def sweep_arguments(output: Path) -> list[str]:
    return [
        "sweep", "--config", TINY, "--seeds", "[0, 1, 2]",
        "--grid", f"[{STRATEGY}=random,high_energy, trainer.max_steps=10]",
        "--output", str(output), "--bootstrap", "300",
    ]  # fmt: skip


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    output = tmp_path / "sweep"
    log = (tmp_path / "first.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "acr", *sweep_arguments(output), "--wandb", "disabled"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while len(list(output.glob("runs/*/*/result.json"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, (tmp_path / "first.log").read_text()
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and the fit it is running
    process.wait()
    finished = {path: path.read_bytes() for path in output.glob("runs/*/*/result.json")}
    assert len(finished) >= 2
    assert main([*sweep_arguments(output), "--wandb", "disabled"]) == 0
    for path, content in finished.items():
        assert path.read_bytes() == content  # skipped, not run again
    sweep = json.loads((output / "sweep.json").read_text())
    assert len(sweep["runs"]) == 6 and not sweep["failed"]
    run = next(r for r in sweep["runs"] if r["run"] == "segment_strategy=high_energy/seed2")
    assert run["command"][3:8] == ["fit", "--config", TINY, "--seed_everything", "2"]
    summary = sweep["summary"]["segment_strategy=high_energy"]["validation"]
    assert summary["overall"]["top1"]["seeds"] == 3
    assert 0.0 <= summary["overall"]["top1"]["mean"] <= 1.0
    [comparison] = sweep["comparisons"]
    assert comparison["factor"] == STRATEGY and len(comparison["seeds"]) == 3
    assert comparison["buckets"]["overall"]["verdict"] in {
        "no significant difference",
        "segment_strategy=random better",
        "segment_strategy=high_energy better",
    }
    assert (output / "sweep.md").is_file() and (output / "plots" / "top1_validation.png").is_file()


@pytest.mark.slow
def test_a_sweep_with_evaluation_compares_the_engines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    catalog = tmp_path / "catalog"
    for seed in range(3):
        save_audio(catalog / f"song{seed}.wav", synthesize_track(seed, 10.0, 16000), 16000)
    assert main(["data", "make-queries", "--catalog", str(catalog), "--output", "queries",
                 "--lengths_s", "[3]", "--degradations", "[clean, noise]",
                 "--workers", "1"]) == 0  # fmt: skip
    output = tmp_path / "sweep"
    assert main([
        "sweep", "--config", TINY, "--seeds", "[0]", "--grid", "[trainer.max_steps=10]",
        "--output", str(output), "--wandb", "disabled", "--bootstrap", "200",
        "--evaluate.catalog", str(catalog), "--evaluate.queries", "queries/queries.csv",
        "--evaluate.engine", "hybrid", "--evaluate.workers", "1",
    ]) == 0  # fmt: skip
    sweep = json.loads((output / "sweep.json").read_text())
    assert sweep["source"] == "evaluate"
    systems = sweep["summary"]["base"]
    assert {"fingerprint", "embedding", "hybrid"} <= set(systems)
    assert systems["fingerprint"]["overall"]["queries"] == 6
    pairs = {(c["a"], c["b"]) for c in sweep["comparisons"] if c["factor"] == "system"}
    assert ("embedding", "fingerprint") in pairs or ("fingerprint", "embedding") in pairs
    assert (output / "runs" / "base" / "seed0" / "report.json").is_file()

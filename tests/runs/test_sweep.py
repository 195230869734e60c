"""acr.runs.sweep (acr sweep): the plan from the command line, and real sweeps of the tiny
recipe, interrupted and resumed, and with the engines evaluated."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_runs import recomputed

from acr.cli import main
from acr.runs.sweep import SweepPlan, fit_command, parse_grid

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


def sweep_arguments(config: str, output: Path) -> list[str]:
    return [
        "sweep", "--config", config, "--seeds", "[0, 1, 2]",
        "--grid+", f"{STRATEGY}=random,high_energy", "--grid+", "trainer.max_steps=10",
        "--output", str(output), "--bootstrap", "300",
    ]  # fmt: skip


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_and_reports(tiny_config: str, workdir: Path) -> None:
    output = workdir / "sweep"
    arguments = sweep_arguments(tiny_config, output)
    log = (workdir / "first.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "acr", *arguments, "--wandb", "disabled"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while len(list(output.glob("runs/*/*/result.json"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, (workdir / "first.log").read_text()
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)  # the sweep and the fit it is running
    process.wait()
    finished = {path: path.read_bytes() for path in output.glob("runs/*/*/result.json")}
    assert len(finished) >= 2
    assert main([*arguments, "--wandb", "disabled"]) == 0
    for path, content in finished.items():
        assert path.read_bytes() == content  # skipped, not run again
    sweep = json.loads((output / "sweep.json").read_text())
    assert len(sweep["runs"]) == 6 and not sweep["failed"]
    run = next(r for r in sweep["runs"] if r["run"] == "segment_strategy=high_energy/seed2")
    assert run["command"][3:8] == ["fit", "--config", tiny_config, "--seed_everything", "2"]
    # The summary is the mean over seeds of each run's top-1, itself its queries' ranks.
    results = [json.loads(path.read_text()) for path in output.glob("runs/*/*/result.json")]
    top1 = {arm: [] for arm in ("segment_strategy=random", "segment_strategy=high_energy")}
    for result in results:
        validation = result["systems"]["validation"]["overall"]
        assert validation["top1"] == pytest.approx(
            recomputed(result["per_query"]["validation"])["top1"]
        )
        top1[result["arm"]].append(validation["top1"])
    summary = sweep["summary"]["segment_strategy=high_energy"]["validation"]
    assert summary["overall"]["top1"]["seeds"] == 3
    assert summary["overall"]["top1"]["mean"] == pytest.approx(
        np.mean(top1["segment_strategy=high_energy"])
    )
    [comparison] = sweep["comparisons"]
    assert comparison["factor"] == STRATEGY and len(comparison["seeds"]) == 3
    overall = comparison["buckets"]["overall"]
    assert overall["difference"] == pytest.approx(
        np.mean(top1["segment_strategy=high_energy"]) - np.mean(top1["segment_strategy=random"])
    )
    # Synthetic songs have no quiet intros or breaks: where high_energy draws its anchors,
    # random draws about as often, and 10 steps on 3 seeds cannot tell the two apart.
    assert overall["verdict"] == "no significant difference", overall
    assert (output / "sweep.md").is_file() and (output / "plots" / "top1_validation.png").is_file()


@pytest.mark.slow
def test_a_sweep_with_evaluation_compares_the_engines(
    tiny_config: str, song_folder, workdir: Path
) -> None:
    catalog = song_folder(3, 10.0, 16000, folder=workdir / "catalog")
    assert main(["data", "make-queries", "--catalog", str(catalog), "--output", "queries",
                 "--lengths_s", "[3]", "--degradations", "[clean, noise]",
                 "--workers", "1"]) == 0  # fmt: skip
    output = workdir / "sweep"
    assert main([
        "sweep", "--config", tiny_config, "--seeds", "[0]", "--grid+", "trainer.max_steps=10",
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

"""acr.runs.sweep_report: sweep.json, sweep.md, the plots and the W&B tables of a sweep whose
verdicts are known (one arm ties, one wins)."""

import json
from pathlib import Path

from fixtures_runs import tie_and_winner_results

from acr.runs.sweep import SweepPlan
from acr.runs.sweep_report import log_sweep_to_wandb, write_sweep

GRID = [("k", ["a", "same_as_a", "better"])]


def test_the_report_shows_the_tie_and_the_winner_in_markdown_plots_and_wandb(
    tmp_path: Path,
) -> None:
    plan = SweepPlan("c.yaml", [0, 1, 2], GRID, tmp_path, "constructed")
    sweep = write_sweep(plan, tie_and_winner_results(), [], samples=500)
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

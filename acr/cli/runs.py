"""``acr sweep``, ``report`` and ``pipeline``: options from acr.runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from acr.cli.commands import Command
from acr.runs.pipeline import print_summary, run_pipeline
from acr.runs.reports import write_report
from acr.runs.sweep import SweepError, SweepOutcome, sweep


def show_sweep(outcome: SweepOutcome) -> None:
    """The verdicts on overall top-1, then where everything is; failed runs fail the command."""
    output = outcome.output
    for comparison in outcome.sweep["comparisons"]:
        overall = comparison["buckets"].get("overall", {})
        if "difference" in overall:
            low, high = overall["ci95"]
            where = comparison.get("system") or comparison.get("arm")
            print(
                f"{comparison['b']} vs {comparison['a']} ({where}): top-1 "
                f"{overall['difference']:+.3f} [{low:+.3f}, {high:+.3f}] -> {overall['verdict']}"
            )
    print(f"sweep: {output / 'sweep.md'}, {output / 'sweep.json'}, plots in {output / 'plots'}")
    if outcome.wandb_run is not None:
        print(
            f"wandb: {outcome.wandb_run} (offline: `wandb sync {output}/wandb/offline-run-*`"
            " uploads)"
        )
    if outcome.failures:
        failed = len(outcome.failures)
        raise SweepError(f"{failed} of {outcome.runs} runs failed; rerun to retry them")


def show_paths(paths: dict[str, Path]) -> None:
    for name, path in paths.items():
        print(f"{name:<11} {path}")


COMMANDS: dict[str, Any] = {
    "sweep": Command(sweep, show_sweep, config_flag="--definition"),
    "report": Command(write_report, show_paths, ("run_dir",)),
    "pipeline": Command(run_pipeline, print_summary),
}

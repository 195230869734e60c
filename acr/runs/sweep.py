"""``acr sweep``: one config over seeds x grid values, resumable, with verdicts you can trust.

Every run is a plain ``python -m acr fit --config CONFIG --seed_everything S --KEY V`` in its
own directory (``--trainer.default_root_dir``), started as a child process, so a run of the
sweep is exactly the command written in its ``result.json``. With an ``evaluate`` section the
run's checkpoint is then indexed and evaluated on fixed queries (``acr index`` + ``acr
evaluate``); otherwise the run's final validation is its result. A run counts as done when its
``result.json`` exists: a rerun skips it, and starts an interrupted run again from scratch so
that every finished run is exactly its command.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from tqdm.auto import tqdm

from acr.files import newest, write_json
from acr.status import Heartbeat

RESULT_FILE = "result.json"


class SweepError(RuntimeError):
    """A run of the sweep failed (its log says why), or the sweep cannot start."""


@dataclass(frozen=True)
class Run:
    """One seed of one arm (one combination of grid values); ``fixed`` are one-value keys."""

    seed: int
    grid: tuple[tuple[str, str], ...]
    fixed: tuple[tuple[str, str], ...] = ()

    @property
    def arm(self) -> str:
        """``segment_strategy=random`` (last part of each key), or ``base`` without a grid."""
        parts = [f"{key.rsplit('.', 1)[-1]}={value}" for key, value in self.grid]
        return ",".join(parts) or "base"

    @property
    def name(self) -> str:
        return f"{self.arm}/seed{self.seed}"

    def directory(self, output: Path) -> Path:
        return output / "runs" / re.sub(r"[^\w=,.+-]", "_", self.arm) / f"seed{self.seed}"


@dataclass
class EvaluationPlan:
    """Index ``catalog`` with the run's checkpoint and evaluate ``queries`` (a queries.csv)."""

    catalog: str
    queries: str
    engine: str = "embedding"
    workers: int | None = None
    bootstrap: int = 200


@dataclass
class SweepPlan:
    config: str
    seeds: list[int]
    grid: list[tuple[str, list[str]]] = field(default_factory=list)
    output: Path = Path("runs/sweep")
    name: str = "sweep"
    evaluation: EvaluationPlan | None = None

    @property
    def varied(self) -> list[tuple[str, list[str]]]:
        """Grid keys with two or more values: the arms differ in these."""
        return [(key, values) for key, values in self.grid if len(values) > 1]

    def runs(self) -> list[Run]:
        """Every grid combination x seed, seeds innermost (arms finish one after another)."""
        fixed = tuple((key, values[0]) for key, values in self.grid if len(values) == 1)
        keys = [key for key, _ in self.varied]
        combinations = itertools.product(*(values for _, values in self.varied))
        return [
            Run(seed, tuple(zip(keys, values)), fixed)
            for values in combinations
            for seed in self.seeds
        ]


def parse_grid(entries: list[str]) -> list[tuple[str, list[str]]]:
    """``["data.init_args.segment_strategy=random,onset_aware"]`` -> [(key, [values])]."""
    grid = []
    for entry in entries:
        key, separator, values = entry.partition("=")
        key = key.strip().lstrip("-")
        options = [value.strip() for value in values.split(",") if value.strip()]
        if not separator or not key or len(options) < 1:
            raise ValueError(
                f"--grid {entry!r}: expected KEY=VALUE1,VALUE2 (one --grid+ KEY=V1,V2 per key:"
                " a YAML list on the command line splits V1,V2 at the comma)"
            )
        if key in (existing for existing, _ in grid):
            raise ValueError(f"--grid: {key} is given twice")
        grid.append((key, options))
    return grid


def fit_command(plan: SweepPlan, run: Run, directory: Path) -> list[str]:
    """The exact command of a run; ``--trainer.default_root_dir`` only moves its outputs."""
    command = [sys.executable, "-m", "acr", "fit", "--config", plan.config]
    command += ["--seed_everything", str(run.seed)]
    command += [f"--{key}={value}" for key, value in (*run.grid, *run.fixed)]
    return command + [f"--trainer.default_root_dir={directory}"]


def tracking_environment(
    plan: SweepPlan, run: Run, job_type: str, wandb_mode: str = "offline"
) -> dict[str, str]:
    """W&B settings for a run's logger: grouped by sweep, tagged with its seed and grid;
    ``disabled`` makes the run drop its W&B logger (acr.cli.training)."""
    tags = [f"seed={run.seed}", *(f"{key.rsplit('.', 1)[-1]}={value}" for key, value in run.grid)]
    return {
        **os.environ,
        "WANDB_RUN_GROUP": plan.name,
        "WANDB_JOB_TYPE": job_type,
        "WANDB_TAGS": ",".join(tag.replace(",", ";") for tag in tags),
        "WANDB_NAME": f"{plan.name}/{run.name}",
        **({"WANDB_MODE": "disabled"} if wandb_mode == "disabled" else {}),
    }


def execute(command: list[str], log: Path, environment: dict[str, str]) -> None:
    """Run a child process, its output appended to ``log``; a failure names the log."""
    with log.open("a") as stream:
        stream.write(f"$ {' '.join(command)}\n")
        stream.flush()
        finished = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, env=environment)
    if finished.returncode != 0:
        raise SweepError(f"exit status {finished.returncode}; see {log}")


def validation_result(directory: Path) -> tuple[dict, dict]:
    """The run's last validation: results per bucket, and every query's rank."""
    latest = newest(directory, "**/retrieval/val-latest.json")
    if latest is None:
        raise FileNotFoundError(f"{directory}: no **/retrieval/val-latest.json")
    report = json.loads(latest.read_text())
    return {"validation": report["results"]}, {"validation": report["per_query"]}


def evaluation_result(
    plan: EvaluationPlan, directory: Path, log: Path, environment: dict[str, str]
) -> tuple[dict, dict]:
    """Index the catalog with the best checkpoint (else the last) and evaluate the queries."""
    checkpoints = directory / "checkpoints"
    best = sorted(checkpoints.glob("best*.ckpt"))
    checkpoint = best[-1] if best else checkpoints / "last.ckpt"
    index = directory / "index"
    shutil.rmtree(index, ignore_errors=True)  # an interrupted build of an unfinished run
    tool = [sys.executable, "-m", "acr"]
    workers = [] if plan.workers is None else ["--workers", str(plan.workers)]
    execute(
        [*tool, "index", "--catalog", plan.catalog, "--output", str(index), "--engine",
         plan.engine, "--checkpoint", str(checkpoint), *workers],
        log, environment,
    )  # fmt: skip
    report_path = directory / "report.json"
    execute(
        [*tool, "evaluate", "--index", str(index), "--queries", plan.queries, "--output",
         str(report_path), "--bootstrap", str(plan.bootstrap)],
        log, environment,
    )  # fmt: skip
    report = json.loads(report_path.read_text())
    return report["systems"], report["per_query"]


def run_one(plan: SweepPlan, run: Run, wandb_mode: str = "offline") -> dict:
    """Fit (and evaluate) one run from scratch and write its result.json."""
    directory = run.directory(plan.output)
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    log = directory / "sweep.log"
    started = time.monotonic()
    command = fit_command(plan, run, directory)
    execute(command, log, tracking_environment(plan, run, "fit", wandb_mode))
    if plan.evaluation is None:
        systems, per_query = validation_result(directory)
    else:
        environment = tracking_environment(plan, run, "evaluate", wandb_mode)
        systems, per_query = evaluation_result(plan.evaluation, directory, log, environment)
    result = {
        "run": run.name,
        "arm": run.arm,
        "seed": run.seed,
        "grid": dict(run.grid),
        "fixed": dict(run.fixed),
        "command": command,
        "source": "validation" if plan.evaluation is None else "evaluate",
        "seconds": round(time.monotonic() - started, 1),
        "systems": systems,
        "per_query": per_query,
    }
    write_json(directory / RESULT_FILE, result, indent=None)  # last: its presence means done
    return result


def run_sweep(
    plan: SweepPlan, heartbeat: Heartbeat | None = None, wandb_mode: str = "offline"
) -> tuple[list[dict], list[tuple[Run, str]]]:
    """Every run not done yet; returns all finished results and the failures."""
    results, failures = [], []
    runs = plan.runs()
    progress = tqdm(runs, desc=f"sweep {plan.name}", unit="run")
    for position, run in enumerate(progress):
        done = run.directory(plan.output) / RESULT_FILE
        if heartbeat is not None:
            heartbeat.update(stage=f"run {run.name}", done=position, total=len(runs), unit="runs")
        if done.is_file():
            progress.write(f"{run.name}: done before, skipped")
            results.append(json.loads(done.read_text()))
            continue
        progress.write(f"{run.name}: running (`acr status {run.directory(plan.output)}`)")
        try:
            results.append(run_one(plan, run, wandb_mode))
        except (SweepError, FileNotFoundError, KeyError) as error:
            progress.write(f"{run.name}: failed: {error}")
            failures.append((run, str(error)))
    if heartbeat is not None:
        heartbeat.update(stage="comparing", done=len(runs), force=True)
    return results, failures


@dataclass
class SweepOutcome:
    """What :func:`sweep` wrote: the sweep (sweep.json's content), where, and its failures."""

    sweep: dict
    output: Path
    wandb_run: Path | None
    runs: int
    failures: list[tuple[Run, str]]


def sweep(
    config: str,
    seeds: Sequence[int] = (0, 1, 2),
    grid: Sequence[str] = (),
    output: str | None = None,
    name: str | None = None,
    evaluate: EvaluationPlan | None = None,
    bootstrap: int = 2000,
    wandb: Literal["offline", "disabled"] = "offline",
) -> SweepOutcome:
    """Run a config over seeds x grid values, then aggregate and compare.

    Args:
        config: an ``acr fit`` config.
        seeds: training seeds; every arm runs each of them.
        grid: fit options as KEY=V1,V2 (``data.init_args.segment_strategy=random,onset_aware``),
            one ``--grid+ KEY=V1,V2`` per key; a key with one value applies to every run.
        output: the sweep directory (default: runs/sweeps/NAME).
        name: the sweep's name (default: the config's file name).
        evaluate: index a catalog with each run's best checkpoint and evaluate fixed queries
            (otherwise a run's result is its last validation).
        bootstrap: resamples per comparison.
        wandb: offline: runs log as their configs say, plus a summary run; disabled: no W&B.
    """
    from acr.runs.sweep_report import log_sweep_to_wandb, write_sweep

    plan = plan_from(config, seeds, grid, output, name, evaluate)
    plan.output.mkdir(parents=True, exist_ok=True)
    with Heartbeat(plan.output, "sweep") as heartbeat:
        results, failures = run_sweep(plan, heartbeat, wandb_mode=wandb)
        written = write_sweep(plan, results, failures, bootstrap)
        wandb_run = log_sweep_to_wandb(written, plan.output, wandb)
        heartbeat.finish(runs=len(results), failed=len(failures))
    return SweepOutcome(written, plan.output, wandb_run, len(plan.runs()), failures)


def plan_from(
    config: str,
    seeds: Sequence[int],
    grid: Sequence[str],
    output: str | None,
    name: str | None,
    evaluation: EvaluationPlan | None,
) -> SweepPlan:
    config_path = Path(config)
    if not config_path.is_file():
        raise FileNotFoundError(f"--config {config_path}: no such file")
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {seeds}: give distinct seeds")
    name = name or config_path.stem
    directory = Path(output or Path("runs/sweeps") / name).absolute()
    return SweepPlan(
        str(config_path.absolute()), seeds, parse_grid(grid), directory, name, evaluation
    )

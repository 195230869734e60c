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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from tqdm.auto import tqdm

from acr.files import write_json
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
            raise ValueError(f"--grid {entry!r}: expected KEY=VALUE1,VALUE2")
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


def newest(directory: Path, pattern: str) -> Path:
    found = sorted(directory.glob(pattern), key=lambda path: path.stat().st_mtime)
    if not found:
        raise FileNotFoundError(f"{directory}: no {pattern}")
    return found[-1]


def validation_result(directory: Path) -> tuple[dict, dict]:
    """The run's last validation: results per bucket, and every query's rank."""
    report = json.loads(newest(directory, "**/retrieval/val-latest.json").read_text())
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
         plan.engine, "--model", str(checkpoint), *workers],
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


def sweep_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description="Run a config over seeds x grid values, then aggregate and compare."
    )
    parser.add_argument(
        "--definition", action=ActionConfigFile, help="YAML with these options (experiments/)"
    )
    parser.add_argument("--config", type=str, required=True, help="an `acr fit` config")
    parser.add_argument("--seeds", type=int, default=[0, 1, 2], nargs="+")
    parser.add_argument("--grid", type=str, default=[], nargs="*", help="KEY=V1,V2 (a fit option)")
    parser.add_argument("--output", type=str | None, default=None, help="default runs/sweeps/NAME")
    parser.add_argument("--name", type=str | None, default=None, help="default: the config's")
    parser.add_argument("--evaluate", type=EvaluationPlan | None, default=None)
    parser.add_argument("--bootstrap", type=int, default=2000, help="resamples per comparison")
    parser.add_argument(
        "--wandb",
        type=Literal["offline", "disabled"],
        default="offline",
        help="offline: runs log as their configs say, plus a summary run; disabled: no W&B",
    )
    return parser


def plan_from(options: Namespace) -> SweepPlan:
    config = Path(options.config)
    if not config.is_file():
        raise FileNotFoundError(f"--config {config}: no such file")
    if not options.seeds or len(set(options.seeds)) != len(options.seeds):
        raise ValueError(f"--seeds {options.seeds}: give distinct seeds")
    name = options.name or config.stem
    output = Path(options.output or Path("runs/sweeps") / name).absolute()
    evaluation = options.evaluate
    if isinstance(evaluation, Namespace):
        evaluation = EvaluationPlan(**evaluation.as_dict())
    return SweepPlan(
        str(config.absolute()), options.seeds, parse_grid(options.grid), output, name, evaluation
    )

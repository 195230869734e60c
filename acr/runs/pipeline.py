"""``acr pipeline``: inspect, prepare, validate, fit, index, queries, fuse, evaluate and report,
into one output folder, each stage skipped while its outputs are current.

OUTPUT/pipeline.json records, per stage, a digest of its inputs (its settings and the content
of the upstream outputs it reads), its outputs and a digest of them. A stage whose record
matches is skipped; a changed input redoes that stage, and the stages that read its outputs
then see a changed digest and are redone too. The record is replaced atomically, and marks a
stage done only after its outputs are written, so a ``kill -9`` at any moment leaves a state a
rerun continues from: the fit resumes from its last.ckpt, the index build from its last
snapshot, and the cheap stages start over.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from rich.console import Console
from rich.table import Table

from acr.augment.degradations import DEGRADATION_NAMES, check_degradations
from acr.augment.field import ESPEAK
from acr.files import write_json
from acr.runs.pipeline_plan import (
    PipelineError,
    Plan,
    Stage,
    StageContext,
    digest,
    files_digest,
    find_fit_config,
    option_text,
)
from acr.runs.pipeline_stages import stages
from acr.status import STATUS_FILE, Heartbeat, error_text

PIPELINE_FILE = "pipeline.json"
SUMMARY_FILE = "summary.json"
LOCK_FILE = ".pipeline.lock"  # held while a pipeline writes the folder
RECORD_VERSION = 1  # bump when what a record means changes: every stage is then redone


@dataclass
class StageOutcome:
    """What one stage did in this run: ``ran``, ``resumed`` (went on from where a killed run
    stopped), ``skipped`` (its outputs were current) or ``not needed`` (by this engine)."""

    stage: str
    status: str
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)


@dataclass
class PipelineSummary:
    """What ran, where every artifact is, and top-1 per system and bucket on the test queries."""

    output: str
    source: str
    stages: list[StageOutcome]
    artifacts: dict[str, str]
    top1: dict[str, dict[str, float]]  # system -> bucket -> top-1 (from the evaluate report)
    queries: int
    seconds: float
    # The same on the field suite's test queries (field_queries), empty without them.
    field_top1: dict[str, dict[str, float]] = field(default_factory=dict)
    field_queries: int = 0

    def statuses(self) -> dict[str, str]:
        return {outcome.stage: outcome.status for outcome in self.stages}


def run_pipeline(
    output: str = "runs/pipeline",
    source: Literal["synthetic", "folder", "fma", "mtg_jamendo"] = "synthetic",
    root: str | None = None,
    fit_config: str | None = None,
    fit_options: dict[str, Any] | None = None,
    max_steps: int | None = None,
    engine: Literal["embedding", "hybrid"] = "hybrid",
    catalog_tracks: int | None = None,
    query_lengths_s: Sequence[float] = (1.0, 3.0, 5.0),
    query_degradations: Sequence[str] = DEGRADATION_NAMES,
    queries_per_track: int = 1,
    query_tracks: int | None = None,
    validate_sample: int | None = 200,
    top_k: int = 5,
    bootstrap: int = 1000,
    seed: int = 0,
    workers: int | None = None,
    index_save_every: int = 200,
    wandb: Literal["offline", "disabled"] = "offline",
    field_queries: bool = True,
) -> PipelineSummary:
    """Train, index and evaluate on one source, end to end, into one output folder.

    Stages whose inputs have not changed since they last finished are skipped; a killed run
    goes on where it stopped. ``acr status OUTPUT`` shows the pipeline and the job it runs.

    Args:
        output: the folder that receives every artifact (pipeline.json, summary.json, data/,
            fit/, index/, queries/, evaluate/, report/).
        source: where the audio comes from: generated songs (synthetic), or a folder, FMA or
            MTG-Jamendo collection on ``root``.
        root: the collection's folder (folder, fma, mtg_jamendo sources only).
        fit_config: the ``acr fit`` config (default: the source's shipped one in configs/:
            synthetic.yaml, folder.yaml, fma_hybrid.yaml or mtg_jamendo.yaml).
        fit_options: ``acr fit`` options over the config, KEY: VALUE
            (``data.init_args.train_tracks: 40``); the data set they describe is the one
            prepared, validated and indexed.
        max_steps: training steps (default: the config's ``trainer.max_steps``).
        engine: what to index: the trained embedding alone, or hybrid (fingerprint, embedding
            and melody, fused).
        catalog_tracks: index a seeded sample of this many held-out tracks (default: all of
            them: the test split, or a synthetic set's validation songs).
        query_lengths_s: query lengths in seconds; each (length, degradation) pair gets queries.
        query_degradations: degradations of the queries (names in acr.augment.degradations).
        queries_per_track: queries per track, length and degradation.
        query_tracks: make queries from a seeded sample of this many indexed tracks (default:
            all of them).
        validate_sample: decode a seeded sample of this many manifest files in full to check
            their durations (None: every file).
        top_k: the k of the reported top-k accuracy (top-1 is always reported).
        bootstrap: bootstrap resamples per 95 % interval of the evaluation.
        seed: seeds the fit (``--seed_everything``), the samples and the test queries; the
            fusion's validation queries use seed + 1.
        workers: processes (or threads) for generation, header reads, decoding and query
            making (default: one per CPU core).
        index_save_every: snapshot the index every this many tracks (what a resumed build
            keeps).
        wandb: offline: the fit logs to W&B as its config says (an offline run); disabled: no
            W&B run.
        field_queries: also a test set damaged by the field suite's generators, which training
            does not share (acr.augment.field; its crowds need espeak-ng), evaluated beside
            the own test set (evaluate/report-field.json): the gap is in the summary.
    """
    started = time.monotonic()
    if source == "synthetic" and root is not None:
        raise ValueError("root: the synthetic source generates its audio; leave root out")
    if source != "synthetic" and root is None:
        raise ValueError(f"root: the {source} source needs the folder of its collection")
    if root is not None and not Path(root).expanduser().is_dir():
        raise FileNotFoundError(f"root: {root} is not a folder")
    if field_queries and shutil.which(ESPEAK) is None:
        raise ValueError(
            f"field_queries: the field suite's crowds need {ESPEAK} on PATH (apt-get install"
            f" {ESPEAK}); or pass --field_queries false"
        )
    plan = Plan(
        output=Path(output).expanduser().absolute(),
        source=source,
        root=Path(root).expanduser().absolute() if root is not None else None,
        fit_config=find_fit_config(source, fit_config),
        fit_options={key: option_text(value) for key, value in (fit_options or {}).items()},
        max_steps=max_steps,
        engine=engine,
        catalog_tracks=catalog_tracks,
        query_lengths_s=tuple(float(length) for length in query_lengths_s),
        query_degradations=check_degradations(query_degradations, "query_degradations"),
        queries_per_track=queries_per_track,
        query_tracks=query_tracks,
        validate_sample=validate_sample,
        top_k=top_k,
        bootstrap=bootstrap,
        seed=seed,
        workers=workers,
        index_save_every=index_save_every,
        wandb=wandb,
        field_queries=field_queries,
    )
    plan.check()
    plan.output.mkdir(parents=True, exist_ok=True)
    with exclusive(plan.output), Heartbeat(plan.output, "pipeline") as heartbeat:
        records = Records(plan.output / PIPELINE_FILE)
        chain = stages(plan)
        outcomes = [
            run_stage(stage, plan, records, heartbeat, position, len(chain))
            for position, stage in enumerate(chain)
        ]
        heartbeat.update(stage="summary", done=len(chain))
        summary = summarize(plan, outcomes, time.monotonic() - started)
        write_json(plan.output / SUMMARY_FILE, asdict(summary))
        heartbeat.finish(
            ran=[o.stage for o in outcomes if o.status in ("ran", "resumed")],
            skipped=[o.stage for o in outcomes if o.status == "skipped"],
            top1={system: buckets.get("overall") for system, buckets in summary.top1.items()},
        )
    return summary


class Records:
    """OUTPUT/pipeline.json: each stage's state (started or done), input digest and outputs;
    replaced atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        content = json.loads(path.read_text()) if path.is_file() else {}
        fresh = content.get("version") != RECORD_VERSION
        self.stages: dict[str, dict[str, Any]] = {} if fresh else content["stages"]

    def get(self, stage: str) -> dict[str, Any]:
        return self.stages.get(stage, {})

    def set(self, stage: str, record: dict[str, Any]) -> None:
        self.stages[stage] = record
        write_json(self.path, {"version": RECORD_VERSION, "stages": self.stages})

    def outputs(self) -> dict[str, dict[str, str]]:
        """Outputs of the stages that are done."""
        return {
            name: record["outputs"]
            for name, record in self.stages.items()
            if record.get("state") == "done"
        }


def run_stage(
    stage: Stage,
    plan: Plan,
    records: Records,
    heartbeat: Heartbeat,
    position: int,
    total: int,
) -> StageOutcome:
    """Skip the stage if it is current; else run it (or go on with it) and record it done."""
    heartbeat.update(stage=stage.name, done=position, total=total, unit="stages", force=True)
    heading = f"[{position + 1}/{total}] {stage.name}"
    if not stage.needed(plan):
        unneeded = {"state": "done", "inputs": "", "outputs": {}, "digest": ""}
        if records.get(stage.name) != unneeded:
            records.set(stage.name, unneeded)
        print(f"{heading}: not needed by engine {plan.engine}", flush=True)
        return StageOutcome(stage.name, "not needed", 0.0)
    upstream = {name: records.get(name).get("digest") for name in stage.depends_on}
    inputs = digest({"settings": stage.settings(plan), "upstream": upstream})
    record = records.get(stage.name)
    if is_current(record, inputs, stage):
        print(f"{heading}: current, skipped", flush=True)
        return StageOutcome(stage.name, "skipped", 0.0, record["outputs"])
    resume = stage.resumable and record.get("state") == "started" and record["inputs"] == inputs
    print(f"{heading}: {'resuming' if resume else 'running'}", flush=True)
    records.set(stage.name, {"state": "started", "inputs": inputs, "started_at": _now()})
    started = time.monotonic()
    try:
        outputs = stage.run(StageContext(plan, records.outputs(), resume, heartbeat))
    except BaseException as error:
        print(f"{heading}: failed ({error_text(error)})", flush=True)
        raise
    seconds = round(time.monotonic() - started, 1)
    records.set(
        stage.name,
        {
            "state": "done",
            "inputs": inputs,
            "outputs": outputs,
            "digest": output_digest(stage, outputs),
            "seconds": seconds,
            "finished_at": _now(),
        },
    )
    return StageOutcome(stage.name, "resumed" if resume else "ran", seconds, outputs)


def is_current(record: dict[str, Any], inputs: str, stage: Stage) -> bool:
    """Done with these inputs, and its outputs are still there as they were written."""
    if record.get("state") != "done" or record.get("inputs") != inputs:
        return False
    outputs = record["outputs"]
    if not all(Path(path).exists() for path in outputs.values()):
        return False
    return output_digest(stage, outputs) == record["digest"]


def output_digest(stage: Stage, outputs: dict[str, str]) -> str:
    """The content of the outputs the later stages read (``stage.digested``; those it made:
    the field queries and their evaluation only where asked for)."""
    return files_digest(outputs[name] for name in stage.digested if name in outputs)


@contextmanager
def exclusive(output: Path) -> Iterator[None]:
    """Hold OUTPUT/.pipeline.lock while the pipeline runs: a second pipeline on the same folder
    fails at once. The kernel drops the lock when the process dies, even by SIGKILL."""
    with open(output / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PipelineError(f"{output} is being written by another acr pipeline") from None
        yield


def summarize(plan: Plan, outcomes: list[StageOutcome], seconds: float) -> PipelineSummary:
    """The outcomes, every artifact by name, and top-1 per bucket from the evaluate report."""
    artifacts = {
        "pipeline_record": str(plan.output / PIPELINE_FILE),
        "summary": str(plan.output / SUMMARY_FILE),
        "heartbeat": str(plan.output / STATUS_FILE),
    }
    for outcome in outcomes:
        artifacts |= outcome.outputs
    report = json.loads(Path(artifacts["evaluation"]).read_text())
    field_report = (
        json.loads(Path(artifacts["field_evaluation"]).read_text())
        if "field_evaluation" in artifacts
        else {"systems": {}, "queries": 0}
    )
    top1, field_top1 = (
        {
            system: {bucket: cell["top1"] for bucket, cell in buckets.items()}
            for system, buckets in evaluated["systems"].items()
        }
        for evaluated in (report, field_report)
    )
    return PipelineSummary(
        output=str(plan.output),
        source=plan.source,
        stages=outcomes,
        artifacts=artifacts,
        top1=top1,
        queries=report["queries"],
        seconds=round(seconds, 1),
        field_top1=field_top1,
        field_queries=field_report["queries"],
    )


def print_summary(summary: PipelineSummary) -> None:
    """The stages, the artifacts, and top-1 per single bucket (crossed buckets are in
    summary.json)."""
    console = Console()
    stages_table = Table(title=f"pipeline {summary.output} ({summary.seconds:.0f} s)")
    for column in ("stage", "status", "seconds"):
        stages_table.add_column(column, justify="right" if column == "seconds" else "left")
    for outcome in summary.stages:
        stages_table.add_row(outcome.stage, outcome.status, f"{outcome.seconds:.1f}")
    artifacts = Table(title="artifacts")
    artifacts.add_column("name")
    artifacts.add_column("path", overflow="fold")
    for name, path in summary.artifacts.items():
        artifacts.add_row(name, path)
    systems = list(summary.top1)
    tables = [stages_table, artifacts]
    shown = [(f"top-1 on {summary.queries} test queries", summary.top1, None)]
    if summary.field_top1:
        title = f"top-1 on {summary.field_queries} field-suite queries (gap to the test set)"
        shown.append((title, summary.field_top1, summary.top1))
    for title, values, own in shown:
        table = Table(title=title)
        table.add_column("bucket", no_wrap=True)
        for system in systems:
            table.add_column(system, justify="right")
        for bucket in values[systems[0]]:
            if "," in bucket:
                continue
            cells = []
            for system in systems:
                value = values[system].get(bucket)
                text = "" if value is None else f"{value:.3f}"
                if own is not None and value is not None and bucket in own[system]:
                    text += f" ({value - own[system][bucket]:+.3f})"
                cells.append(text)
            table.add_row(bucket, *cells)
        tables.append(table)
    for table in tables:
        console.print(table)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

"""The non-training subcommands: ``index``, ``recognize``, ``evaluate``, ``fuse``, ``status``,
``sweep``, ``report`` and ``data``.

``data`` has its own (acr.cli.data): ``inspect``, ``prepare``, ``validate`` and
``make-queries``.

Each parser takes ``--config FILE`` (YAML with the same keys as the flags), like ``fit``. Each
command prints a short summary, and a failure is a one-line error and exit status 1.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from jsonargparse import ArgumentParser, Namespace
from rich.console import Console

from acr.audio import AudioError
from acr.cli.data import DATA_COMMANDS, DATA_RUNNERS, command_parser
from acr.data.manifests import ManifestError
from acr.runs.sweep import SweepError, sweep_parser

COMMANDS = ("index", "recognize", "evaluate", "fuse", "status", "sweep", "report", "data")


def index_parser() -> ArgumentParser:
    parser = command_parser(
        "Index a catalog (a folder of audio, or a CSV/JSONL with track_id,path)."
    )
    parser.add_argument("--catalog", type=str, required=True)
    parser.add_argument("--output", type=str, required=True, help="index directory")
    parser.add_argument(
        "--engine",
        type=str,
        default="fingerprint",
        choices=["fingerprint", "embedding", "melody", "hybrid"],
    )
    parser.add_argument(
        "--model",
        type=str | None,
        default=None,
        help="checkpoint from `acr fit` (embedding and hybrid engines)",
    )
    parser.add_argument(
        "--resume", type=bool, default=False, help="continue an interrupted build of --output"
    )
    parser.add_argument(
        "--workers",
        type=int | None,
        default=None,
        help="decoding processes (default: one per CPU core)",
    )
    parser.add_argument(
        "--save_every", type=int, default=200, help="snapshot the index every N tracks"
    )
    return parser


def recognize_parser() -> ArgumentParser:
    parser = command_parser("Identify audio clips: ranked tracks with score and offset per query.")
    parser.add_argument("--index", type=str, required=True)
    parser.add_argument("files", nargs="*", type=str, help="audio files to recognise")
    parser.add_argument(
        "--queries",
        type=str | None,
        default=None,
        help="CSV/JSONL with query_id and path (or source+offset_s+length_s)",
    )
    parser.add_argument("--top_k", "--top-k", type=int, default=5)
    parser.add_argument("--output", type=str | None, default=None, help="default: stdout")
    parser.add_argument("--format", type=str, default="jsonl", choices=["jsonl", "csv"])
    return parser


def evaluate_parser() -> ArgumentParser:
    parser = command_parser(
        "Score an index on labelled queries: top-1/top-5/MRR per bucket, with CIs."
    )
    parser.add_argument("--index", type=str, required=True)
    parser.add_argument(
        "--queries",
        type=str,
        required=True,
        help="CSV/JSONL with query_id, path, track_id; other columns are buckets",
    )
    parser.add_argument("--output", type=str | None, default=None, help="report JSON")
    parser.add_argument("--top_k", "--top-k", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    return parser


def fuse_parser() -> ArgumentParser:
    parser = command_parser(
        "Fit the hybrid fusion (calibration and weights) on validation queries."
    )
    parser.add_argument("--index", type=str, required=True)
    parser.add_argument(
        "--queries",
        type=str,
        nargs="+",
        required=True,
        help="validation query tables (not the ones you will report); several are pooled",
    )
    return parser


def status_parser() -> ArgumentParser:
    parser = command_parser(
        "Where a run of acr fit/index/evaluate/sweep stands, from its status.json heartbeat: "
        "stage, progress, throughput, ETA, last checkpoint, last error, and whether it is alive."
    )
    parser.add_argument(
        "run_dir", type=str, help="run, index or report directory (a sweep lists its runs)"
    )
    return parser


def run_index(options: Namespace) -> None:
    from acr.retrieval.build import build_index

    summary = build_index(
        options.catalog,
        options.output,
        options.engine,
        options.model,
        options.resume,
        options.workers,
        options.save_every,
    )
    hours = max(summary.audio_hours, 1e-9)
    print(f"index {summary.directory}: engines {'+'.join(summary.engines)}")
    print(
        f"  tracks {summary.tracks}, skipped {summary.skipped} (see skipped.csv), "
        f"{summary.audio_hours:.2f} h of audio"
    )
    print(
        f"  items {summary.items}; {summary.index_bytes / 1e6:.1f} MB, "
        f"{summary.index_bytes / hours / 1e6:.1f} MB per hour"
    )
    print(
        f"  this run: {summary.seconds:.1f} s, {summary.real_time_factor:.0f}x real time, "
        f"peak memory {summary.peak_rss_mb:.0f} MB"
    )


def run_recognize(options: Namespace) -> None:
    from acr.data.manifests import read_queries
    from acr.retrieval.recognizer import Recognizer

    if bool(options.files) == bool(options.queries):
        raise ValueError("give audio files or --queries QUERIES.csv (one of the two)")
    recognizer = Recognizer.load(options.index)
    if options.queries:
        recognitions = recognizer.recognize_queries(
            read_queries(options.queries, False), options.top_k
        )
    else:
        recognitions = (
            recognizer.recognize_file(path, top_k=options.top_k) for path in options.files
        )
    output = open(options.output, "w") if options.output else sys.stdout
    errors = total = 0
    try:
        if options.format == "csv":
            tracks = ",".join(f"track_{k}" for k in range(1, options.top_k + 1))
            output.write(f"query_id,{tracks},status\n")
        for recognition in recognitions:
            total += 1
            errors += recognition.status != "ok"
            output.write(_format_recognition(recognition, options.format, options.top_k))
    finally:
        if options.output:
            output.close()
    print(f"recognised {total - errors} of {total} queries; {errors} errors", file=sys.stderr)


def _format_recognition(recognition, output_format: str, top_k: int) -> str:
    if output_format == "csv":
        tracks = [match.track_id for match in recognition.matches]
        tracks += [""] * (top_k - len(tracks))
        status = "ok" if recognition.status == "ok" else f"error: {recognition.error}"
        return ",".join([recognition.query_id, *tracks, json.dumps(status)]) + "\n"
    return (
        json.dumps(
            {
                "query_id": recognition.query_id,
                "status": recognition.status,
                "error": recognition.error,
                "matches": [
                    {
                        "track_id": m.track_id,
                        "score": round(m.score, 4),
                        "offset_s": round(m.offset_s, 3),
                    }
                    for m in recognition.matches
                ],
            }
        )
        + "\n"
    )


def run_evaluate(options: Namespace) -> None:
    from acr.data.manifests import read_queries
    from acr.retrieval.evaluation import evaluate, report_table
    from acr.retrieval.recognizer import Recognizer
    from acr.status import Heartbeat

    recognizer = Recognizer.load(options.index, cascade=False)
    queries = read_queries(options.queries)
    # Beside the report, or in the index when there is none (replacing the build's heartbeat).
    with Heartbeat(
        Path(options.output).parent if options.output else options.index, "evaluate"
    ) as heartbeat:
        report = evaluate(recognizer, queries, options.top_k, options.bootstrap, heartbeat)
        report.update(index=options.index, query_table=options.queries)
        Console().print(report_table(report))
        if report["errors"]:
            print(
                f"{len(report['errors'])} queries failed (counted as misses), e.g. "
                f"{report['errors'][0]}"
            )
        if options.output:
            Path(options.output).parent.mkdir(parents=True, exist_ok=True)
            Path(options.output).write_text(json.dumps(report, indent=2))
            print(f"report: {options.output}")
        heartbeat.finish(
            queries=report["queries"],
            errors=len(report["errors"]),
            top1={system: cells["overall"]["top1"] for system, cells in report["systems"].items()},
        )


def run_fuse(options: Namespace) -> None:
    import pandas as pd

    from acr.data.manifests import read_queries
    from acr.retrieval.fusion import Fusion
    from acr.retrieval.recognizer import FUSION_FILE, Recognizer
    from acr.retrieval.store import load_engines

    # Not Recognizer.load: the fusion.json there (perhaps from an older acr) is what is refitted.
    recognizer = Recognizer(load_engines(options.index), cascade=False)
    if len(recognizer.engines) < 2:
        raise ValueError(f"{options.index} has one engine; fusion needs a hybrid index")
    # Pooled row by row, not by query_id: tables made with other seeds may reuse ids.
    queries = pd.concat([read_queries(table) for table in options.queries], ignore_index=True)
    answered = [
        (recognition, right)
        for recognition, right in zip(
            recognizer.recognize_queries(queries, 20), queries["track_id"]
        )
        if recognition.status == "ok"
    ]
    fusion = Fusion.fit(
        [r.engine_matches for r, _ in answered],
        [right for _, right in answered],
        [r.query_features for r, _ in answered],
    )
    fusion.save(Path(options.index) / FUSION_FILE)
    exit_rule = fusion.early_exit
    print(
        f"fusion fitted on {len(answered)} queries over {', '.join(fusion.engines)}; "
        + (
            f"early exit: {exit_rule.engine} alone when P(right) >= {exit_rule.probability}"
            if exit_rule
            else "no early exit"
        )
    )


def run_status(options: Namespace) -> None:
    from acr.status import describe_directory

    print(describe_directory(options.run_dir))


def run_sweep_command(options: Namespace) -> None:
    from acr.runs.sweep import plan_from, run_sweep
    from acr.runs.sweep_report import log_sweep_to_wandb, write_sweep
    from acr.status import Heartbeat

    plan = plan_from(options)
    plan.output.mkdir(parents=True, exist_ok=True)
    with Heartbeat(plan.output, "sweep") as heartbeat:
        results, failures = run_sweep(plan, heartbeat, wandb_mode=options.wandb)
        sweep = write_sweep(plan, results, failures, options.bootstrap)
        wandb_run = log_sweep_to_wandb(sweep, plan.output, options.wandb)
        heartbeat.finish(runs=len(results), failed=len(failures))
    print_sweep(sweep, plan.output, wandb_run)
    if failures:
        raise SweepError(f"{len(failures)} of {len(plan.runs())} runs failed; rerun to retry them")


def print_sweep(sweep: dict, output: Path, wandb_run: Path | None) -> None:
    """The verdicts on overall top-1, then where everything is."""
    for comparison in sweep["comparisons"]:
        overall = comparison["buckets"].get("overall", {})
        if "difference" in overall:
            low, high = overall["ci95"]
            where = comparison.get("system") or comparison.get("arm")
            print(
                f"{comparison['b']} vs {comparison['a']} ({where}): top-1 "
                f"{overall['difference']:+.3f} [{low:+.3f}, {high:+.3f}] -> {overall['verdict']}"
            )
    print(f"sweep: {output / 'sweep.md'}, {output / 'sweep.json'}, plots in {output / 'plots'}")
    if wandb_run is not None:
        print(f"wandb: {wandb_run} (offline: `wandb sync {output}/wandb/offline-run-*` uploads)")


def report_parser() -> ArgumentParser:
    parser = command_parser(
        "Benchmark report, model card, release checklist and artifact manifest of a run or sweep."
    )
    parser.add_argument("run_dir", type=str, help="an `acr fit` run directory, or a sweep's")
    parser.add_argument(
        "--evaluation", type=str | None, default=None, help="report.json of `acr evaluate`"
    )
    parser.add_argument("--output", type=str | None, default=None, help="default RUN_DIR/report")
    return parser


def run_report(options: Namespace) -> None:
    from acr.runs.reports import write_report

    evaluation = Path(options.evaluation) if options.evaluation else None
    output = Path(options.output) if options.output else None
    for name, path in write_report(Path(options.run_dir), output, evaluation).items():
        print(f"{name:<11} {path}")


SUBCOMMANDS: dict[str, Callable[[], ArgumentParser]] = {
    "index": index_parser,
    "recognize": recognize_parser,
    "evaluate": evaluate_parser,
    "fuse": fuse_parser,
    "status": status_parser,
    "sweep": sweep_parser,
    "report": report_parser,
}


def tool_parser(only: str | None = None) -> ArgumentParser:
    """All commands' parsers, or only ``only``'s: ``acr status`` need not build (and import)
    the data commands' parsers."""
    parser = ArgumentParser(prog="acr", description="acr retrieval and data commands")
    subcommands = parser.add_subcommands(dest="command")
    for name, build in SUBCOMMANDS.items():
        if only in (None, name):
            command = build()
            subcommands.add_subcommand(name, command, help=command.description)
    if only not in (None, "data"):
        return parser
    data = ArgumentParser(description="Data preparation and checks")
    subcommands.add_subcommand(
        "data", data, help="data preparation: inspect, prepare, validate, make-queries"
    )
    data_subcommands = data.add_subcommands(dest="data_command")  # after adding the parent
    for name, build in DATA_COMMANDS.items():
        command = build()
        data_subcommands.add_subcommand(name, command, help=command.description)
    return parser


RUNNERS: dict[str, Callable[[Namespace], None]] = {
    "index": run_index,
    "recognize": run_recognize,
    "evaluate": run_evaluate,
    "fuse": run_fuse,
    "status": run_status,
    "sweep": run_sweep_command,
    "report": run_report,
    **DATA_RUNNERS,
}


def run_tool(args: list[str]) -> int:
    """Parse and run one non-training subcommand; 1 with a one-line error on failure."""
    from acr.retrieval.engine import IndexDirectoryError

    options = tool_parser(args[0] if args and args[0] in COMMANDS else None).parse_args(args)
    command = options.command
    name = options.data.data_command if command == "data" else command
    selected = options[command][name] if command == "data" else options[command]
    try:
        RUNNERS[name](selected)
    except (
        IndexDirectoryError,
        ManifestError,
        AudioError,
        FileNotFoundError,
        ValueError,
        SweepError,
    ) as error:
        label = f"data {name}" if command == "data" else name
        print(f"acr {label}: error: {error}", file=sys.stderr)
        return 1
    return 0

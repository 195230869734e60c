"""The ``acr data`` subcommands: ``inspect``, ``prepare``, ``validate`` and ``make-queries``.

Like the other subcommands (acr.cli.commands), each takes ``--config FILE`` and fails with a
one-line error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace
from rich.console import Console

from acr.data.manifests import ManifestError


def command_parser(description: str) -> ArgumentParser:
    """A subcommand's parser, with ``--config FILE`` (YAML with the same keys as the flags)."""
    parser = ArgumentParser(description=description)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file with these options")
    return parser


def make_queries_parser() -> ArgumentParser:
    from acr.data.query_sets import DEGRADATIONS
    from acr.data.segments.strategies import STRATEGIES

    parser = command_parser("Write degraded query clips of catalog tracks and their queries.csv.")
    parser.add_argument("--catalog", type=str, required=True)
    parser.add_argument("--output", type=str, required=True)
    parser.add_argument("--lengths", type=float, default=[1.0, 3.0, 10.0], nargs="+")
    parser.add_argument(
        "--degradations",
        type=str,
        default=list(DEGRADATIONS),
        nargs="+",
        help=f"any of: {' '.join(DEGRADATIONS)}",
    )
    parser.add_argument("--per_track", "--per-track", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max_tracks",
        "--max-tracks",
        type=int | None,
        default=None,
        help="a seeded sample of the catalog",
    )
    parser.add_argument("--workers", type=int | None, default=None)
    parser.add_argument(
        "--strategy",
        type=str,
        default="random",
        choices=list(STRATEGIES),
        help="where excerpts start (acr.data.segments.strategies): " + " ".join(STRATEGIES),
    )
    return parser


# Options a source's DataModule adds (acr.datamodules.sources); each source rejects the others.


SOURCE_OPTIONS = {
    "subset": "fma: small, medium, large or full",
    "split": "mtg_jamendo: official split 0-4",
    "tsv": "mtg_jamendo: which tag set's split files (default autotagging)",
    "metadata_dir": "fma: the folder with tracks.csv; mtg_jamendo: the folder with splits/",
    "metadata": "folder: a CSV/JSONL with track_id or path and extra columns",
    "group_by": "folder: 'parent' or a metadata column kept whole in one split",
    "mapping": "business (ROOT is the export file): the YAML column mapping",
    "val_fraction": "folder, business: share of tracks in val (seeded split)",
    "test_fraction": "folder, business: share of tracks in test (seeded split)",
    "split_seed": "folder, business: seeds the split",
}


JSON_HELP = "write the report as JSON to PATH; '-' prints only the JSON, on stdout"


def _add_source_options(parser: ArgumentParser) -> None:
    for name, help_text in SOURCE_OPTIONS.items():
        parser.add_argument(f"--{name}", type=str | None, default=None, help=help_text)
    parser.add_argument(
        "--options",
        type=str,
        default=None,
        nargs="+",
        help="any other option of the source's DataModule, as KEY=VALUE (lists: a,b)",
    )


def _source_values(options: Namespace) -> dict[str, str]:
    """The source options given on the command line (KEY=VALUE pairs included)."""
    values = {name: options[name] for name in SOURCE_OPTIONS if options[name] is not None}
    for pair in options.options or []:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise ValueError(f"--options: expected KEY=VALUE, got {pair!r}")
        values[key] = value
    return values


def inspect_parser() -> ArgumentParser:
    from acr.datamodules.sources import SOURCES

    parser = command_parser(
        "Describe the audio under ROOT from file headers (no decoding): counts, hours, formats,"
        " sample rates, channels, a duration histogram and every unreadable file."
    )
    parser.add_argument("root", type=str, help="a folder of audio, or a source's root")
    parser.add_argument(
        "--source",
        type=Literal[tuple(SOURCES)] | None,
        default=None,
        help="inspect the files this source lists (default: every audio file under ROOT)",
    )
    _add_source_options(parser)
    parser.add_argument("--json", type=str | None, default=None, help=JSON_HELP)
    parser.add_argument("--workers", type=int | None, default=None, help="header-reading threads")
    return parser


def prepare_parser() -> ArgumentParser:
    from acr.datamodules.sources import SOURCES

    parser = command_parser(
        "Write manifests for a source: catalog.csv (every usable reference track), train.csv,"
        " val.csv, test.csv and skipped.csv, from headers and a tail decode of each file. A"
        " second run with the same inputs reuses them (settings.json)."
    )
    parser.add_argument("source", type=Literal[tuple(SOURCES)], help="the data source")
    parser.add_argument("root", type=str, help="where the source's audio (or export) lives")
    parser.add_argument("--output", type=str, required=True, help="manifest directory")
    _add_source_options(parser)
    parser.add_argument(
        "--probe_workers", type=int | None, default=None, help="file-probing threads"
    )
    parser.add_argument("--force", type=bool, default=False, help="rebuild even if cached")
    return parser


def validate_parser() -> ArgumentParser:
    parser = command_parser(
        "Check a manifest directory (acr data prepare output, or a DataModule's tracks.csv):"
        " required columns, unique ids, splits, no train/eval leakage (track_id, group, file),"
        " files exist and decode in full to their duration_s (within 0.5 s or 1 %). Exit"
        " status 1 with a one-line summary when anything is wrong."
    )
    parser.add_argument("manifest_dir", type=str)
    parser.add_argument(
        "--sample",
        type=int | None,
        default=None,
        help="decode a seeded sample of N files (default: all; every file is checked to exist)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=str | None, default=None, help=JSON_HELP)
    parser.add_argument("--workers", type=int | None, default=None, help="decoding threads")
    return parser


def run_make_queries(options: Namespace) -> None:
    from acr.data.query_sets import QUERIES_FILE, make_queries

    table = make_queries(
        options.catalog,
        options.output,
        options.lengths,
        options.degradations,
        options.per_track,
        options.seed,
        max_tracks=options.max_tracks,
        workers=options.workers,
        strategy=options.strategy,
    )
    print(f"{len(table)} queries in {Path(options.output) / QUERIES_FILE}")
    skipped = table.attrs.get("skipped", [])
    if skipped:
        print(f"{len(skipped)} left out, e.g. {skipped[0]}")


def run_inspect(options: Namespace) -> None:
    from acr.data.inspection import inspect_audio, inspection_tables

    report = inspect_audio(options.root, options.source, _source_values(options), options.workers)
    if options.json == "-":
        print(json.dumps(report, indent=2))
        return
    Console().print(inspection_tables(report))
    if options.json:
        _write_json(options.json, report)
        print(f"report: {options.json}")


def run_prepare(options: Namespace) -> None:
    from acr.datamodules.sources import prepare_manifests

    prepared = prepare_manifests(
        options.source,
        options.root,
        options.output,
        _source_values(options),
        options.probe_workers,
        options.force,
    )
    if prepared.reused:
        print(
            f"{prepared.directory}: reused the cached manifests (same source, options, metadata"
            f" and files; settings.json); {prepared.seconds:.1f} s. --force rebuilds."
        )
    else:
        print(f"{prepared.directory}: {options.source} manifests in {prepared.seconds:.1f} s")
    for split, tracks, hours in prepared.split_summary():
        print(f"  {split:<8} {tracks:>7} tracks {hours:>9.2f} h")
    skipped = prepared.skipped
    if len(skipped):
        example = f"{skipped['path'].iloc[0]}: {skipped['reason'].iloc[0]}"
        print(f"  skipped  {len(skipped):>7} (see skipped.csv), e.g. {example}")


def run_validate(options: Namespace) -> None:
    from acr.data.checks import problems_table, summary_line, validate_manifest_dir

    report = validate_manifest_dir(
        options.manifest_dir, options.sample, options.seed, options.workers
    )
    if options.json == "-":
        print(json.dumps(report, indent=2))
    else:
        if options.json:
            _write_json(options.json, report)
        if not report["ok"]:
            Console().print(problems_table(report))
        elif options.json:
            print(f"report: {options.json}")
    if not report["ok"]:
        raise ManifestError(report["manifest_dir"], summary_line(report))
    if options.json != "-":
        print(summary_line(report))


def _write_json(path: str, report: dict) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(report, indent=2) + "\n")


DATA_COMMANDS: dict[str, Callable[[], ArgumentParser]] = {
    "inspect": inspect_parser,
    "prepare": prepare_parser,
    "validate": validate_parser,
    "make-queries": make_queries_parser,
}


DATA_RUNNERS: dict[str, Callable[[Namespace], None]] = {
    "inspect": run_inspect,
    "prepare": run_prepare,
    "validate": run_validate,
    "make-queries": run_make_queries,
}

"""``acr data inspect|check|prepare|validate|make-queries|make-mixes``: options from acr.data
and the data sources' own DataModules.

A source's settings (FMA's ``--subset``, MTG-Jamendo's ``--split``, a folder's
``--val_fraction``...) are that source's DataModule arguments, read from its signature once the
command line names the source; the command lists the source's files and hands the paths to
acr.data, which never imports a DataModule.
"""

from __future__ import annotations

from collections.abc import Sequence
from inspect import signature
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from jsonargparse import ArgumentParser
from rich.console import Console

from acr.cli.commands import Command, CommandGroup, json_output
from acr.data.checks import problems_table, summary_line, validate_manifest_dir
from acr.data.manifests import ManifestError
from acr.data.mixes import TRUTH_FILE, make_mixes, truth_summary
from acr.data.query_sets import QUERIES_FILE, make_queries
from acr.datamodules.sources import SOURCES, Prepared, prepare_manifests
from acr.files import SKIPPED_FILE

Source = Literal["fma", "mtg_jamendo", "folder", "business"]


def inspect(
    roots: list[str],
    source: Source | None = None,
    workers: int | None = None,
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Describe the audio under each ROOT from file headers, without decoding.

    Counts, hours, formats, sample rates, channels, a duration histogram and every unreadable
    file, one report per root.

    Args:
        roots: folders of audio, or a source's roots.
        source: inspect the files this source lists (default: every audio file under a ROOT).
        workers: header-reading threads (default: one per CPU core).
        options: the source's own settings (each is a flag of its own).
    """
    from acr.data.inspection import inspect_audio

    return [
        inspect_audio(root, *_listing(source, root, options), workers, source) for root in roots
    ]


def show_inspect(reports: list[dict[str, Any]], json: str | None = None) -> None:
    """Print it, or write it as JSON.

    Args:
        json: write the report as JSON to PATH ({"roots": [...]} for several roots); '-' prints
            only the JSON, on stdout.
    """
    from acr.data.inspection import inspection_tables

    if json_output(reports[0] if len(reports) == 1 else {"roots": reports}, json):
        return
    for report in reports:
        Console().print(inspection_tables(report))
    if json:
        print(f"report: {json}")


def check(
    root: str,
    query_length_s: float = 3.0,
    source: Source | None = None,
    workers: int | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Is ROOT ready for training and evaluation? ready: true/false, with the reasons.

    Also how many files are long enough for queries of ``query_length_s``; exit status 1 when
    it is not ready.

    Args:
        root: a folder of audio, or a source's root.
        query_length_s: the query length to check for, in seconds.
        source: check the files this source lists (default: every audio file under ROOT).
        workers: header-reading threads (default: one per CPU core).
        options: the source's own settings (each is a flag of its own).
    """
    from acr.data.readiness import check_ready

    paths, splits = _listing(source, root, options)
    return check_ready(root, query_length_s, paths, splits, workers)


def show_check(report: dict[str, Any], json: str | None = None) -> None:
    """Print it, or write it as JSON.

    Args:
        json: write the report as JSON to PATH; '-' prints only the JSON, on stdout.
    """
    from acr.data.readiness import describe_readiness

    if not json_output(report, json):
        print(describe_readiness(report) + (f"\nreport: {json}" if json else ""))
    if not report["ready"]:
        raise ManifestError(report["root"], "not ready: " + "; ".join(report["reasons"]))


def _listing(
    source: str | None, root: str, options: dict[str, Any] | None
) -> tuple[list[Path] | None, list[str | None] | None]:
    """The files a source lists under ``root`` and their splits (None: every audio file)."""
    if source is None:
        if options:
            raise ValueError(f"--{next(iter(options))} is a source's option; give --source too")
        return None, None
    from acr.datamodules.sources import catalog_source

    if not Path(root).expanduser().exists():
        raise FileNotFoundError(f"ROOT: {Path(root).expanduser().absolute()} does not exist")
    listed = catalog_source(source, root, options).list_tracks()
    splits = listed["split"].tolist() if "split" in listed else [None] * len(listed)
    return [Path(path) for path in listed["path"]], splits


def show_prepare(prepared: Prepared, source: str) -> None:
    if prepared.reused:
        print(
            f"{prepared.directory}: reused the cached manifests (same source, options, metadata"
            f" and files; settings.json); {prepared.seconds:.1f} s. --force rebuilds."
        )
    else:
        print(f"{prepared.directory}: {source} manifests in {prepared.seconds:.1f} s")
    for split, tracks, hours in prepared.split_summary():
        print(f"  {split:<8} {tracks:>7} tracks {hours:>9.2f} h")
    skipped = prepared.skipped
    if len(skipped):
        example = f"{skipped['path'].iloc[0]}: {skipped['reason'].iloc[0]}"
        print(f"  skipped  {len(skipped):>7} (see skipped.csv), e.g. {example}")


def show_validate(report: dict[str, Any], json: str | None = None) -> None:
    """Print it, or write it as JSON.

    Args:
        json: write the report as JSON to PATH; '-' prints only the JSON, on stdout.
    """
    quiet = json_output(report, json)
    if not report["ok"]:
        if not quiet:
            Console().print(problems_table(report))
        raise ManifestError(report["manifest_dir"], summary_line(report))
    if not quiet:
        print((f"report: {json}\n" if json else "") + summary_line(report))


def show_make_queries(table: pd.DataFrame, output: str) -> None:
    print(f"{len(table)} queries in {Path(output) / QUERIES_FILE}")
    _show_left_out(table.attrs["skipped"], output)


def show_make_mixes(truth: pd.DataFrame, output: str) -> None:
    summary = truth_summary(truth)
    kinds = ", ".join(
        f"{values['seconds'] / 60:.1f} min {kind}" for kind, values in summary.items()
    )
    print(
        f"{truth['recording'].nunique()} recordings in {output}: {summary['catalog']['rows']}"
        f" catalog excerpts; {kinds}. Truth: {Path(output) / TRUTH_FILE}"
    )
    _show_left_out(truth.attrs["skipped"], output)


def _show_left_out(skipped: pd.DataFrame, output: str) -> None:
    """How many tracks a command left out, and why the first was (skipped.csv has all)."""
    if len(skipped):
        example = skipped.iloc[0]
        print(
            f"{len(skipped)} left out (see {Path(output) / SKIPPED_FILE}), e.g."
            f" {example['track_id'] or example['path']}: {example['reason']}"
        )


def add_source_options(parser: ArgumentParser, name: str | None) -> None:
    """The named source's own settings as flags (``--subset``, ``--split``...), with the help
    and defaults of its DataModule's arguments."""
    if name not in SOURCES:
        return  # no source, or an unknown one: the parser's choices say which exist
    from acr.datamodules.base import ACRDataModule
    from acr.datamodules.catalog import CatalogDataModule

    shared = set(signature(CatalogDataModule.__init__).parameters)
    shared |= set(signature(ACRDataModule.__init__).parameters)
    source = SOURCES[name]
    parser.add_class_arguments(source.load(), skip=shared | {source.root_argument})


def _first_positional(argv: Sequence[str]) -> str | None:
    return next((token for token in argv if not token.startswith("-")), None)


def _flag_value(argv: Sequence[str], flag: str) -> str | None:
    for position, token in enumerate(argv):
        if token == flag and position + 1 < len(argv):
            return argv[position + 1]
        if token.startswith(f"{flag}="):
            return token.partition("=")[2]
    return None


def _source_flag(parser: ArgumentParser, argv: Sequence[str]) -> None:
    add_source_options(parser, _flag_value(argv, "--source"))


def _source_positional(parser: ArgumentParser, argv: Sequence[str]) -> None:
    add_source_options(parser, _first_positional(argv))


COMMANDS = {
    "data": CommandGroup(
        {
            "inspect": Command(
                inspect, show_inspect, variadic="roots", extend=_source_flag, options_into="options"
            ),
            "check": Command(
                check, show_check, ("root",), extend=_source_flag, options_into="options"
            ),
            "prepare": Command(
                prepare_manifests,
                show_prepare,
                ("source", "root"),
                extend=_source_positional,
                options_into="options",
            ),
            "validate": Command(validate_manifest_dir, show_validate, ("manifest_dir",)),
            "make-queries": Command(make_queries, show_make_queries),
            "make-mixes": Command(make_mixes, show_make_mixes),
        }
    )
}

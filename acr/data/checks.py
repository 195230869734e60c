"""``acr data validate``: every problem of a manifest directory, each named by file and field.

Unlike :func:`acr.data.manifests.validate_tracks`, which stops at the first broken rule, this lists
them all: required columns, usable track ids (not empty, no control character), unique ids,
known splits, positive durations, split tables that agree with the catalog, no track (or
``group``, or audio file) in both train and an eval split, files that exist, and files that
decode to the duration the manifest says and are not silent throughout (all of them, or a
seeded sample, decoded in full).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from acr.audio import SILENCE_RMS, SILENT, AudioError, scan_audio
from acr.data.manifests import (
    EVAL_SPLITS,
    SPLITS,
    TRACK_COLUMNS,
    ManifestError,
    id_problem,
    read_table,
)
from acr.datamodules.base import TRACKS_FILE
from acr.datamodules.sources import CATALOG_FILE, SPLIT_FILES

# A decoded length may differ from the manifest's by this much (encoder padding, header rounding).
DURATION_TOLERANCE_S = 0.5
DURATION_TOLERANCE_FRACTION = 0.01
SHOWN_PROBLEMS = 30  # rows in the printed table (the JSON report lists them all)


class Problems(list):
    """Problem records: ``check, file, line, track_id, field, value, path, problem``.

    ``file`` is the manifest table, ``line`` its CSV line, ``path`` the audio file concerned.
    """

    def add(self, check: str, problem: str, file: str, field: str = "", **where: Any) -> None:
        value = where.get("value")
        value = None if value is None or pd.isna(value) else value
        track_id = where.get("track_id")
        self.append(
            {
                "check": check,
                "file": file,
                "line": where.get("line"),
                "track_id": None if track_id is None or pd.isna(track_id) else str(track_id),
                "field": field,
                "value": value if value is None or isinstance(value, int | float) else str(value),
                "path": where.get("path"),
                "problem": problem,
            }
        )

    def add_row(self, check: str, problem: str, row: pd.Series, field: str, **extra: Any) -> None:
        """A problem with one table row (its table, line and track_id come from the row)."""
        where = {"line": int(row["_line"]), "track_id": row.get("track_id"), **extra}
        self.add(check, problem, row["_file"], field, **where)


def validate_manifest_dir(
    manifest_dir: str,
    sample: int | None = None,
    seed: int = 0,
    workers: int | None = None,
    near_duplicates: bool = False,
) -> dict[str, Any]:
    """Check a manifest directory; exit status 1 with a one-line summary when anything is wrong.

    An ``acr data prepare`` output, or a DataModule's tracks.csv: required columns, unique ids,
    splits, no train/eval leakage (track_id, group, file), files exist and decode in full to
    their duration_s (within 0.5 s or 1 %). Returns a JSON-ready report.

    Args:
        manifest_dir: the folder with the tables.
        sample: decode a seeded sample of this many files (default: all; every file is checked
            to exist).
        seed: seeds that sample.
        workers: decoding threads (default: one per CPU core).
        near_duplicates: also look for audio leakage under other ids: every evaluation track
            is scanned against a fingerprint index of the training tracks (acr dedup's
            matching), and a stretch that a training track holds is a ``near_duplicate``
            problem (the same recording under two ids, an edit of it, a reused loop). Costs
            an index build of the training split.
    """
    start = time.perf_counter()
    directory = Path(manifest_dir).expanduser().absolute()
    if not directory.is_dir():
        raise FileNotFoundError(f"MANIFEST_DIR: {directory} is not a folder")
    problems = Problems()
    tables = _read_tables(directory, problems)
    usable = {
        name: table for name, table in tables.items() if _check_columns(name, table, problems)
    }
    for table in usable.values():
        _check_rows(table, problems)
    _check_split_tables(usable, problems)
    checked = decoded = 0
    if usable:
        everything = pd.concat(usable.values(), ignore_index=True)
        _check_leakage(everything, problems)
        checked, decoded = _check_files(everything, sample, seed, workers, problems)
        if near_duplicates:
            _check_near_duplicates(everything, workers, problems)
    return {
        "manifest_dir": str(directory),
        "tables": {name: len(table) for name, table in tables.items()},
        "files_checked": checked,
        "files_decoded": decoded,
        "sample": sample,
        "seed": seed,
        "duration_tolerance": f"{DURATION_TOLERANCE_S} s or {DURATION_TOLERANCE_FRACTION:.0%}",
        "ok": not problems,
        "problem_counts": dict(Counter(problem["check"] for problem in problems)),
        "problems": list(problems),
        "seconds": round(time.perf_counter() - start, 3),
    }


def summary_line(report: dict[str, Any]) -> str:
    """One line: clean, or the number of problems by kind and the first of them."""
    if report["ok"]:
        return (
            f"{report['manifest_dir']}: clean ({sum(report['tables'].values())} rows in "
            f"{len(report['tables'])} table(s), {report['files_checked']} files exist, "
            f"{report['files_decoded']} decoded to their duration)"
        )
    counts = ", ".join(f"{count} {check}" for check, count in report["problem_counts"].items())
    return (
        f"{len(report['problems'])} problem(s): {counts}; first: {describe(report['problems'][0])}"
    )


def describe(problem: dict[str, Any]) -> str:
    where = problem["file"] + (f" line {problem['line']}" if problem["line"] else "")
    what = f" track {problem['track_id']}" if problem["track_id"] else ""
    field = f" {problem['field']}" if problem["field"] else ""
    return f"{where}{what}{field}: {problem['problem']}"


def problems_table(report: dict[str, Any]) -> Table:
    table = Table(title=f"{len(report['problems'])} problem(s) in {report['manifest_dir']}")
    for column in ("check", "file", "line", "track_id", "field"):
        table.add_column(column, no_wrap=True)
    table.add_column("problem", overflow="fold")
    for problem in report["problems"][:SHOWN_PROBLEMS]:
        table.add_row(
            *(
                "" if problem[key] is None else str(problem[key])
                for key in ("check", "file", "line", "track_id", "field", "problem")
            )
        )
    if len(report["problems"]) > SHOWN_PROBLEMS:
        table.caption = f"first {SHOWN_PROBLEMS}; --json lists all"
    return table


def _read_tables(directory: Path, problems: Problems) -> dict[str, pd.DataFrame]:
    """catalog.csv and its split tables (``acr data prepare``), or a DataModule's tracks.csv.

    Each table gets ``_file`` (its name), ``_line`` (the CSV line of each row; the header is
    line 1) and ``_split`` (the split its table stands for, else the row's ``split``).
    """
    if (directory / CATALOG_FILE).is_file():
        names = [CATALOG_FILE, *SPLIT_FILES.values()]
    elif (directory / TRACKS_FILE).is_file():
        names = [TRACKS_FILE]
    else:
        raise ManifestError(directory, f"no {CATALOG_FILE} or {TRACKS_FILE}: not a manifest folder")
    tables = {}
    for name in names:
        path = directory / name
        if not path.is_file():
            problems.add("missing_table", "file does not exist", name)
            continue
        try:
            table = read_table(path)
        except (ManifestError, ValueError) as error:
            problems.add("unreadable_table", f"cannot read ({error})", name)
            continue
        if "path" in table:
            table["path"] = [
                value if pd.isna(value) or Path(value).is_absolute() else str(directory / value)
                for value in table["path"]
            ]
        split = next((split for split, file in SPLIT_FILES.items() if file == name), None)
        tables[name] = table.assign(
            _file=name,
            _line=table.index + 2,
            _split=split or table.get("split"),
        )
    return tables


def _check_columns(name: str, table: pd.DataFrame, problems: Problems) -> bool:
    missing = [column for column in TRACK_COLUMNS if column not in table.columns]
    for column in missing:
        problems.add("missing_column", "required column is missing", name, column)
    return not missing


def _check_rows(table: pd.DataFrame, problems: Problems) -> None:
    """Unique ids, known splits (the table's own, for a split table), durations, paths."""
    problems_of_ids = table["track_id"].map(id_problem)
    for _, row in table[problems_of_ids.notna()].iterrows():
        problem = problems_of_ids[row.name]
        problems.add_row("bad_id", problem, row, "track_id", value=row["track_id"])
    usable = table[problems_of_ids.isna()]
    first_lines = usable.drop_duplicates("track_id").set_index("track_id")["_line"]
    for _, row in usable[usable["track_id"].duplicated()].iterrows():
        problem = f"duplicate track_id (first on line {first_lines[row['track_id']]})"
        problems.add_row("duplicate_id", problem, row, "track_id", value=row["track_id"])
    unknown = ~table["split"].isin(SPLITS)
    for _, row in table[unknown].iterrows():
        problem = f"unknown split; expected one of {', '.join(SPLITS)}"
        problems.add_row("unknown_split", problem, row, "split", value=row["split"])
    for _, row in table[~unknown & (table["split"] != table["_split"])].iterrows():
        problem = f"split {row['split']!r} in the {row['_split']} table"
        problems.add_row("split_mismatch", problem, row, "split", value=row["split"])
    durations = pd.to_numeric(table["duration_s"], errors="coerce")
    for _, row in table[~(durations > 0)].iterrows():
        problem = "duration_s must be a number > 0"
        problems.add_row("bad_duration", problem, row, "duration_s", value=row["duration_s"])
    for _, row in table[table["path"].isna() | (table["path"] == "")].iterrows():
        problems.add_row("missing_path", "empty path", row, "path")


def _check_split_tables(tables: dict[str, pd.DataFrame], problems: Problems) -> None:
    """Every split table row is a catalog row, and every catalog row is in its split's table."""
    catalog = tables.get(CATALOG_FILE)
    if catalog is None:
        return
    for split, name in SPLIT_FILES.items():
        if name not in tables:
            continue
        table = tables[name]
        for _, row in table[~table["track_id"].isin(catalog["track_id"])].iterrows():
            problems.add_row("not_in_catalog", f"not in {CATALOG_FILE}", row, "track_id")
        left_out = (catalog["split"] == split) & ~catalog["track_id"].isin(table["track_id"])
        for _, row in catalog[left_out].iterrows():
            problems.add_row(
                "not_in_split_table", f"{split} track missing from {name}", row, "split"
            )


def _check_leakage(everything: pd.DataFrame, problems: Problems) -> None:
    """No track_id, group or audio file in both train and an eval split, in any table."""
    for field in ("track_id", "group", "path"):
        if field not in everything:
            continue
        present = everything[everything[field].notna()]
        train = set(present.loc[present["_split"] == "train", field])
        evaluation = present[present["_split"].isin(EVAL_SPLITS) & present[field].isin(train)]
        for _, row in evaluation.drop_duplicates([field, "_file"]).iterrows():
            problem = f"{field} {row[field]!r} is in train and in {row['_split']}"
            problems.add_row("leak", problem, row, field, value=row[field])


def _check_near_duplicates(
    everything: pd.DataFrame, workers: int | None, problems: Problems
) -> None:
    """Evaluation audio that a training track holds, found by scanning each evaluation track
    against a fingerprint index of the training split, built in a temporary folder."""
    import tempfile

    from acr.monitor.dedup import find_duplicates  # only when asked: the index and the scanner
    from acr.retrieval.build import build_index

    present = everything[everything["path"].notna() & (everything["path"] != "")]
    present = present[present["path"].map(lambda path: Path(path).is_file())]
    train = present[present["_split"] == "train"].drop_duplicates("track_id")
    evaluation = present[present["_split"].isin(EVAL_SPLITS)].drop_duplicates("track_id")
    if train.empty or evaluation.empty:
        return
    with tempfile.TemporaryDirectory(prefix="acr-near-duplicates-") as folder:
        catalog = Path(folder) / "train.csv"
        train[["track_id", "path"]].to_csv(catalog, index=False)
        build_index(str(catalog), str(Path(folder) / "index"), workers=workers)
        found = find_duplicates(Path(folder) / "index", evaluation, exclude_self=False)
    rows = {row["track_id"]: row for _, row in evaluation.iterrows()}
    for hit in found.itertuples(index=False):
        problem = (
            f"{hit.start_s:.1f}-{hit.end_s:.1f} s of it is training track {hit.duplicate_of!r}"
            f" at {hit.reference_start_s:.1f}-{hit.reference_end_s:.1f} s ({hit.kind})"
        )
        row = rows[hit.track_id]
        problems.add_row("near_duplicate", problem, row, "path", path=row["path"])


def _check_files(
    everything: pd.DataFrame,
    sample: int | None,
    seed: int,
    workers: int | None,
    problems: Problems,
) -> tuple[int, int]:
    """Existence of every file; a full decode of all (or a seeded sample) vs ``duration_s``."""
    everything = everything[everything["path"].notna() & (everything["path"] != "")]
    paths = everything["path"].drop_duplicates().tolist()
    exists = {path: os.path.isfile(path) for path in paths}
    for _, row in everything[~everything["path"].map(exists).astype(bool)].iterrows():
        problem = f"{row['path']} does not exist"
        problems.add_row("missing_file", problem, row, "path", path=row["path"])
    present = [path for path in paths if exists[path]]
    if sample is not None and sample < len(present):
        chosen = np.random.default_rng(seed).choice(len(present), size=sample, replace=False)
        present = [present[index] for index in sorted(chosen)]
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        decoded = dict(zip(present, pool.map(_decode, present)))
    checked = everything[everything["path"].isin(decoded)]
    results = checked["path"].map(decoded)
    failed = results.map(lambda result: isinstance(result, AudioError)).astype(bool)
    for _, row in checked[failed].iterrows():
        reason = decoded[row["path"]].reason
        check = "silent" if reason == SILENT else "undecodable"
        problems.add_row(check, f"{row['path']}: {reason}", row, "path", path=row["path"])
    lengths = pd.to_numeric(results[~failed], errors="coerce")
    expected = pd.to_numeric(checked.loc[~failed, "duration_s"], errors="coerce")
    tolerance = np.maximum(DURATION_TOLERANCE_S, DURATION_TOLERANCE_FRACTION * expected)
    mismatched = (expected > 0) & ((lengths - expected).abs() > tolerance)
    for index, row in checked.loc[mismatched[mismatched].index].iterrows():
        problem = (
            f"{expected[index]:.2f} s here, but {row['path']} decodes to {lengths[index]:.2f} s"
        )
        problems.add_row(
            "duration_mismatch", problem, row, "duration_s", value=expected[index], path=row["path"]
        )
    return len(paths), len(decoded)


def _decode(path: str) -> float | AudioError:
    """The decoded duration, or why the file cannot be used: undecodable, or silent
    throughout (which no header tells, so only this full decode finds)."""
    try:
        duration_s, level = scan_audio(path)
    except AudioError as error:
        return error
    return AudioError(path, SILENT) if level < SILENCE_RMS else duration_s

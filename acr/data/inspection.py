"""``acr data inspect``: what a folder of audio (or a source's listed files) holds, from headers.

Only file headers are read (no decoding), in threads, so a collection of thousands of files is
described in seconds: counts, hours, formats, sample rates, channel counts, a duration
histogram, and every unreadable file with the reason. The header scan (:func:`read_headers`) is
shared with ``acr data check`` (acr.data.readiness). Listing a source's files is the caller's
job (acr.datamodules.sources), so acr.data never imports the DataModules.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Group
from rich.table import Table

from acr.audio import AudioError, AudioInfo, audio_files, audio_info

# (label, upper bound in seconds): a file falls in the first bin whose bound exceeds it.
DURATION_BINS_S = (
    ("<10 s", 10.0),
    ("10-30 s", 30.0),
    ("30-60 s", 60.0),
    ("1-5 min", 300.0),
    ("5-10 min", 600.0),
    (">10 min", math.inf),
)
SHOWN_UNREADABLE = 20  # rows of unreadable files in the printed table (JSON lists them all)


def list_audio_files(root: str | Path) -> tuple[list[Path], int]:
    """(every audio file under ``root`` by extension, sorted; how many other files there are)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ROOT: {root} is not a folder")
    audio = audio_files(root)
    files = sum(1 for path in root.rglob("*") if path.is_file())
    return audio, files - len(audio)


def read_headers(paths: list[Path], workers: int | None = None) -> list[AudioInfo | AudioError]:
    """Each file's header (or why it cannot be read), in the order of ``paths``.

    Reads run in threads: libsndfile works outside the GIL, so thousands of headers take seconds.
    """
    with ThreadPoolExecutor(workers or os.cpu_count() or 1) as pool:
        return list(pool.map(_read_header, paths))


def inspect_audio(
    root: str | Path,
    paths: list[Path] | None = None,
    splits: list[str | None] | None = None,
    workers: int | None = None,
    source: str | None = None,
) -> dict[str, Any]:
    """A JSON-ready report on the audio under ``root``, or on the files a source listed there.

    Args:
        root: the folder of audio (or the source's root, which is only reported).
        paths: the files to inspect, as a source lists them (default: every audio file under
            ``root``, found by extension, whose other files are then counted too).
        splits: each listed file's split (None where it has none), for a per-split summary;
            only with ``paths``.
        workers: header-reading threads (default: one per CPU).
        source: the name of the source that listed ``paths``, shown in the report (default:
            "listed files", or "folder of audio files" without ``paths``).
    """
    start = time.perf_counter()
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise FileNotFoundError(f"ROOT: {root} does not exist")
    label = source or ("folder of audio files" if paths is None else "listed files")
    paths, splits, other_files = _listing(root, paths, splits)
    results = read_headers(paths, workers)
    infos = [info for info in results if isinstance(info, AudioInfo)]
    durations = pd.Series([info.duration_s for info in infos], dtype=float)
    report: dict[str, Any] = {
        "root": str(root),
        "source": label,
        "files": len(paths),
        "readable": len(infos),
        "unreadable": len(paths) - len(infos),
        "hours": round(durations.sum() / 3600, 3),
        "duration_s": _summary(durations),
        "formats": _counts(info.format.lower() for info in infos),
        "sample_rates_hz": _counts(info.sample_rate for info in infos),
        "channels": _counts(info.channels for info in infos),
        "durations": _histogram(durations),
    }
    if other_files is not None:
        report["other_files"] = other_files
    if any(split is not None for split in splits):
        report["splits"] = _split_summary(splits, results)
    report["unreadable_files"] = unreadable_files(results)
    report["seconds"] = round(time.perf_counter() - start, 3)
    return report


def unreadable_files(results: list[AudioInfo | AudioError]) -> list[dict[str, str]]:
    """``path`` and ``reason`` of every file whose header could not be read."""
    return [
        {"path": error.path, "reason": error.reason}
        for error in results
        if isinstance(error, AudioError)
    ]


def inspection_tables(report: dict[str, Any]) -> Group:
    """The report as rich tables: totals, formats and rates, durations, unreadable files."""
    totals = Table(title=f"{report['root']} ({report['source']})", show_header=False)
    totals.add_column(style="bold")
    totals.add_column(justify="right")
    duration = report["duration_s"]
    for label, value in (
        ("audio files", report["files"]),
        ("readable", report["readable"]),
        ("unreadable", report["unreadable"]),
        ("hours", f"{report['hours']:.2f}"),
        ("duration min / median / max (s)", _three(duration)),
        *((("other files", report["other_files"]),) if "other_files" in report else ()),
        ("read in (s)", f"{report['seconds']:.1f}"),
    ):
        totals.add_row(label, str(value))
    properties = Table(title="headers")
    for column in ("property", "value", "files"):
        properties.add_column(column, justify="right" if column == "files" else "left")
    for name, key in (
        ("format", "formats"),
        ("sample rate (Hz)", "sample_rates_hz"),
        ("channels", "channels"),
    ):
        for value, count in report[key].items():
            properties.add_row(name, value, str(count))
    histogram = Table(title="durations")
    histogram.add_column("duration")
    histogram.add_column("files", justify="right")
    histogram.add_column("")
    largest = max(report["durations"].values(), default=0) or 1
    for label, count in report["durations"].items():
        histogram.add_row(label, str(count), "█" * round(24 * count / largest))
    parts: list[Table] = [totals, properties, histogram]
    if "splits" in report:
        splits = Table(title="splits")
        for column in ("split", "files", "readable", "hours"):
            splits.add_column(column, justify="left" if column == "split" else "right")
        for split, row in report["splits"].items():
            splits.add_row(split, str(row["files"]), str(row["readable"]), f"{row['hours']:.2f}")
        parts.append(splits)
    if report["unreadable_files"]:
        unreadable = Table(title=f"unreadable files ({report['unreadable']})")
        unreadable.add_column("path", overflow="fold")
        unreadable.add_column("reason", overflow="fold")
        for row in report["unreadable_files"][:SHOWN_UNREADABLE]:
            unreadable.add_row(row["path"], row["reason"])
        if report["unreadable"] > SHOWN_UNREADABLE:
            unreadable.caption = f"first {SHOWN_UNREADABLE}; --json lists all"
        parts.append(unreadable)
    return Group(*parts)


def _listing(
    root: Path, paths: list[Path] | None, splits: list[str | None] | None
) -> tuple[list[Path], list[str | None], int | None]:
    """(files, their splits, how many other files there are: None for a given listing)."""
    if paths is None:
        if splits is not None:
            raise ValueError("splits: give them with the paths they belong to")
        audio, other_files = list_audio_files(root)
        return audio, [None] * len(audio), other_files
    paths = [Path(path) for path in paths]
    if splits is None:
        return paths, [None] * len(paths), None
    if len(splits) != len(paths):
        raise ValueError(f"splits: {len(splits)} given for {len(paths)} paths")
    return paths, list(splits), None


def _read_header(path: Path) -> AudioInfo | AudioError:
    try:
        return audio_info(path)
    except AudioError as error:
        return error


def _counts(values) -> dict[str, int]:
    """Value → count, most common first (keys are strings so the report is valid JSON)."""
    return {str(value): count for value, count in Counter(values).most_common()}


def _histogram(durations: pd.Series) -> dict[str, int]:
    counts = dict.fromkeys((label for label, _ in DURATION_BINS_S), 0)
    lower = 0.0
    for label, upper in DURATION_BINS_S:
        counts[label] = int(((durations >= lower) & (durations < upper)).sum())
        lower = upper
    return counts


def _summary(durations: pd.Series) -> dict[str, float | None]:
    if durations.empty:
        return {"min": None, "median": None, "mean": None, "max": None}
    return {
        name: round(float(getattr(durations, name)()), 3)
        for name in ("min", "median", "mean", "max")
    }


def _three(duration: dict[str, float | None]) -> str:
    if duration["min"] is None:
        return "-"
    return f"{duration['min']:.1f} / {duration['median']:.1f} / {duration['max']:.1f}"


def _split_summary(splits: list[str | None], results: list) -> dict[str, dict[str, Any]]:
    summary: dict[str, dict[str, Any]] = {}
    for split, result in zip(splits, results):
        row = summary.setdefault(str(split), {"files": 0, "readable": 0, "hours": 0.0})
        row["files"] += 1
        if isinstance(result, AudioInfo):
            row["readable"] += 1
            row["hours"] += result.duration_s / 3600
    for row in summary.values():
        row["hours"] = round(row["hours"], 3)
    return summary

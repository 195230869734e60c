"""Scoring ``acr monitor``'s detections against the truth.csv of ``acr data make-mixes``.

Definitions (also written into every report, ``definitions``):

- A detection *matches* a truth catalog segment of the same recording when it names the same
  track and their intersection is at least half of the truth segment's length (``MATCH_SHARE``
  of the truth; nothing is asked of the detection's own share, so a detection that runs long
  still matches and its excess shows as boundary error). One detection matches at most one
  truth segment and one truth segment at most one detection: candidate pairs are taken
  greedily, largest intersection first (ties: earlier detection, then earlier truth row).
- *Recall* is matched truth catalog segments / truth catalog segments; *precision* is matched
  detections / detections. Both with a 95 % Wilson interval (acr.retrieval.metrics).
- *Boundary error*: over matched pairs, |detection start - truth start| and |detection end -
  truth end| in seconds (truth boundaries are crossfade midpoints); the median of both pooled,
  and of each alone.
- A *false alarm* is a detection that matches nothing and lies in out-of-catalog time (truth
  rows of kind music, speech or silence) by more than ``FALSE_ALARM_TOLERANCE_S`` or by more
  than half of its own length; a wrong-track detection inside a catalog excerpt that spills
  under a second across a boundary (a crossfade is up to 2 s) is a precision miss, not a
  false alarm. *False alarms per hour* divides their count by the hours of out-of-catalog
  time: the total length of the non-catalog truth rows.
- *Buckets* group truth catalog segments by degradation, talk_over, speed change
  (|speed_factor - 1| > ``SPEED_CHANGE``) and length (``LENGTH_BINS_S``). A bucket's recall
  counts its segments; its precision counts the detections matched to its segments, or, for an
  unmatched one, overlapping its segments most.

A detection's recording is the truth's recording of the same name, else the one truth
recording with the same file name (the monitor writes the path it was given).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import pandas as pd
from rich.table import Table

from acr.data.manifests import ManifestError, id_problem, line_numbers, read_table
from acr.data.mixes import KINDS, TRUTH_COLUMNS
from acr.files import write_json
from acr.retrieval.metrics import proportion_interval

DETECTION_COLUMNS = ("recording", "start_s", "end_s", "track_id")
MATCH_SHARE = 0.5
FALSE_ALARM_TOLERANCE_S = 1.0
SPEED_CHANGE = 0.02
LENGTH_BINS_S = (10.0, 30.0, 60.0)
EPSILON_S = 1e-9  # times are written with float precision: 50 % exactly is 50 %
# Issue 17's targets: (report key, target, True when the value must be at least the target)
TARGETS = (
    ("recall", 0.95, True),
    ("precision", 0.98, True),
    ("median_boundary_error_s", 1.0, False),
    ("false_alarms_per_hour", 1.0, False),
)


def evaluate_monitor(detections: str, truth: str, output: str | None = None) -> dict[str, Any]:
    """Score acr monitor's detections against a mix's truth.csv (acr data make-mixes).

    Segment recall and precision with 95 % Wilson intervals, median boundary error, false
    alarms per hour of out-of-catalog audio, overall and per bucket (degradation, talk-over,
    speed change, excerpt length); see acr.monitor.scoring for the definitions.

    Args:
        detections: acr monitor's segments, CSV or JSONL (by extension): recording, start_s,
            end_s, track_id (other columns are kept out of the score).
        truth: the truth.csv of acr data make-mixes.
        output: write the report as JSON here.
    """
    truth_table = read_truth(truth)
    detection_table = read_detections(detections, truth_table)
    report = {"detections": str(detections), "truth": str(truth)}
    report |= score_monitor(detection_table, truth_table)
    if output:
        write_json(output, report)
    return report


def read_truth(path: str | Path) -> pd.DataFrame:
    """truth.csv, checked: its columns, kinds, times (end after start) and catalog track ids;
    errors name the file, line and column."""
    table = _read(path)
    require = [column for column in TRUTH_COLUMNS if column not in table.columns]
    if require:
        raise ManifestError(path, f"missing column(s) {require}; found {list(table.columns)}")
    table = _checked_times(table, path)
    table["recording"] = _texts(table, "recording", path)
    lines = table["line"]
    for line, kind, track_id in zip(lines, table["kind"], table["track_id"]):
        if kind not in KINDS:
            raise ManifestError(path, f"line {line}: column kind: {kind!r} is not one of {KINDS}")
        if kind == "catalog" and (problem := id_problem(track_id)):
            raise ManifestError(path, f"line {line}: column track_id: {problem}")
    table["speed_factor"] = [
        _speed(value, line, path) for value, line in zip(table["speed_factor"], lines)
    ]
    table["degradation"] = ["" if _blank(value) else str(value) for value in table["degradation"]]
    table["talk_over"] = [
        _flag(value, line, path) for value, line in zip(table["talk_over"], lines)
    ]
    return table.reset_index(drop=True)


def read_detections(path: str | Path, truth: pd.DataFrame) -> pd.DataFrame:
    """acr monitor's segments, checked: columns, times, track ids, and recordings that the
    truth holds (``recording`` becomes the truth's name for it); errors name the file, line
    and column. An empty file holds no detections; of JSONL events (acr monitor --format
    jsonl), the ``end`` ones are the segments (``start`` and ``gap`` events are not)."""
    table = _read(path, DETECTION_COLUMNS)
    if "event" in table.columns:  # acr monitor's JSONL events: a segment's final row is its end
        table = table[table["event"] == "end"]
    missing = [column for column in DETECTION_COLUMNS if column not in table.columns]
    if missing:
        raise ManifestError(path, f"missing column(s) {missing}; found {list(table.columns)}")
    table = _checked_times(table, path)
    resolve = _recording_names(truth["recording"].unique())
    recordings = []
    for line, recording in zip(table["line"], _texts(table, "recording", path)):
        if resolve(recording) is None:
            known = ", ".join(sorted(truth["recording"].unique())[:5])
            raise ManifestError(path, f"line {line}: column recording: {recording!r} is not a "
                                f"recording of the truth table (it has {known}...)")  # fmt: skip
        recordings.append(resolve(recording))
    table["recording"] = recordings
    for line, track_id in zip(table["line"], table["track_id"]):
        if problem := id_problem(track_id):
            raise ManifestError(path, f"line {line}: column track_id: {problem}")
    table["track_id"] = table["track_id"].astype(str)
    return table.reset_index(drop=True)


def score_monitor(detections: pd.DataFrame, truth: pd.DataFrame) -> dict[str, Any]:
    """The report of checked detection and truth tables (read_detections, read_truth)."""
    catalog = truth[truth["kind"] == "catalog"].reset_index(drop=True)
    outside = truth[truth["kind"] != "catalog"]
    pairs = match_segments(detections, catalog)
    matched_truth = {t: d for d, t, _ in pairs}
    matched_detection = {d: t for d, t, _ in pairs}
    false_alarms = [
        row
        for index, row in detections.iterrows()
        if index not in matched_detection and _counts_as_false_alarm(row, outside)
    ]
    hours = float((outside["end_s"] - outside["start_s"]).sum()) / 3600
    overall = _summary(detections, catalog, pairs, range(len(catalog)), range(len(detections)))
    overall |= {
        "false_alarms": len(false_alarms),
        "out_of_catalog_hours": hours,
        "false_alarms_per_hour": len(false_alarms) / hours if hours > 0 else None,
        "recordings": int(truth["recording"].nunique()),
    }
    owner = {
        d: matched_detection.get(d, _most_overlapped(row, catalog))
        for d, row in detections.iterrows()
    }
    buckets = {}
    for name, members in _buckets(catalog).items():
        member_set = set(members)
        assigned = [d for d, t in owner.items() if t in member_set]
        buckets[name] = _summary(detections, catalog, pairs, members, assigned)
    return {
        "definitions": _definitions(),
        "overall": overall,
        "targets": target_verdicts(overall),
        "buckets": buckets,
        "false_alarm_detections": [_described(row) for row in false_alarms],
        "missed": [
            _described(catalog.loc[t]) for t in range(len(catalog)) if t not in matched_truth
        ],
    }


def match_segments(detections: pd.DataFrame, catalog: pd.DataFrame) -> list[tuple[int, int, float]]:
    """One-to-one ``(detection, truth, intersection_s)`` pairs: same recording and track, the
    intersection at least MATCH_SHARE of the truth's length; greedy by intersection."""
    candidates = []
    truths = catalog.groupby(["recording", "track_id"]).indices
    for (recording, track_id), rows in detections.groupby(
        ["recording", "track_id"]
    ).indices.items():
        for t in truths.get((recording, track_id), ()):
            truth_start, truth_end = catalog.at[t, "start_s"], catalog.at[t, "end_s"]
            for d in rows:
                start = max(detections.at[d, "start_s"], truth_start)
                end = min(detections.at[d, "end_s"], truth_end)
                intersection = end - start
                if intersection >= MATCH_SHARE * (truth_end - truth_start) - EPSILON_S:
                    candidates.append((-intersection, int(d), int(t)))
    pairs, used_detections, used_truths = [], set(), set()
    for negative, d, t in sorted(candidates):
        if d not in used_detections and t not in used_truths:
            pairs.append((d, t, -negative))
            used_detections.add(d)
            used_truths.add(t)
    return sorted(pairs)


def target_verdicts(overall: dict[str, Any]) -> list[dict[str, Any]]:
    """Each of issue 17's targets: the metric, its value, the target and whether it is met."""
    verdicts = []
    for metric, target, at_least in TARGETS:
        value = overall.get(metric)
        met = value is not None and (value >= target if at_least else value <= target)
        verdicts.append({"metric": metric, "value": value, "target": target,
                         "at_least": at_least, "met": bool(met)})  # fmt: skip
    return verdicts


def report_table(report: dict[str, Any]) -> Table:
    """The report as a rich table: overall, then each bucket."""
    table = Table(title=f"acr monitor: {report['detections']} against {report['truth']}")
    for column in ("bucket", "truth", "recall [95% CI]", "detections", "precision [95% CI]",
                   "median boundary error", "false alarms / h"):  # fmt: skip
        table.add_column(column, justify="left" if column == "bucket" else "right",
                         no_wrap=column == "bucket")  # fmt: skip
    overall = report["overall"]
    per_hour = overall["false_alarms_per_hour"]
    false_alarms = f"{overall['false_alarms']} in {overall['out_of_catalog_hours']:.2f} h"
    false_alarms += f" = {per_hour:.2f}" if per_hour is not None else ""
    table.add_row("overall", *_cells(overall), false_alarms)
    for name, values in report["buckets"].items():
        table.add_row(name, *_cells(values), "")
    return table


def _read(path: str | Path, columns: Iterable[str] = ()) -> pd.DataFrame:
    """A CSV or JSONL table with each row's file line in ``line``; an empty file is a table
    of ``columns`` without rows."""
    path = Path(path)
    if path.is_file() and not path.read_bytes().strip():
        return pd.DataFrame(columns=[*columns, "line"])
    try:
        table = read_table(path)
    except (ValueError, json.JSONDecodeError) as error:  # a line that is not JSON, bad CSV
        if isinstance(error, ManifestError):
            raise
        raise ManifestError(path, f"cannot read it as a table ({error})") from error
    table["line"] = list(line_numbers(table))
    return table


def _checked_times(table: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """start_s and end_s as floats, end after start; else an error naming line and column."""
    table = table.copy()
    for column in ("start_s", "end_s"):
        values = []
        for line, value in zip(table["line"], table[column]):
            number = _number(value)
            if number is None:
                raise ManifestError(path, f"line {line}: column {column}: {value!r} is not a "
                                    "number of seconds")  # fmt: skip
            values.append(number)
        table[column] = np.asarray(values, dtype=np.float64)
    for line, start, end in zip(table["line"], table["start_s"], table["end_s"]):
        if not end > start:
            raise ManifestError(path, f"line {line}: column end_s: {end} is not after start_s "
                                f"{start}")  # fmt: skip
    return table


def _texts(table: pd.DataFrame, column: str, path: str | Path) -> list[str]:
    texts = []
    for line, value in zip(table["line"], table[column]):
        if _blank(value):
            raise ManifestError(path, f"line {line}: column {column}: empty")
        texts.append(str(value))
    return texts


def _recording_names(recordings: Iterable[str]) -> Callable[[str], str | None]:
    """The truth recording a detection's recording names: the same name, else the only truth
    recording with the same file name (None: none, or several)."""
    recordings = set(recordings)
    by_file: dict[str, list[str]] = {}
    for recording in sorted(recordings):
        by_file.setdefault(PurePath(recording).name, []).append(recording)

    def resolve(recording: str) -> str | None:
        if recording in recordings:
            return recording
        owners = by_file.get(PurePath(recording).name, [])
        return owners[0] if len(owners) == 1 else None

    return resolve


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value) == ""


def _speed(value: Any, line: int, path: str | Path) -> float:
    """A row's speed factor (empty: 1, as for rows that are not catalog excerpts)."""
    if _blank(value):
        return 1.0
    number = _number(value)
    if number is None or number <= 0:
        raise ManifestError(path, f"line {line}: column speed_factor: {value!r} is not a "
                            "number > 0")  # fmt: skip
    return number


def _flag(value: Any, line: int, path: str | Path) -> bool:
    if _blank(value):
        return False
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0", "yes"):
        return True
    if text in ("false", "0", "0.0", "no"):
        return False
    raise ManifestError(path, f"line {line}: column talk_over: {value!r} is not true or false")


def _counts_as_false_alarm(detection: pd.Series, outside: pd.DataFrame) -> bool:
    rows = outside[outside["recording"] == detection["recording"]]
    overlap = np.clip(
        np.minimum(rows["end_s"], detection["end_s"])
        - np.maximum(rows["start_s"], detection["start_s"]),
        0,
        None,
    ).sum()
    length = detection["end_s"] - detection["start_s"]
    return bool(overlap > FALSE_ALARM_TOLERANCE_S or overlap > 0.5 * length)


def _most_overlapped(detection: pd.Series, catalog: pd.DataFrame) -> int | None:
    """The truth catalog segment this detection overlaps most, or None."""
    rows = catalog[catalog["recording"] == detection["recording"]]
    overlap = np.minimum(rows["end_s"], detection["end_s"]) - np.maximum(
        rows["start_s"], detection["start_s"]
    )
    if not len(rows) or overlap.max() <= 0:
        return None
    return int(overlap.idxmax())


def _buckets(catalog: pd.DataFrame) -> dict[str, list[int]]:
    """Truth catalog segments (row numbers) by degradation, talk_over, speed change, length."""
    lengths = catalog["end_s"] - catalog["start_s"]
    edges = (0.0, *LENGTH_BINS_S, math.inf)
    labels = [f"{low:g}-{high:g}s" if high < math.inf else f"{low:g}s+"
              for low, high in zip(edges, edges[1:])]  # fmt: skip
    keys = {
        "degradation": catalog["degradation"].replace("", "clean"),
        "talk_over": catalog["talk_over"].map(lambda value: "yes" if value else "no"),
        "speed_change": ((catalog["speed_factor"] - 1).abs() > SPEED_CHANGE).map(
            lambda value: "yes" if value else "no"
        ),
        "length": pd.cut(lengths, edges, right=False, labels=labels).astype(str),
    }
    buckets = {}
    for column, values in keys.items():
        order = labels if column == "length" else sorted(set(values))
        for value in order:
            members = [int(i) for i in np.flatnonzero(np.asarray(values) == value)]
            if members:
                buckets[f"{column}={value}"] = members
    return buckets


def _summary(
    detections: pd.DataFrame,
    catalog: pd.DataFrame,
    pairs: list[tuple[int, int, float]],
    truths: Iterable[int],
    assigned: Iterable[int],
) -> dict[str, Any]:
    """Recall over ``truths``, precision over the ``assigned`` detections, boundary errors."""
    truths, assigned = set(truths), set(assigned)
    in_cell = [(d, t) for d, t, _ in pairs if t in truths]
    starts = [abs(detections.at[d, "start_s"] - catalog.at[t, "start_s"]) for d, t in in_cell]
    ends = [abs(detections.at[d, "end_s"] - catalog.at[t, "end_s"]) for d, t in in_cell]
    precise = sum(d in assigned for d, _ in in_cell)
    return {
        "truth_segments": len(truths),
        "matched": len(in_cell),
        "recall": len(in_cell) / len(truths) if truths else None,
        "recall_ci95": proportion_interval(len(in_cell), len(truths)),
        "detections": len(assigned),
        "precision": precise / len(assigned) if assigned else None,
        "precision_ci95": proportion_interval(precise, len(assigned)),
        "median_boundary_error_s": _median(starts + ends),
        "median_start_error_s": _median(starts),
        "median_end_error_s": _median(ends),
    }


def _median(values: list[float]) -> float | None:
    return float(np.median(values)) if values else None


def _described(row: pd.Series) -> dict[str, Any]:
    described = {key: row[key] for key in ("recording", "start_s", "end_s", "track_id")}
    if "line" in row:
        described["line"] = int(row["line"])
    return described


def _cells(values: dict[str, Any]) -> list[str]:
    def share(value: float | None, interval: list[float]) -> str:
        if value is None:
            return "-"
        return f"{value:.3f} [{interval[0]:.3f}, {interval[1]:.3f}]"

    error = values["median_boundary_error_s"]
    return [
        str(values["truth_segments"]),
        share(values["recall"], values["recall_ci95"]),
        str(values["detections"]),
        share(values["precision"], values["precision_ci95"]),
        "-" if error is None else f"{error:.2f} s",
    ]


def _definitions() -> dict[str, str]:
    return {
        "match": f"same recording and track_id, intersection >= {MATCH_SHARE:g} x the truth "
        "segment's length (any share of the detection); one-to-one, greedy by intersection",
        "boundary_error": "|start - start| and |end - end| of matched pairs, in seconds; truth "
        "boundaries are crossfade midpoints",
        "false_alarm": "an unmatched detection with more than "
        f"{FALSE_ALARM_TOLERANCE_S:g} s, or more than half of it, in out-of-catalog time",
        "out_of_catalog_hours": "the total length of the truth rows of kind music, speech, silence",
        "speed_change": f"|speed_factor - 1| > {SPEED_CHANGE:g}",
        "intervals": "95 % Wilson score intervals",
    }

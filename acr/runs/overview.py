"""``acr status`` without a run directory: where the whole project stands, in one screen.

Accelerators torch sees, the data roots the shipped configs name (and those that prepared
manifests name), the newest runs with their heartbeat state, the best checkpoint of each run,
and the newest evaluation reports. Everything comes from file names and small JSON files: no
audio is decoded and Lightning is never imported, so the answer comes in a few seconds (torch,
for the accelerators, is the slowest import). A file that cannot be read is listed as
unreadable; it never stops the overview.
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from acr.runs.environment import (
    SETTINGS_FILE,
    accelerators,
    data_roots,
    data_state,
    shown_path,
)
from acr.status import STATUS_FILE, is_alive

RUNS_DIR = "runs"
SKIPPED_FOLDERS = {"wandb", "__pycache__"}  # and hidden folders: many files, nothing to report
# JSON files with a ``systems`` key that are not evaluate reports: a sweep run's result repeats
# its report.json (or its last validation), so listing it would crowd the reports out.
NOT_REPORTS = {STATUS_FILE, SETTINGS_FILE, "index.json", "fusion.json", "result.json"}
CALLBACK_REPORT = re.compile(r"^\w+-(step\d+|latest)\.json$")  # validation results, not reports
CHECKPOINT_TOP1 = re.compile(r"val_top1=(\d+(?:\.\d+)?)")  # best-step600-val_top1=0.822.ckpt
CHECKPOINT_STEP = re.compile(r"step=?(\d+)")


def project_status(root: str | Path = ".", limit: int = 5, depth: int = 6) -> dict[str, Any]:
    """A JSON-ready snapshot of the project: accelerators, data roots, runs, checkpoints and
    evaluation reports.

    Args:
        root: the project folder (the one with configs/, data/ and runs/).
        limit: how many runs, best checkpoints and evaluation reports to list (the most recent
            of each).
        depth: how many folder levels below runs/ are searched (a sweep's runs sit at
            runs/sweeps/NAME/runs/ARM/SEED, their checkpoints one level deeper).
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    root = Path(root).expanduser().absolute()
    runs_dir = root / RUNS_DIR
    status_files, checkpoint_files, json_files = _walk(runs_dir, depth)
    runs = sorted(
        (_run(path.parent, root) for path in status_files), key=lambda run: -run["modified_s"]
    )
    checkpoints = _best_checkpoints(checkpoint_files, runs, root)
    return {
        "root": str(root),
        "checked_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "accelerators": accelerators(),
        "data": data_roots(root),
        "runs_dir": str(runs_dir) if runs_dir.is_dir() else None,
        "counts": {"runs": len(runs), "best_checkpoints": len(checkpoints)},
        "runs": runs[:limit],
        "best_checkpoints": checkpoints[:limit],
        "reports": _reports(json_files, root, limit),
    }


def describe_project(status: dict[str, Any]) -> str:
    """The snapshot of :func:`project_status` as text for a terminal, one section per concern.

    Args:
        status: what :func:`project_status` returned.
    """
    lines = [f"acr project {status['root']} (checked {status['checked_at']})", ""]
    lines.append(f"accelerators  {status['accelerators']['summary']}")
    lines += ["", "data"]
    if status["data"]:
        rows = [["path", "holds", "state", "audio files", "named by"]]
        for entry in status["data"]:
            files = entry["audio_files"]
            rows.append(
                [
                    entry["path"],
                    entry["role"],
                    data_state(entry),
                    "-" if files is None else str(files),
                    ", ".join(entry["named_by"]) or "-",
                ]
            )
        lines += _aligned(rows)
        if any(not entry["exists"] and entry["role"] != "manifests" for entry in status["data"]):
            lines.append(
                "  (missing roots are the configs' placeholders: set --data.init_args.root;"
                " `acr data check ROOT` tells if a folder is ready)"
            )
    else:
        lines.append("  none: no configs/*.yaml names data and data/ holds no prepared manifests")
    total = status["counts"]["runs"]
    lines += ["", f"runs ({len(status['runs'])} newest of {total})" if total else "runs"]
    if status["runs"]:
        lines += _aligned([_run_row(run) for run in status["runs"]])
    else:
        lines.append(f"  none: no {STATUS_FILE} under {RUNS_DIR}/ (acr fit writes runs/NAME/)")
    lines += ["", "best checkpoints (val/top1)"]
    if status["best_checkpoints"]:
        rows = [
            [
                checkpoint["path"],
                _number(checkpoint["val_top1"]),
                f"step {checkpoint['step']}" if checkpoint["step"] is not None else "",
                "file missing"
                if checkpoint["age_s"] is None
                else f"{_ago(checkpoint['age_s'])} ago",
            ]
            for checkpoint in status["best_checkpoints"]
        ]
        lines += _aligned(rows)
    else:
        lines.append("  none: no checkpoint named with val_top1 and no finished fit that has one")
    lines += ["", "evaluation reports (top-1 overall)"]
    if status["reports"]:
        lines += _aligned([_report_row(report) for report in status["reports"]])
    else:
        lines.append(f"  none under {RUNS_DIR}/ (acr evaluate --output {RUNS_DIR}/NAME.json)")
    return "\n".join(lines)


# -- runs ----------------------------------------------------------------------------------------
def _walk(runs_dir: Path, depth: int) -> tuple[list[Path], list[Path], list[Path]]:
    """(status files, checkpoints, other JSON files) under ``runs_dir``, ``depth`` levels down."""
    status_files, checkpoints, json_files = [], [], []
    if not runs_dir.is_dir():
        return status_files, checkpoints, json_files
    for directory, folders, files in os.walk(runs_dir):
        level = len(Path(directory).relative_to(runs_dir).parts)
        folders[:] = sorted(
            folder
            for folder in folders
            if level < depth and not folder.startswith(".") and folder not in SKIPPED_FOLDERS
        )
        for name in files:
            path = Path(directory) / name
            if name == STATUS_FILE:
                status_files.append(path)
            elif name.endswith(".ckpt"):
                checkpoints.append(path)
            elif name.endswith(".json") and name not in NOT_REPORTS:
                if not CALLBACK_REPORT.match(name):
                    json_files.append(path)
    return status_files, checkpoints, json_files


def _run(directory: Path, root: Path) -> dict[str, Any]:
    """One run's heartbeat, with ``stopped`` for a running job whose process is gone."""
    path = directory / STATUS_FILE
    run: dict[str, Any] = {"path": shown_path(directory, root), **_modified(path)}
    try:
        status = json.loads(path.read_text())
        state = status["state"]
        if state == "running" and not is_alive(status):
            state = "stopped"
        progress = status.get("progress") or {}
        run.update(
            job=status["job"],
            state=state,
            stage=status.get("stage") or "",
            progress={key: progress.get(key) for key in ("done", "total", "unit")},
            updated_at=status.get("updated_at"),
            pid=status.get("pid"),
            last_checkpoint=status.get("last_checkpoint"),
            last_error=status.get("last_error"),
            totals=status.get("totals") or {},
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        run.update(job=None, state="unreadable", error=f"{type(error).__name__}: {error}")
    return run


def _best_checkpoints(
    files: list[Path], runs: list[dict[str, Any]], root: Path
) -> list[dict[str, Any]]:
    """The best checkpoint of each run, newest first: the highest val_top1 in a file name,
    else the ``best_checkpoint`` and ``val_top1`` totals of a finished fit."""
    best: dict[str, dict[str, Any]] = {}
    for path in files:
        match = CHECKPOINT_TOP1.search(path.name)
        if match is None:
            continue
        run = path.parent.parent if path.parent.name == "checkpoints" else path.parent
        step = CHECKPOINT_STEP.search(path.name)
        candidate = {
            "path": shown_path(path, root),
            "run": shown_path(run, root),
            "val_top1": float(match.group(1)),
            "step": int(step.group(1)) if step else None,
            "from": "file name",
            **_modified(path),
        }
        kept = best.get(candidate["run"])
        if kept is None or candidate["val_top1"] > kept["val_top1"]:
            best[candidate["run"]] = candidate
    for run in runs:
        totals = run.get("totals") or {}
        top1, checkpoint = totals.get("val_top1"), totals.get("best_checkpoint")
        if run["path"] in best or not isinstance(top1, int | float) or not checkpoint:
            continue
        path = Path(checkpoint)
        path = path if path.is_absolute() else root / path  # fits run from the project folder
        step = CHECKPOINT_STEP.search(path.name)
        best[run["path"]] = {
            "path": shown_path(path, root),
            "run": run["path"],
            "val_top1": float(top1),
            "step": int(step.group(1)) if step else None,
            "from": STATUS_FILE,
            **_modified(path),
        }
    return sorted(best.values(), key=lambda checkpoint: -checkpoint["modified_s"])


def _reports(files: list[Path], root: Path, limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` evaluation reports (JSON with ``systems``), read newest first."""
    reports = []
    for path in sorted(files, key=_mtime, reverse=True):
        entry: dict[str, Any] = {"path": shown_path(path, root), **_modified(path)}
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            reports.append({**entry, "error": f"{type(error).__name__}: {error}"})
        else:
            if not isinstance(report, dict) or "systems" not in report:
                continue
            systems = report["systems"] if isinstance(report["systems"], dict) else {}
            entry.update(
                queries=report.get("queries"),
                errors=len(report["errors"]) if isinstance(report.get("errors"), list) else None,
                top1={system: _overall_top1(cells) for system, cells in systems.items()},
                index=report.get("index"),
                query_table=report.get("query_table"),
            )
            reports.append(entry)
        if len(reports) == limit:
            break
    return reports


def _overall_top1(cells: Any) -> float | None:
    try:
        return float(cells["overall"]["top1"])
    except (KeyError, TypeError, ValueError):
        return None


# -- text ----------------------------------------------------------------------------------------
def _run_row(run: dict[str, Any]) -> list[str]:
    if run["state"] == "unreadable":
        return [run["path"], "?", "unreadable", "-", "-", f"{_ago(run['age_s'])} ago", run["error"]]
    progress = run["progress"]
    done, total, unit = progress["done"], progress["total"], progress["unit"] or ""
    if done is None:
        amount = "-"
    elif total:
        amount = f"{_number(done)}/{_number(total)} {unit} ({100 * done / total:.0f} %)".strip()
    else:
        amount = f"{_number(done)} {unit}".strip()
    notes = []
    if run["state"] == "stopped":
        notes.append(f"process {run['pid']} is gone (killed or crashed)")
    if run["state"] == "failed" and run.get("last_error"):
        notes.append(run["last_error"])
    totals = run["totals"]
    if isinstance(totals.get("val_top1"), int | float):
        notes.append(f"val/top1 {_number(totals['val_top1'])}")
    if isinstance(totals.get("top1"), dict):
        notes.append(_top1_text(totals["top1"]))
    cells = [run["path"], run["job"], run["state"], run["stage"] or "-", amount]
    return [*map(str, cells), f"{_ago(run['age_s'])} ago", "; ".join(notes)]


def _report_row(report: dict[str, Any]) -> list[str]:
    age = f"{_ago(report['age_s'])} ago"
    if "error" in report:
        return [report["path"], age, "unreadable", report["error"]]
    queries = report["queries"]
    errors = f", {report['errors']} failed" if report.get("errors") else ""
    return [report["path"], age, f"{queries} queries{errors}", _top1_text(report["top1"])]


def _top1_text(top1: dict[str, Any]) -> str:
    return ", ".join(
        f"{system} {_number(value) if isinstance(value, int | float) else '-'}"
        for system, value in top1.items()
    )


def _aligned(rows: list[list[str]]) -> list[str]:
    """Rows as lines indented by two spaces, columns padded to their widest cell."""
    widths = [
        max(len(row[column]) for row in rows if column < len(row))
        for column in range(max(map(len, rows)))
    ]
    return [
        "  " + "  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
        for row in rows
    ]


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _modified(path: Path) -> dict[str, Any]:
    """When ``path`` was last written: ``modified_s`` (epoch seconds; 0 if it is missing) and
    ``age_s`` (None if it is missing)."""
    modified_s = _mtime(path)
    return {
        "modified_s": modified_s,
        "age_s": round(time.time() - modified_s, 1) if modified_s else None,
    }


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.3f}"

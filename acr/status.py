"""Heartbeats of long jobs: ``status.json`` in the run directory, read with ``acr status DIR``.

An index build once ran for over an hour with no visible output, and users read process lists
to know whether training was alive. Every long job (fit, index, evaluate, sweep, pipeline)
rewrites a small ``status.json``: stage, progress, throughput, ETA, last checkpoint, last
error. Readers tell a live job from a dead one by its pid, since a killed process cannot say
it stopped.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from acr.files import process_exists, write_json

STATUS_FILE = "status.json"
JOBS = ("fit", "index", "evaluate", "sweep", "pipeline")


class Heartbeat:
    """The ``status.json`` of one job, replaced atomically so that a reader never sees half of it.

    ``throughput`` is measured over the whole job, from the first progress report to the latest,
    so a resumed job counts only its own work and pauses (validation, snapshots) weigh in the
    ETA as they will again. Writes are throttled to one per ``min_interval_s``, except when
    forced or when the stage or state changes. A failed write never stops the job: it is
    reported once as a warning.
    """

    def __init__(
        self,
        directory: str | Path,
        job: str,
        min_interval_s: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if job not in JOBS:
            raise ValueError(f"job {job!r} is not one of {', '.join(JOBS)}")
        self.path = Path(directory) / STATUS_FILE
        self.min_interval_s = min_interval_s
        self.clock = clock
        self.status: dict[str, Any] = {
            "job": job,
            "state": "running",
            "stage": "",
            "progress": {"done": None, "total": None, "unit": None},
            "throughput": None,
            "eta_s": None,
            "started_at": _utc_now(),
            "updated_at": None,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "last_checkpoint": None,
            "last_error": None,
            "totals": {},
            "details": {},
        }
        self._first_progress: tuple[float, float] | None = None  # (clock, done)
        self._last_write: float | None = None
        self._warned = False

    def __enter__(self) -> Heartbeat:
        return self

    def __exit__(
        self,
        error_type: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """A block that raises marks the job failed (the error goes on); one that ends without
        calling :meth:`finish` finishes the job without totals."""
        if error is not None:
            self.fail(error)
        elif self.status["state"] == "running":
            self.finish()

    def update(
        self,
        stage: str | None = None,
        done: float | None = None,
        total: float | None = None,
        unit: str | None = None,
        force: bool = False,
        **details: Any,
    ) -> None:
        """Record progress; written now if forced, if the stage changed or if the last write is
        older than ``min_interval_s``."""
        stage_changed = stage is not None and stage != self.status["stage"]
        if stage is not None:
            self.status["stage"] = stage
        progress = self.status["progress"]
        if total is not None:
            progress["total"] = total
        if unit is not None:
            progress["unit"] = unit
        if done is not None:
            progress["done"] = done
            self._measure(done)
        self.status["details"].update(details)
        if force or stage_changed or self._due():
            self._write()

    def checkpoint(self, path: str | Path) -> None:
        """Record the newest checkpoint; a new one is written at once."""
        if str(path) != self.status["last_checkpoint"]:
            self.status["last_checkpoint"] = str(path)
            self._write()

    def finish(self, **totals: Any) -> None:
        self.status.update(state="finished", stage="done", eta_s=None)
        self.status["totals"].update(totals)
        self._write()

    def fail(self, error: BaseException | str) -> None:
        self.status.update(state="failed", eta_s=None, last_error=error_text(error))
        self._write()

    def _measure(self, done: float) -> None:
        now = self.clock()
        if self._first_progress is None:
            self._first_progress = (now, done)
            return
        first_time, first_done = self._first_progress
        if now <= first_time:
            return
        throughput = (done - first_done) / (now - first_time)
        total = self.status["progress"]["total"]
        self.status["throughput"] = throughput
        if total is not None and throughput > 0:
            self.status["eta_s"] = max(total - done, 0) / throughput

    def _due(self) -> bool:
        return self._last_write is None or self.clock() - self._last_write >= self.min_interval_s

    def _write(self) -> None:
        self.status["updated_at"] = _utc_now()
        self._last_write = self.clock()
        try:
            write_json(self.path, self.status)  # atomic: readers see the old or the new
        except OSError as error:
            if not self._warned:
                warnings.warn(
                    f"cannot write {self.path} ({error}); the job goes on without a heartbeat",
                    stacklevel=3,
                )
                self._warned = True


def error_text(error: BaseException | str) -> str:
    """``Type: message`` (just ``Type`` for errors without one, like KeyboardInterrupt)."""
    if isinstance(error, str):
        return error
    message = str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# -- reading ---------------------------------------------------------------------------------
def read_status(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / STATUS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no {STATUS_FILE} in {directory}: is this a run directory of acr "
            "fit/index/evaluate/sweep/pipeline?"
        )
    return json.loads(path.read_text())


def run_statuses(directory: str | Path) -> dict[str, dict[str, Any]]:
    """The heartbeat of a run directory, then those of its runs up to three levels down (a
    sweep's ``runs/ARM/seedS``), by directory."""
    directory = Path(directory)
    runs = [directory] if (directory / STATUS_FILE).is_file() else []
    runs += sorted(
        path.parent
        for depth in ("*", "*/*", "*/*/*")
        for path in directory.glob(f"{depth}/{STATUS_FILE}")
    )
    if not runs:
        read_status(directory)  # raises the error that says what is missing
    return {str(run): read_status(run) for run in runs}


def describe_directory(directory: str | Path) -> str:
    """:func:`run_statuses` as text (:func:`describe_runs`)."""
    return describe_runs(run_statuses(directory))


def describe_runs(statuses: dict[str, dict[str, Any]]) -> str:
    """Heartbeats as text, each headed by its run directory."""
    blocks = []
    for run, status in statuses.items():
        lines = describe(status).splitlines()
        blocks.append("\n".join([run, *(f"  {line}" for line in lines)]))
    return "\n\n".join(blocks)


def describe(status: dict[str, Any]) -> str:
    """What a user asks of a job: is it alive, how far, how fast, when done, what went wrong."""
    progress = status["progress"]
    unit = progress.get("unit") or ""
    throughput = status.get("throughput")
    age = _age(status["updated_at"])
    rows = [
        ("job", status["job"]),
        ("state", _state(status, age)),
        ("stage", status.get("stage") or "-"),
        ("progress", _progress(progress)),
        ("throughput", "-" if throughput is None else f"{_number(throughput)} {unit}/s"),
        ("ETA", _duration(status["eta_s"]) if status["eta_s"] is not None else "-"),
        ("checkpoint", status.get("last_checkpoint") or "-"),
        ("error", status.get("last_error") or "-"),
        ("heartbeat", f"updated {age} ago (pid {status['pid']} on {status['host']})"),
    ]
    rows += [(name, _value(value)) for name, value in status.get("totals", {}).items()]
    if status.get("details"):
        details = ", ".join(f"{name} {_value(value)}" for name, value in status["details"].items())
        rows.append(("details", details))
    width = max(len(name) for name, _ in rows) + 2
    return "\n".join(f"{name:<{width}}{value}" for name, value in rows)


def _state(status: dict[str, Any], age: str) -> str:
    if status["state"] == "running" and not is_alive(status):
        return (
            f"stopped: process {status['pid']} is gone (killed or crashed); "
            f"last heartbeat {age} ago"
        )
    return status["state"]


def is_alive(status: dict[str, Any]) -> bool:
    """Whether the job's process still exists; assumed so when it ran on another host."""
    if status.get("host") != socket.gethostname():
        return True
    return process_exists(status["pid"])


def _progress(progress: dict[str, Any]) -> str:
    done, total, unit = progress.get("done"), progress.get("total"), progress.get("unit") or ""
    if done is None:
        return "-"
    if not total:
        return f"{_number(done)} {unit}"
    return f"{_number(done)}/{_number(total)} {unit} ({100 * done / total:.1f} %)"


def _age(updated_at: str) -> str:
    seconds = (datetime.now(UTC) - datetime.fromisoformat(updated_at)).total_seconds()
    return f"{seconds:.0f} s" if seconds < 60 else _duration(seconds)


def _duration(seconds: float) -> str:
    """h:mm:ss."""
    return str(timedelta(seconds=round(seconds)))


def _number(value: float) -> str:
    if float(value).is_integer():
        return str(int(value))
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return ", ".join(f"{name} {_value(item)}" for name, item in value.items())
    return "-" if value is None else str(value)

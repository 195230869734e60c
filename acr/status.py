"""Heartbeats of long jobs: ``status.json`` in the run directory, read with ``acr status DIR``.

An index build once ran for over an hour with no visible output, and users read process lists
to know whether training was alive. Every long job (fit, index, evaluate, sweep) now rewrites a
small ``status.json``: stage, progress, throughput, ETA, last checkpoint, last error. Readers
tell a live job from a dead one by its pid, since a killed process cannot say it stopped.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

STATUS_FILE = "status.json"
JOBS = ("fit", "index", "evaluate", "sweep")
# Shown by `acr status` and kept in status.json while fitting, when the model logs them.
FIT_METRICS = ("train/loss", "train/pair_accuracy", "val/top1")


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
        temporary = self.path.with_name(f".{STATUS_FILE}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_text(json.dumps(self.status, indent=2, default=_plain))
            os.replace(temporary, self.path)  # atomic on POSIX: readers see the old or the new
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


def _plain(value: Any) -> Any:
    """JSON for numpy and torch scalars (``item()``); text for anything else."""
    return value.item() if hasattr(value, "item") else str(value)


# -- reading ---------------------------------------------------------------------------------
def read_status(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / STATUS_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"no {STATUS_FILE} in {directory}: is this a run directory of acr "
            "fit/index/evaluate/sweep?"
        )
    return json.loads(path.read_text())


def describe_directory(directory: str | Path) -> str:
    """The heartbeat of a run directory, then those of its runs (``*/`` and ``*/*/``, as in a
    sweep's ``runs/NAME``), each headed by its directory."""
    directory = Path(directory)
    runs = [directory] if (directory / STATUS_FILE).is_file() else []
    runs += sorted(
        path.parent
        for path in [*directory.glob(f"*/{STATUS_FILE}"), *directory.glob(f"*/*/{STATUS_FILE}")]
    )
    if not runs:
        read_status(directory)  # raises the error that says what is missing
    blocks = []
    for run in runs:
        lines = describe(read_status(run)).splitlines()
        blocks.append("\n".join([str(run), *(f"  {line}" for line in lines)]))
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
    if status["state"] == "running" and not _alive(status):
        return (
            f"stopped: process {status['pid']} is gone (killed or crashed); "
            f"last heartbeat {age} ago"
        )
    return status["state"]


def _alive(status: dict[str, Any]) -> bool:
    """Whether the job's process still exists; assumed so when it ran on another host."""
    if status.get("host") != socket.gethostname():
        return True
    try:
        os.kill(status["pid"], 0)  # signal 0 only checks that the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        pass
    return True


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


# -- acr fit ---------------------------------------------------------------------------------
class RunStatus(Callback):
    """The heartbeat of ``acr fit`` in ``trainer.default_root_dir/status.json`` (global rank
    zero only). acr.cli adds it to every fit, so configs need not list it."""

    def __init__(self, min_interval_s: float = 2.0) -> None:
        self.min_interval_s = min_interval_s
        self.heartbeat: Heartbeat | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            self.heartbeat = None  # a second fit with this callback starts a new heartbeat
        heartbeat = self._heartbeat(trainer)
        if heartbeat is not None:
            heartbeat.update(stage="setting up")

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        heartbeat = self._heartbeat(trainer)
        if heartbeat is None:
            return
        total = trainer.max_steps if trainer.max_steps > 0 else trainer.estimated_stepping_batches
        heartbeat.update(
            stage="training",
            done=trainer.global_step,
            total=int(total) if math.isfinite(total) else None,
            unit="steps",
            force=True,
        )

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, index: int
    ) -> None:
        heartbeat = self._heartbeat(trainer)
        if heartbeat is None:
            return
        heartbeat.update(done=trainer.global_step, epoch=trainer.current_epoch, **_metrics(trainer))
        checkpoint = newest_checkpoint(trainer)
        if checkpoint:
            heartbeat.checkpoint(checkpoint)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        heartbeat = self._heartbeat(trainer)
        if heartbeat is not None:
            heartbeat.update(stage="validation")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        heartbeat = self._heartbeat(trainer)
        if heartbeat is not None:
            heartbeat.update(stage="training", **_metrics(trainer))

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        heartbeat = self._heartbeat(trainer)
        if heartbeat is None:
            return
        checkpoints = [c for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)]
        best = [c.best_model_path for c in checkpoints if c.monitor and c.best_model_path]
        last = [c.last_model_path for c in checkpoints if c.last_model_path]
        heartbeat.finish(
            steps=trainer.global_step,
            best_checkpoint=best[0] if best else None,
            last_checkpoint=last[0] if last else None,
            val_top1=_metrics(trainer).get("val/top1"),
        )

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        heartbeat = self._heartbeat(trainer)
        if heartbeat is not None:
            heartbeat.fail(exception)

    def _heartbeat(self, trainer: Trainer) -> Heartbeat | None:
        """The fit's heartbeat (made on first use); None outside fit and off global rank zero."""
        if trainer.state.fn != "fit" or not trainer.is_global_zero:
            return None
        if self.heartbeat is None:
            self.heartbeat = Heartbeat(trainer.default_root_dir, "fit", self.min_interval_s)
        return self.heartbeat


def newest_checkpoint(trainer: Trainer) -> str | None:
    """The most recently written of the ModelCheckpoints' last and best checkpoints."""
    paths = [
        path
        for callback in trainer.checkpoint_callbacks
        if isinstance(callback, ModelCheckpoint)
        for path in (callback.last_model_path, callback.best_model_path)
        if path
    ]
    written = [(modified, path) for path in paths if (modified := _modified(path)) is not None]
    return max(written)[1] if written else None


def _modified(path: str) -> float | None:
    """Modification time, or None when the file is not there (ModelCheckpoint may have just
    removed a superseded best)."""
    try:
        return os.path.getmtime(path)
    except OSError:
        return None


def _metrics(trainer: Trainer) -> dict[str, float]:
    metrics = trainer.callback_metrics
    return {name: float(metrics[name]) for name in FIT_METRICS if name in metrics}

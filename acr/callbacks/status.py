"""RunStatus: the heartbeat of ``acr fit`` (acr.status), kept by a Lightning callback."""

from __future__ import annotations

import math
import os
from typing import Any

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from acr.status import Heartbeat

# Shown by `acr status` and kept in status.json while fitting, when the model logs them.
FIT_METRICS = ("train/loss", "train/pair_accuracy", "val/top1")


class RunStatus(Callback):
    """The heartbeat of ``acr fit`` in ``trainer.default_root_dir/status.json`` (global rank
    zero only). acr.cli.training adds it to every fit, so configs need not list it."""

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

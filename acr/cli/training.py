"""The LightningCLI behind ``acr fit/validate/test/predict``; imported only for those, so the
other commands (status, index, ...) start without loading Lightning."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import set_parsing_settings
from lightning.fabric.plugins import CheckpointIO
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

import acr.callbacks.retrieval  # noqa: F401  (registers RetrievalEvaluation for class_path names)
from acr.callbacks.status import RunStatus
from acr.datamodules import ACRDataModule
from acr.models import EmbedderModule
from acr.models.checkpoints import AtomicCheckpointIO, CheckpointError, usable_checkpoint

# ckpt_path values Lightning resolves itself, with nothing on disk for acr to check first.
SPECIAL_CHECKPOINTS = ("best", "hpc")


def silence_inapplicable_warnings() -> None:
    """Lightning warnings that do not apply to acr's training (set per run: pytest resets them)."""
    # Training pairs are drawn at random (ContrastivePairDataset), so a mid-epoch resume has no
    # epoch order to lose; Lightning's warning about non-resumable dataloaders does not apply.
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before")
    # MERTAdapter keeps its backbone in eval mode on purpose (no dropout or masking there).
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of")


class ACRCLI(LightningCLI):
    """LightningCLI that also checks the data and the model agree on the sample rate, saves
    checkpoints atomically and checks the one a run starts from (acr.models.checkpoints)."""

    def before_instantiate_classes(self) -> None:
        """``WANDB_MODE=disabled`` drops W&B loggers: WandbLogger(offline=True) would otherwise
        override it, and a run must work with W&B switched off."""
        if os.environ.get("WANDB_MODE") != "disabled":
            return
        trainer = self.config[self.subcommand].trainer
        if isinstance(trainer.logger, list):
            trainer.logger = [logger for logger in trainer.logger if not _is_wandb(logger)] or False
        elif _is_wandb(trainer.logger):
            trainer.logger = False

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """Every run saves its checkpoints atomically (AtomicCheckpointIO), unless its config
        names a CheckpointIO of its own, as a plugin or in its strategy."""
        config = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        plugins = config.get("plugins")
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        plugins = [plugin for plugin in plugins if plugin is not None]
        own = any(isinstance(plugin, CheckpointIO) for plugin in plugins) or (
            getattr(config.get("strategy"), "_checkpoint_io", None) is not None
        )
        if not own:
            kwargs["plugins"] = [*plugins, AtomicCheckpointIO()]
        return super().instantiate_trainer(**kwargs)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        model_rate = getattr(self.model, "sample_rate", None)
        data_rate = getattr(self.datamodule, "sample_rate", None)
        if model_rate and data_rate and model_rate != data_rate:
            raise ValueError(
                f"data.init_args.sample_rate={data_rate} but the encoder expects {model_rate} Hz;"
                " set both to the same value"
            )

    def before_fit(self) -> None:
        """A resume goes on from the newest whole checkpoint when the one asked for is broken."""
        self._check_checkpoint(fall_back=True)

    def before_validate(self) -> None:
        """Scoring another checkpoint than the one named would mislead: a broken one is an
        error."""
        self._check_checkpoint(fall_back=False)

    before_test = before_predict = before_validate

    def _check_checkpoint(self, fall_back: bool) -> None:
        """Check the checkpoint ``--ckpt_path`` names (``last`` as Lightning finds it) before
        Lightning loads it: a broken one (empty, cut short, not a checkpoint) is replaced by the
        newest whole one beside it with a one-line warning (``fall_back``), or is a one-line
        error, exit status 1, as is a path that does not exist."""
        config = self.config_init[self.subcommand]
        requested = config.get("ckpt_path")
        if requested is None or requested in SPECIAL_CHECKPOINTS:
            return
        path = last_checkpoint(self.trainer) if requested == "last" else requested
        if path is None or not _is_local_file_protocol(path) or str(path).startswith("registry:"):
            return  # Lightning's own resolution: no last checkpoint, or not a local file
        try:
            usable, warning = usable_checkpoint(path, fall_back)
        except CheckpointError as error:
            print(f"acr {self.subcommand}: error: {error}", file=sys.stderr)
            raise SystemExit(1) from None
        if warning:
            _warn(f"acr {self.subcommand}: warning: {warning}")
        config["ckpt_path"] = str(usable)

    def after_fit(self) -> None:
        """Say where the run's outputs are."""
        log_dir = self.trainer.log_dir  # a broadcast under DDP: every rank must ask
        if not self.trainer.is_global_zero:
            return
        print("\nOutputs")
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                if callback.best_model_path:
                    print(f"  best:        {callback.best_model_path}")
                if callback.last_model_path:
                    print(f"  last:        {callback.last_model_path}")
        if log_dir:
            print(f"  metrics:     {Path(log_dir) / 'metrics.csv'}")
            print(f"  retrieval:   {Path(log_dir) / 'retrieval'} (JSON per validation)")
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                print(
                    f"  wandb:       {Path(logger.experiment.dir).parent} "
                    "(offline: `wandb sync` it to upload)"
                )


def last_checkpoint(trainer: Trainer) -> str | None:
    """The checkpoint ``ckpt_path="last"`` names, found as Lightning finds it
    (``_CheckpointConnector._parse_ckpt_path``): the newest of the ModelCheckpoints' last*.ckpt
    files and the OnExceptionCheckpoints' files; None when there is none."""
    candidates = {
        callback.ckpt_path
        for callback in trainer.callbacks
        if isinstance(callback, OnExceptionCheckpoint)
    }
    for callback in trainer.checkpoint_callbacks:
        if isinstance(callback, ModelCheckpoint):
            candidates |= callback._find_last_checkpoints(trainer)
    existing = [path for path in candidates if path and os.path.isfile(path)]
    return max(existing, key=os.path.getmtime) if existing else None


@rank_zero_only
def _warn(line: str) -> None:
    print(line, file=sys.stderr)


def _is_wandb(logger: object) -> bool:
    return str(getattr(logger, "class_path", "")).endswith("WandbLogger")


def training_cli(argv: list[str]) -> ACRCLI:
    """Parse ``argv`` (fit, validate, ...) and run it."""
    silence_inapplicable_warnings()
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)  # ${trainer...} under `fit`
    return ACRCLI(
        EmbedderModule,
        ACRDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
        # Appended to the config's callbacks (LightningCLI._instantiate_trainer): every fit writes
        # ${trainer.default_root_dir}/status.json for `acr status`, whatever its config lists.
        trainer_defaults={"callbacks": [RunStatus()]},
        # Configs write ${trainer.default_root_dir}/checkpoints and the like, resolved after the
        # command line (omegaconf+), so --trainer.default_root_dir moves every output of a run.
        parser_kwargs={
            "description": "acr: music automatic content recognition.",
            "parser_mode": "omegaconf+",
        },
        args=argv,
    )

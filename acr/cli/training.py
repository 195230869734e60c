"""The LightningCLI behind ``acr fit/validate/test/predict``; imported only for those, so the
other commands (status, index, ...) start without loading Lightning."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from jsonargparse import set_parsing_settings
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import WandbLogger

import acr.callbacks.retrieval  # noqa: F401  (registers RetrievalEvaluation for class_path names)
from acr.callbacks.status import RunStatus
from acr.datamodules import ACRDataModule
from acr.models import EmbedderModule


def silence_inapplicable_warnings() -> None:
    """Lightning warnings that do not apply to acr's training (set per run: pytest resets them)."""
    # Training pairs are drawn at random (ContrastivePairDataset), so a mid-epoch resume has no
    # epoch order to lose; Lightning's warning about non-resumable dataloaders does not apply.
    warnings.filterwarnings("ignore", message=".*resuming from a checkpoint that ended before")
    # MERTAdapter keeps its backbone in eval mode on purpose (no dropout or masking there).
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of")


class ACRCLI(LightningCLI):
    """LightningCLI that also checks the data and the model agree on the sample rate."""

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

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        model_rate = getattr(self.model, "sample_rate", None)
        data_rate = getattr(self.datamodule, "sample_rate", None)
        if model_rate and data_rate and model_rate != data_rate:
            raise ValueError(
                f"data.init_args.sample_rate={data_rate} but the encoder expects {model_rate} Hz;"
                " set both to the same value"
            )

    def after_fit(self) -> None:
        """Say where the run's outputs are."""
        if not self.trainer.is_global_zero:
            return
        print("\nOutputs")
        for callback in self.trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint):
                if callback.best_model_path:
                    print(f"  best:        {callback.best_model_path}")
                if callback.last_model_path:
                    print(f"  last:        {callback.last_model_path}")
        if self.trainer.log_dir:
            print(f"  metrics:     {Path(self.trainer.log_dir) / 'metrics.csv'}")
            print(
                f"  retrieval:   {Path(self.trainer.log_dir) / 'retrieval'} (JSON per validation)"
            )
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                print(
                    f"  wandb:       {Path(logger.experiment.dir).parent} "
                    "(offline: `wandb sync` it to upload)"
                )


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

"""EmbedderModule: trains any waveform encoder contrastively for retrieval."""

from __future__ import annotations

import math

import lightning as L
import torch
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters
from torch import nn

from acr.models.losses import NTXentLoss
from acr.models.trained import RETRIEVAL_WINDOWS


class EmbedderModule(L.LightningModule):
    """Contrastive training of ``encoder`` (waveform [batch, samples] -> unit embeddings).

    Validation batches are retrieval windows; ``validation_step`` only embeds them and the
    ``RetrievalEvaluation`` callback does the searching and scoring, so the model stays a model.

    Args:
        encoder: any module mapping waveforms to L2-normalised embeddings, by ``class_path``.
        temperature: NT-Xent temperature (Chang et al. 2021: 0.05-0.1 for fingerprints).
        learning_rate: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up before the cosine decay to ``max_steps``.
    """

    def __init__(
        self,
        encoder: nn.Module,
        temperature: float = 0.05,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-4,
        warmup_steps: int = 100,
    ) -> None:
        super().__init__()
        # Under LightningCLI the hparams hold the encoder's class_path config, so that
        # load_from_checkpoint rebuilds it; an encoder built in code has no config to keep.
        built_by_cli = _given_hyperparameters.get() is not None
        self.save_hyperparameters(ignore=[] if built_by_cli else ["encoder"])
        self.encoder = encoder
        self.loss = NTXentLoss(temperature)
        # The data's retrieval windows (ACRDataModule.retrieval_windows), kept in checkpoints.
        self.retrieval_windows: dict[str, float] | None = None

    @property
    def sample_rate(self) -> int | None:
        """The encoder's input sample rate, when it declares one."""
        return getattr(self.encoder, "sample_rate", None)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.encoder(waveform)

    def training_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        anchors = self(batch["anchor"])
        positives = self(batch["positive"])
        loss = self.loss(anchors, positives, batch.get("weight"))
        with torch.no_grad():
            similarities = anchors @ positives.T
            pair_accuracy = (
                (similarities.argmax(dim=1) == torch.arange(len(anchors), device=anchors.device))
                .float()
                .mean()
            )
        # The whole batch's loss (under DDP ``loss`` is world_size x it: see NTXentLoss).
        self.log("train/loss", self.loss.last_loss, prog_bar=True)
        self.log("train/pair_accuracy", pair_accuracy, prog_bar=True)
        self.log("train/positive_similarity", similarities.diagonal().mean())
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_index: int) -> torch.Tensor:
        return self(batch["audio"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Record the window length and hops this model was trained and validated on, so that
        an index built from the checkpoint cuts the same windows."""
        datamodule = self._trainer.datamodule if self._trainer is not None else None
        windows = getattr(datamodule, "retrieval_windows", None) or self.retrieval_windows
        if windows:
            checkpoint[RETRIEVAL_WINDOWS] = dict(windows)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.retrieval_windows = checkpoint.get(RETRIEVAL_WINDOWS)

    def configure_optimizers(self):
        # Only what trains: a frozen backbone (MERTAdapter) keeps no optimizer state.
        trainable = [parameter for parameter in self.parameters() if parameter.requires_grad]
        optimizer = torch.optim.AdamW(
            trainable, lr=self.hparams.learning_rate, weight_decay=self.hparams.weight_decay
        )
        total_steps = max(1, int(self.trainer.estimated_stepping_batches))
        warmup_steps = min(self.hparams.warmup_steps, total_steps // 2)

        def schedule(step: int) -> float:
            if step < warmup_steps:
                return (step + 1) / warmup_steps
            progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
            return 0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

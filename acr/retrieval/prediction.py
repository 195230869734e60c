"""The Lightning side of a distributed index extraction (acr.retrieval.distributed): the tracks
to extract as a DataModule, the embedding model as a LightningModule, and the writer of each
rank's shards.

Lightning's predict neither wraps the module in DistributedDataParallel (DDPStrategy.setup
wraps only when fitting) nor pads a rank's share with repeats (UnrepeatedDistributedSampler),
so a model without gradients runs as it is, and each track is extracted once.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
from lightning import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from acr.retrieval.devices import TrainerSettings
from acr.retrieval.distributed import Shards
from acr.retrieval.embedding import EmbeddingEngine
from acr.retrieval.extraction import CatalogTracks, Extractors, Result
from acr.workers import start_loader_worker


def create_trainer(settings: TrainerSettings) -> Trainer:
    """The Trainer of an extraction; made before the build's work, it knows this process's
    global rank."""
    return Trainer(
        accelerator=settings.accelerator,
        devices=settings.devices,
        num_nodes=settings.num_nodes,
        strategy=settings.strategy,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )


class PendingTracks(LightningDataModule):
    """Rank 0's tracks to extract, handed to every rank when the process group exists (the
    other ranks know the catalog, not what the index and its shards already hold), each decoded
    and extracted by the loader's workers as a one-process build's workers do."""

    def __init__(
        self, jobs: list[tuple[str, str]] | None, extractors: Extractors, workers: int
    ) -> None:
        super().__init__()
        self.jobs = jobs
        self.extractors = extractors
        self.workers = workers

    def setup(self, stage: str) -> None:
        self.jobs = self.trainer.strategy.broadcast(self.jobs, src=0)

    def transfer_batch_to_device(
        self, batch: list[Result], device: torch.device, dataloader_idx: int
    ) -> list[Result]:
        return batch  # numpy and frozen dataclasses (Lightning's mover refuses those)

    def predict_dataloader(self) -> DataLoader:
        # Spawned workers (acr.workers: a forked one inherits torch's thread pool mid-state);
        # one worker is this process, as in extract_in_workers.
        spawned = self.workers if self.workers > 1 else 0
        return DataLoader(
            CatalogTracks(self.jobs, self.extractors),
            batch_size=1,
            collate_fn=list,  # results stay tuples of numpy arrays
            num_workers=spawned,
            multiprocessing_context="spawn" if spawned else None,
            worker_init_fn=start_loader_worker if spawned else None,
        )


class WindowEmbedder(LightningModule):
    """The embedding engine's model on this rank's device: a track's audio in, its window
    vectors out (acr.retrieval.embedding.EmbeddedWindows); other engines' features, and the
    reason a track was skipped, pass through. Without an embedding engine, it only passes."""

    def __init__(self, engine: EmbeddingEngine | None) -> None:
        super().__init__()
        self.engine = engine
        self.encoder = engine.encoder if engine is not None else None  # moved by Lightning

    def on_predict_start(self) -> None:
        if self.device.type == "cpu":  # the ranks of a node share its cores
            torch.set_num_threads(max((os.cpu_count() or 1) // self.trainer.num_devices, 1))
        if self.engine is not None:
            self.engine.to(str(self.device))

    def predict_step(self, batch: list[Result]) -> list[Result]:
        return [self._embedded(result) for result in batch]

    def _embedded(self, result: Result) -> Result:
        track_id, path, features, duration_s = result
        if self.engine is None or isinstance(features, str):
            return result
        features = {**features, "embedding": self.engine.embed_track(features["embedding"])}
        return track_id, path, features, duration_s


class ShardWriter(BasePredictionWriter):
    """Writes this rank's results to a shard every ``save_every`` tracks and at the end, then
    waits for every rank's last shard."""

    def __init__(
        self, shards: Shards, save_every: int, progress: Callable[[int], None] | None
    ) -> None:
        super().__init__("batch")
        self.shards = shards
        self.save_every = save_every
        self.progress = progress
        self.waiting: list[Result] = []
        self.extracted = 0

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: list[Result],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        self.waiting.extend(prediction)
        self.extracted += len(prediction)
        if len(self.waiting) >= self.save_every:
            self._flush(trainer)
        if self.progress is not None:
            self.progress(self.extracted)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._flush(trainer)
        trainer.strategy.barrier("acr index: every rank's shards written")

    def _flush(self, trainer: Trainer) -> None:
        if self.waiting:
            self.shards.write(self.waiting, trainer.global_rank)
            self.waiting = []

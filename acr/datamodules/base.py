"""ACRDataModule: manifests in, contrastive training pairs and retrieval validation out.

Sources subclass it and implement :meth:`build_manifests`; ``prepare_data`` runs it once per
set of settings and caches the result (pyannote-style), ``setup`` only reads. Published
collections of audio files (FMA, MTG-Jamendo) subclass
:class:`acr.datamodules.catalog.CatalogDataModule` instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
from torch.utils.data import DataLoader

from acr.augment.batch import BatchAugmentation
from acr.augment.training import TrainingAugmentation
from acr.data.datasets import (
    ContrastivePairDataset,
    RetrievalWindowDataset,
    pair_context_s,
)
from acr.data.hard_cases import HardCases
from acr.data.manifests import read_table, resolve_paths, validate_queries, validate_tracks
from acr.data.pcm_cache import cache_tracks, with_read_paths
from acr.data.segments.analysis import analyze_tracks
from acr.data.segments.strategies import AnchorPool, RandomStrategy, anchor_pools, get_strategy

TRACKS_FILE = "tracks.csv"
QUERIES_FILE = "queries.csv"
SETTINGS_FILE = "settings.json"


class ACRDataModule(L.LightningDataModule):
    """Shared wiring: cached manifests, training pairs, validation windows.

    Args:
        data_dir: where manifests and generated or cached audio live.
        sample_rate: the model's sample rate; audio is resampled to it on load.
        window_s: training crop and retrieval window length, in seconds (Chang et al. 2021: 1 s);
            an index built from a checkpoint takes it from there (acr.retrieval.embedding).
        hop_s: catalog window hop at validation (0.5 s, as in Chang et al. 2021).
        query_hop_s: query window hop at validation.
        positive_offset_s: largest time shift between the two views of a training pair.
        batch_size: training pairs per batch; in-batch negatives, so larger is better.
        eval_batch_size: windows per validation batch.
        steps_per_epoch: training batches per epoch (pairs are sampled, so an epoch is a choice).
        num_workers: DataLoader worker processes.
        augmentation: the degradation chain for positive views (default: TrainingAugmentation).
        segment_strategy: where training anchors start (a name in
            acr.data.segments.strategies.STRATEGIES);
            anything but ``random`` analyses each training track once in ``prepare_data``.
        decode_cache: decode training and validation tracks once into 16-bit PCM at
            ``sample_rate`` beside the manifests (acr.data.pcm_cache), so training reads
            segments instead of decoding them: 115 MB of disk per hour of audio at 16 kHz.
        batch_augmentation: degrade positive views batched on the training device
            (acr.augment.batch) instead of one at a time in the workers; workers then only
            change speed and pitch. On 2 CPU cores the chain costs 16.6 ms per view in a
            worker and 0.31 s per 128 views batched; on a GPU it is nearly free.
        hard_cases: which training tracks are drawn more often, weighed more in the loss, and
            put in one batch as each other's negatives (acr.data.hard_cases.HardCases; the
            default changes nothing).
        prepare_data_per_node: Lightning's switch: True (its default) prepares ``data_dir`` on
            every node; False when every node sees one shared ``data_dir``, so that only the
            job's first process builds the manifests and the decode cache while the others wait.
    """

    def __init__(
        self,
        data_dir: str,
        sample_rate: int = 16000,
        window_s: float = 1.0,
        hop_s: float = 0.5,
        query_hop_s: float = 0.25,
        positive_offset_s: float = 0.2,
        batch_size: int = 64,
        eval_batch_size: int = 128,
        steps_per_epoch: int = 200,
        num_workers: int = 2,
        augmentation: TrainingAugmentation | None = None,
        segment_strategy: str = "random",
        decode_cache: bool = True,
        batch_augmentation: bool = False,
        hard_cases: HardCases | None = None,
        prepare_data_per_node: bool = True,
    ) -> None:
        super().__init__()
        self.prepare_data_per_node = prepare_data_per_node
        get_strategy(segment_strategy)  # an unknown name fails here, with the known ones
        self.data_dir = Path(data_dir)
        self.sample_rate = sample_rate
        self.window_s = window_s
        self.hop_s = hop_s
        self.query_hop_s = query_hop_s
        self.positive_offset_s = positive_offset_s
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.steps_per_epoch = steps_per_epoch
        self.num_workers = num_workers
        # The chain always runs at the data's rate, whatever the config says.
        self.augmentation = replace(augmentation or TrainingAugmentation(), sample_rate=sample_rate)
        self.segment_strategy = segment_strategy
        self.decode_cache = decode_cache
        self.batch_augmentation = (
            BatchAugmentation(self.augmentation) if batch_augmentation else None
        )
        self.hard_cases = hard_cases or HardCases()
        self.tracks: pd.DataFrame | None = None
        self.queries: pd.DataFrame | None = None

    @property
    def retrieval_windows(self) -> dict[str, float]:
        """The windows a model trained on this data embeds: every checkpoint records them
        (EmbedderModule), and an index built from one uses them (acr.retrieval.embedding)."""
        return {
            "sample_rate": self.sample_rate,
            "window_s": self.window_s,
            "hop_s": self.hop_s,
            "query_hop_s": self.query_hop_s,
        }

    # -- what subclasses provide ------------------------------------------------------------
    def manifest_settings(self) -> dict[str, Any]:
        """Everything the manifests depend on; a change means a new cache directory."""
        return {"source": type(self).__name__, "sample_rate": self.sample_rate}

    def build_manifests(self, directory: Path) -> None:
        """Write ``tracks.csv`` and ``queries.csv`` (and any audio they need) into ``directory``."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_manifests")

    # -- caching --------------------------------------------------------------------------
    @property
    def manifest_dir(self) -> Path:
        settings = json.dumps(self.manifest_settings(), sort_keys=True)
        digest = hashlib.sha1(settings.encode()).hexdigest()[:10]
        return self.data_dir / f"{self.manifest_settings()['source'].lower()}-{digest}"

    def prepare_data(self) -> None:
        """Build the manifests unless a finished build with the same settings is cached."""
        directory = self.manifest_dir
        if not (directory / SETTINGS_FILE).is_file():
            directory.mkdir(parents=True, exist_ok=True)
            self.build_manifests(directory)
            # Written last: its presence marks a complete build.
            (directory / SETTINGS_FILE).write_text(
                json.dumps(self.manifest_settings(), indent=2, sort_keys=True)
            )
        tracks = resolve_paths(read_table(directory / TRACKS_FILE), directory, ["path"])
        references = tracks[tracks["role"] == "reference"]
        if self.decode_cache:
            # The validation catalog only, where a source caps it (CatalogDataModule).
            in_val_catalog = references.get("in_val_catalog", True)
            used = references[
                (references["split"] == "train") | ((references["split"] == "val") & in_val_catalog)
            ]
            cache_tracks(used, directory, self.sample_rate, self.num_workers)
        if self.segment_strategy != RandomStrategy.name:
            # Cached per track beside the manifests, whatever the strategy: switching is free.
            train = references[references["split"] == "train"]
            analyze_tracks(train, directory, self.num_workers or None)

    def setup(self, stage: str | None = None) -> None:
        directory = self.manifest_dir
        if not (directory / SETTINGS_FILE).is_file():
            raise FileNotFoundError(f"{directory}: no finished manifests; run prepare_data() first")
        tracks_path, queries_path = directory / TRACKS_FILE, directory / QUERIES_FILE
        tracks = resolve_paths(read_table(tracks_path), directory, ["path"])
        queries = resolve_paths(read_table(queries_path), directory, ["path", "source"])
        validate_tracks(tracks, tracks_path)
        validate_queries(queries, tracks, queries_path)
        if self.decode_cache:
            tracks = with_read_paths(tracks, directory, self.sample_rate)
        self.tracks, self.queries = tracks, queries

    # -- splits ---------------------------------------------------------------------------
    @property
    def train_tracks(self) -> pd.DataFrame:
        return self._tracks_where("train")

    @property
    def val_catalog(self) -> pd.DataFrame:
        """Reference tracks of the validation split: none of them is seen in training."""
        return self._tracks_where("val").reset_index(drop=True)

    @property
    def val_queries(self) -> pd.DataFrame:
        assert self.queries is not None, "call setup() first"
        return self.queries[self.queries["track_id"].isin(self.val_catalog["track_id"])]

    def _tracks_where(self, split: str) -> pd.DataFrame:
        assert self.tracks is not None, "call setup() first"
        chosen = (self.tracks["split"] == split) & (self.tracks["role"] == "reference")
        return self.tracks[chosen]

    # -- loaders --------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        dataset = ContrastivePairDataset(
            self.train_tracks,
            self.sample_rate,
            self.window_s,
            self.batch_size * self.steps_per_epoch,
            self.augmentation if self.batch_augmentation is None else self.augmentation.source_view,
            self.positive_offset_s,
            anchor_pools=self._anchor_pools(),
            hard_cases=self.hard_cases,
        )
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            drop_last=True,
            persistent_workers=self.num_workers > 0,
        )

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Degrade training positives on the device, when ``batch_augmentation`` is on."""
        training = self.trainer is not None and self.trainer.training
        if self.batch_augmentation is not None and training and "positive" in batch:
            batch["positive"] = self.batch_augmentation(batch["positive"])
        return batch

    def _anchor_pools(self) -> list[AnchorPool] | None:
        if self.segment_strategy == RandomStrategy.name:
            return None
        context_s = pair_context_s(self.window_s, self.positive_offset_s)
        return anchor_pools(self.train_tracks, self.manifest_dir, self.segment_strategy, context_s)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.validation_windows(),
            batch_size=self.eval_batch_size,
            num_workers=self.num_workers,
        )

    def validation_windows(self) -> RetrievalWindowDataset:
        """Validation catalog and query windows, as the retrieval callback expects them."""
        return RetrievalWindowDataset(
            self.val_catalog,
            self.val_queries.reset_index(drop=True),
            self.sample_rate,
            self.window_s,
            self.hop_s,
            self.query_hop_s,
        )

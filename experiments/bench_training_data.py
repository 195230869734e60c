"""Training data throughput: contrastive pairs per second from the DataLoader, reading the
decode cache or decoding the audio files, degrading views in the workers or batched in the
main process (acr.augment.batch), against what the training step consumes.

    python experiments/bench_training_data.py --root MUSIC_ROOT [--data_dir DIR] [--batches 30]

Uses configs/folder_music.yaml's data and model settings. The first run builds the cache.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from acr.augment.training import TrainingAugmentation
from acr.datamodules import FolderDataModule
from acr.models import ECAPATDNN, NTXentLoss
from acr.runs.environment import machine

RECIPE = Path(__file__).parents[1] / "configs" / "folder_music.yaml"


def pairs_per_second(datamodule: FolderDataModule, batches: int) -> float:
    """Steady-state pairs/s of the loader plus, when it is on, the batched augmentation."""
    loader = iter(datamodule.train_dataloader())
    augment = datamodule.batch_augmentation or (lambda views: views)
    augment(next(loader)["positive"])  # workers started, noise bank made: not steady state
    started = time.perf_counter()
    for _ in range(batches):
        augment(next(loader)["positive"])
    return batches * datamodule.batch_size / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--data_dir", default="data/folder_music")
    parser.add_argument("--batches", type=int, default=30)
    options = parser.parse_args()
    print("machine:", machine())
    recipe = yaml.safe_load(RECIPE.read_text())
    data = dict(recipe["data"]["init_args"], root=options.root, data_dir=options.data_dir)
    data["augmentation"] = TrainingAugmentation(**data["augmentation"])
    for cached, batched in ((True, True), (True, False), (False, False)):
        datamodule = FolderDataModule(
            **{**data, "decode_cache": cached, "batch_augmentation": batched}
        )
        datamodule.prepare_data()
        datamodule.setup("fit")
        rate = pairs_per_second(datamodule, options.batches)
        where = "batched in the main process" if batched else "in the workers"
        print(
            f"DataLoader, {datamodule.num_workers} workers, decode cache {cached}, "
            f"augmentation {where}: {rate:.0f} pairs/s"
        )
    encoder = ECAPATDNN(**recipe["model"]["init_args"]["encoder"]["init_args"])
    optimizer = torch.optim.AdamW(encoder.parameters())
    loss = NTXentLoss(recipe["model"]["init_args"]["temperature"])
    batch = next(iter(datamodule.train_dataloader()))
    started = time.perf_counter()
    for _ in range(5):
        optimizer.zero_grad()
        value = loss(encoder(batch["anchor"]), encoder(batch["positive"]))
        value.backward()
        optimizer.step()
    step_s = (time.perf_counter() - started) / 5
    print(
        f"training step alone ({torch.get_num_threads()} threads): {step_s:.2f} s per batch of "
        f"{datamodule.batch_size} pairs, {datamodule.batch_size / step_s:.0f} pairs/s"
    )


if __name__ == "__main__":
    main()

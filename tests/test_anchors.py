"""Training anchors from a segment strategy: analysed once, cached, and drawn where the
strategy points (here: the loud half of tracks that start quietly)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from acr.audio import save_audio
from acr.data.segments.analysis import ANALYSIS_DIR
from acr.datamodules import FolderDataModule
from acr.synth import synthesize_track

RATE = 16000


@pytest.fixture(scope="module")
def quiet_then_loud(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four tracks: 8 s at -46 dB below, then 8 s of the song at full level."""
    root = tmp_path_factory.mktemp("music")
    for seed in range(4):
        song = synthesize_track(seed, 16.0, RATE)
        song[: 8 * RATE] *= 0.005
        save_audio(root / f"song{seed}.wav", song, RATE)
    return root


def _datamodule(root: Path, data_dir: Path, strategy: str) -> FolderDataModule:
    return FolderDataModule(
        data_dir=str(data_dir),
        root=str(root),
        val_fraction=0.25,
        test_fraction=0.0,
        val_query_tracks=1,
        query_lengths_s=(1.0,),
        query_degradations=("clean",),
        probe_workers=1,
        query_workers=1,
        num_workers=0,
        segment_strategy=strategy,
    )


def _anchor_levels(datamodule: FolderDataModule, draws: int = 40) -> np.ndarray:
    torch.manual_seed(0)  # the dataset draws from torch's generator
    dataset = datamodule.train_dataloader().dataset
    return np.array([float(dataset[i]["anchor"].pow(2).mean().sqrt()) for i in range(draws)])


@pytest.mark.slow
def test_high_energy_anchors_come_from_the_loud_half(quiet_then_loud: Path, tmp_path: Path) -> None:
    datamodule = _datamodule(quiet_then_loud, tmp_path, "high_energy")
    datamodule.prepare_data()
    datamodule.setup("fit")
    analyses = sorted((datamodule.manifest_dir / ANALYSIS_DIR).glob("*.npz"))
    assert len(analyses) == len(datamodule.train_tracks) == 3
    assert _anchor_levels(datamodule).min() > 0.02
    # A second prepare_data (another run, another strategy) reuses the cached analyses.
    stamps = [path.stat().st_mtime_ns for path in analyses]
    again = _datamodule(quiet_then_loud, tmp_path, "onset_aware")
    again.prepare_data()
    assert [path.stat().st_mtime_ns for path in analyses] == stamps


def test_random_anchors_also_land_in_the_quiet_half(quiet_then_loud: Path, tmp_path: Path) -> None:
    datamodule = _datamodule(quiet_then_loud, tmp_path, "random")
    datamodule.prepare_data()
    datamodule.setup("fit")
    assert not (datamodule.manifest_dir / ANALYSIS_DIR).exists()
    assert np.mean(_anchor_levels(datamodule) < 0.02) > 0.2


def test_unknown_strategy_is_refused(quiet_then_loud: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="high_energy"):
        _datamodule(quiet_then_loud, tmp_path, "loudest")

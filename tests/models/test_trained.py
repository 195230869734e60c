"""acr.models.trained: an ``acr fit`` checkpoint's encoder without Lightning, the same model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from acr.models import EmbedderModule
from acr.models.trained import load_encoder


@pytest.mark.slow
def test_the_encoder_loaded_without_lightning_embeds_as_the_trained_module(
    tiny_run: Path,
) -> None:
    checkpoint = tiny_run / "checkpoints" / "last.ckpt"
    trained = load_encoder(checkpoint)
    module = EmbedderModule.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    assert trained.sample_rate == module.sample_rate
    assert trained.retrieval_windows == module.retrieval_windows
    assert set(trained.retrieval_windows) >= {"window_s", "hop_s"}
    assert not trained.encoder.training
    waveform = torch.randn(3, int(trained.retrieval_windows["window_s"] * trained.sample_rate))
    with torch.inference_mode():
        torch.testing.assert_close(trained.encoder(waveform), module(waveform))
    probe = (
        "import sys; from acr.models.trained import load_encoder;"
        f" load_encoder({str(checkpoint)!r});"
        " print(sorted(m for m in ('lightning', 'torchmetrics') if m in sys.modules))"
    )
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "[]"  # no Lightning, no torchmetrics


def test_a_checkpoint_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_encoder(tmp_path / "nowhere.ckpt")

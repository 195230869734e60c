"""A trained encoder out of an ``acr fit`` checkpoint, without Lightning.

Indexing and recognition need only the encoder, and importing Lightning for it costs each
process about 320 MB of resident memory and seconds (it pulls in sklearn, matplotlib and
more). LightningCLI records the encoder's ``class_path`` and ``init_args`` in the checkpoint's
hyper-parameters, and the weights sit under ``encoder.`` in its state dict, so torch alone
rebuilds it. An encoder built in code (not by the CLI) left no config: only the
LightningModule can load that checkpoint.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

# The checkpoint key of the data's window length and hops (EmbedderModule.on_save_checkpoint).
RETRIEVAL_WINDOWS = "retrieval_windows"
ENCODER_PREFIX = "encoder."


@dataclass(frozen=True)
class TrainedEncoder:
    """An encoder in eval mode, its input rate, and the windows it was trained on."""

    encoder: nn.Module
    sample_rate: int
    retrieval_windows: dict[str, float] | None


def load_encoder(checkpoint: str | Path, device: str = "cpu") -> TrainedEncoder:
    """The encoder of a checkpoint written by ``acr fit``, on ``device``, in eval mode."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint}: model checkpoint does not exist")
    saved = torch.load(checkpoint, map_location=device, weights_only=True)
    config = (saved.get("hyper_parameters") or {}).get("encoder")
    if isinstance(config, dict) and "class_path" in config:
        encoder = _instantiate(config)
        state = {
            key.removeprefix(ENCODER_PREFIX): value
            for key, value in saved["state_dict"].items()
            if key.startswith(ENCODER_PREFIX)
        }
        encoder.load_state_dict(state)
        windows = saved.get(RETRIEVAL_WINDOWS)
    else:
        from acr.models.embedder import EmbedderModule  # Lightning, for this case only

        module = EmbedderModule.load_from_checkpoint(checkpoint, map_location=device)
        encoder, windows = module.encoder, module.retrieval_windows
    sample_rate = getattr(encoder, "sample_rate", None)
    if sample_rate is None:
        raise ValueError(f"{checkpoint}: the encoder does not declare a sample_rate")
    return TrainedEncoder(encoder.to(device).eval(), int(sample_rate), windows)


def _instantiate(config: Any) -> Any:
    """A ``{class_path, init_args}`` config as jsonargparse writes it, nested ones included."""
    if isinstance(config, dict) and "class_path" in config:
        module, _, name = config["class_path"].rpartition(".")
        cls = getattr(importlib.import_module(module), name)
        arguments = {key: _instantiate(value) for key, value in config.get("init_args", {}).items()}
        return cls(**arguments)
    if isinstance(config, list):
        return [_instantiate(value) for value in config]
    return config

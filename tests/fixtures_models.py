"""Random HuBERT-shaped backbones written with ``save_pretrained``, as MERT's folder would be.

Shared by tests/models/ (test_mert_adapter.py, test_embedder.py) and
experiments/bench_mert_adapter.py, so the README's throughput figure for the tiny backbone is for
exactly the one CI trains.
"""

from pathlib import Path

import torch

# 2 layers, hidden size 32; a 3-layer conv front end with stride 80 (200 frames/s at 16 kHz).
TINY_HUBERT = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16, 16, 16),
    conv_stride=(5, 4, 4),
    conv_kernel=(10, 8, 4),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=4,
)
TINY_SAMPLE_RATE = 16000
# transformers' HubertConfig defaults are HuBERT-base: the architecture of MERT-v1-95M
# (7 conv layers of 512, stride 320; 12 layers of 768 with 3072-wide feed-forward).
MERT_95M = dict()
MERT_SAMPLE_RATE = 24000


def write_hubert(folder: Path, settings: dict, sample_rate: int, seed: int = 0) -> Path:
    """A randomly initialised HubertModel and its feature-extractor settings in ``folder``."""
    from transformers import HubertConfig, HubertModel, Wav2Vec2FeatureExtractor

    torch.manual_seed(seed)
    HubertModel(HubertConfig(**settings)).save_pretrained(folder)
    Wav2Vec2FeatureExtractor(sampling_rate=sample_rate, do_normalize=True).save_pretrained(folder)
    return folder


def backbone_grads(model: torch.nn.Module) -> dict[str, torch.Tensor | None]:
    """Each backbone parameter's gradient (None: it got none) of a foundation-model adapter."""
    return {name: p.grad for name, p in model.backbone.named_parameters()}


def contrastive_backward(model: torch.nn.Module, sample_rate: int) -> None:
    """One NT-Xent backward pass of ``model`` in training mode, 4 pairs of 1-s noise."""
    from acr.models import NTXentLoss

    model.train()
    waveform = torch.randn(8, sample_rate) * 0.1
    NTXentLoss(0.05)(model(waveform[:4]), model(waveform[4:])).backward()

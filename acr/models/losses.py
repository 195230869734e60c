"""Contrastive losses for embedding training."""

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class NTXentLoss(nn.Module):
    """NT-Xent, the normalised temperature-scaled cross entropy of SimCLR (Chen et al. 2020).

    Every other item in the batch is a negative. For audio fingerprints tau = 0.05-0.1 works
    best (Chang et al. 2021, "Neural Audio Fingerprint"), hence the default.
    """

    def __init__(self, temperature: float = 0.05):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, anchors: Tensor, positives: Tensor) -> Tensor:
        """Mean loss over all 2N rows; anchors[i] and positives[i] are a pair, both [N, D]."""
        if anchors.dim() != 2 or anchors.shape != positives.shape:
            raise ValueError(
                "anchors and positives must both be [N, D] with the same shape, got "
                f"{tuple(anchors.shape)} and {tuple(positives.shape)}"
            )
        pair_count = anchors.shape[0]
        if pair_count < 2:
            raise ValueError(f"NT-Xent needs at least 2 pairs to have negatives, got {pair_count}")
        embeddings = F.normalize(torch.cat([anchors, positives]), dim=1)
        logits = embeddings @ embeddings.T / self.temperature
        is_self = torch.eye(2 * pair_count, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(is_self, float("-inf"))
        indices = torch.arange(pair_count, device=logits.device)
        targets = torch.cat([indices + pair_count, indices])
        return F.cross_entropy(logits, targets)

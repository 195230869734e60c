"""Contrastive losses for embedding training."""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


def gather_across_ranks(embeddings: Tensor) -> Tensor:
    """Every rank's ``embeddings`` concatenated in rank order.

    The other ranks' rows are constants here and this rank's keep their gradient (open_clip's
    gather without gradients): no collective runs in the backward pass, where it could
    interleave with DDP's own gradient all-reduce. Without a process group, or with one
    process, the input. Every rank must pass the same number of rows.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return embeddings
    parts = [torch.empty_like(embeddings) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, embeddings.detach().contiguous())
    parts[dist.get_rank()] = embeddings
    return torch.cat(parts)


class NTXentLoss(nn.Module):
    """NT-Xent, the normalised temperature-scaled cross entropy of SimCLR (Chen et al. 2020).

    Every other item in the batch is a negative. For audio fingerprints tau = 0.05-0.1 works
    best (Chang et al. 2021, "Neural Audio Fingerprint"), hence the default.

    Under data-parallel training (DDP, several processes) the batch is the global one: every
    rank gathers every rank's pairs and computes the loss of the whole batch, so a GPU trains
    with world_size x batch_size pairs' negatives, as one device with the whole batch would,
    not with its own N (the bug lightning-bolts#179 had). Only this rank's embeddings carry a
    gradient, so each rank returns world_size x the loss: DDP averages the ranks' gradients,
    and that average is then exactly the gradient of the whole batch's loss (tested against
    one process). ``last_loss`` keeps the loss itself, to log.
    """

    def __init__(self, temperature: float = 0.05):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, anchors: Tensor, positives: Tensor, weights: Tensor | None = None) -> Tensor:
        """Mean loss over the whole batch's 2N rows (x world_size under DDP, see above);
        anchors[i] and positives[i] are a pair, both [N, D]. ``weights`` ([N], optional) weighs
        pair i's two rows (acr.data.hard_cases): the loss is then their weighted mean."""
        if anchors.dim() != 2 or anchors.shape != positives.shape:
            raise ValueError(
                "anchors and positives must both be [N, D] with the same shape, got "
                f"{tuple(anchors.shape)} and {tuple(positives.shape)}"
            )
        if weights is not None and weights.shape != anchors.shape[:1]:
            raise ValueError(f"weights must be [N] = [{len(anchors)}], got {tuple(weights.shape)}")
        # In float32 whatever the encoder's precision: at tau = 0.05 the logits span +-20, where
        # bfloat16 keeps two decimal digits.
        anchors = F.normalize(anchors.float(), dim=1)
        positives = F.normalize(positives.float(), dim=1)
        all_anchors, all_positives = gather_across_ranks(anchors), gather_across_ranks(positives)
        total = all_anchors.shape[0]
        if total < 2:
            raise ValueError(f"NT-Xent needs at least 2 pairs to have negatives, got {total}")
        embeddings = torch.cat([all_anchors, all_positives])
        logits = embeddings @ embeddings.T / self.temperature
        is_self = torch.eye(2 * total, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(is_self, float("-inf"))
        indices = torch.arange(total, device=logits.device)
        targets = torch.cat([indices + total, indices])
        if weights is None:
            loss = F.cross_entropy(logits, targets)
        else:
            row_weights = gather_across_ranks(weights.float()).repeat(2)
            rows = F.cross_entropy(logits, targets, reduction="none")
            loss = (rows * row_weights).sum() / row_weights.sum().clamp_min(1e-12)
        self.last_loss = loss.detach()
        return loss * (total // anchors.shape[0])

"""Real multi-process data parallelism on CPU: ranks spawned with a gloo process group on
127.0.0.1, each running a function of this module (spawned processes import it by name)."""

from __future__ import annotations

import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(function, world_size: int, folder: Path, *args) -> list:
    """``function(rank, world_size, *args)`` in ``world_size`` processes joined by gloo; what
    each returns, in rank order."""
    port = free_port()
    mp.spawn(_rank, (world_size, port, folder, function, args), nprocs=world_size, join=True)
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(world_size)]


def _rank(rank: int, world_size: int, port: int, folder: Path, function, args) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        torch.save(function(rank, world_size, *args), folder / f"rank{rank}.pt")
        dist.barrier()  # no rank tears the group down while another still talks to it
    finally:
        dist.destroy_process_group()


def ntxent_on_shard(rank: int, world_size: int, anchors, positives, temperature: float):
    """NT-Xent on this rank's share of the pairs: its loss and its inputs' gradients."""
    from acr.models.losses import NTXentLoss

    share = len(anchors) // world_size
    rows = slice(rank * share, (rank + 1) * share)
    mine = anchors[rows].clone().requires_grad_(True), positives[rows].clone().requires_grad_(True)
    loss = NTXentLoss(temperature)
    loss(*mine).backward()
    return {"loss": loss.last_loss, "anchor_grad": mine[0].grad, "positive_grad": mine[1].grad}

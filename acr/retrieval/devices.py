"""What ``acr index --trainer.*`` sets: the devices and nodes an index's extraction runs on.

A module of its own, without Lightning: jsonargparse reads the module of every class in a
command's signature (its ``TYPE_CHECKING`` imports included) to build the options, and
``acr index`` of a fingerprint index runs without torch (tests/test_audio.py).
"""

from __future__ import annotations

from dataclasses import dataclass

# Launchers that run the build in processes other than the ranks: shards and the index would
# be written by a process that pickled the engines, and rank 0 would not write the index.
UNSUPPORTED_STRATEGIES = ("spawn", "fork", "notebook")


@dataclass(frozen=True)
class TrainerSettings:
    """Where ``acr index`` extracts: by default in this process and its decoding workers; with
    ``devices``, as a Lightning predict on every device of every node, each rank a share of the
    catalog, into the same index a one-process build writes. ``acr index add`` and ``replace``
    always extract in one process.

    Args:
        devices: devices (processes) per node, an int or auto; None extracts in this process
            with decoding workers (--workers). With devices, --workers counts the decoding
            processes of each device (default: the node's cores shared among its devices).
        accelerator: cpu, gpu, cuda, mps or auto.
        strategy: ddp (a process per device: Lightning starts them, or torchrun or SLURM), or
            auto (ddp for several devices).
        num_nodes: machines; each runs the command (the index directory must be on a file
            system they share).
    """

    devices: int | str | None = None
    accelerator: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1

    def __post_init__(self) -> None:
        if any(word in self.strategy for word in UNSUPPORTED_STRATEGIES):
            raise ValueError(
                f"trainer.strategy={self.strategy!r}: acr index needs every rank to run the"
                " command (ddp, or auto)"
            )
        if self.num_nodes < 1:
            raise ValueError(f"trainer.num_nodes must be at least 1, got {self.num_nodes}")

"""Worker processes for CPU-bound jobs (decoding, analysis, synthesis).

Spawned, not forked: a forked child inherits torch's OpenMP pool mid-state and can hang. Each
worker runs one torch thread (the workers are the parallelism) and exits when its parent dies:
a SIGKILL gives the parent no chance to stop them, and the SIGKILL benchmark found them left
behind, asleep and holding hundreds of MB each.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import torch

PARENT_POLL_S = 1.0


def spawn_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor:
    """A process pool of ``workers`` spawned workers that die with this process."""
    return ProcessPoolExecutor(
        workers,
        multiprocessing.get_context("spawn"),
        _start_worker,
        (os.getpid(), initializer, initargs),
    )


def _start_worker(
    parent: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> None:
    torch.set_num_threads(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def _exit_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)

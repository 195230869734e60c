"""Worker processes for CPU-bound jobs (decoding, analysis, synthesis).

Spawned, not forked: a forked child inherits torch's OpenMP pool mid-state and can hang. Each
worker runs one thread in its numeric libraries (the workers are the parallelism: OpenMP, BLAS
and torch, which a worker imports only when its jobs need it) and exits when its parent dies:
a SIGKILL gives the parent no chance to stop them, and the SIGKILL benchmark found them left
behind, asleep and holding hundreds of MB each. On Linux the kernel kills them
(``PR_SET_PDEATHSIG``), even a worker busy in native code that never yields the GIL to the
watching thread (2 of 21 killed builds left one running when only that thread watched).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

from tqdm.auto import tqdm

Job = TypeVar("Job")

PARENT_POLL_S = 1.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def spawn_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> ProcessPoolExecutor:
    """A process pool of ``workers`` spawned workers that die with this process.

    Create it from a thread that outlives the pool (Linux ties a worker's life to the thread
    that spawned it, and the pool spawns on ``submit``)."""
    return ProcessPoolExecutor(
        workers,
        multiprocessing.get_context("spawn"),
        _start_worker,
        (os.getpid(), initializer, initargs),
    )


def rows_of_jobs(
    work: Callable[[Job], tuple[list[dict[str, Any]], list[dict[str, str]]]],
    jobs: Sequence[Job],
    workers: int | None,
    unit: str,
    description: str,
    chunksize: int = 1,
) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Run ``work`` on every job (in spawned workers unless there is one), with a progress
    bar; each job gives table rows and skipped.csv rows, returned joined, in job order."""
    workers = min(workers or os.cpu_count() or 1, max(len(jobs), 1))
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []

    def results(pool: ProcessPoolExecutor | None) -> Iterable[tuple[list, list]]:
        return map(work, jobs) if pool is None else pool.map(work, jobs, chunksize=chunksize)

    pool = spawn_pool(workers) if workers > 1 else None
    try:
        for job_rows, problems in tqdm(results(pool), total=len(jobs), unit=unit, desc=description):
            rows.extend(job_rows)
            skipped.extend(problems)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return rows, skipped


def _start_worker(
    parent: int, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> None:
    _one_thread()
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the kernel was told
        os._exit(1)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def start_loader_worker(worker_id: int) -> None:
    """``worker_init_fn`` of a DataLoader whose spawned workers decode (a rank of a distributed
    index build): the same one thread and the same death with the parent as a pool's."""
    _one_thread()
    _die_with_parent()


def _one_thread() -> None:
    """One thread per worker in numpy's BLAS (already loaded) and in OpenMP and torch, read
    from the environment when they start: several threads per worker fight over the cores."""
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the thread that spawned it exits (the pool is
    created and grown from the caller's thread, the main thread in acr)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _exit_with_parent(parent: int) -> None:
    """The portable fallback: poll for the parent, from a thread."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_S)
    os._exit(1)

"""acr.workers: spawned pools whose workers do not outlive a SIGKILLed parent."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from acr.workers import PARENT_POLL_S

PARENT = """
import os, time
from acr.workers import spawn_pool

if __name__ == "__main__":
    with spawn_pool(1) as pool:
        print(pool.submit(os.getpid).result(), flush=True)
        time.sleep(120)
"""


# A worker inside one long C call (builtin sum over a range) never releases the GIL, so a
# watching thread in it cannot run: only the kernel can stop it.
BUSY_PARENT = """
import os, sys, time
from acr.workers import spawn_pool

def busy():
    print(os.getpid(), flush=True)
    return sum(range(10**13))

if __name__ == "__main__":
    with spawn_pool(1) as pool:
        pool.submit(busy)
        time.sleep(120)
"""


def _running(pid: int) -> bool:
    """Alive and not a zombie (an orphan's zombie waits for whoever adopts it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


@pytest.mark.slow  # a parent process, its spawned pool, a SIGKILL and the poll
def test_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    assert _running(worker) and worker != os.getpid()
    parent.kill()  # SIGKILL: the pool gets no chance to shut down
    parent.wait()
    deadline = time.monotonic() + 10 * PARENT_POLL_S
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(worker)


@pytest.mark.slow  # a parent process, its spawned pool and a SIGKILL
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_worker_busy_in_native_code_dies_with_its_parent(tmp_path: Path) -> None:
    script = tmp_path / "busy_parent.py"
    script.write_text(BUSY_PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())  # printed by the worker, before its long call
    time.sleep(3 * PARENT_POLL_S)  # well inside sum(): the GIL is held from here on
    assert _running(worker)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5 * PARENT_POLL_S
    while _running(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    alive = _running(worker)
    if alive:
        os.kill(worker, 9)  # do not leave it spinning for the rest of the suite
    assert not alive

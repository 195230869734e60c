"""`acr serve` as a process under test: started on a free localhost port and stopped with
everything it started, its workers found, and the memory and CPU of its processes (and of
the machine, to tell other processes' load apart) read with psutil, else from /proc."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from experiments.load.client import aiohttp

try:
    import psutil
except ImportError:  # /proc is read instead
    psutil = None


def machine() -> dict:
    """Where the figures were measured: CPU model, cores, RAM, load, versions."""
    cpuinfo = Path("/proc/cpuinfo")
    models = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
              if line.startswith("model name")] if cpuinfo.is_file() else []  # fmt: skip
    meminfo = Path("/proc/meminfo").read_text().split() if Path("/proc/meminfo").is_file() else []
    ram_gb = int(meminfo[meminfo.index("MemTotal:") + 1]) / 1e6 if meminfo else None
    versions = {}
    for name in ("acr", "uvicorn", "fastapi", "aiohttp" if aiohttp else "httpx", "numpy"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "cpu": models[0] if models else platform.processor(),
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)),
        "ram_gb": round(ram_gb, 1) if ram_gb else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        **versions,
    }


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (uvicorn's workers and their helpers)."""
    if psutil is not None:
        try:
            return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
        except psutil.NoSuchProcess:
            return []
    tree, queue = [], [pid]
    while queue:
        current = queue.pop()
        tree.append(current)
        for children in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                queue += [int(child) for child in children.read_text().split()]
            except OSError:
                pass
    return tree


def rss_mb(pid: int) -> float:
    try:
        if psutil is not None:
            return psutil.Process(pid).memory_info().rss / 1e6
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except Exception:  # a process that just ended
        pass
    return 0.0


def cpu_times_s(pids: list[int]) -> dict[int, float]:
    """User + system CPU seconds of each of these processes so far (those still alive)."""
    times = {}
    for pid in pids:
        try:
            if psutil is not None:
                used = psutil.Process(pid).cpu_times()
                times[pid] = used.user + used.system
            else:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                times[pid] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except Exception:  # a process that just ended
            pass
    return times


def cpu_s(pids: list[int]) -> float:
    return sum(cpu_times_s(pids).values())


def cpu_since(before: dict[int, float], pids: list[int]) -> float:
    """CPU seconds these processes used since ``before`` (a process started since counts
    whole; one that ended since counts nothing, so a killed worker's share is missed)."""
    return sum(used - before.get(pid, 0.0) for pid, used in cpu_times_s(pids).items())


def busy_s() -> float:
    """CPU seconds the whole machine has been busy (every process, every core)."""
    if psutil is not None:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class Server:
    """`acr serve` in its own process group on a free localhost port, stopped on exit."""

    def __init__(self, backend: list[str], workers: int, limits: dict, log: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.workers, self.log = workers, log
        self.command = [sys.executable, "-m", "acr", "serve", *backend, "--host", "127.0.0.1",
                        "--port", str(self.port), "--workers", str(workers)]  # fmt: skip
        self.command += [f"--limits.{name}={value}" for name, value in limits.items()]
        self.url = f"http://127.0.0.1:{self.port}"
        self.database_pids: Callable[[], list[int]] = list  # PostgreSQL's processes, if any

    def __enter__(self) -> Server:
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = time.monotonic() + 300
        while not (self.healthy() and len(self.worker_pids()) == self.workers_to_see()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                tail = "\n".join(self.log.read_text().splitlines()[-15:])
                sys.exit(f"load_test: `{' '.join(self.command)}` did not come up:\n{tail}")
            time.sleep(0.3)
        return self

    def __exit__(self, *_: object) -> None:
        tree = process_tree(self.process.pid)
        self.process.send_signal(signal.SIGTERM)  # uvicorn stops its workers, then itself
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            pass
        for pid in tree:  # only what this server started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait()

    def workers_to_see(self) -> int:
        return self.workers if self.workers > 1 else 0

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    def worker_pids(self) -> list[int]:
        """uvicorn's worker processes (multiprocessing spawns them; one worker is the parent)."""
        workers = []
        for pid in process_tree(self.process.pid)[1:]:
            try:
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
            except OSError:
                pass
        return workers

    def memory_mb(self) -> dict[str, float]:
        tree = process_tree(self.process.pid)
        sizes = {str(pid): round(rss_mb(pid), 1) for pid in tree}
        return {"total": round(sum(sizes.values()), 1), **sizes}

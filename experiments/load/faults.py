"""The faults injected under load: a uvicorn worker SIGKILLed, and the PostgreSQL server
behind `acr serve --database` restarted (pg_ctl, as the data directory's owner); each
summary says what the requests in flight got and how soon the answers were 200 again."""

from __future__ import annotations

import asyncio
import os
import pwd
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from experiments.load.client import Request, cycle, outcome_counts, timeline
from experiments.load.measure import measured
from experiments.load.server import Server, process_tree


async def kill_a_worker(server: Server, at_s: float, events: dict) -> None:
    """SIGKILL one uvicorn worker ``at_s`` into the load; note when uvicorn has started a new
    one and when that one says it is serving (its "Application startup complete")."""
    origin_s = time.perf_counter()
    await asyncio.sleep(at_s)
    victim = server.worker_pids()[0]
    log_lines = len(server.log.read_text().splitlines())
    os.kill(victim, signal.SIGKILL)
    events.update(victim=victim, killed_at_s=round(time.perf_counter() - origin_s, 3))
    while time.perf_counter() - origin_s < at_s + 60 and "ready_at_s" not in events:
        workers = server.worker_pids()
        if (
            "replaced_at_s" not in events
            and len(workers) == server.workers
            and victim not in workers
        ):
            events["replaced_at_s"] = round(time.perf_counter() - origin_s, 3)
        new_lines = server.log.read_text().splitlines()[log_lines:]
        if "replaced_at_s" in events and any("startup complete" in line for line in new_lines):
            events["ready_at_s"] = round(time.perf_counter() - origin_s, 3)
        await asyncio.sleep(0.05)


def fault_worker(
    server: Server, queries: list[Request], clients: int, duration_s: float
) -> tuple[dict, dict]:
    """A worker SIGKILLed at a quarter of the load: what the requests in flight got and what
    those begun 0.5 s after it got. Returns the summary and the kill's events."""
    events: dict = {}
    during = lambda _: kill_a_worker(server, duration_s / 4, events)  # noqa: E731
    summary, outcomes = measured(server, cycle(queries), clients, duration_s, during=during)
    killed_s = events["killed_at_s"]
    in_flight = [o for o in outcomes if o.started_s <= killed_s < o.started_s + o.latency_s]
    after = [o for o in outcomes if o.started_s > killed_s + 0.5]
    summary.update(events, in_flight_at_kill=outcome_counts(in_flight))
    summary["after_kill"] = outcome_counts(after)
    summary["timeline"] = timeline(outcomes, killed_s, 2, 12)
    return summary, events


async def restart_during(restart: Callable[[], None], at_s: float, events: dict) -> None:
    """Call ``restart`` (blocking, in a thread) ``at_s`` into the load, timing it."""
    origin_s = time.perf_counter()
    await asyncio.sleep(at_s)
    events["restart_began_s"] = round(time.perf_counter() - origin_s, 3)
    await asyncio.to_thread(restart)
    events["restart_ended_s"] = round(time.perf_counter() - origin_s, 3)


def fault_database(
    server: Server, queries: list[Request], restart: Callable[[], None], clients: int,
    duration_s: float,
) -> dict:  # fmt: skip
    """A database restart under load (``restart`` blocks until the database is back): which
    statuses requests got meanwhile (503 with Retry-After is the right answer, never 500 or a
    dropped connection), and how soon after it came back the answers were 200 again."""
    events: dict = {}
    during = lambda _: restart_during(restart, duration_s / 3, events)  # noqa: E731
    summary, outcomes = measured(server, cycle(queries), clients, duration_s, during=during)
    ended_s = events["restart_ended_s"]
    after = sorted(o.started_s for o in outcomes if o.status == 200 and o.started_s >= ended_s)
    during_restart = [o for o in outcomes if events["restart_began_s"] <= o.started_s < ended_s]
    summary.update(events, during_restart=outcome_counts(during_restart))
    summary["first_200_after_restart_s"] = round(after[0] - ended_s, 3) if after else None
    summary["timeline"] = timeline(outcomes, events["restart_began_s"], 2, 12)
    return summary


def serve_has_database() -> bool:
    """Whether this checkout's `acr serve` takes --database."""
    serve_help = subprocess.run(
        [sys.executable, "-m", "acr", "serve", "--help"], capture_output=True, text=True
    ).stdout
    return "--database" in serve_help


def postgres_pids(pg_data: str) -> list[int]:
    """The PostgreSQL server of ``pg_data`` and its backends (postmaster.pid's first line)."""
    try:
        return process_tree(int((Path(pg_data) / "postmaster.pid").read_text().split()[0]))
    except (OSError, ValueError, IndexError):  # stopped, or starting
        return []


def restart_pgserver(pg_data: str, down_s: float = 0.0) -> Callable[[], None]:
    """A restart of the pgserver server of ``pg_data``: `pg_ctl restart -m fast` (its options
    kept), or with ``down_s``, `pg_ctl stop -m fast`, ``down_s`` seconds down, and `pg_ctl
    start` with the options it ran with (postmaster.opts). As the data directory's owner:
    pgserver runs PostgreSQL as a user of its own when started by root."""
    import pgserver

    folder = Path(pg_data)
    owner = pwd.getpwuid(folder.stat().st_uid).pw_name
    user = owner if os.geteuid() == 0 and owner != "root" else None
    options = shlex.split((folder / "postmaster.opts").read_text())[1:]  # without the program
    at = options.index("-D")
    options = options[:at] + options[at + 2 :]  # pg_ctl gives -D itself

    def restart() -> None:
        if down_s <= 0:
            pgserver.pg_ctl(["-w", "-m", "fast", "restart"], pgdata=folder, user=user)
            return
        pgserver.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=folder, user=user)
        time.sleep(down_s)
        start = ["-w", "-o", shlex.join(options), "-l", str(folder / "log"), "start"]
        pgserver.pg_ctl(start, pgdata=folder, user=user, timeout=60)

    return restart

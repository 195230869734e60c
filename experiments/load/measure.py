"""The measurements: a load run with its CPU split between the server, this client and
everything else (a level disturbed by other processes is measured again), the soak's memory
over time, and the in-process floor with no HTTP (decode and recognition, one at a time)."""

from __future__ import annotations

import asyncio
import cProfile
import io
import os
import pstats
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from experiments.load.client import Outcome, Request, cycle, load, summarize
from experiments.load.server import Server, busy_s, cpu_s, cpu_since, cpu_times_s, process_tree

QUIET_CORES = 0.3  # other processes busier than this disturb a measurement


def wait_for_quiet(own: list[int], limit_s: float, quiet_cores: float = QUIET_CORES) -> float:
    """Wait (at most ``limit_s``) until other processes keep under ``quiet_cores`` busy for
    2 s: a shared machine measures slow. Returns the cores they used in the last 2 s."""
    deadline_s = time.monotonic() + limit_s
    while True:
        before_busy, before_own = busy_s(), cpu_s(own)
        time.sleep(2.0)
        other = (busy_s() - before_busy - (cpu_s(own) - before_own)) / 2.0
        if other < quiet_cores or time.monotonic() > deadline_s:
            return round(other, 2)


def measured(
    server: Server,
    plan: Callable[[int], Request],
    clients: int,
    duration_s: float,
    quiet_s: float = 0.0,
    **options,
) -> tuple[dict, list[Outcome]]:
    """A load run (after waiting up to ``quiet_s`` for a quiet machine) with its CPU split:
    the server's processes, this client, and everything else on the machine."""
    pids, client, database = process_tree(server.process.pid), [os.getpid()], server.database_pids()
    other_before = wait_for_quiet(pids + client + database, quiet_s) if quiet_s > 0 else None
    before = cpu_times_s(pids), cpu_s(client), cpu_times_s(database), busy_s()
    outcomes, elapsed_s, sent = asyncio.run(load(server.url, plan, clients, duration_s, **options))
    server_s = cpu_since(before[0], process_tree(server.process.pid))
    client_s = cpu_s(client) - before[1]
    database_s = cpu_since(before[2], server.database_pids())
    summary = summarize(outcomes, elapsed_s, sent, clients)
    other_s = busy_s() - before[3] - server_s - client_s - database_s
    summary["cores_busy"] = {
        "server": round(server_s / elapsed_s, 2),
        "client": round(client_s / elapsed_s, 2),
        "other": round(other_s / elapsed_s, 2),
        "other_before": other_before,
        **({"database": round(database_s / elapsed_s, 2)} if database else {}),
    }
    answered = sum(outcome.status == 200 for outcome in outcomes)
    summary["server_cpu_ms_per_answer"] = round(1000 * server_s / max(answered, 1), 1)
    summary["memory_mb"] = server.memory_mb()
    return summary, outcomes


def least_disturbed(
    server: Server, queries: list[Request], clients: int, duration_s: float, attempts: int,
    quiet_s: float,
) -> dict:  # fmt: skip
    """A level measured up to ``attempts`` times while other processes keep more than
    QUIET_CORES busy during it; the least disturbed run is kept."""
    runs = []
    for _ in range(attempts):
        summary = measured(server, cycle(queries), clients, duration_s, quiet_s=quiet_s)[0]
        runs.append(summary)
        if summary["cores_busy"]["other"] <= QUIET_CORES:
            break
    best = min(runs, key=lambda run: run["cores_busy"]["other"])
    return {**best, "attempts": len(runs)}


def soak(server: Server, queries: list[Request], clients: int, duration_s: float,
         sample_s: float) -> dict:  # fmt: skip
    """Load for ``duration_s`` with the server's memory (every process) sampled every
    ``sample_s``; flat means no growth after the first minute's warm-up."""
    samples = []

    async def sample(origin_s: float) -> None:
        while (elapsed_s := time.perf_counter() - origin_s) < duration_s:
            samples.append({"s": round(elapsed_s, 1), **server.memory_mb()})
            await asyncio.sleep(sample_s)
        samples.append({"s": round(time.perf_counter() - origin_s, 1), **server.memory_mb()})

    summary, outcomes = measured(server, cycle(queries), clients, duration_s, during=sample)
    minutes = []
    for minute in range(int(np.ceil(duration_s / 60))):
        chosen = [o for o in outcomes if minute * 60 <= o.started_s < (minute + 1) * 60]
        row = summarize(chosen, min(60.0, duration_s - minute * 60), len(chosen), clients)
        minutes.append({key: row[key] for key in ("requests", "queries_per_s", "p50_ms",
                                                  "p99_ms", "5xx", "errors")})  # fmt: skip
    totals = np.array([entry["total"] for entry in samples])
    times_s = np.array([entry["s"] for entry in samples])
    settled = times_s >= min(60.0, duration_s / 2)
    slope = (
        np.polyfit(times_s[settled], totals[settled], 1)[0] * 3600 if settled.sum() > 2 else None
    )
    summary["memory"] = {
        "first_mb": totals[0], "after_first_minute_mb": totals[settled][0],
        "last_mb": totals[-1], "max_mb": totals.max(),
        "growth_after_first_minute_mb": round(totals[-1] - totals[settled][0], 1),
        "slope_mb_per_hour": round(slope, 1) if slope is not None else None,
        "per_process_last_mb": samples[-1], "samples": samples,
    }  # fmt: skip
    summary["minutes"] = minutes
    return summary


def breakdown(index: str, queries: list[Request], count: int, profile: Path | None) -> dict:
    """In-process floor, no HTTP: decoding a WAV body and recognising it, one at a time."""
    from acr.retrieval.recognizer import Recognizer
    from acr.service.uploads import Upload, decode

    recognizer = Recognizer.load(index)
    decode_ms, recognize_ms, profiler = [], [], cProfile.Profile() if profile else None
    for query in (queries * (count // len(queries) + 1))[:count]:
        if profiler:
            profiler.enable()
        started = time.perf_counter()
        audio, sample_rate = decode(Upload(query.body, ".wav", {}), 60.0)
        decoded = time.perf_counter()
        recognizer.recognize(audio, sample_rate, 5)
        decode_ms.append(1000 * (decoded - started))
        recognize_ms.append(1000 * (time.perf_counter() - decoded))
        if profiler:
            profiler.disable()
    result = {"queries": count}
    for name, values in (("decode", decode_ms), ("recognize", recognize_ms)):
        result[f"{name}_p50_ms"], result[f"{name}_p95_ms"] = (
            round(float(value), 2) for value in np.percentile(values, [50, 95])
        )
    if profiler:
        profiler.dump_stats(profile)
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
        result["profile_top"] = text.getvalue()
    return result

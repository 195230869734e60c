"""Load and fault test of `acr serve` on localhost (issue 18): throughput and latency of 3-s
queries at 1, 4, 16 and 64 concurrent clients, one worker against two, bad uploads mixed into
the load, a worker killed under load, a database restart under load, and memory over a soak.

    python experiments/load_test.py --catalog /work/corpus/tracks.csv --tracks 200 \
        --work runs/load_test --out runs/load_test/default [--soak_s 600 --duration_s 20]
    python experiments/load_test.py --index INDEX_DIR --phases levels kill --max_in_flight 64
    python experiments/load_test.py --database URL --pg_data PGDATA --catalog tracks.csv

The backend is `--index DIR` or `--database URL`, passed to `acr serve` as given. Without
either, the first --tracks tracks of --catalog (without a catalog, --tracks synthetic songs)
are indexed with `acr index` into WORK/index. Queries are seeded 3-s excerpts of indexed tracks
at random offsets, encoded once as 16-kHz mono WAV and POSTed as raw bodies (audio/wav) by an
async client (aiohttp, else httpx) that stays light on 2 cores. Every request's outcome is
counted on the client: an HTTP status, or the connection error the client saw; none may go
missing. Server memory is the RSS of `acr serve` and all its workers (psutil, else /proc).
A level disturbed by other processes (CPU they used during it) is measured again.

Phases (--phases): breakdown (decode and recognition in process, no HTTP), levels, workers (16
clients on --workers 1 and 2), uploads (every --bad_every-th upload malformed, oversized,
truncated or empty, each with the 4xx the README promises), kill (SIGKILL a worker at a quarter
of the run), database (`pg_ctl restart` of --pg_data at a third; needs --database), soak.
OUT/results.json holds every figure, OUT/server-PHASE.log each server's output.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.metadata
import io
import itertools
import json
import os
import platform
import pstats
import pwd
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile

try:
    import psutil
except ImportError:  # /proc is read instead
    psutil = None
try:
    import aiohttp
except ImportError:  # httpx, a dependency of the serve extra's tests, is used instead
    aiohttp = None

SAMPLE_RATE_HZ = 16000
TARGETS = {"p50_ms_at_1_client": 30.0, "queries_per_s_at_16_clients": 40.0}  # 2 cores, files
MIN_QUERY_DBFS = -40.0
QUIET_CORES = 0.3  # other processes busier than this disturb a measurement
PHASES = ("breakdown", "levels", "workers", "uploads", "kill", "database", "soak")


@dataclass
class Request:
    """One upload the client sends, and the statuses that would be right for it."""

    kind: str
    body: bytes
    content_type: str | None = "audio/wav"
    chunked: bool = False
    track_id: str | None = None
    expected: tuple[int, ...] = (200,)


@dataclass
class Outcome:
    kind: str
    started_s: float  # since the load began
    latency_s: float
    status: int | None  # None: the client saw a connection error instead
    error: str | None = None
    right: bool | None = None  # a query's top-1 was the track it was cut from


# -- the machine and the server ------------------------------------------------------------------
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


# -- what the clients send -----------------------------------------------------------------------
def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def make_queries(tracks: pd.DataFrame, count: int, length_s: float, seed: int) -> list[Request]:
    """Seeded excerpts of random tracks at random offsets, as WAV bodies encoded once; an
    excerpt below MIN_QUERY_DBFS is drawn again (the service answers silence with a 422)."""
    from acr.audio import audio_info, load_audio, rms

    rng, queries = np.random.default_rng(seed), []
    durations = {row.path: audio_info(row.path).duration_s for row in tracks.itertuples()}
    usable = tracks[[durations[path] >= length_s + 0.5 for path in tracks["path"]]]
    while len(queries) < count:
        row = usable.iloc[int(rng.integers(len(usable)))]
        offset_s = float(rng.uniform(0.0, durations[row["path"]] - length_s))
        audio = load_audio(row["path"], SAMPLE_RATE_HZ, offset_s, length_s)
        if 20 * np.log10(rms(audio) + 1e-12) < MIN_QUERY_DBFS:  # a silent stretch: no query
            continue
        body = wav_bytes(audio, SAMPLE_RATE_HZ)
        queries.append(Request("query", body, track_id=row["track_id"]))
    return queries


def multipart(field_name: str, body: bytes, boundary: str = "acr-load-test") -> bytes:
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="clip.wav"\r\nContent-Type: audio/wav\r\n\r\n')  # fmt: skip
    return head.encode() + body + f"\r\n--{boundary}--\r\n".encode()


def bad_uploads(query: Request, max_upload_bytes: int, seed: int) -> list[Request]:
    """One upload of each kind the README's limits table lists, with the status it promises
    (a WAV cut short is read for the frames it holds, so half a clip still answers 200)."""
    rng, body = np.random.default_rng(seed), query.body
    header_bytes, frame_bytes = 44, 2  # soundfile's PCM_16 mono WAV
    garbage = rng.integers(0, 256, len(body), dtype=np.uint8).tobytes()
    oversized = (body * (max_upload_bytes // len(body) + 2))[: 2 * max_upload_bytes]
    form = "multipart/form-data; boundary=acr-load-test"
    quiet = np.zeros(3 * SAMPLE_RATE_HZ, dtype=np.float32)
    low_rate = np.sin(np.arange(3 * 4000) * 0.3).astype(np.float32) * 0.3
    return [
        Request("garbage", garbage, expected=(415,)),
        Request("json_body", b'{"audio": "no"}', "application/json", expected=(415,)),
        Request("oversized", oversized, expected=(413,)),
        Request("oversized_chunked", oversized, chunked=True, expected=(413,)),
        Request("truncated_header", body[:30], expected=(415,)),
        Request("truncated_0.25s", body[: header_bytes + frame_bytes * 4000], expected=(422,)),
        Request("truncated_half", body[: len(body) // 2], track_id=query.track_id),
        Request("zero_bytes", b"", expected=(422,)),
        Request("silent", wav_bytes(quiet, SAMPLE_RATE_HZ), expected=(422,)),
        Request("rate_4khz", wav_bytes(low_rate, 4000), expected=(422,)),
        Request("multipart", multipart("file", body), form, track_id=query.track_id),
        Request("multipart_no_file", multipart("other", body), form, expected=(422,)),
        Request(
            "multipart_no_boundary", multipart("file", body), "multipart/form-data", expected=(400,)
        ),  # fmt: skip
    ]


# -- the client ----------------------------------------------------------------------------------
class Transport:
    """One keep-alive connection pool per load run: aiohttp when installed, else httpx."""

    def __init__(self, url: str, connections: int, timeout_s: float) -> None:
        self.url = f"{url}/v1/recognize"
        if aiohttp is not None:
            connector = aiohttp.TCPConnector(limit=connections)
            self.session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=timeout_s)
            )
        else:
            import httpx

            limits = httpx.Limits(max_connections=connections)
            self.session = httpx.AsyncClient(limits=limits, timeout=timeout_s)

    async def close(self) -> None:
        await (self.session.close() if aiohttp is not None else self.session.aclose())

    async def send(self, request: Request, origin_s: float) -> Outcome:
        headers = {"Content-Type": request.content_type} if request.content_type else {}

        async def chunks():  # no Content-Length: the server counts the body as it arrives
            for start in range(0, len(request.body), 65536):
                yield request.body[start : start + 65536]

        body = chunks() if request.chunked else request.body
        started = time.perf_counter()
        try:
            if aiohttp is not None:
                async with self.session.post(self.url, data=body, headers=headers) as response:
                    status, answer = response.status, await response.read()
            else:
                response = await self.session.post(self.url, content=body, headers=headers)
                status, answer = response.status_code, response.content
        except Exception as error:  # what the client sees when a connection breaks
            latency_s = time.perf_counter() - started
            return Outcome(request.kind, started - origin_s, latency_s, None, type(error).__name__)
        latency_s = time.perf_counter() - started
        right = None
        if status == 200 and request.track_id is not None:
            matches = json.loads(answer).get("matches") or [{}]
            right = matches[0].get("track_id") == request.track_id
        return Outcome(request.kind, started - origin_s, latency_s, status, None, right)


async def load(
    url: str,
    plan: Callable[[int], Request],
    clients: int,
    duration_s: float,
    during: Callable[[float], Awaitable[None]] | None = None,
    timeout_s: float = 60.0,
) -> tuple[list[Outcome], float, int]:
    """``clients`` tasks send ``plan(n)`` back to back for ``duration_s``; returns every
    outcome, the seconds it took and how many requests were sent (each must have an outcome)."""
    transport, counter, outcomes = Transport(url, clients, timeout_s), itertools.count(), []
    origin_s = time.perf_counter()
    deadline_s, sent = origin_s + duration_s, 0

    async def client() -> None:
        nonlocal sent
        while time.perf_counter() < deadline_s:
            sent += 1
            outcomes.append(await transport.send(plan(next(counter)), origin_s))

    try:
        await asyncio.gather(
            *(client() for _ in range(clients)), *([during(origin_s)] if during else [])
        )
    finally:
        await transport.close()
    return outcomes, time.perf_counter() - origin_s, sent


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


def summarize(outcomes: list[Outcome], elapsed_s: float, sent: int, clients: int) -> dict:
    answered = [outcome for outcome in outcomes if outcome.status == 200]
    latency_ms = np.array([outcome.latency_s for outcome in answered]) * 1000
    p50, p95, p99 = np.percentile(latency_ms, [50, 95, 99]) if len(answered) else [np.nan] * 3
    statuses = Counter(outcome.status for outcome in outcomes if outcome.status is not None)
    judged = [outcome.right for outcome in answered if outcome.right is not None]
    return {
        "clients": clients,
        "requests": len(outcomes),
        "lost": sent - len(outcomes),  # sent without a status or an error: must stay 0
        "seconds": round(elapsed_s, 2),
        "queries_per_s": round(len(answered) / elapsed_s, 1),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
        "4xx": sum(count for status, count in statuses.items() if 400 <= status < 500),
        "5xx": sum(count for status, count in statuses.items() if status >= 500),
        "errors": sum(outcome.error is not None for outcome in outcomes),
        "statuses": {str(status): count for status, count in sorted(statuses.items())},
        "error_kinds": dict(Counter(o.error for o in outcomes if o.error is not None)),
        "top1_right": round(float(np.mean(judged)), 3) if judged else None,
        "first_5xx_s": min((o.started_s for o in outcomes if (o.status or 0) >= 500), default=None),
    }


def outcome_counts(outcomes: list[Outcome]) -> dict[str, int]:
    """How many got each status, or each connection error."""
    return dict(Counter(str(o.status) if o.status is not None else o.error for o in outcomes))


def table(rows: list[dict], title: str = "") -> str:
    """The issue's columns, and the cores busy: server / client / other processes."""
    lines = [title] if title else []
    lines += ["| clients | requests | q/s | p50 ms | p95 ms | p99 ms | 4xx | 5xx | errors "
              "| cores busy: server / client / other |", "|---" * 10 + "|"]  # fmt: skip
    for row in rows:
        cores = row.get("cores_busy", {})
        lines.append(
            f"| {row['clients']} | {row['requests']} | {row['queries_per_s']} | {row['p50_ms']} "
            f"| {row['p95_ms']} | {row['p99_ms']} | {row['4xx']} | {row['5xx']} | {row['errors']} "
            f"| {cores.get('server')} / {cores.get('client')} / {cores.get('other')}"
            + (f" (database {cores['database']})" if "database" in cores else "")
            + " |"
        )
    return "\n".join(lines)


def timeline(outcomes: list[Outcome], event_s: float, before_s: int, after_s: int) -> list[dict]:
    """Outcomes per second around an event (by when each request began)."""
    rows = []
    for second in range(-before_s, after_s):
        chosen = [o for o in outcomes if second <= o.started_s - event_s < second + 1]
        rows.append({"second": second, **outcome_counts(chosen)})
    return rows


# -- the phases ----------------------------------------------------------------------------------
def cycle(queries: list[Request]) -> Callable[[int], Request]:
    return lambda number: queries[number % len(queries)]


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


# -- setup ---------------------------------------------------------------------------------------
def catalog_and_index(args: argparse.Namespace) -> tuple[pd.DataFrame, list[str], dict]:
    """The tracks to cut queries from, `acr serve`'s backend options, and how they were made."""
    from acr.data.catalogs import read_catalog

    if args.index or args.database:
        backend = ["--index", args.index] if args.index else []
        backend += ["--database", args.database] if args.database else []
        if args.catalog:
            tracks = read_catalog(args.catalog).head(args.tracks)
        elif args.index:
            from acr.retrieval.changes import list_index

            tracks = list_index(args.index).tracks
        else:
            sys.exit("load_test: --database needs --catalog (the audio of the tracks it holds)")
        return tracks[["track_id", "path"]], backend, {"given": backend}
    args.work.mkdir(parents=True, exist_ok=True)
    if args.catalog:
        tracks = read_catalog(args.catalog).head(args.tracks)[["track_id", "path"]]
    else:  # no catalog: synthetic songs (acr.synth), 60 s each
        from acr.synth import synthesize_track

        folder = args.work / "synthetic"
        folder.mkdir(exist_ok=True)
        rows = []
        for seed in range(args.tracks):
            path = folder / f"song{seed:04d}.wav"
            if not path.is_file():
                soundfile.write(path, synthesize_track(seed, 60.0), SAMPLE_RATE_HZ)
            rows.append({"track_id": f"song{seed:04d}", "path": str(path.resolve())})
        tracks = pd.DataFrame(rows)
    table = args.work / "catalog.csv"
    tracks.to_csv(table, index=False)
    index = args.work / "index"
    command = [sys.executable, "-m", "acr", "index", "--catalog", str(table), "--output",
               str(index), "--workers", str(args.index_workers)]  # fmt: skip
    build = {"command": " ".join(command[1:]), "tracks": len(tracks)}
    if (index / "index.json").is_file():
        from acr.retrieval.changes import list_index

        if set(list_index(str(index)).tracks["track_id"]) != set(tracks["track_id"]):
            sys.exit(f"load_test: {index} holds other tracks than the catalog; use a new --work")
        build["reused"] = True
    else:
        started = time.perf_counter()
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(
                f"load_test: acr index failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )
        build["seconds"] = round(time.perf_counter() - started, 1)
    return tracks, ["--index", str(index)], build


class LoadTest:
    """The phases over one backend and one set of query bodies. Each phase starts its own
    server; results.json is rewritten after each, so a stopped run keeps what it measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.results = {"machine": machine(), "command": " ".join(sys.argv), "phases": {}}
        print("machine:", json.dumps(self.results["machine"]))
        if (self.results["machine"]["cores"] or 0) != 2:
            print("note: the issue's targets are for 2 cores")
        tracks, self.backend, self.results["setup"] = catalog_and_index(args)
        self.queries = make_queries(tracks, args.queries, args.query_length_s, args.seed)
        self.bad = bad_uploads(self.queries[0], args.max_upload_bytes, args.seed)
        self.results["setup"].update(queries=len(self.queries), bytes=len(self.queries[0].body))
        self.limits = {"max_upload_bytes": args.max_upload_bytes}
        if args.max_in_flight:
            self.limits["max_in_flight"] = args.max_in_flight
        self.results["limits"] = self.limits

    def save(self, phase: str, result: dict) -> None:
        self.results["phases"][phase] = result
        self.write()

    def write(self) -> None:
        text = json.dumps(self.results, indent=1, default=float)
        (self.args.out / "results.json").write_text(text)

    @contextmanager
    def served(self, workers: int, phase: str) -> Iterator[Server]:
        """A fresh `acr serve`, warmed up by an unrecorded load of 4 clients."""
        log = self.args.out / f"server-{phase}.log"
        with Server(self.backend, workers, self.limits, log) as server:
            if self.args.pg_data:
                server.database_pids = lambda: postgres_pids(self.args.pg_data)
            asyncio.run(load(server.url, cycle(self.queries), 4, self.args.warmup_s))
            yield server

    def least_disturbed(self, server: Server, clients: int) -> dict:
        """A level measured up to --attempts times while other processes keep more than
        QUIET_CORES busy during it; the least disturbed run is kept."""
        runs = []
        for _ in range(self.args.attempts):
            summary = measured(
                server, cycle(self.queries), clients, self.args.duration_s,
                quiet_s=self.args.wait_for_quiet_s,
            )[0]  # fmt: skip
            runs.append(summary)
            if summary["cores_busy"]["other"] <= QUIET_CORES:
                break
        best = min(runs, key=lambda run: run["cores_busy"]["other"])
        return {**best, "attempts": len(runs)}

    def breakdown(self) -> None:
        profile = self.args.out / "recognize.prof" if self.args.profile else None
        result = breakdown(self.backend[1], self.queries, 100, profile)
        print("in process, one query at a time:", json.dumps(result))
        self.save("breakdown", result)

    def levels(self) -> None:
        rows = []
        with self.served(self.args.workers, "levels") as server:
            for clients in self.args.clients:
                rows.append(self.least_disturbed(server, clients))
                print(table(rows[-1:]).splitlines()[-1], flush=True)
        title = f"\n--workers {self.args.workers}, {self.args.duration_s:g} s a level:"
        print(table(rows, title))
        self.save("levels", {"workers": self.args.workers, "rows": rows})

    def workers(self) -> None:
        compared = {}
        for workers in sorted({1, self.args.workers}):
            with self.served(workers, f"workers{workers}") as server:
                compared[workers] = self.least_disturbed(server, 16)
        print(
            table(
                list(compared.values()),
                f"\n16 clients, --workers {' vs '.join(map(str, compared))}:",
            )
        )
        self.save("workers", compared)

    def uploads(self) -> None:
        """Every --bad_every-th upload is a bad one, each kind in turn; the rest are queries."""
        every, bad, queries = self.args.bad_every, self.bad, self.queries

        def mixed(number: int) -> Request:
            if number % every:
                return queries[number % len(queries)]
            return bad[number // every % len(bad)]

        with self.served(self.args.workers, "uploads") as server:
            summary, outcomes = measured(
                server, mixed, self.args.fault_clients, self.args.duration_s
            )
        summary["per_kind"] = {}
        for request in [queries[0], *bad]:
            chosen = [outcome for outcome in outcomes if outcome.kind == request.kind]
            summary["per_kind"][request.kind] = {
                "expected": list(request.expected), "seen": outcome_counts(chosen),
                "as_expected": bool(chosen) and all(o.status in request.expected for o in chosen),
            }  # fmt: skip
            print(f"  {request.kind:22s} expected {request.expected} seen {outcome_counts(chosen)}")
        print(table([summary], "\nbad uploads mixed into the load (all requests):"))
        self.save("uploads", summary)

    def kill(self) -> None:
        events: dict = {}
        with self.served(self.args.workers, "kill") as server:
            during = lambda _: kill_a_worker(server, self.args.duration_s / 4, events)  # noqa: E731
            summary, outcomes = measured(
                server, cycle(self.queries), self.args.fault_clients, self.args.duration_s,
                during=during,
            )  # fmt: skip
        killed_s = events["killed_at_s"]
        in_flight = [o for o in outcomes if o.started_s <= killed_s < o.started_s + o.latency_s]
        after = [o for o in outcomes if o.started_s > killed_s + 0.5]
        summary.update(events, in_flight_at_kill=outcome_counts(in_flight))
        summary["after_kill"] = outcome_counts(after)
        summary["timeline"] = timeline(outcomes, killed_s, 2, 12)
        print(table([summary], f"\na worker SIGKILLed at {killed_s} s ({events}):"))
        print("  in flight at the kill:", summary["in_flight_at_kill"])
        print("  begun 0.5 s after the kill or later:", summary["after_kill"])
        self.save("kill", summary)

    def database(self) -> None:
        serve_help = subprocess.run(
            [sys.executable, "-m", "acr", "serve", "--help"], capture_output=True, text=True
        ).stdout
        if "--database" not in serve_help:
            print("database: skipped (this checkout's `acr serve` has no --database yet)")
            return
        results = {}
        for down_s in self.args.db_down_s:
            restart = restart_pgserver(self.args.pg_data, down_s)
            with self.served(self.args.workers, f"database-down{down_s:g}s") as server:
                summary = fault_database(
                    server, self.queries, restart, self.args.fault_clients, self.args.duration_s
                )
            title = f"\nthe database restarted under load ({down_s:g} s down):"
            print(table([summary], title))
            print("  during the restart:", summary["during_restart"], "; the first 200 after it:",
                  summary["first_200_after_restart_s"], "s")  # fmt: skip
            results[f"down_{down_s:g}s"] = summary
        self.save("database", results)

    def soak(self) -> None:
        args = self.args
        with self.served(args.workers, "soak") as server:
            summary = soak(server, self.queries, args.soak_clients, args.soak_s, args.sample_s)
        memory = {
            key: value for key, value in summary["memory"].items()
            if key not in ("samples", "per_process_last_mb")
        }  # fmt: skip
        print(table([summary], f"\nsoak, {args.soak_s:g} s:"), "\n  memory:", json.dumps(memory))
        self.save("soak", summary)

    def verdicts(self) -> None:
        """The issue's targets (2 cores, file backend) and the 5xx of every phase."""
        rows = {
            row["clients"]: row for row in self.results["phases"].get("levels", {}).get("rows", [])
        }
        met = {}
        if 1 in rows:
            met["p50_ms_at_1_client"] = rows[1]["p50_ms"] <= TARGETS["p50_ms_at_1_client"]
        if 16 in rows:
            met["queries_per_s_at_16_clients"] = (
                rows[16]["queries_per_s"] >= TARGETS["queries_per_s_at_16_clients"]
            )
        five_hundreds = {f"levels {clients}": row["5xx"] for clients, row in rows.items()}
        for name, phase in self.results["phases"].items():
            if "5xx" in phase:
                five_hundreds[name] = phase["5xx"]
        for outage, phase in self.results["phases"].get("database", {}).items():
            five_hundreds[f"database {outage} (503 is the answer while it is down)"] = phase["5xx"]
        self.results.update(targets=TARGETS, met=met, five_hundreds=five_hundreds)
        backend = "" if "--index" in self.backend else " (the targets are the file backend's)"
        print(f"\ntargets{backend}", TARGETS, "met:", met, "\n5xx per phase:", five_hundreds)
        self.write()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--index", help="an index directory (acr index) to serve")
    add("--database", help="a database URL, passed to acr serve --database")
    add("--pg_data", help="the pgserver data directory of --database (the restart fault)")
    add("--catalog", help="a track_id,path table to index and to cut queries from")
    add("--tracks", type=int, default=200, help="the catalog's first tracks")
    add("--work", type=Path, default=Path("runs/load_test"), help="the catalog and index built")
    add("--out", type=Path, default=Path("runs/load_test"), help="results.json, server logs")
    add("--index_workers", type=int, default=2, help="acr index --workers")
    add("--phases", nargs="+", choices=PHASES, default=list(PHASES))
    add("--clients", type=int, nargs="+", default=[1, 4, 16, 64])
    add("--duration_s", type=float, default=20.0, help="a load level's length (and a fault's)")
    add("--attempts", type=int, default=3, help="runs of a level disturbed by other processes")
    add("--wait_for_quiet_s", type=float, default=120.0, help="before each level, at most")
    add("--warmup_s", type=float, default=3.0, help="unrecorded load on each new server")
    add("--workers", type=int, default=2, help="acr serve --workers")
    add("--fault_clients", type=int, default=8, help="clients of the fault phases")
    add("--bad_every", type=int, default=4, help="every Nth upload of the mix is a bad one")
    add("--max_upload_bytes", type=int, default=200_000, help="acr serve --limits.*")
    add("--max_in_flight", type=int, help="acr serve --limits.max_in_flight (default: its own)")
    add("--db_down_s", type=float, nargs="+", default=[0.0], help="0: pg_ctl restart")
    add("--soak_s", type=float, default=600.0)
    add("--soak_clients", type=int, default=8)
    add("--sample_s", type=float, default=5.0, help="the soak's memory sampling period")
    add("--queries", type=int, default=200, help="distinct query bodies")
    add("--query_length_s", type=float, default=3.0)
    add("--profile", action="store_true", help="cProfile the in-process path (breakdown)")
    add("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    test = LoadTest(args)
    needs = {
        "breakdown": ("--index" in test.backend, "a file index"),
        "kill": (args.workers > 1, "--workers 2 or more"),
        "database": (bool(args.database and args.pg_data), "--database and --pg_data"),
        "soak": (args.soak_s > 0, "--soak_s > 0"),
    }
    for phase in PHASES:
        runnable, what = needs.get(phase, (True, ""))
        if phase in args.phases and runnable:
            getattr(test, phase)()
        elif phase in args.phases:
            print(f"{phase}: skipped (needs {what})")
    test.verdicts()


if __name__ == "__main__":
    main()

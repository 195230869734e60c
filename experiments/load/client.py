"""The async load client and its outcome counting: every request's outcome is counted on the
client, an HTTP status or the connection error it saw, so none may go missing. aiohttp when
installed, else httpx (a dependency of the serve extra's tests); both stay light on 2 cores."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

try:
    import aiohttp
except ImportError:  # httpx, a dependency of the serve extra's tests, is used instead
    aiohttp = None


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


def cycle(queries: list[Request]) -> Callable[[int], Request]:
    return lambda number: queries[number % len(queries)]


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


def timeline(outcomes: list[Outcome], event_s: float, before_s: int, after_s: int) -> list[dict]:
    """Outcomes per second around an event (by when each request began)."""
    rows = []
    for second in range(-before_s, after_s):
        chosen = [o for o in outcomes if second <= o.started_s - event_s < second + 1]
        rows.append({"second": second, **outcome_counts(chosen)})
    return rows

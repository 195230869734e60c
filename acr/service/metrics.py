"""Prometheus metrics written by hand in the text exposition format (version 0.0.4):
prometheus_client is not a dependency, and a few metric families do not need it.

Counters of requests by route and status, a latency histogram by route, the uploads in flight,
the catalog size, and the live streams (WS /v1/stream) open and closed, by close code. Per
worker process: Prometheus sums the workers' scrapes.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict

# Seconds: a 3-s fingerprint query answers in tens of ms; uploads and adds take longer.
LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.latency_counts: dict[str, list[int]] = defaultdict(
            lambda: [0] * len(LATENCY_BUCKETS_S)
        )
        self.latency_sum_s: Counter[str] = Counter()
        self.latency_total: Counter[str] = Counter()
        self.in_flight = 0
        self.catalog_tracks = 0
        self.streams_open = 0
        self.streams_closed: Counter[int] = Counter()  # by close code (the client's, if first)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[method, route, status] += 1
            counts = self.latency_counts[route]
            for position, bound in enumerate(LATENCY_BUCKETS_S):
                if seconds <= bound:
                    counts[position] += 1
            self.latency_sum_s[route] += seconds
            self.latency_total[route] += 1

    def stream_opened(self) -> None:
        with self._lock:
            self.streams_open += 1

    def stream_closed(self, code: int) -> None:
        with self._lock:
            self.streams_open -= 1
            self.streams_closed[code] += 1

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP acr_requests_total HTTP requests by method, route and status.",
                "# TYPE acr_requests_total counter",
            ]
            for (method, route, status), count in sorted(self.requests.items()):
                labels = f'method="{method}",route="{_escape(route)}",status="{status}"'
                lines.append(f"acr_requests_total{{{labels}}} {count}")
            lines += [
                "# HELP acr_request_duration_seconds Time to answer a request.",
                "# TYPE acr_request_duration_seconds histogram",
            ]
            for route in sorted(self.latency_total):
                label, name = f'route="{_escape(route)}"', "acr_request_duration_seconds"
                for bound, count in zip(LATENCY_BUCKETS_S, self.latency_counts[route]):
                    lines.append(f'{name}_bucket{{{label},le="{bound}"}} {count}')
                total = self.latency_total[route]
                lines.append(f'{name}_bucket{{{label},le="+Inf"}} {total}')
                lines.append(f"{name}_sum{{{label}}} {self.latency_sum_s[route]}")
                lines.append(f"{name}_count{{{label}}} {total}")
            lines += [
                "# HELP acr_in_flight Uploads being read, decoded or recognised.",
                "# TYPE acr_in_flight gauge",
                f"acr_in_flight {self.in_flight}",
                "# HELP acr_catalog_tracks Live tracks in the loaded index.",
                "# TYPE acr_catalog_tracks gauge",
                f"acr_catalog_tracks {self.catalog_tracks}",
                "# HELP acr_streams_open Live streams (WS /v1/stream) open.",
                "# TYPE acr_streams_open gauge",
                f"acr_streams_open {self.streams_open}",
                "# HELP acr_streams_total Live streams closed, by WebSocket close code.",
                "# TYPE acr_streams_total counter",
            ]
            for code, count in sorted(self.streams_closed.items()):
                lines.append(f'acr_streams_total{{code="{code}"}} {count}')
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

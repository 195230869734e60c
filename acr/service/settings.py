"""What an ``acr serve`` process may do: its limits, the write token, CORS origins.

Dataclasses, so that ``acr serve`` takes the limits as options (``--limits.max_in_flight``,
``--limits.help``) and a multi-worker uvicorn can hand the settings to each worker as JSON."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

TOKEN_VARIABLE = "ACR_SERVE_TOKEN"
SETTINGS_VARIABLE = "ACR_SERVE_SETTINGS"  # how `acr serve --workers N` hands settings over
MEGABYTE = 1_000_000


@dataclass(frozen=True)
class ServiceLimits:
    """What one request may cost, and how many may run at once.

    Args:
        max_upload_bytes: a larger upload is refused with 413.
        max_audio_s: a query longer than this is refused with 413 (read from the header,
            before decoding).
        upload_timeout_s: receiving an upload slower than this answers 408.
        request_timeout_s: decoding and recognising slower than this answers 504.
        max_in_flight: uploads handled at once per worker process (received, waiting for a
            decode thread or being recognised); more answer 503 with Retry-After. 64 keeps
            64 clients of a 2-core machine waiting their turn (~1 s) rather than refused, and
            bounds memory to 64 uploads.
        decode_workers: threads that decode and recognise (libsndfile, FFmpeg and numpy
            release the GIL, so one slow file does not stall the others).
        retry_after_s: the Retry-After of a 503.
        max_streams: live streams (WS /v1/stream) open at once per worker process; one more
            is closed with 1013. Each holds a thread that scans (and one that decodes, for a
            container).
        max_stream_s: a stream ends after this many seconds of audio, or of connection: its
            segments are flushed, then it is closed with 1008.
        max_stream_lag_s: audio received but not yet scanned; a client that sends faster
            than the scan keeps up with, more than this ahead, is closed with 1013 (a scan
            runs at tens of times real time: a client sending in real time never is). The
            bytes waiting (PCM, or a container's before decoding) are bounded by
            ``max_upload_bytes``.
        stream_idle_s: a stream that sends nothing for this long ends as at ``max_stream_s``
            (acr monitor's ``stall_timeout_s``).
    """

    max_upload_bytes: int = 20 * MEGABYTE
    max_audio_s: float = 60.0
    upload_timeout_s: float = 60.0
    request_timeout_s: float = 30.0
    max_in_flight: int = 64
    decode_workers: int = 4
    retry_after_s: int = 1
    max_streams: int = 4
    max_stream_s: float = 3600.0
    max_stream_lag_s: float = 30.0
    stream_idle_s: float = 30.0

    def __post_init__(self) -> None:
        for name in (
            "max_upload_bytes", "max_in_flight", "decode_workers", "retry_after_s", "max_streams"
        ):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"limits.{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "max_audio_s", "upload_timeout_s", "request_timeout_s", "max_stream_s",
            "max_stream_lag_s", "stream_idle_s",
        ):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"limits.{name} must be > 0, got {getattr(self, name)}")


@dataclass
class ServeSettings:
    """The catalog a service answers from (an index directory, or a PostgreSQL database that
    replicas share), its limits and its security.

    ``token`` defaults to the environment variable ACR_SERVE_TOKEN; without one the write
    routes answer 403. ``uploads_dir`` (default INDEX/uploads) keeps added tracks' audio (on
    a database, the features alone are kept: replicas share no disk)."""

    index: str | None
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    uploads_dir: str | None = None
    database: str | None = None

    def __post_init__(self) -> None:
        if (self.index is None) == (self.database is None):
            raise ValueError("give --index DIR or --database URL (one of the two)")
        if isinstance(self.limits, dict):
            self.limits = ServiceLimits(**self.limits)
        if self.token is None:
            self.token = os.environ.get(TOKEN_VARIABLE) or None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))

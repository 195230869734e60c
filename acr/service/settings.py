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
        max_in_flight: uploads handled at once per worker process; more answer 503 with
            Retry-After.
        decode_workers: threads that decode and recognise (libsndfile, FFmpeg and numpy
            release the GIL, so one slow file does not stall the others).
        retry_after_s: the Retry-After of a 503.
    """

    max_upload_bytes: int = 20 * MEGABYTE
    max_audio_s: float = 60.0
    upload_timeout_s: float = 60.0
    request_timeout_s: float = 30.0
    max_in_flight: int = 8
    decode_workers: int = 4
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_in_flight", "decode_workers", "retry_after_s"):
            if getattr(self, name) < 1:
                raise ValueError(f"limits.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_audio_s", "upload_timeout_s", "request_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"limits.{name} must be > 0, got {getattr(self, name)}")


@dataclass
class ServeSettings:
    """The index a service answers from, its limits and its security.

    ``token`` defaults to the environment variable ACR_SERVE_TOKEN; without one the write
    routes answer 403. ``uploads_dir`` (default INDEX/uploads) keeps added tracks' audio."""

    index: str
    limits: ServiceLimits = field(default_factory=ServiceLimits)
    token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    uploads_dir: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limits, dict):
            self.limits = ServiceLimits(**self.limits)
        if self.token is None:
            self.token = os.environ.get(TOKEN_VARIABLE) or None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ServeSettings:
        return cls(**json.loads(text))

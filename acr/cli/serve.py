"""``acr serve``: the recognition service (acr.service) on uvicorn."""

from __future__ import annotations

import os

from acr.cli.commands import Command
from acr.service.settings import SETTINGS_VARIABLE, ServeSettings, ServiceLimits


def serve(
    index: str | None = None,
    database: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 1,
    token: str | None = None,
    cors_origins: list[str] | None = None,
    uploads_dir: str | None = None,
    limits: ServiceLimits = ServiceLimits(),  # noqa: B008 (frozen)
    access_log: bool = True,
) -> None:
    """Answer recognition requests over HTTP with the index kept loaded (OpenAPI at /docs).

    Routes: GET / (a web page), POST /v1/recognize, WS /v1/stream, GET|POST /v1/tracks,
    GET|DELETE /v1/tracks/ID, GET /healthz, GET /metrics. Adding and deleting tracks need
    'Authorization: Bearer TOKEN'.

    Args:
        index: the index directory (acr index).
        database: instead of an index, a PostgreSQL catalog (acr db push) that any number of
            replicas share: postgresql://USER@HOST:PORT/NAME.
        host: the address to listen on; 127.0.0.1 takes connections from this machine only.
        port: the TCP port.
        workers: server processes, each with the index loaded (they share its files).
        token: the bearer token of the write routes (default: the environment variable
            ACR_SERVE_TOKEN); without one, adding and deleting tracks are refused.
        cors_origins: origins a browser page may call the service from (none by default).
        uploads_dir: where added tracks' audio is kept (default: INDEX/uploads).
        limits: upload size, audio length, time limit and requests in flight.
        access_log: log every request (uvicorn's access log; false under heavy traffic).
    """
    try:
        import uvicorn

        from acr.service.app import create_app
    except ImportError as error:
        raise ValueError(
            f"acr serve needs the serve extra ({error.name} is missing): pip install -e '.[serve]'"
        ) from error
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    settings = ServeSettings(index, limits, token, list(cors_origins or []), uploads_dir, database)
    if workers == 1:
        app = create_app(settings)
        uvicorn.run(app, host=host, port=port, log_level="info", access_log=access_log)
        return
    # A bad index is one error here, not one per worker. (The supervisor's ~180 MB are its
    # imports: an index is memory-mapped, and this one is never searched.)
    create_app(settings)
    os.environ[SETTINGS_VARIABLE] = settings.to_json()
    uvicorn.run(
        "acr.service.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
        access_log=access_log,
    )


COMMANDS = {"serve": Command(serve)}

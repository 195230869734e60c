"""``acr serve``: recognition over HTTP with the index kept loaded (FastAPI on uvicorn).

settings (the knobs), uploads (bounded body reading and decoding in a worker pool), catalog
(the loaded recognizer over an index directory, reloaded when it changes, or over a PostgreSQL
catalog, acr.database), metrics (Prometheus text), app (the routes), page.html (the web page
at /), live and live_scan (WS /v1/stream). Like every query path it reads the index through
acr.retrieval and never imports the build; catalog changes go through acr.retrieval.changes
or acr.database.push.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from acr.service.settings import ServeSettings, ServiceLimits

if TYPE_CHECKING:
    from acr.service.app import create_app

__all__ = ["ServeSettings", "ServiceLimits", "create_app"]


def __getattr__(name: str) -> Any:
    # FastAPI is an optional extra (serve): the settings import without it.
    if name == "create_app":
        from acr.service.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

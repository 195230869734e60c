"""The FastAPI application: recognition, the catalog, health, metrics and the web page at /
(``create_app``).

Uploads are decoded and recognised in a thread pool (acr.service.uploads says why threads),
at most ``max_in_flight`` at once; a request over that answers 503 at once, with Retry-After,
rather than queueing without bound. Write routes need the bearer token. ``WS /v1/stream``
(acr.service.live) recognises live audio, at most ``max_streams`` streams at once.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import tempfile
import threading
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from starlette.concurrency import run_in_threadpool

from acr.data.manifests import id_problem, write_table
from acr.database.push import add_audio
from acr.database.push import remove_tracks as remove_from_database
from acr.database.schema import DatabaseError, DatabaseUnavailable
from acr.retrieval.changes import add_tracks, list_index, remove_tracks
from acr.retrieval.engine import IndexDirectoryError, IndexLockedError
from acr.retrieval.recognizer import Recognition, Recognizer
from acr.service.catalog import Catalog, DatabaseCatalog, Loaded
from acr.service.live import Streams
from acr.service.metrics import CONTENT_TYPE, Metrics
from acr.service.settings import ServeSettings
from acr.service.uploads import Upload, UploadError, decode, read_upload

MAX_TOP_K = 100
MAX_PAGE = 1000
# /docs shows both ways to send audio; the body is read by hand so its size can be limited.
AUDIO_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "track_id": {"type": "string", "description": "POST /v1/tracks only"},
                    },
                    "required": ["file"],
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


class Slots:
    """At most ``limit`` uploads in flight; a slot is freed when its work really ends (a timed
    out recognition keeps its thread, so it keeps its slot)."""

    def __init__(self, limit: int, metrics: Metrics, retry_after_s: int) -> None:
        self.limit, self.metrics, self.retry_after_s = limit, metrics, retry_after_s
        self._lock = threading.Lock()

    def acquire(self) -> None:
        with self._lock:
            if self.metrics.in_flight >= self.limit:
                raise UploadError(
                    503,
                    f"busy: {self.limit} uploads in flight; retry in {self.retry_after_s} s",
                    {"Retry-After": str(self.retry_after_s)},
                )
            self.metrics.in_flight += 1

    def release(self, _: object = None) -> None:
        with self._lock:
            self.metrics.in_flight -= 1


def create_app(settings: ServeSettings) -> FastAPI:
    """The service over ``settings.index`` or ``settings.database``, loaded now (a damaged
    index or an unusable database raises here)."""
    catalog = DatabaseCatalog(settings.database) if settings.database else Catalog(settings.index)
    limits = settings.limits
    metrics = Metrics()
    metrics.catalog_tracks = len(catalog.current().tracks)
    slots = Slots(limits.max_in_flight, metrics, limits.retry_after_s)
    streams = Streams(catalog, limits, metrics)
    pool = ThreadPoolExecutor(limits.decode_workers, thread_name_prefix="acr-decode")
    write_lock = asyncio.Lock()
    uploads_dir = Path(settings.uploads_dir or Path(settings.index or ".") / "uploads")

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="acr",
        summary="Music recognition over HTTP: which catalog track, where, how sure.",
        lifespan=lifespan,
    )
    app.state.settings, app.state.catalog, app.state.metrics = settings, catalog, metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
        )

    @app.exception_handler(UploadError)
    async def refused(_: Request, error: UploadError) -> JSONResponse:
        return JSONResponse({"detail": error.message}, error.status, error.headers)

    @app.exception_handler(IndexDirectoryError)
    async def index_unavailable(_: Request, error: IndexDirectoryError) -> JSONResponse:
        return JSONResponse({"detail": f"index unavailable: {error}"}, 503, {"Retry-After": "5"})

    @app.exception_handler(DatabaseError)
    async def database_unavailable(_: Request, error: DatabaseError) -> JSONResponse:
        """The database is down or restarting: fail fast, and come back with it."""
        retry = {"Retry-After": str(limits.retry_after_s)}
        return JSONResponse({"detail": f"database unavailable: {error}"}, 503, retry)

    async def loaded() -> Loaded:
        current = await run_in_threadpool(catalog.current)
        metrics.catalog_tracks = len(current.tracks)
        return current

    def require_token(request: Request) -> None:
        """Write routes: a 403 while no token is configured, a 401 for a missing or wrong one
        (compared in constant time)."""
        if not settings.token:
            raise UploadError(403, "writes are disabled: the server has no token (ACR_SERVE_TOKEN)")
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), settings.token.encode()
        ):
            raise UploadError(
                401, "a valid 'Authorization: Bearer TOKEN' header is required",
                {"WWW-Authenticate": "Bearer"},
            )  # fmt: skip

    async def in_pool(future: Future, what: str) -> Any:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), limits.request_timeout_s)
        except TimeoutError as error:
            raise UploadError(
                504, f"{what} took over the limit of {limits.request_timeout_s} s"
            ) from error

    async def receive(request: Request) -> Upload:
        try:
            return await asyncio.wait_for(
                read_upload(request, limits.max_upload_bytes), limits.upload_timeout_s
            )
        except TimeoutError as error:
            raise UploadError(
                408, f"the upload took over the limit of {limits.upload_timeout_s} s"
            ) from error

    @app.post("/v1/recognize", openapi_extra=AUDIO_BODY)
    async def recognize(
        request: Request,
        top_k: int = Query(5, ge=1, le=MAX_TOP_K, description="ranked tracks to return"),
        engine: str | None = Query(None, description="one engine of a hybrid index"),
    ) -> dict[str, Any]:
        """Recognise an uploaded clip (a multipart field ``file``, or the raw body): the
        ranked tracks, where in each the clip sits, and match or no_match."""
        current = await loaded()
        if engine is not None and engine not in current.by_engine:
            raise UploadError(
                422, f"engine: {engine!r} is not in this index ({', '.join(current.by_engine)})"
            )
        recognizer = current.by_engine[engine] if engine else current.recognizer
        slots.acquire()
        future = None
        try:
            upload = await receive(request)
            future = pool.submit(_recognize, upload, recognizer, top_k, limits.max_audio_s)
            future.add_done_callback(slots.release)
            recognition = await in_pool(future, "recognition")
        finally:
            if future is None:
                slots.release()
        return _answer(recognition, current.tracks)

    @app.get("/v1/tracks")
    async def tracks(
        offset: int = Query(0, ge=0), limit: int = Query(100, ge=1, le=MAX_PAGE)
    ) -> dict[str, Any]:
        """The live tracks of the catalog, a page at a time, in index order."""
        table = (await loaded()).tracks
        page = table.iloc[offset : offset + limit]
        return {
            "total": len(table),
            "offset": offset,
            "limit": limit,
            "tracks": [_track(row) for _, row in page.iterrows()],
        }

    @app.get("/v1/tracks/{track_id:path}")
    async def track(track_id: str) -> dict[str, Any]:
        table = (await loaded()).tracks
        if track_id not in table.index:
            raise UploadError(404, f"track {track_id!r} is not in the catalog")
        return _track(table.loc[track_id])

    @app.post(
        "/v1/tracks", status_code=201, openapi_extra=AUDIO_BODY,
        dependencies=[Depends(require_token)],
    )  # fmt: skip
    async def add_track(
        request: Request,
        track_id: str | None = Query(None, description="the new track's id (or a form field)"),
    ) -> dict[str, Any]:
        """Add a track from an uploaded file; it is recognised by the next request."""
        slots.acquire()
        future = None
        try:
            upload = await receive(request)
            track_id = track_id if track_id is not None else upload.fields.get("track_id")
            problem = id_problem(track_id)
            if problem is not None:
                raise UploadError(422, f"track_id: {problem}")
            async with write_lock:
                if track_id in (await loaded()).tracks.index:
                    raise _duplicate(track_id)
                digest = hashlib.sha256(track_id.encode()).hexdigest()[:24]
                # Unique per upload: another worker adding the same id at once writes its own
                # file, and the one whose add fails removes only its own.
                unique = f"{digest}-{uuid.uuid4().hex[:12]}"
                kept = uploads_dir / f"{unique}{upload.suffix or '.audio'}"
                if settings.database:
                    engines = (await loaded()).recognizer.engines
                    add = functools.partial(_add_to_database, engines=engines)
                    future = pool.submit(add, upload, track_id, settings)
                else:
                    future = pool.submit(_add, upload, track_id, kept, settings)
                future.add_done_callback(slots.release)
                duration_s = await asyncio.wrap_future(future)  # a change is never cut short
                await run_in_threadpool(catalog.reload)
        finally:
            if future is None:
                slots.release()
        metrics.catalog_tracks = len((await loaded()).tracks)
        return {"track_id": track_id, "duration_s": duration_s}

    @app.delete("/v1/tracks/{track_id:path}", dependencies=[Depends(require_token)])
    async def delete_track(track_id: str) -> dict[str, Any]:
        """Remove a track: it is never answered again."""
        async with write_lock:
            tracks = (await loaded()).tracks
            if track_id not in tracks.index:
                raise UploadError(404, f"track {track_id!r} is not in the catalog")
            if settings.database:
                await run_in_threadpool(remove_from_database, settings.database, [track_id])
            else:
                await run_in_threadpool(remove_tracks, settings.index, [track_id])
                # The audio an add kept goes with the track (nothing reads a removed one's).
                source = Path(str(tracks.loc[track_id, "path"]))
                if source.parent.resolve() == uploads_dir.resolve():
                    source.unlink(missing_ok=True)
            await run_in_threadpool(catalog.reload)
        metrics.catalog_tracks = len((await loaded()).tracks)
        return {"removed": track_id}

    page = resources.files("acr.service").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def home() -> str:
        """The web page (page.html): upload or record a clip, see its matches."""
        return page

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        """Live recognition: audio chunks in, acr monitor's start/end/gap events out
        (acr.service.live has the protocol). No token, as POST /v1/recognize."""
        await streams.serve(websocket)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        """The catalog is loaded (and its database reachable: else a 503)."""
        current = await loaded()
        database = {"database": "reachable"} if settings.database else {}
        return {
            "status": "ok",
            "index_loaded": True,
            **database,
            "tracks": len(current.tracks),
            "engines": list(current.recognizer.engines),
            "calibrated": current.recognizer.calibration is not None,
        }

    @app.get("/metrics", response_class=PlainTextResponse)
    async def prometheus() -> PlainTextResponse:
        await loaded()
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    return app


class MetricsMiddleware:
    """Counts every request by route template (not its path: ids stay out of the labels) and
    status, and times it. Plain ASGI, so streamed bodies pass through untouched."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status = time.perf_counter(), 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.observe(scope["method"], name, status, time.perf_counter() - started)


def _recognize(upload: Upload, recognizer: Recognizer, top_k: int, max_audio_s: float):
    audio, sample_rate = decode(upload, max_audio_s)
    return recognizer.recognize(audio, sample_rate, top_k)


def _duplicate(track_id: str) -> UploadError:
    return UploadError(409, f"track_id: {track_id!r} is already in the catalog")


def _add(upload: Upload, track_id: str, kept: Path, settings: ServeSettings) -> float:
    """Check the upload decodes, keep it, and add it to the index (acr.retrieval.changes)."""
    # A catalog track may be longer than a query: only the upload's size bounds it.
    audio, sample_rate = decode(upload, float("inf"), keep=kept)
    with tempfile.TemporaryDirectory(prefix="acr-add-") as folder:
        table = Path(folder) / "catalog.csv"
        write_table(pd.DataFrame({"track_id": [track_id], "path": [str(kept)]}), table)
        try:
            add_tracks(settings.index, str(table), workers=1)
        except IndexLockedError as error:  # another worker's add or delete, or acr index add
            kept.unlink(missing_ok=True)
            retry = {"Retry-After": str(settings.limits.retry_after_s)}
            raise UploadError(503, f"busy: {error}", retry) from error
        except IndexDirectoryError as error:
            kept.unlink(missing_ok=True)
            if track_id in set(list_index(settings.index).tracks["track_id"]):
                # Another worker added this id first (each worker's lock is its own).
                raise _duplicate(track_id) from error
            raise UploadError(422, f"file: {error}") from error
    return len(audio) / sample_rate


def _add_to_database(
    upload: Upload, track_id: str, settings: ServeSettings, engines: dict
) -> float:
    """Decode the upload and add its features to the database (acr.database.push); the
    audio itself is not kept (replicas share no disk)."""
    audio, sample_rate = decode(upload, float("inf"))
    try:
        add_audio(settings.database, engines, track_id, audio, sample_rate, "upload")
    except DatabaseUnavailable:
        raise
    except DatabaseError as error:
        raise UploadError(409, f"track_id: {error}") from error
    return len(audio) / sample_rate


def _answer(recognition: Recognition, tracks: pd.DataFrame) -> dict[str, Any]:
    if recognition.status == "error":
        raise UploadError(422, f"file: {recognition.error}")
    answered = recognition.status == "ok" and bool(recognition.matches)
    return {
        "status": "match" if answered else "no_match",
        "probability": recognition.probability,
        "duration_s": round(recognition.duration_s, 3),
        "matches": [
            {
                "track_id": match.track_id,
                "score": float(match.score),
                "offset_s": round(float(match.offset_s), 3),
                "speed_factor": float(match.speed_factor),
                "pitch_semitones": float(match.pitch_semitones),
                "track_duration_s": (
                    round(float(tracks.loc[match.track_id, "audio_s"]), 3)
                    if match.track_id in tracks.index
                    else None
                ),
            }
            for match in recognition.matches
        ],
    }


def _track(row: pd.Series) -> dict[str, Any]:
    duration_s = float(row["audio_s"])
    return {
        "track_id": row["track_id"],
        "duration_s": round(duration_s, 3) if np.isfinite(duration_s) else None,
        "segment": row["segment"],
    }


def app_from_environment() -> FastAPI:
    """The app of a worker of ``acr serve --workers N`` (uvicorn's factory, one per process),
    from the settings the command put in ACR_SERVE_SETTINGS."""
    import os

    from acr.service.settings import SETTINGS_VARIABLE

    return create_app(ServeSettings.from_json(os.environ[SETTINGS_VARIABLE]))

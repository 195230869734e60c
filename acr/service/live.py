"""Live recognition over a WebSocket (``WS /v1/stream``): audio in, as it is heard, and out the
events ``acr monitor --format jsonl`` writes, as the scan finds them.

Protocol. The first message is JSON text saying what the audio is: raw PCM,
``{"format": "pcm_s16le", "sample_rate": 16000, "channels": 1}`` (16-bit little-endian,
interleaved; each binary message holds whole frames), or ``{"format": "container"}``: any
stream FFmpeg reads from its start (webm or ogg from a browser's MediaRecorder, mp3, adts,
mpeg-ts), decoded as it arrives. The server answers ``{"event": "ready", ...}``; binary
messages then carry the audio and ``{"event": "end"}`` ends it. The server sends
acr.monitor.output's records (``start``, ``end``, ``gap``; times in stream seconds,
``reference_*`` in the track), then ``{"event": "done", ...}`` and closes with 1000; or, on a
refusal, ``{"event": "error", "code", "detail"}`` and closes with that code.

The scan is acr monitor's (its Scanner and ScanSettings), run in threads beside the event
loop, which only hands messages over (acr.service.live_scan); a stream holds one Scanner of the
index as loaded when it began.

Close codes (RFC 6455, 7.4.1): 1003 a message of the wrong kind (binary before the header, an
unknown format, text other than the end); 1007 audio that is not what it claims (a bad
header, PCM that is not whole frames, a container that does not decode, a stream shorter
than one window); 1008 a limit (max_stream_s, stream_idle_s), after the segments heard so far
are flushed; 1011 a failure of the server; 1013 busy (max_streams) or the scan fell behind
(max_stream_lag_s).
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import threading
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from acr.monitor.scan import Scanner, ScanSettings, monitor_recognizer
from acr.service.catalog import Catalog, Loaded
from acr.service.live_scan import (
    FAILED,
    LIMIT,
    NORMAL,
    TRY_LATER,
    UNSUPPORTED,
    Header,
    LiveScan,
    Refusal,
)
from acr.service.metrics import Metrics
from acr.service.settings import ServiceLimits

log = logging.getLogger(__name__)
# acr monitor's settings, but each window searched in the scan's own thread as soon as its
# audio is in, and its events sent then: windows searched ahead in a pool are only taken when
# the next message comes, which a client waiting for an answer may never send. One core scans
# at about half the speed of acr monitor's two (105-123x real time measured on 196 tracks:
# acr.monitor.scan), and concurrent streams spread over the cores.
LIVE_SCAN = ScanSettings(threads=1)


class Streams:
    """``WS /v1/stream`` of one app: at most ``max_streams`` at once, each scanned by acr
    monitor's Scanner (its settings: ``scan``) of the index as loaded when it began."""

    def __init__(
        self,
        catalog: Catalog,
        limits: ServiceLimits,
        metrics: Metrics,
        scan: ScanSettings | None = None,
    ) -> None:
        self.catalog, self.limits, self.metrics = catalog, limits, metrics
        self.settings = scan or LIVE_SCAN
        self._scanner: tuple[Loaded, Scanner] | None = None
        self._lock = threading.Lock()

    def scanner(self) -> Scanner:
        """The Scanner of the index as loaded now, built again when it is reloaded (blocking:
        a stat of index.json, a reload when it changed)."""
        loaded = self.catalog.current()
        with self._lock:
            if self._scanner is None or self._scanner[0] is not loaded:
                # monitor_recognizer swaps the fingerprint engine of the recognizer it is
                # given: a copy, so that /v1/recognize keeps the index's own search settings.
                recognizer = copy.copy(loaded.recognizer)
                recognizer.engines = dict(recognizer.engines)
                recognizer = monitor_recognizer(recognizer, self.settings)
                self._scanner = (loaded, Scanner(recognizer, self.settings))
            return self._scanner[1]

    async def serve(self, websocket: WebSocket) -> None:
        await websocket.accept()
        if self.metrics.streams_open >= self.limits.max_streams:
            self.metrics.stream_opened()
            busy = f"busy: {self.limits.max_streams} streams open; retry later"
            self.metrics.stream_closed(await _refuse(websocket, Refusal(TRY_LATER, busy)))
            return
        self.metrics.stream_opened()
        code = FAILED
        try:
            code = await self._session(websocket)
        finally:
            self.metrics.stream_closed(code)

    async def _session(self, websocket: WebSocket) -> int:
        """One stream, from its header to its close; the close code."""
        loop = asyncio.get_running_loop()
        outbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()

        def emit(item: tuple[str, Any]) -> None:  # from the stream's threads
            try:
                loop.call_soon_threadsafe(outbox.put_nowait, item)
            except RuntimeError:  # the loop has closed: the server is shutting down
                pass

        deadline = loop.time() + self.limits.max_stream_s
        live: LiveScan | None = None
        receiver: asyncio.Task | None = None
        counts = {"end": 0, "gap": 0}
        try:
            header = Header.parse(await self._next(websocket, deadline))
            scanner = await run_in_threadpool(self.scanner)
            live = LiveScan(scanner, header, self.limits, emit)
            await _send(
                websocket,
                {
                    "event": "ready",
                    "window_s": self.settings.window_s,
                    "hop_s": self.settings.hop_s,
                    "max_stream_s": self.limits.max_stream_s,
                },
            )
            receiver = asyncio.create_task(self._receive(websocket, live, deadline, outbox))
            while True:
                kind, value = await outbox.get()
                if kind == "event":
                    counts[value["event"]] = counts.get(value["event"], 0) + 1
                    await _send(websocket, value)
                elif kind == "gone":
                    return value
                elif kind == "fail" or value is not None:
                    raise value
                else:
                    await _send(
                        websocket,
                        {
                            "event": "done",
                            "audio_s": round(live.audio_s, 2),
                            "segments": counts["end"],
                            "gaps": counts["gap"],
                        },
                    )
                    await websocket.close(NORMAL)
                    return NORMAL
        except Refusal as refusal:
            return await _refuse(websocket, refusal)
        except WebSocketDisconnect as gone:
            return gone.code
        except Exception as error:  # noqa: BLE001 (the stream fails, never the server)
            log.exception("a stream failed")
            return await _refuse(websocket, Refusal(FAILED, f"the stream failed: {error}"))
        finally:
            if receiver is not None:
                receiver.cancel()
            if live is not None:
                live.cancel()

    async def _receive(
        self, websocket: WebSocket, live: LiveScan, deadline: float, outbox: asyncio.Queue
    ) -> None:
        """The client's messages into the scan, until its end, a refusal or its leaving."""
        try:
            while True:
                message = await self._next(websocket, deadline)
                if message.get("bytes") is not None:
                    live.put(message["bytes"])
                elif _is_end(message.get("text")):
                    live.end()
                    return
                else:
                    raise Refusal(
                        UNSUPPORTED,
                        'after the first message, send binary audio or {"event": "end"}',
                    )
        except Refusal as refusal:
            if refusal.flush:
                live.end(refusal)
            else:
                outbox.put_nowait(("fail", refusal))
        except WebSocketDisconnect as gone:
            outbox.put_nowait(("gone", gone.code))

    async def _next(self, websocket: WebSocket, deadline: float) -> dict[str, Any]:
        """The next message; a flushing Refusal after ``stream_idle_s`` without one, or at
        ``max_stream_s`` of connection."""
        left_s = deadline - asyncio.get_running_loop().time()
        wait_s = min(self.limits.stream_idle_s, left_s)
        try:
            message = await asyncio.wait_for(websocket.receive(), max(wait_s, 0.0))
        except TimeoutError:
            if wait_s >= left_s:
                detail = f"the stream reached the limit of {self.limits.max_stream_s:g} s"
            else:
                detail = f"no message for {self.limits.stream_idle_s:g} s: the stream stalled"
            raise Refusal(LIMIT, detail, flush=True) from None
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        return message


def _is_end(text: str | None) -> bool:
    try:
        return text is not None and json.loads(text) == {"event": "end"}
    except ValueError:
        return False


async def _send(websocket: WebSocket, record: dict[str, Any]) -> None:
    try:
        await websocket.send_text(json.dumps(record, allow_nan=False))
    except WebSocketDisconnected as error:
        raise WebSocketDisconnect(1006) from error


async def _refuse(websocket: WebSocket, refusal: Refusal) -> int:
    """The error event, then the close (unless the client has left); the code."""
    try:
        await _send(websocket, {"event": "error", "code": refusal.code, "detail": refusal.detail})
        await websocket.close(refusal.code)
    except (WebSocketDisconnect, WebSocketDisconnected, RuntimeError):
        pass
    return refusal.code

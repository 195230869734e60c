"""One live stream's audio path, in threads: the client's messages in (``LiveScan.put``, on
the event loop: no decoding there), acr monitor's events out (``emit``, from the threads).

Not a second monitor: the audio goes through acr monitor's Scanner, and a container through
acr.monitor.stream's decoder (PyAV a packet at a time, as standard input is), fed by a file
object whose reads wait for the client's next message; raw PCM is resampled by the same
swresample, whose state carries across messages. A scan thread, and a decoder thread for a
container. What was received but not yet scanned is counted in seconds (a container's after
decoding, the only place its length is known): the lag that ``max_stream_lag_s`` bounds.
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from acr.audio import MIN_SAMPLE_RATE, AudioError
from acr.monitor.output import event_record
from acr.monitor.scan import Scanner
from acr.monitor.stream import BLOCK_S, Gap, Recording, container_blocks, finite_blocks
from acr.service.settings import ServiceLimits

PCM, CONTAINER = "pcm_s16le", "container"
HEADER_EXAMPLE = '{"format": "pcm_s16le", "sample_rate": 16000, "channels": 1}'
MAX_SAMPLE_RATE = 384_000
MAX_CHANNELS = 8  # FFmpeg's default layouts up to 7.1
SAMPLE_BYTES = 2
RECORDING = "stream"  # the recording column of a stream's events
NORMAL, UNSUPPORTED, INVALID, LIMIT, FAILED, TRY_LATER = 1000, 1003, 1007, 1008, 1011, 1013

log = logging.getLogger(__name__)


class Refusal(Exception):
    """Why a stream ends otherwise than by its client's end: the error event's ``detail`` and
    the close ``code``. ``flush``: the segments heard so far are sent first (a limit)."""

    def __init__(self, code: int, detail: str, flush: bool = False) -> None:
        super().__init__(detail)
        self.code, self.detail, self.flush = code, detail, flush


@dataclass(frozen=True)
class Header:
    """What the client said its audio is (the first message)."""

    format: str
    sample_rate: int = 0
    channels: int = 0

    @staticmethod
    def parse(message: dict[str, Any]) -> Header:
        text = message.get("text")
        if text is None:
            raise Refusal(
                UNSUPPORTED,
                f"the first message must be JSON text: {HEADER_EXAMPLE}"
                ' or {"format": "container"}',
            )
        try:
            fields = json.loads(text)
        except ValueError as error:
            raise Refusal(INVALID, f"the first message is not JSON ({error})") from error
        if not isinstance(fields, dict):
            raise Refusal(INVALID, f"the first message must be a JSON object: {HEADER_EXAMPLE}")
        format = fields.get("format")
        allowed = {PCM: {"format", "sample_rate", "channels"}, CONTAINER: {"format"}}
        if format not in allowed:
            raise Refusal(UNSUPPORTED, f"format: {format!r} is not {PCM!r} or {CONTAINER!r}")
        unknown = sorted(set(fields) - allowed[format])
        if unknown:
            raise Refusal(INVALID, f"unknown field(s) for format {format!r}: {', '.join(unknown)}")
        if format == CONTAINER:
            return Header(CONTAINER)
        sample_rate, channels = fields.get("sample_rate"), fields.get("channels", 1)
        if not _whole(sample_rate) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
            raise Refusal(
                INVALID,
                f"sample_rate: {sample_rate!r} is not a whole number of Hz"
                f" in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}]",
            )
        if not _whole(channels) or not 1 <= channels <= MAX_CHANNELS:
            raise Refusal(INVALID, f"channels: {channels!r} is not in [1, {MAX_CHANNELS}]")
        return Header(PCM, sample_rate, channels)


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Feed:
    """Items handed from one thread to another in order, with the seconds of audio and the
    bytes they hold; ``end`` lets the reader drain it, ``end(cancel=True)`` drops the rest."""

    def __init__(self) -> None:
        self._items: deque[tuple[Any, float, int]] = deque()
        self._ready = threading.Condition()
        self.seconds, self.bytes, self.ended = 0.0, 0, False

    def put(self, item: Any, seconds: float = 0.0, size: int = 0) -> None:
        with self._ready:
            if not self.ended:
                self._items.append((item, seconds, size))
                self.seconds, self.bytes = self.seconds + seconds, self.bytes + size
                self._ready.notify()

    def end(self, cancel: bool = False) -> None:
        with self._ready:
            self.ended = True
            if cancel:
                self._items.clear()
                self.seconds, self.bytes = 0.0, 0
            self._ready.notify_all()

    def get(self) -> Any:
        """The next item, waiting for it; None once the feed has ended and is empty."""
        with self._ready:
            while not self._items and not self.ended:
                self._ready.wait()
            if not self._items:
                return None
            item, seconds, size = self._items.popleft()
            self.seconds, self.bytes = self.seconds - seconds, self.bytes - size
            return item


class Pipe(io.RawIOBase):
    """A container's bytes as the file PyAV reads: a read waits for the client's next message,
    and the end of the stream is the end of the file."""

    def __init__(self, feed: Feed) -> None:
        super().__init__()
        self.feed, self._held = feed, memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self._held:
            data = self.feed.get()
            if data is None:
                return 0
            self._held = memoryview(data)
        count = min(len(buffer), len(self._held))
        buffer[:count] = self._held[:count]
        self._held = self._held[count:]
        return count


class PcmToMono:
    """Raw PCM messages as mono float32 at ``sample_rate``, through FFmpeg's swresample as a
    container's audio is: its filter state carries over, so a stream cut into any pieces is
    resampled as one (at the client's own rate and mono, it is exactly ``x / 32768``)."""

    def __init__(self, header: Header, sample_rate: int) -> None:
        import av

        self.av, self.header = av, header
        self.resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)

    def __call__(self, data: bytes | None) -> np.ndarray:
        """The audio of ``data`` (None: what the resampler still holds, at the end)."""
        frame = None
        if data is not None:
            samples = np.frombuffer(data, dtype="<i2").reshape(1, -1)
            layout = f"{self.header.channels}c"
            frame = self.av.AudioFrame.from_ndarray(samples, format="s16", layout=layout)
            frame.sample_rate = self.header.sample_rate
        converted = [part.to_ndarray().reshape(-1) for part in self.resampler.resample(frame)]
        return np.concatenate(converted) if converted else np.zeros(0, dtype=np.float32)


class LiveScan:
    """One stream's scan, in its own threads: ``put`` hands a binary message over (on the event
    loop: no decoding there), and ``emit`` (called from those threads) gets ``("event",
    record)``, ``("fail", Refusal)`` and, last, ``("finished", Refusal | None)``."""

    def __init__(
        self,
        scanner: Scanner,
        header: Header,
        limits: ServiceLimits,
        emit: Callable[[tuple[str, Any]], None],
    ) -> None:
        self.scanner, self.header, self.limits, self.emit = scanner, header, limits, emit
        self.audio = Feed()  # what the scan reads: PCM bytes, or decoded blocks and gaps
        self.container = Feed() if header.format == CONTAINER else None  # bytes to decode
        self.ending: Refusal | None = None  # why the audio stopped before the client's end
        self.cancelled = False
        self.samples = 0  # at the scanner's rate, gaps included: the stream's clock
        targets = [self._scan] + ([self._decode] if self.container is not None else [])
        for target in targets:
            threading.Thread(target=target, daemon=True, name="acr-stream").start()

    @property
    def audio_s(self) -> float:
        return self.samples / self.scanner.sample_rate

    def put(self, data: bytes) -> None:
        """A binary message; a Refusal for PCM that is not whole frames, or for a client
        more than ``max_stream_lag_s`` ahead of the scan."""
        if self.container is not None:
            self.container.put(data, size=len(data))
        else:
            frame = SAMPLE_BYTES * self.header.channels
            if len(data) % frame:
                raise Refusal(
                    INVALID,
                    f"a PCM message of {len(data)} bytes is not whole frames"
                    f" of {frame} bytes ({self.header.channels} x 16 bits)",
                )
            self.audio.put(data, len(data) / frame / self.header.sample_rate, len(data))
        waiting = (self.container or self.audio).bytes
        if waiting > self.limits.max_upload_bytes:  # 8 channels at 384 kHz: 3 s of audio
            raise Refusal(
                TRY_LATER,
                f"{waiting} bytes of the stream wait, over the limit of"
                f" {self.limits.max_upload_bytes}: send it closer to real time",
            )
        lag = self._lag()
        if lag is not None:
            raise lag

    def end(self, refusal: Refusal | None = None) -> None:
        """The client's end, or a limit's (``refusal``, reported after the flushed events):
        the scan takes what was sent, then closes its segments."""
        if refusal is not None and self.ending is None:
            self.ending = refusal
        (self.container or self.audio).end()

    def cancel(self) -> None:
        self.cancelled = True
        for feed in (self.audio, self.container):
            if feed is not None:
                feed.end(cancel=True)

    def _lag(self) -> Refusal | None:
        if self.audio.seconds <= self.limits.max_stream_lag_s:
            return None
        return Refusal(
            TRY_LATER,
            f"the scan fell {self.audio.seconds:.0f} s behind the audio"
            f" sent, over the limit of {self.limits.max_stream_lag_s:g} s: send it"
            " closer to real time",
        )

    def _stop(self, refusal: Refusal) -> None:
        """The audio ends here (a limit, or the rest does not decode): the scan flushes."""
        if self.ending is None:
            self.ending = refusal
        for feed in (self.container, self.audio):
            if feed is not None:
                feed.end(cancel=feed is self.container)

    def _decode(self) -> None:
        """A container decoded as its bytes arrive (acr.monitor.stream), into the scan's feed."""
        rate, decoded_s = self.scanner.sample_rate, 0.0
        try:
            blocks = container_blocks(Pipe(self.container), RECORDING, rate, round(BLOCK_S * rate))
            for item in finite_blocks(blocks, rate):
                seconds = 0.0 if isinstance(item, Gap) else len(item) / rate  # gaps cost no scan
                decoded_s += item.seconds if isinstance(item, Gap) else seconds
                self.audio.put(item, seconds)
                lag = self._lag()
                if lag is not None:
                    self.emit(("fail", lag))
                    return
            if not self.container.ended:
                self._stop(
                    Refusal(INVALID, f"the container stream does not decode past {decoded_s:.1f} s")
                )
        except AudioError as error:
            self._stop(Refusal(INVALID, f"unreadable audio: {error.reason}"))
        except Exception as error:  # noqa: BLE001 (PyAV's own; reported, never raised)
            self._stop(Refusal(INVALID, f"unreadable audio: {error}"))
        finally:
            self.audio.end()

    def _blocks(self) -> Iterator[np.ndarray | Gap]:
        """The scan's audio, mono at its rate, until the end or ``max_stream_s`` of it."""
        rate = self.scanner.sample_rate
        limit = round(self.limits.max_stream_s * rate)
        to_mono = PcmToMono(self.header, rate) if self.container is None else None
        while (item := self.audio.get()) is not None:
            if isinstance(item, bytes):
                item = to_mono(item)
            length = round(item.seconds * rate) if isinstance(item, Gap) else len(item)
            if self.samples + length > limit:
                if isinstance(item, np.ndarray):
                    yield item[: limit - self.samples]
                self.samples = limit
                self._stop(
                    Refusal(
                        LIMIT,
                        f"the stream reached the limit of {self.limits.max_stream_s:g} s",
                        flush=True,
                    )
                )
                return
            self.samples += length
            yield item
        if to_mono is not None:
            rest = to_mono(None)[: max(0, limit - self.samples)]
            self.samples += len(rest)
            yield rest

    def _scan(self) -> None:
        outcome: Refusal | None = None
        try:
            for event in self.scanner.scan(Recording(RECORDING, None, self._blocks())):
                if self.cancelled:
                    return
                self.emit(("event", event_record(RECORDING, event)))
            outcome = self.ending
        except AudioError as error:  # shorter than one window
            outcome = self.ending or Refusal(INVALID, f"unusable audio: {error.reason}")
        except Exception as error:  # noqa: BLE001 (a stream's failure is not the server's)
            log.exception("the scan of a stream failed")
            outcome = Refusal(FAILED, f"the scan failed: {error}")
        if not self.cancelled:
            self.emit(("finished", outcome))

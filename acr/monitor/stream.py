"""Recordings read a block at a time: a file, a stream on standard input, or a microphone.

Every source yields mono float32 blocks at one sample rate, and :class:`Gap` markers for
stretches it could not decode, so that a scan of hours holds a few seconds of audio at once.
Files libsndfile reads are read span by span through acr.audio (exact resampling, seeks);
standard input and the files only FFmpeg reads go through PyAV as acr.ffmpeg does (any
container FFmpeg reads, resampled and mixed down by its swresample, one packet at a time).
The microphone needs the optional ``sounddevice`` package. A :class:`Ring` keeps the latest
seconds for the scan.
"""

from __future__ import annotations

import io
import os
import queue
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from acr import ffmpeg
from acr.audio import (
    NON_FINITE,
    AudioError,
    AudioInfo,
    audio_info,
    read_resampled,
    resampled_length,
)

STDIN = "-"
MICROPHONE = "microphone"
BLOCK_S = 1.0  # seconds per block: a gap is reported to this precision
QUEUE_BLOCKS = 64  # blocks a live source may run ahead of the scan (a minute at 1 s)
# A timestamp jump longer than this between decoded frames is a lost stretch (a dropped
# packet, a cut in the stream), not jitter in the container's clock.
MAX_TIMESTAMP_JITTER_S = 0.1
MAX_BAD_PACKETS = 1000  # packets that do not decode before a stream is taken for garbage


@dataclass(frozen=True)
class Gap:
    """A stretch of ``seconds`` that could not be read (the stream's clock moves on)."""

    seconds: float
    reason: str


Item = np.ndarray | Gap


class StreamError(AudioError):
    """A recording that cannot be read at all (missing, not audio, no device)."""


@dataclass
class Recording:
    """An open source: its name for the output, its length when known, and its blocks."""

    name: str
    duration_s: float | None
    blocks: Iterator[Item]


class Ring:
    """The last ``capacity`` samples of a stream, by absolute sample number."""

    def __init__(self, capacity: int) -> None:
        self.buffer = np.zeros(capacity, dtype=np.float32)
        self.end = 0  # absolute number of the sample after the last one held
        self.held = 0

    @property
    def start(self) -> int:
        return self.end - self.held

    def reset(self, at: int) -> None:
        self.end, self.held = at, 0

    def append(self, audio: np.ndarray) -> None:
        capacity = len(self.buffer)
        audio = audio[-capacity:]
        first = self.end % capacity
        count = min(len(audio), capacity - first)
        self.buffer[first : first + count] = audio[:count]
        self.buffer[: len(audio) - count] = audio[count:]
        self.end += len(audio)
        self.held = min(capacity, self.held + len(audio))

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples ``[start, stop)``, clipped to what is held."""
        start, stop = max(start, self.start), min(stop, self.end)
        if stop <= start:
            return np.zeros(0, dtype=np.float32)
        capacity = len(self.buffer)
        indices = np.arange(start, stop) % capacity
        return self.buffer[indices]


def open_recording(
    source: str,
    sample_rate: int,
    stall_timeout_s: float = 30.0,
    block_s: float = BLOCK_S,
) -> Recording:
    """The blocks of ``source``: a file path, ``-`` for standard input (any container FFmpeg
    reads), or ``microphone`` (the default input device, through ``sounddevice``).

    A live source (standard input, a microphone) that delivers nothing for
    ``stall_timeout_s`` ends, as if it had closed.
    """
    block = max(1, round(block_s * sample_rate))
    if source == STDIN:
        blocks = finite_blocks(container_blocks(_stdin(), STDIN, sample_rate, block), sample_rate)
        return Recording(STDIN, None, _live(blocks, stall_timeout_s, STDIN))
    if source == MICROPHONE:
        _import_sounddevice()  # fails here, before any output, when it is not installed
        blocks = finite_blocks(_microphone(sample_rate, block, stall_timeout_s), sample_rate)
        return Recording(MICROPHONE, None, blocks)
    path = Path(source)
    info = audio_info(path)  # AudioError for a missing or undecodable file
    duration_s = info.duration_s
    if info.format.startswith(ffmpeg.FORMAT_PREFIX):
        blocks = finite_blocks(_ffmpeg_file(path, sample_rate, block), sample_rate)
        return Recording(source, duration_s, blocks)
    return Recording(source, duration_s, _file_blocks(info, sample_rate, block))


def _stdin() -> BinaryIO:
    """Standard input, unbuffered on its own descriptor: the thread that reads it may still
    wait there when the scan ends (a stalled stream), and a wait inside sys.stdin's buffer
    would hold its lock through the interpreter's shutdown (a fatal error)."""
    try:
        return open(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    except (OSError, ValueError, io.UnsupportedOperation):  # replaced by a test harness
        return sys.stdin.buffer


def finite_blocks(blocks: Iterator[Item], sample_rate: int) -> Iterator[Item]:
    """A block holding NaN or infinity is a Gap, as acr.audio refuses such a file's span."""
    for item in blocks:
        if isinstance(item, np.ndarray) and not np.isfinite(item).all():
            yield Gap(len(item) / sample_rate, NON_FINITE)
        else:
            yield item


def _file_blocks(info: AudioInfo, sample_rate: int, block: int) -> Iterator[Item]:
    """A libsndfile file span by span (acr.audio.read_resampled: equal to resampling the whole
    file); a span that does not decode, or holds NaN or infinity, is a Gap."""
    total = resampled_length(info.frames, info.sample_rate, sample_rate)
    for start in range(0, total, block):
        stop = min(start + block, total)
        try:
            audio = read_resampled(info, sample_rate, start, stop)
        except AudioError as error:
            yield Gap((stop - start) / sample_rate, error.reason)
            continue
        if len(audio) == 0:  # the header promised more than the file holds
            return
        yield audio


def _ffmpeg_file(path: Path, sample_rate: int, block: int) -> Iterator[Item]:
    with open(path, "rb") as file:
        yield from container_blocks(file, str(path), sample_rate, block)


def container_blocks(file: BinaryIO, name: str, sample_rate: int, block: int) -> Iterator[Item]:
    """Decode a file object with PyAV a packet at a time, resampled to mono ``sample_rate``
    (FFmpeg's swresample keeps its state across packets); blocks of ``block`` samples. A packet
    that does not decode is skipped; the time it held, known from the next timestamps, is a
    Gap. The stream ending mid-packet ends the blocks."""
    import av

    try:
        container = av.open(file, "r", metadata_errors="replace")
    except _av_errors() as error:
        raise StreamError(name, f"cannot decode ({error})") from error
    with container:
        if not container.streams.audio:
            raise StreamError(name, "holds no audio stream")
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pending: list[np.ndarray] = []
        held = 0
        expected_s: float | None = None  # where the next frame should start, by timestamps
        undecodable = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
                frames = packet.decode()
            except StopIteration:
                break
            except (av.EOFError, EOFError):
                break
            except _av_errors() as error:
                undecodable += 1
                if isinstance(error, av.InvalidDataError) and undecodable <= MAX_BAD_PACKETS:
                    continue  # a damaged packet: the next timestamps say how long it was
                break  # the container itself is broken (or the stream was cut): stop cleanly
            for frame in frames:
                start_s = _seconds(frame.pts, frame.time_base)
                if start_s is not None and expected_s is not None:
                    lost_s = start_s - expected_s
                    if lost_s > MAX_TIMESTAMP_JITTER_S:
                        if held:
                            yield np.concatenate(pending)
                            pending, held = [], 0
                        yield Gap(lost_s, "undecodable or missing audio")
                if start_s is not None:
                    expected_s = start_s
                if expected_s is not None:  # a frame without a timestamp still takes its time
                    expected_s += frame.samples / frame.sample_rate
                for converted in resampler.resample(frame):
                    pending.append(converted.to_ndarray().reshape(-1).copy())
                    held += len(pending[-1])
                while held >= block:
                    audio = np.concatenate(pending)
                    yield audio[:block]
                    pending, held = [audio[block:]], held - block
        try:
            for converted in resampler.resample(None):
                pending.append(converted.to_ndarray().reshape(-1).copy())
        except _av_errors():
            pass
        if pending and sum(map(len, pending)):
            yield np.concatenate(pending)


def _av_errors() -> tuple[type[Exception], ...]:
    import av

    return (av.FFmpegError, OSError, ValueError)


def _seconds(pts: int | None, time_base: Fraction | None) -> float | None:
    if pts is None or time_base is None:
        return None
    return float(pts * time_base)


def _live(blocks: Iterator[Item], stall_timeout_s: float, name: str) -> Iterator[Item]:
    """Blocks decoded in a thread and handed over through a bounded queue: the scan ends when
    none has come for ``stall_timeout_s`` (a stalled stream), and an error in the decoder
    reaches the scan."""
    handover: queue.Queue = queue.Queue(QUEUE_BLOCKS)
    done = object()

    def decode() -> None:
        try:
            for item in blocks:
                handover.put(item)
        except BaseException as error:  # noqa: BLE001 (raised again in the scan's thread)
            handover.put(error)
        handover.put(done)

    threading.Thread(target=decode, daemon=True, name=f"decode {name}").start()
    yield from _drain(handover, done, stall_timeout_s, name)


def _drain(
    handover: queue.Queue, done: object, stall_timeout_s: float, name: str
) -> Iterator[Item]:
    while True:
        try:
            item = handover.get(timeout=stall_timeout_s)
        except queue.Empty:
            print(
                f"{name}: no audio for {stall_timeout_s:g} s: the stream stalled; scan ended",
                file=sys.stderr,
            )
            return
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


def _microphone(sample_rate: int, block: int, stall_timeout_s: float) -> Iterator[Item]:
    """The default input device, mono at ``sample_rate``, through ``sounddevice`` (optional:
    imported here, so acr does not depend on PortAudio). Blocks the scan could not take in
    time are dropped and reported as a Gap, rather than delaying every later answer."""
    sounddevice = _import_sounddevice()
    handover: queue.Queue = queue.Queue(QUEUE_BLOCKS)
    dropped = [0]  # frames, counted in PortAudio's thread

    def received(data: np.ndarray, frames: int, time: Any, status: Any) -> None:
        try:
            handover.put_nowait(np.array(data[:, 0], dtype=np.float32))
        except queue.Full:
            dropped[0] += frames

    try:
        stream = sounddevice.InputStream(
            samplerate=sample_rate,
            channels=1,
            dtype="float32",
            blocksize=block,
            callback=received,
        )
    except Exception as error:  # PortAudioError, ValueError: no device, unsupported rate
        raise StreamError(MICROPHONE, f"cannot open the input device ({error})") from error
    with stream:
        for item in _drain(handover, object(), stall_timeout_s, MICROPHONE):
            if dropped[0]:
                lost, dropped[0] = dropped[0], 0
                yield Gap(lost / sample_rate, "dropped: the scan fell behind")
            yield item


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as error:  # OSError: the package is there, PortAudio is not
        raise StreamError(
            MICROPHONE,
            f"--microphone needs the sounddevice package and PortAudio ({error}); "
            "install it with `pip install sounddevice`",
        ) from error
    return sounddevice

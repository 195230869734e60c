"""Decoding through FFmpeg (PyAV) what libsndfile cannot read: AAC and ALAC in m4a/mp4, WMA, and
the audio of video containers (mp4, mkv, webm, mov).

acr.audio tries libsndfile first (it seeks sample-exactly in wav/flac/ogg/mp3) and comes here
only when libsndfile cannot open a file, so these functions keep its contract: float32 frames
``[n, channels]`` at the file's own rate, and a frame count from the header that may be an
estimate (a container's duration), as an mp3's is. PyAV bundles FFmpeg, so no system package
is needed; it is imported on first use (25 MB per process that never needs it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from av.container import InputContainer

FORMAT_PREFIX = "FFMPEG:"  # AudioInfo.format of a file decoded here, e.g. FFMPEG:mov,mp4,m4a
# A seek lands on a packet boundary at or before the time asked; this much earlier leaves room
# for the decoder to settle (AAC's overlap) before the first frame kept.
SEEK_PREROLL_S = 0.5


class DecodeError(Exception):
    """FFmpeg cannot read the file, or it holds no audio stream."""


class Probe(NamedTuple):
    sample_rate: int
    frames: int  # from the container's duration: an estimate
    channels: int
    format: str


def probe(path: str | Path) -> Probe:
    """The first audio stream's rate, frame count and channels."""
    import av

    with _open(path) as container:
        stream = _audio_stream(container)
        rate = int(stream.codec_context.sample_rate or 0)
        if stream.duration is not None and stream.time_base is not None:
            duration_s = float(stream.duration * stream.time_base)
        else:
            duration_s = (container.duration or 0) / av.time_base
        channels = int(stream.codec_context.channels or 0)
        name = FORMAT_PREFIX + container.format.name
        return Probe(rate, round(duration_s * rate), channels, name)


def blocks(path: str | Path, start_frame: int = 0) -> Iterator[np.ndarray]:
    """Decoded ``[n, channels]`` float32 blocks from frame ``start_frame`` to the end.

    A late start seeks (to ``SEEK_PREROLL_S`` before it) where the stream's timestamps count
    samples (mp4, m4a, mov: a time base of 1/rate), and places the samples by them. Elsewhere
    the decode starts at the beginning and counts samples: Matroska and ASF stamp packets in
    milliseconds, and measured ASF (WMA) times put a seek 93 ms off.
    """
    import av

    with _open(path) as container:
        stream = _audio_stream(container)
        rate = int(stream.codec_context.sample_rate)
        seek_s = start_frame / rate - SEEK_PREROLL_S
        position: int | None = 0  # frame of the next decoded sample; None: from a timestamp
        try:
            if seek_s > 0 and stream.time_base == Fraction(1, rate):
                container.seek(int(seek_s * rate), stream=stream, backward=True)
                position = None
            converter = av.AudioResampler(format="flt")  # packed float32; same rate and layout
            for frame in container.decode(stream):
                if position is None:
                    if frame.pts is None:
                        raise DecodeError("cannot seek: the decoded audio has no timestamps")
                    position = int(frame.pts)  # the time base is 1/rate
                for converted in converter.resample(frame):
                    samples = converted.to_ndarray().reshape(-1, converted.layout.nb_channels)
                    skip = min(max(start_frame - position, 0), len(samples))
                    position += len(samples)
                    if skip < len(samples):
                        yield samples[skip:]
        except _errors() as error:
            raise DecodeError(str(error)) from error


@contextmanager
def _open(path: str | Path) -> Iterator[InputContainer]:
    import av

    # A file object, so that names that are not valid UTF-8 open as the OS spells them; tags
    # that are not UTF-8 (common in older files) must not stop the audio being read.
    try:
        with (
            open(os.fsencode(path), "rb") as file,
            av.open(file, "r", metadata_errors="replace") as container,
        ):
            yield container
    except _errors() as error:
        raise DecodeError(str(error)) from error


def _audio_stream(container: InputContainer) -> Any:
    if not container.streams.audio:
        raise DecodeError("holds no audio stream")
    return container.streams.audio[0]


def _errors() -> tuple[type[Exception], ...]:
    import av

    return (av.FFmpegError, OSError, ValueError)

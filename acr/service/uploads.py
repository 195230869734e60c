"""Uploads: the body read with a byte limit, the audio taken from a multipart field or the raw
body, and decoded from a temporary file by acr.audio (the one place acr reads audio), so
every format acr decodes is accepted and every refusal carries acr's reason.

A refusal is an :class:`UploadError` with its HTTP status: the service never answers a 500 for
what a user sent.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from acr.audio import AUDIO_EXTENSIONS, AudioError, audio_info, read_audio

# Raw bodies may be any of these (or say nothing); a form or JSON body is a client mistake.
RAW_TYPES = ("audio/", "video/", "application/octet-stream")
MULTIPART = "multipart/form-data"
# The file name's extension picks FFmpeg's error message, when there is one; else the type's.
SUFFIXES = {
    "audio/wav": ".wav", "audio/x-wav": ".wav", "audio/wave": ".wav", "audio/flac": ".flac",
    "audio/mpeg": ".mp3", "audio/mp3": ".mp3", "audio/ogg": ".ogg", "audio/opus": ".opus",
    "audio/mp4": ".m4a", "audio/aac": ".aac", "audio/webm": ".webm", "video/webm": ".webm",
    "video/mp4": ".mp4", "audio/x-aiff": ".aiff",
}  # fmt: skip
UNREADABLE = "cannot decode"  # how acr.audio begins the reason of data it cannot decode


class UploadError(Exception):
    """What is wrong with a request's upload, and the status that says so."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


@dataclass
class Upload:
    data: bytes
    suffix: str
    fields: dict[str, str]


async def read_upload(request: Request, max_bytes: int, field: str = "file") -> Upload:
    """The audio of a request: the multipart field ``field`` or the raw body, at most
    ``max_bytes`` (a Content-Length above it is refused before reading; the body is counted as
    it arrives, for a client that sends none or lies)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart = content_type == MULTIPART
    if not multipart and content_type and not content_type.startswith(RAW_TYPES):
        raise UploadError(
            415,
            f"content type {content_type!r}: send the audio as the multipart field {field!r}"
            " or as a raw body (audio/*, video/* or application/octet-stream)",
        )
    # A multipart body holds boundaries and headers around the file.
    limit = max_bytes + (64 * 1024 if multipart else 0)
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise UploadError(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > limit:
            raise UploadError(413, _too_large(int(declared), max_bytes))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise UploadError(413, _too_large(len(body), max_bytes))
    if not multipart:
        return _checked(Upload(bytes(body), SUFFIXES.get(content_type, ""), {}), field, max_bytes)
    return _checked(await _multipart(request, bytes(body), field), field, max_bytes)


async def _multipart(request: Request, body: bytes, field: str) -> Upload:
    async def stream() -> AsyncIterator[bytes]:
        yield body

    try:
        form = await MultiPartParser(request.headers, stream(), max_files=2, max_fields=20).parse()
    except MultiPartException as error:
        raise UploadError(400, f"malformed multipart body: {error.message}") from error
    try:
        upload = form.get(field)
        if not isinstance(upload, UploadFile):
            raise UploadError(422, f"field {field!r}: missing (a multipart file field)")
        data = await upload.read()
        suffix = Path(upload.filename or "").suffix.lower()
        if suffix not in AUDIO_EXTENSIONS:
            content_type = (upload.content_type or "").split(";")[0].strip().lower()
            suffix = SUFFIXES.get(content_type, "")
        fields = {key: value for key, value in form.items() if isinstance(value, str)}
        return Upload(data, suffix, fields)
    finally:
        await form.close()


def _checked(upload: Upload, field: str, max_bytes: int) -> Upload:
    if not upload.data:
        raise UploadError(422, f"field {field!r}: empty upload (0 bytes)")
    if len(upload.data) > max_bytes:
        raise UploadError(413, _too_large(len(upload.data), max_bytes))
    return upload


def _too_large(size: int, max_bytes: int) -> str:
    return f"upload of {size} bytes is over the limit of {max_bytes} bytes"


def decode(upload: Upload, max_audio_s: float, keep: Path | None = None) -> tuple[np.ndarray, int]:
    """Mono audio and its rate, at most ``max_audio_s`` long (checked from the header, before
    decoding); blocking, for a worker thread. ``keep``: also save the upload there.

    Undecodable data is a 415 (not an audio format acr reads), audio that decodes but cannot
    hold music (zero frames, a sample rate below 8 kHz, non-finite samples) a 422; each with
    acr.audio's reason."""
    descriptor, name = tempfile.mkstemp(suffix=upload.suffix or ".bin", prefix="acr-upload-")
    path = Path(name)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(upload.data)
        try:
            info = audio_info(path)
            if info.duration_s > max_audio_s:
                raise UploadError(
                    413, f"audio of {info.duration_s:.1f} s is over the limit of {max_audio_s} s"
                )
            audio, sample_rate = read_audio(path, 0.0, info.duration_s)
        except AudioError as error:
            status = 415 if error.reason.startswith(UNREADABLE) else 422
            raise UploadError(status, f"unreadable audio: {error.reason}") from error
        if keep is not None:
            keep.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, keep)
        return audio, sample_rate
    finally:
        path.unlink(missing_ok=True)

"""What the clients send: seeded 3-s query excerpts encoded once as 16-kHz mono WAV, and one
malformed upload of each kind the README's limits table lists, with the status it promises."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pandas as pd
import soundfile

from experiments.load.client import Outcome, Request, outcome_counts

SAMPLE_RATE_HZ = 16000
MIN_QUERY_DBFS = -40.0


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def make_queries(tracks: pd.DataFrame, count: int, length_s: float, seed: int) -> list[Request]:
    """Seeded excerpts of random tracks at random offsets, as WAV bodies encoded once; an
    excerpt below MIN_QUERY_DBFS is drawn again (the service answers silence with a 422)."""
    from acr.audio import audio_info, load_audio, rms

    rng, queries = np.random.default_rng(seed), []
    durations = {row.path: audio_info(row.path).duration_s for row in tracks.itertuples()}
    usable = tracks[[durations[path] >= length_s + 0.5 for path in tracks["path"]]]
    while len(queries) < count:
        row = usable.iloc[int(rng.integers(len(usable)))]
        offset_s = float(rng.uniform(0.0, durations[row["path"]] - length_s))
        audio = load_audio(row["path"], SAMPLE_RATE_HZ, offset_s, length_s)
        if 20 * np.log10(rms(audio) + 1e-12) < MIN_QUERY_DBFS:  # a silent stretch: no query
            continue
        body = wav_bytes(audio, SAMPLE_RATE_HZ)
        queries.append(Request("query", body, track_id=row["track_id"]))
    return queries


def multipart(field_name: str, body: bytes, boundary: str = "acr-load-test") -> bytes:
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="clip.wav"\r\nContent-Type: audio/wav\r\n\r\n')  # fmt: skip
    return head.encode() + body + f"\r\n--{boundary}--\r\n".encode()


def bad_uploads(query: Request, max_upload_bytes: int, seed: int) -> list[Request]:
    """One upload of each kind the README's limits table lists, with the status it promises
    (a WAV cut short is read for the frames it holds, so half a clip still answers 200)."""
    rng, body = np.random.default_rng(seed), query.body
    header_bytes, frame_bytes = 44, 2  # soundfile's PCM_16 mono WAV
    garbage = rng.integers(0, 256, len(body), dtype=np.uint8).tobytes()
    oversized = (body * (max_upload_bytes // len(body) + 2))[: 2 * max_upload_bytes]
    form = "multipart/form-data; boundary=acr-load-test"
    quiet = np.zeros(3 * SAMPLE_RATE_HZ, dtype=np.float32)
    low_rate = np.sin(np.arange(3 * 4000) * 0.3).astype(np.float32) * 0.3
    return [
        Request("garbage", garbage, expected=(415,)),
        Request("json_body", b'{"audio": "no"}', "application/json", expected=(415,)),
        Request("oversized", oversized, expected=(413,)),
        Request("oversized_chunked", oversized, chunked=True, expected=(413,)),
        Request("truncated_header", body[:30], expected=(415,)),
        Request("truncated_0.25s", body[: header_bytes + frame_bytes * 4000], expected=(422,)),
        Request("truncated_half", body[: len(body) // 2], track_id=query.track_id),
        Request("zero_bytes", b"", expected=(422,)),
        Request("silent", wav_bytes(quiet, SAMPLE_RATE_HZ), expected=(422,)),
        Request("rate_4khz", wav_bytes(low_rate, 4000), expected=(422,)),
        Request("multipart", multipart("file", body), form, track_id=query.track_id),
        Request("multipart_no_file", multipart("other", body), form, expected=(422,)),
        Request(
            "multipart_no_boundary", multipart("file", body), "multipart/form-data", expected=(400,)
        ),  # fmt: skip
    ]


def mixed(queries: list[Request], bad: list[Request], every: int) -> Callable[[int], Request]:
    """Every ``every``-th upload is a bad one, each kind in turn; the rest are queries."""

    def plan(number: int) -> Request:
        if number % every:
            return queries[number % len(queries)]
        return bad[number // every % len(bad)]

    return plan


def per_kind(requests: list[Request], outcomes: list[Outcome]) -> dict[str, dict]:
    """Per kind of upload: the statuses it should get, those it got, and whether all were right."""
    kinds = {}
    for request in requests:
        chosen = [outcome for outcome in outcomes if outcome.kind == request.kind]
        kinds[request.kind] = {
            "expected": list(request.expected), "seen": outcome_counts(chosen),
            "as_expected": bool(chosen) and all(o.status in request.expected for o in chosen),
        }  # fmt: skip
    return kinds

"""WS /v1/stream (acr.service.live) over real WebSockets on 127.0.0.1: a recording of two
catalog songs between silence and other music, sent faster than real time as PCM or in a
container, gives acr monitor's events at the right stream times; bad input and limits close
the stream with a reason, and the server goes on."""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
import soundfile
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from acr.audio import resample
from acr.cli import main
from acr.monitor.segments import COLUMNS
from acr.service import ServeSettings
from acr.service.settings import ServiceLimits

SAMPLE_RATE = 16000
FRESH_SEED = 120  # a song not in the index (tests/service/conftest.py)
EDGE_S = 2.0  # how close a start event is to where its song starts in the stream
CHUNK_S = 0.25
SPEEDUP = 50  # times real time the client sends at (the scan runs at ~100x)
PCM_HEADER = {"format": "pcm_s16le", "sample_rate": SAMPLE_RATE, "channels": 1}
END = json.dumps({"event": "end"})
LIMITED = ServiceLimits(max_streams=1, max_stream_s=20.0, max_stream_lag_s=5.0,
                        stream_idle_s=1.0)  # fmt: skip


@pytest.fixture(scope="module")
def server(calibrated_index: Path, serve) -> Iterator[str]:
    with serve(ServeSettings(str(calibrated_index))) as url:
        yield url


@pytest.fixture(scope="module")
def limited(calibrated_index: Path, serve) -> Iterator[str]:
    with serve(ServeSettings(str(calibrated_index), LIMITED)) as url:
        yield url


@pytest.fixture(scope="module")
def radio(clip) -> tuple[np.ndarray, dict[str, float]]:
    """4 s of silence, song 1, 6 s of a song not in the catalog, song 4, 4 s of silence; and
    where each catalog song starts, in stream seconds."""
    silence = np.zeros(4 * SAMPLE_RATE, dtype=np.float32)
    parts = [silence, clip(1, 0.0, 12.0), clip(FRESH_SEED, 0.0, 6.0), clip(4, 0.0, 12.0), silence]
    return np.concatenate(parts), {"song1": 4.0, "song4": 22.0}


@pytest.fixture(scope="module")
def short(clip) -> tuple[np.ndarray, dict[str, float]]:
    """Song 2 between 2 s of silence either side."""
    silence = np.zeros(2 * SAMPLE_RATE, dtype=np.float32)
    return np.concatenate([silence, clip(2, 0.0, 12.0), silence]), {"song2": 2.0}


def pcm(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[start : start + size] for start in range(0, len(data), size)]


def encoded(audio: np.ndarray, format: str, codec: str) -> bytes:
    """``audio`` in a container, as a browser's MediaRecorder (webm/opus) or a radio (mp3)
    sends it."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=format) as container:
        stream = container.add_stream(codec, rate=48000 if codec == "libopus" else SAMPLE_RATE)
        stream.layout = "mono"
        samples = np.frombuffer(pcm(audio), "<i2")[None]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        resampler = av.AudioResampler(stream.format.name, "mono", stream.rate)
        for converted in resampler.resample(frame) + resampler.resample(None):
            container.mux(stream.encode(converted))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def converse(
    url: str,
    header: dict | str | bytes,
    messages: list[bytes | str] = (),
    pace_s: float = 0.0,
    end: bool = True,
    timeout_s: float = 30.0,
) -> tuple[list[dict], int]:
    """Send ``header``, then ``messages`` ``pace_s`` apart (and the end); every message the
    server sent, and its close code."""
    received: list[dict] = []
    with connect(url.replace("http", "ws") + "/v1/stream", proxy=None,
                 compression=None) as websocket:  # fmt: skip
        try:
            websocket.send(json.dumps(header) if isinstance(header, dict) else header)
            for message in messages:
                websocket.send(message)
                time.sleep(pace_s)
            if end:
                websocket.send(END)
        except ConnectionClosed:
            pass  # refused while sending: what it said before closing is still there
        try:
            while True:
                received.append(json.loads(websocket.recv(timeout=timeout_s)))
        except ConnectionClosed as closed:
            return received, closed.rcvd.code


def streamed_pcm(url: str, audio: np.ndarray, **header) -> tuple[list[dict], int]:
    rate, channels = header.get("sample_rate", SAMPLE_RATE), header.get("channels", 1)
    frame = 2 * channels
    size = round(CHUNK_S * rate) * frame
    return converse(url, {**PCM_HEADER, **header}, chunks(pcm(audio), size),
                    CHUNK_S / SPEEDUP)  # fmt: skip


def starts(events: list[dict]) -> dict[str, float]:
    return {event["track_id"]: event["start_s"] for event in events if event["event"] == "start"}


def metric(url: str, pattern: str) -> float:
    found = re.search(rf"^{pattern} (\S+)$", httpx.get(f"{url}/metrics").text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def wait_closed(url: str) -> None:
    """Until the server has let every stream go (it counts one closed just after its close)."""
    deadline = time.monotonic() + 5
    while metric(url, "acr_streams_open") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert metric(url, "acr_streams_open") == 0


def test_a_pcm_stream_faster_than_real_time_gives_each_song_at_its_time(server, radio) -> None:
    audio, truth = radio
    started = time.perf_counter()
    events, code = streamed_pcm(server, audio)
    seconds = time.perf_counter() - started
    assert code == 1000, events
    assert events[0]["event"] == "ready" and events[-1]["event"] == "done"
    found = starts(events)
    assert set(found) == set(truth), events
    for track_id, start_s in truth.items():
        assert abs(found[track_id] - start_s) <= EDGE_S, (track_id, events)
    ends = [event for event in events if event["event"] == "end"]
    assert {event["track_id"] for event in ends} == set(truth)
    assert all(list(event)[1:] == list(COLUMNS) for event in ends)
    gaps = [(event["start_s"], event["reason"]) for event in events if event["event"] == "gap"]
    assert gaps[0] == (0.0, "silent"), events
    done = events[-1]
    assert done["segments"] == 2 and done["audio_s"] == pytest.approx(len(audio) / SAMPLE_RATE)
    assert seconds < len(audio) / SAMPLE_RATE / 5  # far faster than real time


def test_a_start_is_sent_while_the_stream_goes_on(server, radio) -> None:
    audio, truth = radio
    url = server.replace("http", "ws") + "/v1/stream"
    with connect(url, proxy=None) as websocket:
        websocket.send(json.dumps(PCM_HEADER))
        assert json.loads(websocket.recv(timeout=10))["event"] == "ready"
        heard = pcm(audio[: 16 * SAMPLE_RATE])  # song 1 from 4 s on: the end not yet sent
        for chunk in chunks(heard, round(CHUNK_S * SAMPLE_RATE) * 2):
            websocket.send(chunk)
        while (event := json.loads(websocket.recv(timeout=10)))["event"] == "gap":
            pass
        assert event["event"] == "start" and event["track_id"] == "song1", event
        assert abs(event["start_s"] - truth["song1"]) <= EDGE_S
        websocket.send(END)
        while (event := json.loads(websocket.recv(timeout=10)))["event"] != "done":
            pass
        assert event["segments"] == 1 and event["audio_s"] == 16.0


def test_a_stream_and_acr_monitor_give_the_same_events(
    server, radio, calibrated_index: Path, tmp_path: Path
) -> None:
    audio, _ = radio
    recording, output = tmp_path / "radio.wav", tmp_path / "events.jsonl"
    soundfile.write(recording, np.frombuffer(pcm(audio), "<i2"), SAMPLE_RATE, subtype="PCM_16")
    assert main(["monitor", str(recording), "--index", str(calibrated_index),
                 "--format", "jsonl", "--output", str(output)]) == 0  # fmt: skip
    monitored = [json.loads(line) for line in output.read_text().splitlines()]
    events, _ = streamed_pcm(server, audio)
    streamed = [event for event in events if event["event"] in ("start", "end", "gap")]

    # The index's rate is not the client's: FFmpeg's swresample resamples a stream, acr.audio's
    # sinc a file, so numbers may differ in their last digit.
    assert [list(event) for event in streamed] == [list(event) for event in monitored]
    for stream_event, monitor_event in zip(streamed, monitored):
        for key, value in stream_event.items():
            if isinstance(value, float):
                assert value == pytest.approx(monitor_event[key], abs=0.1), (key, stream_event)
            elif key != "recording":
                assert value == monitor_event[key], (key, stream_event, monitor_event)
    assert {event["recording"] for event in streamed} == {"stream"}


def test_stereo_pcm_at_another_rate_is_resampled(server, short) -> None:
    audio, truth = short
    stereo_rate = 22050
    mono = resample(audio, SAMPLE_RATE, stereo_rate)
    stereo = np.stack([mono, mono * 0.5], axis=1).reshape(-1)
    events, code = streamed_pcm(server, stereo, sample_rate=stereo_rate, channels=2)
    assert code == 1000, events
    assert abs(starts(events)["song2"] - truth["song2"]) <= EDGE_S, events


@pytest.mark.parametrize(("format", "codec"), [("webm", "libopus"), ("mp3", "libmp3lame")])
def test_a_container_stream_is_decoded_as_it_arrives(server, short, format, codec) -> None:
    audio, truth = short
    data = encoded(audio, format, codec)
    pieces = chunks(data, 4096)
    pace_s = len(audio) / SAMPLE_RATE / SPEEDUP / len(pieces)
    events, code = converse(server, {"format": "container"}, pieces, pace_s)
    assert code == 1000, events
    assert set(starts(events)) == {"song2"}, events
    assert abs(starts(events)["song2"] - truth["song2"]) <= EDGE_S, events
    assert events[-1]["audio_s"] == pytest.approx(len(audio) / SAMPLE_RATE, abs=0.2)


@pytest.mark.parametrize(
    ("header", "code", "detail"),
    [
        (pcm(np.zeros(100)), 1003, "the first message must be JSON text"),
        ("hello", 1007, "not JSON"),
        ("[1, 2]", 1007, "must be a JSON object"),
        ({"format": "wav"}, 1003, "format: 'wav' is not"),
        ({"format": "pcm_s16le"}, 1007, "sample_rate: None"),
        ({**PCM_HEADER, "sample_rate": 4000}, 1007, "sample_rate: 4000"),
        ({**PCM_HEADER, "sample_rate": 16000.5}, 1007, "sample_rate: 16000.5"),
        ({**PCM_HEADER, "channels": 0}, 1007, "channels: 0"),
        ({**PCM_HEADER, "rate": 1}, 1007, "unknown field(s) for format 'pcm_s16le': rate"),
        ({"format": "container", "sample_rate": 8000}, 1007, "unknown field(s)"),
    ],
)
def test_a_bad_first_message_is_refused_with_its_reason(server, header, code, detail) -> None:
    events, closed = converse(server, header, end=False)
    assert closed == code
    assert events == [{"event": "error", "code": code, "detail": events[0]["detail"]}]
    assert detail in events[0]["detail"]


@pytest.mark.parametrize(
    ("messages", "code", "detail"),
    [
        ([b"\x00\x01\x02"], 1007, "3 bytes is not whole frames of 2 bytes"),
        (["play"], 1003, 'send binary audio or {"event": "end"}'),
        ([pcm(np.zeros(3 * SAMPLE_RATE) + 0.1)], 1007, "too short"),
    ],
)
def test_bad_audio_is_refused_with_its_reason(server, messages, code, detail) -> None:
    events, closed = converse(server, PCM_HEADER, messages)
    assert closed == code, events
    assert events[-1]["event"] == "error" and detail in events[-1]["detail"], events


def test_a_container_that_does_not_decode_is_refused(server) -> None:
    events, code = converse(server, {"format": "container"}, [b"not audio at all" * 500])
    assert code == 1007, events
    assert events[-1]["event"] == "error"
    assert events[-1]["detail"].startswith("unreadable audio: cannot decode"), events


def test_a_client_that_leaves_mid_stream_frees_its_stream(server, radio) -> None:
    audio, _ = radio
    url = server.replace("http", "ws") + "/v1/stream"
    with connect(url, proxy=None) as websocket:
        websocket.send(json.dumps(PCM_HEADER))
        assert json.loads(websocket.recv(timeout=10))["event"] == "ready"
        websocket.send(pcm(audio[: 15 * SAMPLE_RATE]))
    wait_closed(server)
    deadline = time.monotonic() + 5  # its threads end too (the server runs in this process)
    while any(thread.name == "acr-stream" for thread in threading.enumerate()):
        assert time.monotonic() < deadline, threading.enumerate()
        time.sleep(0.02)
    assert httpx.get(f"{server}/healthz").json()["status"] == "ok"


def test_a_client_ahead_of_the_scan_is_closed_with_1013(limited, radio) -> None:
    events, code = converse(limited, PCM_HEADER, [pcm(radio[0][: 20 * SAMPLE_RATE])])
    assert code == 1013, events
    assert "behind the audio sent, over the limit of 5 s" in events[-1]["detail"]
    wait_closed(limited)


def test_a_stream_over_max_stream_s_flushes_then_closes_with_1008(limited, radio) -> None:
    audio, truth = radio
    events, code = streamed_pcm(limited, audio)
    assert code == 1008, events
    assert events[-1]["detail"] == "the stream reached the limit of 20 s"
    kinds = [(event["event"], event.get("track_id")) for event in events]
    assert ("start", "song1") in kinds and ("end", "song1") in kinds, kinds
    assert all(event.get("end_s", 0) <= 20.0 for event in events)
    wait_closed(limited)


def test_a_stalled_stream_ends_after_stream_idle_s(limited) -> None:
    events, code = converse(limited, PCM_HEADER, end=False, timeout_s=10)
    assert code == 1008
    assert events[-1]["detail"] == "no message for 1 s: the stream stalled"
    wait_closed(limited)


def test_one_stream_too_many_is_told_to_come_back(limited) -> None:
    url = limited.replace("http", "ws") + "/v1/stream"
    with connect(url, proxy=None) as first:
        first.send(json.dumps(PCM_HEADER))
        assert json.loads(first.recv(timeout=10))["event"] == "ready"
        events, code = converse(limited, PCM_HEADER, end=False)
        assert code == 1013
        assert events == [{"event": "error", "code": 1013,
                           "detail": "busy: 1 streams open; retry later"}]  # fmt: skip
    wait_closed(limited)
    assert metric(limited, 'acr_streams_total{code="1013"}') >= 1

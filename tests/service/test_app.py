"""acr.service.app over real HTTP on 127.0.0.1: recognition, the catalog changed live, limits,
health and metrics."""

from __future__ import annotations

import re
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from acr.service import ServeSettings
from acr.service.settings import TOKEN_VARIABLE, ServiceLimits

LIMITS = ServiceLimits(max_upload_bytes=400_000, max_audio_s=10.0)
TOKEN = "s3cret-token"
SAMPLE_RATE = 16000
FRESH_SEED, ADDED_SEED = 120, 130  # songs not in the index (tests/service/conftest.py)


@pytest.fixture(scope="module")
def server(calibrated_index: Path, serve) -> Iterator[str]:
    """A read-only service (no token configured) with small limits."""
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(TOKEN_VARIABLE, raising=False)
        settings = ServeSettings(str(calibrated_index), LIMITS)
    with serve(settings) as url:
        yield url


def post_audio(url: str, data: bytes, multipart: bool = True, **params) -> httpx.Response:
    if multipart:
        files = {"file": ("clip.wav", data, "audio/wav")}
        return httpx.post(f"{url}/v1/recognize", files=files, params=params, timeout=30)
    headers = {"Content-Type": "audio/wav"}
    return httpx.post(f"{url}/v1/recognize", content=data, headers=headers, params=params,
                      timeout=30)  # fmt: skip


def metric(text: str, pattern: str) -> float:
    """The value of the exposition line matching ``pattern`` (0 when there is none)."""
    found = re.search(rf"^{pattern} (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_a_catalog_excerpt_is_recognised_over_multipart_and_raw_bodies(
    server: str, clip, wav
) -> None:
    clip = wav(clip(2, start_s=4.0))
    for multipart in (True, False):
        response = post_audio(server, clip, multipart)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["status"] == "match"
        assert 0.5 < answer["probability"] <= 1.0
        assert answer["duration_s"] == pytest.approx(3.0, abs=0.01)
        best = answer["matches"][0]
        assert best["track_id"] == "song2"
        assert best["offset_s"] == pytest.approx(4.0, abs=0.1)
        assert best["speed_factor"] == pytest.approx(1.0, abs=0.01)
        assert best["pitch_semitones"] == pytest.approx(0.0, abs=0.1)
        assert best["track_duration_s"] == pytest.approx(12.0, abs=0.01)
        assert best["score"] > (answer["matches"][1]["score"] if len(answer["matches"]) > 1 else 0)


def test_an_out_of_catalog_clip_answers_no_match(server: str, clip, wav) -> None:
    response = post_audio(server, wav(clip(FRESH_SEED)))
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "no_match" and answer["probability"] < 0.5


def test_top_k_and_engine_are_checked(server: str, clip, wav) -> None:
    clip = wav(clip(1))
    one = post_audio(server, clip, top_k=1, engine="fingerprint")
    assert one.status_code == 200 and len(one.json()["matches"]) == 1
    assert one.json()["matches"][0]["track_id"] == "song1"
    wrong_engine = post_audio(server, clip, engine="melody")
    assert wrong_engine.status_code == 422 and "engine" in wrong_engine.json()["detail"]
    zero = post_audio(server, clip, top_k=0)
    assert zero.status_code == 422 and "top_k" in zero.text


def truncated_wav(clip, wav) -> bytes:
    return wav(clip(1))[: 44 + 200]  # the header and 100 samples


def huge_header_wav(clip, wav) -> bytes:
    data = bytearray(wav(clip(1)))
    data[4:8] = (0xFFFFFFF0).to_bytes(4, "little")  # RIFF size
    data[40:44] = (0xFFFFFF00).to_bytes(4, "little")  # data chunk: ~37 hours at 16 kHz
    return bytes(data)


def test_bad_uploads_get_their_4xx_with_the_reason_never_a_500(server: str, clip, wav) -> None:
    rng = np.random.default_rng(0)
    garbage = rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()
    silent = wav(np.zeros(3 * SAMPLE_RATE, np.float32))
    short = wav(clip(1, length_s=0.2))
    too_long = wav(np.tile(clip(1), 4))  # 12 s > 10 s, 384 kB < 400 kB
    url = f"{server}/v1/recognize"
    cases = {
        "garbage": (415, "cannot decode",
                    {"content": garbage, "headers": {"Content-Type": "application/octet-stream"}}),
        "zero bytes": (422, "empty upload", {"content": b"",
                                            "headers": {"Content-Type": "audio/wav"}}),
        "zero-byte file": (422, "empty upload", {"files": {"file": ("a.wav", b"", "audio/wav")}}),
        "truncated wav": (422, "too short",
                          {"files": {"file": ("t.wav", truncated_wav(clip, wav))}}),
        "text file": (415, "cannot decode", {"files": {"file": ("notes.txt", b"hello\n" * 50,
                                                                  "text/plain")}}),
        "json body": (415, "content type", {"json": {"audio": "nope"}}),
        "form body": (415, "content type", {"data": {"file": "x"}}),
        "no file field": (422, "'file'", {"files": {"other": ("a.wav", short)}}),
        "malformed multipart": (422, "'file'", {"content": b"--x\r\nnonsense",
                                "headers": {"Content-Type": "multipart/form-data; boundary=x"}}),
        "no boundary": (400, "multipart", {"content": b"--x\r\nnonsense",
                        "headers": {"Content-Type": "multipart/form-data"}}),
        "silent": (422, "silent", {"files": {"file": ("s.wav", silent)}}),
        "too short": (422, "too short", {"files": {"file": ("s.wav", short)}}),
        "too long": (413, "over the limit of 10.0 s", {"files": {"file": ("l.wav", too_long)}}),
        "too large": (413, "over the limit of 400000 bytes",
                      {"content": b"\0" * 500_000, "headers": {"Content-Type": "audio/wav"}}),
    }  # fmt: skip
    for name, (status, reason, request) in cases.items():
        response = httpx.post(url, timeout=30, **request)
        assert response.status_code == status, (name, response.text)
        assert reason in response.json()["detail"], (name, response.text)
    # libsndfile reads the frames a file holds, whatever its header claims: no huge buffer,
    # and the 3 s that are there are answered.
    lying = httpx.post(url, files={"file": ("h.wav", huge_header_wav(clip, wav))}, timeout=30)
    assert lying.status_code == 200 and lying.json()["duration_s"] == 3.0


def test_a_body_over_the_limit_is_refused_as_it_streams(server: str) -> None:
    def chunks() -> Iterator[bytes]:  # chunked transfer: no Content-Length to check first
        for _ in range(50):
            yield b"\0" * 10_000

    response = httpx.post(f"{server}/v1/recognize", content=chunks(), timeout=30,
                          headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    assert response.status_code == 413 and "400000 bytes" in response.json()["detail"]


def test_tracks_are_listed_a_page_at_a_time(server: str) -> None:
    page = httpx.get(f"{server}/v1/tracks", params={"offset": 1, "limit": 2}).json()
    assert page["total"] == 6 and len(page["tracks"]) == 2
    everything = httpx.get(f"{server}/v1/tracks").json()["tracks"]
    assert page["tracks"] == everything[1:3]
    assert {t["track_id"] for t in everything} == {f"song{seed}" for seed in range(6)}
    one = httpx.get(f"{server}/v1/tracks/song3")
    assert one.status_code == 200 and one.json()["duration_s"] == pytest.approx(12.0, abs=0.01)
    missing = httpx.get(f"{server}/v1/tracks/nothing")
    assert missing.status_code == 404 and "nothing" in missing.json()["detail"]
    assert httpx.get(f"{server}/v1/tracks", params={"limit": 0}).status_code == 422


def test_writes_are_forbidden_while_no_token_is_configured(server: str, clip, wav) -> None:
    files = {"file": ("a.wav", wav(clip(ADDED_SEED)))}
    added = httpx.post(f"{server}/v1/tracks", files=files, data={"track_id": "x"})
    assert added.status_code == 403 and "no token" in added.json()["detail"]
    deleted = httpx.delete(f"{server}/v1/tracks/song1", headers={"Authorization": "Bearer x"})
    assert deleted.status_code == 403
    assert httpx.get(f"{server}/v1/tracks/song1").status_code == 200


def test_health_and_metrics_follow_the_requests(server: str, clip, wav) -> None:
    health = httpx.get(f"{server}/healthz").json()
    assert health == {"status": "ok", "index_loaded": True, "tracks": 6,
                      "engines": ["fingerprint"], "calibrated": True}  # fmt: skip
    before = httpx.get(f"{server}/metrics")
    assert before.headers["content-type"].startswith("text/plain; version=0.0.4")
    ok = r'acr_requests_total\{method="POST",route="/v1/recognize",status="200"\}'
    refused = r'acr_requests_total\{method="POST",route="/v1/recognize",status="415"\}'
    histogram = r'acr_request_duration_seconds_count\{route="/v1/recognize"\}'
    post_audio(server, wav(clip(0)))
    post_audio(server, wav(clip(0)), multipart=False)
    httpx.post(f"{server}/v1/recognize", content=b"junk" * 100,
               headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    after = httpx.get(f"{server}/metrics").text
    assert metric(after, ok) == metric(before.text, ok) + 2
    assert metric(after, refused) == metric(before.text, refused) + 1
    assert metric(after, histogram) == metric(before.text, histogram) + 3
    infinite = r'acr_request_duration_seconds_bucket\{route="/v1/recognize",le="\+Inf"\}'
    assert metric(after, infinite) == metric(after, histogram)
    assert metric(after, "acr_catalog_tracks") == 6
    assert metric(after, "acr_in_flight") == 0
    assert "# TYPE acr_request_duration_seconds histogram" in after


def test_tracks_are_added_and_deleted_live_with_the_token(
    calibrated_index: Path, serve, clip, wav, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(calibrated_index, index)
    settings = ServeSettings(str(index), LIMITS, token=TOKEN)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    new_song = wav(clip(ADDED_SEED, 0.0, 60.0))
    with serve(settings) as url:
        files = {"file": ("new.wav", new_song, "audio/wav")}
        form = {"track_id": "albums/new song"}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
            refused = httpx.post(f"{url}/v1/tracks", files=files, data=form, headers=headers)
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert post_audio(url, wav(clip(ADDED_SEED))).json()["status"] == ("no_match")
        added = httpx.post(f"{url}/v1/tracks", files=files, data=form, headers=auth, timeout=60)
        assert added.status_code == 201, added.text
        assert added.json() == {"track_id": "albums/new song", "duration_s": 12.0}
        answer = post_audio(url, wav(clip(ADDED_SEED, start_s=6.0))).json()
        assert answer["status"] == "match"
        assert answer["matches"][0]["track_id"] == "albums/new song"
        assert answer["matches"][0]["offset_s"] == pytest.approx(6.0, abs=0.1)
        assert httpx.get(f"{url}/v1/tracks/albums/new song").status_code == 200
        again = httpx.post(f"{url}/v1/tracks", files=files, data=form, headers=auth)
        assert again.status_code == 409
        no_id = httpx.post(f"{url}/v1/tracks", files=files, headers=auth)
        assert no_id.status_code == 422 and "track_id" in no_id.json()["detail"]
        not_audio = {"file": ("x.mp3", b"not audio" * 100, "audio/mpeg")}
        refused = httpx.post(f"{url}/v1/tracks", files=not_audio, data={"track_id": "x"},
                             headers=auth)  # fmt: skip
        assert refused.status_code == 415 and "cannot decode" in refused.json()["detail"]
        assert httpx.get(f"{url}/v1/tracks/x").status_code == 404

        assert httpx.delete(f"{url}/v1/tracks/song1").status_code == 401
        deleted = httpx.delete(f"{url}/v1/tracks/song1", headers=auth)
        assert deleted.status_code == 200 and deleted.json() == {"removed": "song1"}
        answer = post_audio(url, wav(clip(1))).json()
        assert all(match["track_id"] != "song1" for match in answer["matches"])
        assert answer["status"] == "no_match"
        assert httpx.delete(f"{url}/v1/tracks/song1", headers=auth).status_code == 404
        assert httpx.get(f"{url}/v1/tracks/song1").status_code == 404
        assert httpx.get(f"{url}/healthz").json()["tracks"] == 6
        assert metric(httpx.get(f"{url}/metrics").text, "acr_catalog_tracks") == 6


def test_uploads_beyond_max_in_flight_get_503_with_retry_after(
    calibrated_index: Path, serve, clip, wav
) -> None:
    """One upload holds the only slot while its body is still arriving; the next is refused
    at once, and answered again once the first is done."""
    limits = ServiceLimits(max_in_flight=1, retry_after_s=2)
    clip = wav(clip(4))
    with serve(ServeSettings(str(calibrated_index), limits)) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            slow.sendall(
                b"POST /v1/recognize HTTP/1.1\r\nHost: x\r\nContent-Type: audio/wav\r\n"
                + f"Content-Length: {len(clip)}\r\nConnection: close\r\n\r\n".encode()
                + clip[:1000]
            )
            deadline = time.monotonic() + 10
            while metric(httpx.get(f"{url}/metrics").text, "acr_in_flight") < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            busy = post_audio(url, clip)
            assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
            slow.sendall(clip[1000:])
            reply = b""
            while chunk := slow.recv(65536):
                reply += chunk
        assert reply.startswith(b"HTTP/1.1 200") and b'"track_id":"song4"' in reply
        assert post_audio(url, clip).status_code == 200


def test_a_recognition_over_the_time_limit_answers_504(
    calibrated_index: Path, serve, clip, wav
) -> None:
    limits = ServiceLimits(request_timeout_s=1e-4)
    with serve(ServeSettings(str(calibrated_index), limits)) as url:
        response = post_audio(url, wav(clip(3, length_s=8.0)))
        assert response.status_code == 504 and "limit" in response.json()["detail"]
        deadline = time.monotonic() + 10  # the slot is freed when the recognition ends
        while metric(httpx.get(f"{url}/metrics").text, "acr_in_flight") > 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)


def test_settings_refuse_impossible_limits() -> None:
    with pytest.raises(ValueError, match="limits.max_in_flight must be >= 1"):
        ServiceLimits(max_in_flight=0)
    with pytest.raises(ValueError, match="limits.request_timeout_s must be > 0"):
        ServiceLimits(request_timeout_s=0)


def test_cors_is_off_unless_origins_are_named(server: str, calibrated_index: Path, serve) -> None:
    origin = {"Origin": "https://app.example"}
    assert (
        "access-control-allow-origin" not in httpx.get(f"{server}/healthz", headers=origin).headers
    )
    settings = ServeSettings(str(calibrated_index), cors_origins=["https://app.example"])
    with serve(settings) as url:
        allowed = httpx.get(f"{url}/healthz", headers=origin)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = httpx.get(f"{url}/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers


def test_a_calibration_fitted_while_serving_is_used_by_the_next_request(
    calibrated_index: Path, serve, clip, wav, tmp_path: Path
) -> None:
    index = tmp_path / "index"
    shutil.copytree(calibrated_index, index)
    calibration = (index / "calibration.json").read_bytes()
    (index / "calibration.json").unlink()
    with serve(ServeSettings(str(index), LIMITS)) as url:
        uncalibrated = post_audio(url, wav(clip(FRESH_SEED))).json()
        assert uncalibrated["probability"] is None and uncalibrated["matches"]
        assert httpx.get(f"{url}/healthz").json()["calibrated"] is False
        (index / "calibration.json").write_bytes(calibration)  # as acr calibrate writes it
        answer = post_audio(url, wav(clip(FRESH_SEED))).json()
        assert answer["status"] == "no_match" and answer["probability"] < 0.5
        assert httpx.get(f"{url}/healthz").json()["calibrated"] is True


def test_an_add_while_another_process_writes_the_index_answers_503_then_succeeds(
    calibrated_index: Path, serve, clip, wav, tmp_path: Path
) -> None:
    from acr.retrieval.build import index_lock

    index = tmp_path / "index"
    shutil.copytree(calibrated_index, index)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    files = {"file": ("new.wav", wav(clip(ADDED_SEED, 0.0, 60.0)), "audio/wav")}
    with serve(ServeSettings(str(index), LIMITS, token=TOKEN)) as url:
        with index_lock(index):  # another worker's add, or acr index add, holds it
            busy = httpx.post(f"{url}/v1/tracks", files=files, data={"track_id": "new"},
                              headers=auth, timeout=60)  # fmt: skip
        assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
        assert "being written by another acr process" in busy.json()["detail"]
        assert list((index / "uploads").glob("*")) == []  # its upload is not left behind
        added = httpx.post(f"{url}/v1/tracks", files=files, data={"track_id": "new"},
                           headers=auth, timeout=60)  # fmt: skip
        assert added.status_code == 201
        assert len(list((index / "uploads").glob("*"))) == 1
        assert httpx.delete(f"{url}/v1/tracks/new", headers=auth).status_code == 200
        assert list((index / "uploads").glob("*")) == []  # the audio went with the track
        assert httpx.delete(f"{url}/v1/tracks/song1", headers=auth).status_code == 200
        assert (calibrated_index.parent / "catalog" / "song1.wav").exists()  # not an upload

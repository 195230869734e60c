"""``acr serve --database``: replicas over one PostgreSQL catalog (a real server), changed
through one and seen by the other, and a database restart under a running service."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from acr.database.push import push_index
from acr.service import ServeSettings, ServiceLimits

TOKEN = "s3cret-token"
FRESH_SEED, ADDED_SEED = 120, 130  # songs not in the index (tests/service/conftest.py)
LIMITS = ServiceLimits(retry_after_s=2)


def recognize(url: str, data: bytes) -> httpx.Response:
    files = {"file": ("clip.wav", data, "audio/wav")}
    return httpx.post(f"{url}/v1/recognize", files=files, timeout=30)


@pytest.fixture
def pushed(calibrated_index: Path, database: str) -> str:
    push_index(str(calibrated_index), database)
    return database


def test_replicas_share_the_catalog_and_its_changes(pushed: str, serve, clip, wav) -> None:
    settings = ServeSettings(None, LIMITS, token=TOKEN, database=pushed)
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with serve(settings) as first, serve(settings) as second:
        answer = recognize(first, wav(clip(3))).json()
        assert answer["status"] == "match" and answer["matches"][0]["track_id"] == "song3"
        assert answer["probability"] > 0.5
        assert answer["matches"][0]["offset_s"] == pytest.approx(4.0, abs=0.1)
        assert recognize(second, wav(clip(FRESH_SEED))).json()["status"] == "no_match"
        health = httpx.get(f"{second}/healthz").json()
        assert health["database"] == "reachable" and health["tracks"] == 6

        files = {"file": ("new.wav", wav(clip(ADDED_SEED, 0.0, 60.0)), "audio/wav")}
        added = httpx.post(f"{first}/v1/tracks", files=files, data={"track_id": "new song"},
                           headers=auth, timeout=60)  # fmt: skip
        assert added.status_code == 201, added.text
        assert added.json() == {"track_id": "new song", "duration_s": 12.0}
        answer = recognize(second, wav(clip(ADDED_SEED, start_s=6.0))).json()
        assert answer["matches"][0]["track_id"] == "new song"
        assert answer["status"] == "match"
        assert httpx.get(f"{second}/v1/tracks/new song").json()["duration_s"] == 12.0
        again = httpx.post(f"{second}/v1/tracks", files=files, data={"track_id": "new song"},
                           headers=auth, timeout=60)  # fmt: skip
        assert again.status_code == 409

        assert httpx.delete(f"{second}/v1/tracks/song3", headers=auth).status_code == 200
        answer = recognize(first, wav(clip(3))).json()
        assert all(match["track_id"] != "song3" for match in answer["matches"])
        assert httpx.get(f"{first}/v1/tracks/song3").status_code == 404
        assert httpx.get(f"{first}/v1/tracks").json()["total"] == 6


def test_a_database_restart_fails_fast_with_503_and_the_service_recovers(
    pushed: str, postgres, serve, clip, wav
) -> None:
    settings = ServeSettings(None, LIMITS, database=pushed)
    with serve(settings) as url:
        assert recognize(url, wav(clip(2))).json()["matches"][0]["track_id"] == "song2"
        postgres.stop()
        try:
            started = time.monotonic()
            health = httpx.get(f"{url}/healthz", timeout=30)
            assert health.status_code == 503 and "database unavailable" in health.json()["detail"]
            refused = recognize(url, wav(clip(2)))
            assert refused.status_code == 503 and refused.headers["retry-after"] == "2"
            assert time.monotonic() - started < 10
        finally:
            postgres.start()
        deadline = time.monotonic() + 30
        while httpx.get(f"{url}/healthz", timeout=30).status_code != 200:
            assert time.monotonic() < deadline, "the service did not come back with the database"
            time.sleep(0.2)
        assert recognize(url, wav(clip(2))).json()["matches"][0]["track_id"] == "song2"

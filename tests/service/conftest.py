"""A calibrated fingerprint index of generated songs, and acr serve started for real on
127.0.0.1 (uvicorn in a thread, on a socket bound to a free port), stopped at the end."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import soundfile
import uvicorn

from acr.audio import load_audio
from acr.cli import main
from acr.retrieval.calibration import CALIBRATION_FILE, Calibration
from acr.retrieval.recognizer import Recognizer
from acr.service import ServeSettings, create_app

SAMPLE_RATE = 16000
CATALOG_SEEDS = tuple(range(6))
HELD_OUT_SEEDS = tuple(range(100, 108))  # fit the no_match threshold
FRESH_SEED = 120  # out of catalog, never seen by the calibration
ADDED_SEED = 130  # added live by a test
SONG_S = 12.0
START_TIMEOUT_S = 20.0


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, sample_rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def excerpt(folder: Path, seed: int, start_s: float = 4.0, length_s: float = 3.0) -> np.ndarray:
    audio = load_audio(folder / f"song{seed}.wav", SAMPLE_RATE)
    return audio[int(start_s * SAMPLE_RATE) : int((start_s + length_s) * SAMPLE_RATE)]


@pytest.fixture(scope="session")
def songs(song_folder: Callable[..., Path]) -> Path:
    """Catalog, held-out, fresh and to-be-added songs in one folder (song{seed}.wav)."""
    seeds = CATALOG_SEEDS + HELD_OUT_SEEDS + (FRESH_SEED, ADDED_SEED)
    return song_folder(seeds=seeds, duration_s=SONG_S)


@pytest.fixture(scope="session")
def calibrated_index(songs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fingerprint index of the catalog songs, calibrated on 3-s clips of them and of the
    held-out songs (Calibration.fit, as acr calibrate does, on fewer queries)."""
    work = tmp_path_factory.mktemp("service")
    catalog = work / "catalog"
    catalog.mkdir()
    for seed in CATALOG_SEEDS:
        (catalog / f"song{seed}.wav").symlink_to(songs / f"song{seed}.wav")
    index = work / "index"
    assert main(["index", "--catalog", str(catalog), "--output", str(index),
                 "--workers", "1"]) == 0  # fmt: skip
    recognizer = Recognizer.load(index)
    rankings, durations, truths = [], [], []
    for seeds, inside in ((CATALOG_SEEDS, True), (HELD_OUT_SEEDS, False)):
        for seed in seeds:
            for start_s in (1.0, 5.0, 8.0):
                clip = excerpt(songs, seed, start_s)
                rankings.append(recognizer.recognize(clip, SAMPLE_RATE, 5).matches)
                durations.append(len(clip) / SAMPLE_RATE)
                truths.append(f"song{seed}" if inside else None)
    with pytest.warns(UserWarning, match="cannot measure"):
        calibration = Calibration.fit({"fingerprint": rankings}, durations, truths, 0.01)
    calibration.save(index / CALIBRATION_FILE)
    return index


@contextmanager
def serving(settings: ServeSettings) -> Iterator[str]:
    """The app of ``settings`` served on 127.0.0.1 at a free port: yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
    listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(START_TIMEOUT_S)
        listening.close()


@pytest.fixture(scope="session")
def serve() -> Callable[[ServeSettings], contextmanager]:
    """``with serve(settings) as url:`` the service, on 127.0.0.1 at a free port."""
    return serving


@pytest.fixture(scope="session")
def wav() -> Callable[..., bytes]:
    """``wav(audio, sample_rate=16000)``: the bytes of a 16-bit WAV file of ``audio``."""
    return wav_bytes


@pytest.fixture(scope="session")
def clip(songs: Path) -> Callable[..., np.ndarray]:
    """``clip(seed, start_s=4.0, length_s=3.0)``: that stretch of song ``seed``, 16 kHz mono;
    seeds 0-5 are in the index, 120 (FRESH_SEED) and 130 (ADDED_SEED) are not."""
    return lambda seed, start_s=4.0, length_s=3.0: excerpt(songs, seed, start_s, length_s)


from fixtures_postgres import database, postgres  # noqa: E402, F401 (fixtures: a real PostgreSQL)

"""A screenshot of the web page of ``acr serve`` with an answer on it (docs/serve-page.png).

    python experiments/screenshot_page.py [--output docs/serve-page.png] [--work DIR]

Generates a small catalog of songs (acr.synth), indexes it with ``acr index`` and calibrates it
on excerpts of it and of songs outside it (as tests/service/conftest.py does), starts ``acr
serve`` on 127.0.0.1, uploads a 5-s catalog excerpt through the page in headless Chromium
(/usr/bin/chromium and chromedriver, as tests/service/test_page.py) and saves the window.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import warnings
from pathlib import Path

import numpy as np
from PIL import Image
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from acr.audio import save_audio
from acr.cli import main as acr
from acr.retrieval.calibration import CALIBRATION_FILE, Calibration
from acr.retrieval.recognizer import Recognizer
from acr.synth import synthesize_track

SAMPLE_RATE = 16000
# Made-up titles for generated songs, so the page reads as it would on a real catalog.
TITLES = ("harbour-lights", "paper-boats", "slow-orbit", "copper-rain", "night-ferry",
          "glass-garden", "tin-parade", "low-tide")  # fmt: skip
HELD_OUT_SEEDS = range(100, 108)  # songs outside the catalog: the no_match threshold
QUERY_TITLE, QUERY_START_S, QUERY_LENGTH_S = "night-ferry", 83.0, 5.0
WINDOW = (900, 600)
HEADLESS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
            "--disable-background-networking", "--hide-scrollbars")  # fmt: skip
START_TIMEOUT_S = 60.0


def catalog_songs() -> dict[str, np.ndarray]:
    """8 generated songs of 2:30 to 3:55, by title."""
    return {title: synthesize_track(seed, 150.0 + 12.5 * seed) for seed, title in enumerate(TITLES)}


def build_index(work: Path, songs: dict[str, np.ndarray]) -> Path:
    """A fingerprint index of ``songs``, calibrated on 3-s excerpts of them and of songs
    outside it."""
    catalog, index = work / "catalog", work / "index"
    for title, audio in songs.items():
        save_audio(catalog / f"{title}.wav", audio, SAMPLE_RATE)
    assert acr(["index", "--catalog", str(catalog), "--output", str(index)]) == 0
    recognizer = Recognizer.load(index)
    rankings, durations, truths = [], [], []
    queried = [*songs.items()] + [(None, synthesize_track(seed, 60.0)) for seed in HELD_OUT_SEEDS]
    for title, audio in queried:
        for start_s in (5.0, 20.0, 40.0):
            clip = audio[int(start_s * SAMPLE_RATE) : int((start_s + 3.0) * SAMPLE_RATE)]
            rankings.append(recognizer.recognize(clip, SAMPLE_RATE, 5).matches)
            durations.append(3.0)
            truths.append(title)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # too few queries to measure a 1 % false-match rate
        calibration = Calibration.fit({"fingerprint": rankings}, durations, truths, 0.01)
    calibration.save(index / CALIBRATION_FILE)
    return index


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("acr serve did not start")
        try:
            urllib.request.urlopen(f"{url}/healthz", timeout=2)
            return
        except OSError:
            time.sleep(0.2)


def screenshot(url: str, clip: Path, output: Path) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in HEADLESS:
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        # The viewport, not the window, is what is captured: size it exactly.
        width, height = WINDOW
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        driver.get(f"{url}/")
        driver.find_element(By.ID, "file").send_keys(str(clip))
        result = driver.find_element(By.ID, "result")
        WebDriverWait(driver, 30).until(
            lambda _: result.get_attribute("data-status") in ("match", "no_match", "error")
        )
        print("page says:", result.text.splitlines()[0])
        output.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(output))
    finally:
        driver.quit()
    # A 64-colour palette keeps the text sharp at a fraction of the size.
    Image.open(output).convert("RGB").quantize(64).save(output, optimize=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=Path("docs/serve-page.png"))
    parser.add_argument("--work", type=Path, default=None, help="keep the index here")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acr-page-") as temporary:
        work = options.work or Path(temporary)
        songs = catalog_songs()
        index = build_index(work, songs)
        clip = work / "clip.wav"
        start = int(QUERY_START_S * SAMPLE_RATE)
        excerpt = songs[QUERY_TITLE][start : start + int(QUERY_LENGTH_S * SAMPLE_RATE)]
        save_audio(clip, excerpt, SAMPLE_RATE)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        environment = {**os.environ, "ACR_SERVE_TOKEN": ""}  # read-only
        serve = [sys.executable, "-m", "acr", "serve", "--index", str(index), "--port", str(port)]
        process = subprocess.Popen(serve, env=environment, stdout=subprocess.DEVNULL)
        try:
            wait_until_up(url, process)
            screenshot(url, clip, options.output)
        finally:
            process.terminate()
            process.wait(10)
    print(f"saved {options.output} ({options.output.stat().st_size // 1024} KB)")


if __name__ == "__main__":
    main()

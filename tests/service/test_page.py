"""The web page of acr serve (GET /, acr/service/page.html) in a real headless Chromium: a clip
uploaded through the file input, and one recorded by pressing Listen, each named on the page.

Recording uses Chromium's fake capture device, which plays a WAV file (16-bit PCM, looped) as
the microphone; the page sends what MediaRecorder gives (WebM/Opus), as a browser would.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import soundfile
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from acr.audio import resample
from acr.service import ServeSettings
from acr.service.settings import TOKEN_VARIABLE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SAMPLE_RATE = 16000
CAPTURE_RATE = 48000  # the fake device's file: 16-bit PCM at a rate Chromium captures natively
FRESH_SEED = 120  # a song not in the index (tests/service/conftest.py)
ANSWER_TIMEOUT_S = 20.0
ANSWERED = ("match", "no_match", "error")  # #result's data-status once the service answered
HEADLESS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
            "--disable-background-networking", "--window-size=900,700")  # fmt: skip

pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver)",
)


def chromium(*arguments: str) -> WebDriver:
    """A headless Chromium driven by chromedriver; it only reaches the 127.0.0.1 service."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (*HEADLESS, *arguments):
        options.add_argument(argument)
    return webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))


@pytest.fixture(scope="module")
def server(calibrated_index: Path, serve) -> Iterator[str]:
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv(TOKEN_VARIABLE, raising=False)
        settings = ServeSettings(str(calibrated_index))
    with serve(settings) as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    driver = chromium()
    yield driver
    driver.quit()


def answer(driver: WebDriver) -> str:
    """#result's status once the page shows the service's answer (bounded wait)."""
    result = driver.find_element(By.ID, "result")
    WebDriverWait(driver, ANSWER_TIMEOUT_S).until(
        lambda _: result.get_attribute("data-status") in ANSWERED
    )
    return result.get_attribute("data-status")


def upload(driver: WebDriver, url: str, path: Path) -> str:
    driver.get(f"{url}/")
    driver.find_element(By.ID, "file").send_keys(str(path))
    return answer(driver)


def track_ids(driver: WebDriver) -> list[str]:
    return [cell.text for cell in driver.find_elements(By.CSS_SELECTOR, "#result .track-id")]


def test_an_uploaded_catalog_clip_is_named_with_its_place_in_the_track(
    server: str, browser: WebDriver, clip: Callable, wav: Callable, tmp_path: Path
) -> None:
    path = tmp_path / "clip.wav"
    path.write_bytes(wav(clip(3, start_s=5.0)))
    assert upload(browser, server, path) == "match"
    assert "://" not in browser.page_source  # no CDN or other outside asset: works offline
    assert track_ids(browser)[0] == "song3"
    verdict = browser.find_element(By.CSS_SELECTOR, "#result .verdict").text
    assert verdict.startswith("song3 (") and "% sure" in verdict
    best = browser.find_element(By.CSS_SELECTOR, "#result tr.match").text
    assert "0:05 of 0:12" in best  # the offset, as m:ss of the track's duration


def test_an_unknown_clip_says_no_match_and_a_refusal_shows_its_detail(
    server: str, browser: WebDriver, clip: Callable, wav: Callable, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh.wav"
    fresh.write_bytes(wav(clip(FRESH_SEED)))
    assert upload(browser, server, fresh) == "no_match"
    assert browser.find_element(By.ID, "result").text.startswith("No match")
    text = tmp_path / "notes.txt"
    text.write_text("not audio at all\n" * 100)
    assert upload(browser, server, text) == "error"
    shown = browser.find_element(By.ID, "result").text
    assert shown.startswith("Error 415: unreadable audio: cannot decode"), shown


def test_listen_records_the_microphone_and_names_the_song(
    server: str, clip: Callable, tmp_path: Path
) -> None:
    microphone = tmp_path / "microphone.wav"
    excerpt = resample(clip(4, start_s=3.0, length_s=8.0), SAMPLE_RATE, CAPTURE_RATE)
    soundfile.write(microphone, excerpt, CAPTURE_RATE, subtype="PCM_16")
    driver = chromium(
        "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={microphone}",
    )  # fmt: skip
    try:
        driver.get(f"{server}/")
        seconds = driver.find_element(By.ID, "seconds")
        seconds.clear()
        seconds.send_keys("3")
        driver.find_element(By.ID, "listen").click()
        assert answer(driver) == "match", driver.find_element(By.ID, "result").text
        assert track_ids(driver)[0] == "song4"
        note = driver.find_element(By.CSS_SELECTOR, "#result p.note").text
        assert 2.5 <= float(note.split(" s of audio")[0]) <= 4.0, note  # about the 3 s asked
    finally:
        driver.quit()

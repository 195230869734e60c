"""acr.retrieval.extraction: one track never aborts a build; what cannot be used comes back as
the reason it was skipped, in catalog order."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fixtures_faults import KillsItsWorker

from acr.retrieval.extraction import MIN_TRACK_S, extract_in_workers

RATE = 16000


def _tone(seconds: float) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * RATE)) / RATE)).astype("f4")


def _garbage(folder: Path) -> dict[str, tuple[Path, str]]:
    """Files that cannot hold music, each with (a word of) the reason it must be skipped."""
    files = {}
    nan = folder / "nan.wav"
    soundfile.write(nan, np.full(RATE, np.nan, np.float32), RATE, subtype="FLOAT")
    files["nan"] = (nan, "non-finite")
    one = folder / "one_sample.wav"
    soundfile.write(one, _tone(1.0)[:1], RATE)
    files["one_sample"] = (one, "too short")
    slow = folder / "rate_50hz.wav"
    soundfile.write(slow, _tone(1.0)[:200], 50)
    files["rate_50hz"] = (slow, "below 8000 Hz")
    huge = folder / "claims_2gb.wav"  # a header that says 2 GB over 20 samples of data
    soundfile.write(huge, _tone(1.0)[:20], RATE, subtype="PCM_16")
    data = bytearray(huge.read_bytes())
    at = data.find(b"data")
    data[at + 4 : at + 8] = struct.pack("<I", 2_000_000_000)
    data[4:8] = struct.pack("<I", 2_000_000_036)
    huge.write_bytes(bytes(data))
    files["claims_2gb"] = (huge, "too short")
    mp3 = folder / "corrupt.mp3"
    mp3.write_bytes(b"\xff\xfb\x90\x00" + bytes(range(256)) * 20)
    files["corrupt"] = (mp3, "corrupt")
    return files


def test_garbage_files_are_skipped_with_their_reason_and_good_ones_extracted(tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(good, _tone(2.0), RATE)
    garbage = _garbage(tmp_path)
    jobs = [("good", str(good))] + [(name, str(path)) for name, (path, _) in garbage.items()]
    results = {
        track: (features, duration)
        for track, _, features, duration in extract_in_workers(
            jobs, [("probe", RATE, len)], workers=1
        )
    }
    assert results["good"] == ({"probe": 2 * RATE}, 2.0)
    for name, (_, reason) in garbage.items():
        assert isinstance(results[name][0], str) and reason in results[name][0], name
    assert MIN_TRACK_S > 20 / RATE


@pytest.mark.slow  # spawned pools: the parallel one, then one-worker pools for the suspects
def test_a_track_that_kills_its_worker_is_skipped_and_the_others_extracted(tmp_path):
    lengths_s = [1.0, 1.25, 1.5, 1.75, 2.0, 2.25]
    killer = 2  # the third track: 1.5 s
    jobs = []
    for number, seconds in enumerate(lengths_s):
        path = tmp_path / f"track{number}.wav"
        soundfile.write(path, _tone(seconds), RATE)
        jobs.append((f"track{number}", str(path)))
    extractor = KillsItsWorker(samples=int(lengths_s[killer] * RATE))
    results = list(extract_in_workers(jobs, [("probe", RATE, extractor)], workers=2))
    assert [track for track, *_ in results] == [track for track, _ in jobs]  # catalog order
    for number, (_, _, features, _) in enumerate(results):
        if number == killer:
            assert isinstance(features, str) and "died 2 times" in features
        else:
            assert features == {"probe": int(lengths_s[number] * RATE)}

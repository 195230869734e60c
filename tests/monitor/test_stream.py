"""acr.monitor.stream: a recording on standard input (any container FFmpeg reads) gives what
the file gives; a damaged or stalled stream ends or skips cleanly; the microphone is optional."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from acr.audio import AudioError
from acr.monitor.stream import Gap, Ring, open_recording

RATE = 16000


def _monitor_stdin(index: Path, *options: str, **run) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "acr", "monitor", "-", "--index", str(index), *options]
    return subprocess.run(command, capture_output=True, timeout=120, **run)


def _flac_bytes(audio: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, RATE, format="FLAC")
    return buffer.getvalue()


def test_a_flac_stream_on_stdin_gives_the_file_s_segments(
    catalog_index: Path, radio_mix, radio_segments
) -> None:
    result = _monitor_stdin(catalog_index, input=_flac_bytes(radio_mix.audio))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    streamed = list(csv.DictReader(io.StringIO(result.stdout.decode())))
    assert [row["track_id"] for row in streamed] == [row["track_id"] for row in radio_segments]
    for row, from_file in zip(streamed, radio_segments):
        assert row["recording"] == "-"
        for column in ("start_s", "end_s", "reference_start_s", "speed_factor"):
            assert float(row[column]) == pytest.approx(float(from_file[column]), abs=0.3)


def test_a_damaged_stream_reports_a_gap_and_goes_on(catalog_index: Path, radio_mix) -> None:
    data = bytearray(_flac_bytes(radio_mix.audio))
    third = len(data) // 3  # ~48 s in: after track_01 (36-44 s), before track_02 (58 s)
    data[third : third + 40_000] = bytes(40_000)
    result = _monitor_stdin(catalog_index, "--format", "jsonl", input=bytes(data))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    events = [json.loads(line) for line in result.stdout.decode().splitlines()]
    gaps = [event for event in events if event["event"] == "gap"]
    assert len(gaps) == 1 and 44 < gaps[0]["start_s"] < gaps[0]["end_s"] < 56, gaps
    ends = [event for event in events if event["event"] == "end"]
    assert [event["track_id"] for event in ends] == [truth.track_id for truth in radio_mix.truth]
    later = [event for event in ends if event["start_s"] > gaps[0]["end_s"]]
    truths = [truth for truth in radio_mix.truth if truth.start_s > gaps[0]["end_s"]]
    for event, truth in zip(later, truths, strict=True):  # the clock still tells the time
        assert abs(event["start_s"] - truth.start_s) <= 1.0


def test_a_stream_that_stalls_mid_frame_ends_the_scan_with_what_it_found(
    catalog_index: Path, radio_mix, tmp_path: Path
) -> None:
    first_minute = radio_mix.audio[: 50 * RATE]  # track_00 (12-32 s), track_01 (36-44 s)
    wav = io.BytesIO()
    soundfile.write(wav, first_minute, RATE, format="WAV", subtype="PCM_16")
    command = [sys.executable, "-m", "acr", "monitor", "-", "--index", str(catalog_index),
               "--stall_timeout_s", "3"]  # fmt: skip
    with open(tmp_path / "out.csv", "wb") as out, open(tmp_path / "err.txt", "wb") as err:
        process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=out, stderr=err)
        try:
            process.stdin.write(wav.getvalue()[: -RATE - 1])  # cut inside a sample frame
            process.stdin.flush()
            process.wait(timeout=60)  # standard input stays open: the stream stalls
        finally:
            process.kill()
            process.stdin.close()
    stderr = (tmp_path / "err.txt").read_text()
    assert process.returncode == 0, stderr[-2000:]
    assert "no audio for 3 s: the stream stalled; scan ended" in stderr
    rows = list(csv.DictReader(open(tmp_path / "out.csv", newline="")))
    assert [row["track_id"] for row in rows] == ["track_00", "track_01"]
    assert float(rows[1]["end_s"]) == pytest.approx(44.0, abs=1.0)


def test_a_stream_that_is_not_audio_is_a_clear_error(catalog_index: Path) -> None:
    result = _monitor_stdin(catalog_index, input=b"this is not audio\n" * 100)
    assert result.returncode == 1
    assert result.stderr.decode().strip().splitlines()[-1].startswith("acr monitor: error: -: ")


def test_a_file_is_read_a_block_at_a_time(tmp_path: Path) -> None:
    audio = np.random.default_rng(0).uniform(-0.5, 0.5, 5 * 22050).astype(np.float32)
    audio[22050 * 2 : 22050 * 3] = np.inf
    path = tmp_path / "blocks.wav"
    soundfile.write(path, audio, 22050, subtype="FLOAT")
    recording = open_recording(str(path), 8000)
    assert recording.duration_s == pytest.approx(5.0)
    items = list(recording.blocks)
    # The blocks beside the bad second resample it too (acr.audio.read_resampled's context).
    assert [type(item) for item in items] == [np.ndarray, Gap, Gap, Gap, np.ndarray]
    assert all(len(item) == 8000 for item in items if isinstance(item, np.ndarray))
    assert all(item.seconds == 1.0 and "non-finite" in item.reason for item in items[1:4])


@pytest.mark.skipif(
    importlib.util.find_spec("sounddevice") is not None, reason="sounddevice is installed"
)
def test_the_microphone_without_sounddevice_is_a_clear_error(catalog_index: Path, capsys) -> None:
    from acr.cli import main

    assert main(["monitor", "--microphone", "true", "--index", str(catalog_index)]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--microphone needs the sounddevice package" in error
    with pytest.raises(AudioError, match="pip install sounddevice"):
        open_recording("microphone", 8000)


def test_the_ring_keeps_the_latest_samples() -> None:
    ring = Ring(10)
    ring.append(np.arange(7, dtype=np.float32))
    ring.append(np.arange(7, 13, dtype=np.float32))
    assert (ring.start, ring.end) == (3, 13)
    np.testing.assert_array_equal(ring.read(0, 13), np.arange(3, 13))
    np.testing.assert_array_equal(ring.read(8, 11), [8, 9, 10])
    ring.append(np.arange(13, 40, dtype=np.float32))  # longer than the ring
    np.testing.assert_array_equal(ring.read(0, 40), np.arange(30, 40))

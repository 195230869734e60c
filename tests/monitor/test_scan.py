"""acr.monitor.scan: windows, agreement and edges on generated mixes, through `acr monitor`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from acr.audio import AudioError
from acr.cli import main
from acr.monitor.scan import Scanner, ScanSettings, monitor_recognizer
from acr.monitor.segments import COLUMNS
from acr.monitor.stream import open_recording
from acr.retrieval.recognizer import Recognizer

RATE = 16000
EDGE_S = 1.0  # the boundary accuracy acr monitor promises


def _matching(segments: list[dict], truth) -> list[dict]:
    return [
        row
        for row in segments
        if row["track_id"] == truth.track_id
        and float(row["start_s"]) < truth.end_s
        and float(row["end_s"]) > truth.start_s
    ]


def test_every_catalog_excerpt_is_found_with_its_edges(radio_mix, radio_segments) -> None:
    assert list(radio_segments[0]) == list(COLUMNS)
    for truth in radio_mix.truth:
        rows = _matching(radio_segments, truth)
        assert len(rows) == 1, (truth, radio_segments)
        row = rows[0]
        assert abs(float(row["start_s"]) - truth.start_s) <= EDGE_S, (truth, row)
        assert abs(float(row["end_s"]) - truth.end_s) <= EDGE_S, (truth, row)
        assert abs(float(row["reference_start_s"]) - truth.reference_start_s) <= EDGE_S * 1.1
        assert int(row["windows"]) >= 2
        assert row["probability"] == "" or 0.0 <= float(row["probability"]) <= 1.0


def test_nothing_is_found_outside_the_catalog_excerpts(radio_mix, radio_segments) -> None:
    assert len(radio_segments) == len(radio_mix.truth)
    for row in radio_segments:
        start, end = float(row["start_s"]), float(row["end_s"])
        for outside_start, outside_end in radio_mix.outside:
            overlap = min(end, outside_end) - max(start, outside_start)
            assert overlap <= EDGE_S, (row, (outside_start, outside_end))


def test_speed_changed_excerpts_report_their_speed(radio_mix, radio_segments) -> None:
    changed = [truth for truth in radio_mix.truth if truth.speed_factor != 1.0]
    assert {truth.speed_factor for truth in changed} == {1.07, 0.94}
    for truth in changed:
        (row,) = _matching(radio_segments, truth)
        assert float(row["speed_factor"]) == pytest.approx(truth.speed_factor, abs=0.01)
        assert float(row["pitch_semitones"]) == 0.0
    for truth in radio_mix.truth:
        if truth.speed_factor == 1.0:
            (row,) = _matching(radio_segments, truth)
            assert float(row["speed_factor"]) == pytest.approx(1.0, abs=0.005)


def test_the_monitor_searches_plus_minus_8_percent(catalog_index: Path) -> None:
    recognizer = monitor_recognizer(Recognizer.load(catalog_index), ScanSettings())
    speeds = {hypothesis.time_scale for hypothesis in recognizer.engines["fingerprint"].hypotheses}
    assert min(speeds) <= 0.92 and max(speeds) >= 1.08
    # The index itself is unchanged: its own search keeps its settings.
    engine = Recognizer.load(catalog_index).engines["fingerprint"]
    assert max(engine.settings.speed_factors) < 1.08
    with pytest.raises(ValueError, match="fft_size: set when the index was built"):
        engine.with_search_settings(fft_size=512)


def test_jsonl_reports_a_segment_within_seconds_of_its_start(
    catalog_index: Path, radio_mix, radio_mix_file: Path, tmp_path: Path
) -> None:
    output = tmp_path / "events.jsonl"
    assert main(["monitor", str(radio_mix_file), "--index", str(catalog_index),
                 "--format", "jsonl", "--output", str(output)]) == 0  # fmt: skip
    events = [json.loads(line) for line in output.read_text().splitlines()]
    starts = [event for event in events if event["event"] == "start"]
    ends = [event for event in events if event["event"] == "end"]
    assert len(starts) == len(ends) == len(radio_mix.truth)
    for start in starts:
        # Confirmed when the audio heard so far (its end_s) is a few seconds past the start.
        assert start["end_s"] - start["start_s"] <= 8.0, start
        end = next(e for e in ends if e["track_id"] == start["track_id"])
        assert events.index(start) < events.index(end)
        assert set(end) == {"event", *COLUMNS}


def test_unreadable_and_silent_stretches_are_gaps_and_the_scan_goes_on(
    catalog_index: Path, radio_mix, tmp_path: Path
) -> None:
    audio = radio_mix.audio.copy()
    audio[46 * RATE : 49 * RATE] = np.nan  # between track_01 (36-44 s) and track_02 (58-88 s)
    audio[50 * RATE : 56 * RATE] = 0.0
    path = tmp_path / "damaged.wav"
    soundfile.write(path, audio, RATE, subtype="FLOAT")
    scanner = Scanner(monitor_recognizer(Recognizer.load(catalog_index), ScanSettings()))
    events = list(scanner.scan(open_recording(str(path), scanner.sample_rate)))
    gaps = [(e.start_s, e.end_s, e.reason) for e in events if e.kind == "gap"]
    assert len(gaps) == 2, gaps
    (unreadable_start, unreadable_end, reason), (silent_start, silent_end, silent) = gaps
    assert "non-finite" in reason and silent == "silent"
    assert 45.0 <= unreadable_start <= 46.0 and 49.0 <= unreadable_end <= 50.0
    assert silent_start == pytest.approx(50.0, abs=0.5) and silent_end == pytest.approx(56, abs=0.5)
    found = [e.segment.track_id for e in events if e.kind == "end"]
    assert found == [truth.track_id for truth in radio_mix.truth]


def test_a_recording_shorter_than_a_window_is_a_clear_error(
    catalog_index: Path, radio_mix, tmp_path: Path, capsys
) -> None:
    path = tmp_path / "short.wav"
    soundfile.write(path, radio_mix.audio[: 6 * RATE], RATE)
    assert main(["monitor", str(path), "--index", str(catalog_index)]) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error == (
        f"acr monitor: error: {path}: too short (6.00 s < 10 s, one monitoring window;"
        " acr recognize answers clips)"
    )
    scanner = Scanner(Recognizer.load(catalog_index))
    with pytest.raises(AudioError, match="too short"):
        list(scanner.scan(open_recording(str(path), scanner.sample_rate)))


def test_bad_input_is_one_line_naming_it(catalog_index: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nothing.wav"
    assert main(["monitor", str(missing), "--index", str(catalog_index)]) == 1
    assert capsys.readouterr().err.strip().endswith(f"{missing}: file does not exist")
    assert main(["monitor", "--index", str(catalog_index)]) == 1
    assert "give a RECORDING" in capsys.readouterr().err
    assert main(["monitor", str(missing), "--index", str(catalog_index),
                 "--scan.hop_s", "20"]) == 1  # fmt: skip
    assert "hop_s must be in (0, window_s]" in capsys.readouterr().err

"""acr.monitor.output: rows and events written as they happen."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from acr.monitor.output import GAP_COLUMNS, EventWriter
from acr.monitor.scan import Event
from acr.monitor.segments import COLUMNS, Segment

SEGMENT = Segment("mix.wav", 12.0, 32.0, "a", 5.0, 25.0, 1.0, 0.0, None, 11)


def test_csv_rows_are_written_when_a_segment_ends(tmp_path: Path, capsys) -> None:
    output, gaps = tmp_path / "segments.csv", tmp_path / "gaps.csv"
    with EventWriter(str(output), "csv", str(gaps)) as writer:
        writer.write("mix.wav", Event("start", SEGMENT))
        assert output.read_text() == ",".join(COLUMNS) + "\n"  # flushed, nothing ended yet
        writer.write("mix.wav", Event("gap", start_s=40.0, end_s=45.5, reason="silent"))
        writer.write("mix.wav", Event("end", SEGMENT))
    rows = list(csv.DictReader(open(output, newline="")))
    assert rows == [{**{k: str(v) for k, v in SEGMENT.row().items()}, "probability": ""}]
    assert list(csv.reader(open(gaps, newline=""))) == [
        list(GAP_COLUMNS),
        ["mix.wav", "40.0", "45.5", "silent"],
    ]
    assert "mix.wav: gap 40.00-45.50 s (silent)" in capsys.readouterr().err
    assert (writer.segments, writer.gaps) == (1, 1)


def test_jsonl_has_start_end_and_gap_events(tmp_path: Path) -> None:
    output = tmp_path / "events.jsonl"
    with EventWriter(str(output), "jsonl") as writer:
        writer.write("-", Event("start", SEGMENT))
        writer.write("-", Event("gap", start_s=40.0, end_s=45.5, reason="silent"))
        writer.write("-", Event("end", SEGMENT))
    events = [json.loads(line) for line in output.read_text().splitlines()]
    assert [event["event"] for event in events] == ["start", "gap", "end"]
    assert events[2] == {"event": "end", **SEGMENT.row()}
    assert events[1] == {"event": "gap", "recording": "-", "start_s": 40.0, "end_s": 45.5,
                         "reason": "silent"}  # fmt: skip

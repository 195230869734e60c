"""Monitoring output, written as it happens (a line is flushed as soon as it is known).

CSV: one row per segment (acr.monitor.segments.COLUMNS), written when the segment ends; a
probability the index cannot give is an empty cell. JSONL: every event of the scan, for live
use: ``{"event": "start", ...}`` when a segment is confirmed (its row so far: ``end_s`` and
``reference_end_s`` as far as it has been heard), ``{"event": "end", ...}`` with its final row,
and ``{"event": "gap", "recording", "start_s", "end_s", "reason"}``. Gaps also go to a CSV of
their own when one is named (``--gaps``), and to standard error as one line each.
"""

from __future__ import annotations

import csv
import json
import sys
from typing import IO, Any, Literal

from acr.monitor.scan import Event
from acr.monitor.segments import COLUMNS

GAP_COLUMNS = ("recording", "start_s", "end_s", "reason")


def event_record(recording: str, event: Event) -> dict[str, Any]:
    """An event as its JSONL line holds it: ``event`` (start, end, gap), then the segment's row
    or the gap's GAP_COLUMNS. acr serve's WS /v1/stream sends these too (acr.service.live)."""
    if event.kind == "gap" or event.segment is None:
        return {
            "event": event.kind,
            "recording": recording,
            "start_s": round(event.start_s, 2),
            "end_s": round(event.end_s, 2),
            "reason": event.reason,
        }
    return {"event": event.kind, **event.segment.row()}


class EventWriter:
    """Writes a scan's events to ``output`` (a path; None: standard output) as ``format``,
    and its gaps to ``gaps`` (a CSV path) if given."""

    def __init__(
        self,
        output: str | None = None,
        format: Literal["csv", "jsonl"] = "csv",
        gaps: str | None = None,
    ) -> None:
        self.format = format
        self._owned: list[IO[str]] = []
        self.stream = self._open(output) if output else sys.stdout
        self.rows = csv.writer(self.stream, lineterminator="\n")
        if format == "csv":
            self.rows.writerow(COLUMNS)
        self.gap_rows = None
        if gaps:
            self.gap_rows = csv.writer(self._open(gaps), lineterminator="\n")
            self.gap_rows.writerow(GAP_COLUMNS)
        self.segments = 0
        self.gaps = 0

    def _open(self, path: str) -> IO[str]:
        stream = open(path, "w", newline="")
        self._owned.append(stream)
        return stream

    def write(self, recording: str, event: Event) -> None:
        record = event_record(recording, event)
        if event.kind == "gap":
            self.gaps += 1
            gap = {name: record[name] for name in GAP_COLUMNS}
            print(
                f"{recording}: gap {gap['start_s']:.2f}-{gap['end_s']:.2f} s ({event.reason})",
                file=sys.stderr,
            )
            if self.gap_rows is not None:
                self.gap_rows.writerow(gap.values())
            if self.format == "jsonl":
                self._json(record)
        elif event.segment is not None:
            row = event.segment.row()
            if event.kind == "end":
                self.segments += 1
            if self.format == "jsonl":
                self._json(record)
            elif event.kind == "end":
                self.rows.writerow(["" if value is None else value for value in row.values()])
        for stream in {self.stream, *self._owned}:
            stream.flush()

    def _json(self, record: dict[str, Any]) -> None:
        self.stream.write(json.dumps(record, allow_nan=False) + "\n")

    def close(self) -> None:
        for stream in self._owned:
            stream.close()
        if not self._owned or self.stream is sys.stdout:
            self.stream.flush()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exception: object) -> None:
        self.close()

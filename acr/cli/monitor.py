"""``acr monitor`` and ``acr dedup``: options from acr.monitor."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Literal

from acr.cli.commands import Command
from acr.monitor.dedup import DedupSummary, dedup
from acr.monitor.scan import ScanSettings


@dataclass(frozen=True)
class MonitorSummary:
    recording: str
    segments: int
    gaps: int
    audio_s: float
    seconds: float

    @property
    def real_time_factor(self) -> float:
        return self.audio_s / max(self.seconds, 1e-9)


def monitor(
    index: str,
    recording: str | None = None,
    microphone: bool = False,
    output: str | None = None,
    format: Literal["csv", "jsonl"] = "csv",
    gaps: str | None = None,
    stall_timeout_s: float = 30.0,
    scan: ScanSettings = ScanSettings(),  # noqa: B008 (frozen)
) -> MonitorSummary:
    """Find every catalog track in a long recording, with where it starts and ends.

    The recording is read a block at a time (hours take no more memory than seconds) and
    scanned in sliding windows; windows that agree on a track and its alignment make a
    segment. CSV: one row per segment, written as it ends. JSONL: a start event as soon as
    a segment is confirmed (live use), an end event with its row, and gap events.

    Args:
        index: the index directory (acr index).
        recording: an audio file, or - for a stream on standard input (any container FFmpeg
            reads: wav, flac, mp3, ogg, an mpeg-ts radio stream...).
        microphone: monitor the default input device instead (needs the sounddevice package).
        output: where to write the segments (default: standard output).
        format: csv (a row per segment) or jsonl (start, end and gap events).
        gaps: also write unreadable and silent stretches to this CSV (they always go to
            standard error, and into jsonl output).
        stall_timeout_s: a stream or microphone silent on the wire this long ends the scan.
        scan: how the recording is scanned (windows, agreement, edges).
    """
    from tqdm.auto import tqdm

    from acr.files import output_path
    from acr.monitor.output import EventWriter
    from acr.monitor.scan import Scanner, monitor_recognizer
    from acr.monitor.stream import MICROPHONE, open_recording
    from acr.retrieval.recognizer import Recognizer

    if microphone == (recording is not None):
        raise ValueError("give a RECORDING (a file, or - for standard input) or --microphone")
    for path in (output, gaps):
        if path:
            output_path(path)
    scanner = Scanner(monitor_recognizer(Recognizer.load(index), scan), scan)
    source = MICROPHONE if microphone else str(recording)
    opened = open_recording(source, scanner.sample_rate, stall_timeout_s)
    started = time.perf_counter()
    bar = tqdm(total=opened.duration_s, unit="s", desc="monitoring", file=sys.stderr)
    audio_s = 0.0

    def progress(seconds: float) -> None:
        nonlocal audio_s
        audio_s += seconds
        bar.update(seconds)
        elapsed = time.perf_counter() - started
        bar.set_postfix_str(f"{audio_s / max(elapsed, 1e-9):.0f}x real time", refresh=False)

    with EventWriter(output, format, gaps) as writer:
        try:
            for event in scanner.scan(opened, progress):
                writer.write(opened.name, event)
        finally:
            bar.close()
    return MonitorSummary(
        opened.name, writer.segments, writer.gaps, audio_s, time.perf_counter() - started
    )


def show_monitor(summary: MonitorSummary) -> None:
    print(
        f"{summary.recording}: {summary.segments} segment(s), {summary.gaps} gap(s) in"
        f" {summary.audio_s:.1f} s of audio ({summary.real_time_factor:.0f}x real time)",
        file=sys.stderr,
    )


def show_dedup(summary: DedupSummary) -> None:
    print(
        f"dedup: {summary.tracks} tracks scanned ({summary.skipped} skipped),"
        f" {summary.exact} exact and {summary.partial} partial duplicate row(s)",
        file=sys.stderr,
    )


COMMANDS = {
    "monitor": Command(monitor, show_monitor, positional=("recording",)),
    "dedup": Command(dedup, show_dedup),
}

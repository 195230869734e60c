"""``acr index``, ``recognize`` and ``fuse``: options from acr.retrieval."""

from __future__ import annotations

import csv
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from acr.cli.commands import Command, CommandGroup
from acr.files import output_path
from acr.retrieval.build import BuildSummary, build_index
from acr.retrieval.calibration import Calibration
from acr.retrieval.changes import Listing, add_tracks, compact_index, list_index, remove_tracks
from acr.retrieval.fitting import fit_calibration, fit_fusion
from acr.retrieval.fusion import Fusion
from acr.retrieval.recognizer import Recognition


def show_index(summary: BuildSummary | None) -> None:
    if summary is None:  # a rank other than 0 of a distributed build: rank 0 reports
        return
    hours = max(summary.audio_hours, 1e-9)
    print(f"index {summary.directory}: engines {'+'.join(summary.engines)}")
    print(
        f"  tracks {summary.tracks}, skipped {summary.skipped} (see skipped.csv), "
        f"{summary.audio_hours:.2f} h of audio"
    )
    print(
        f"  items {summary.items}; {summary.index_bytes / 1e6:.1f} MB, "
        f"{summary.index_bytes / hours / 1e6:.1f} MB per hour"
    )
    speed = f"{summary.real_time_factor:.0f}x real time, " if summary.run_audio_s else ""
    print(f"  this run: {summary.seconds:.1f} s, {speed}peak memory {summary.peak_rss_mb:.0f} MB")
    if summary.pushed is not None:
        from acr.cli.database import show_push

        show_push(summary.pushed)


def recognize(
    index: str,
    files: list[str] | None = None,
    queries: str | None = None,
    top_k: int = 5,
    output: str | None = None,
    format: Literal["jsonl", "csv"] = "jsonl",
    min_probability: float | None = None,
) -> tuple[int, int]:
    """Identify audio clips: ranked tracks with a score and the offset in each, per query.

    On a calibrated index (acr calibrate), each answer has the probability that its top track
    is right, and one below the threshold has the status no_match (its ranked tracks are then
    candidates, not an answer). A clip that cannot be read, is silent or too short, or a query
    row without an id or a clip, gets an error status in its row; the others go on. Returns
    (queries, errors).

    Args:
        index: the index directory (acr index).
        files: audio files to recognise.
        queries: instead of files, a CSV/JSONL with query_id and path (or source, offset_s and
            length_s).
        top_k: ranked tracks per answer.
        output: where to write the answers (default: standard output).
        format: jsonl (a JSON object per query) or csv (query_id,track_1..track_k,
            probability,status; RFC 4180, fields quoted where needed).
        min_probability: answer no_match below this probability instead of the threshold the
            index was calibrated with (needs a calibrated index).
    """
    from acr.data.manifests import FILE_NAME_ERRORS, read_queries
    from acr.retrieval.recognizer import Recognizer

    if bool(files) == bool(queries):
        raise ValueError("give audio files or --queries QUERIES.csv (one of the two)")
    if output:
        output_path(output)
    recognizer = Recognizer.load(index, min_probability=min_probability)
    if queries:
        recognitions = recognizer.recognize_queries(read_queries(queries, False), top_k)
    else:
        recognitions = (recognizer.recognize_file(path, top_k=top_k) for path in files or [])
    # Ids from file names that are not UTF-8 go out with their own bytes (acr.data.manifests).
    if output:
        stream = open(output, "w", newline="", errors=FILE_NAME_ERRORS)
    else:
        stream = sys.stdout
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors=FILE_NAME_ERRORS)
    errors = total = 0
    try:
        rows = csv.writer(stream)  # quotes an id holding a comma, a quote or a line break
        if format == "csv":
            tracks = (f"track_{k}" for k in range(1, top_k + 1))
            rows.writerow(["query_id", *tracks, "probability", "status"])
        for recognition in recognitions:
            total += 1
            errors += recognition.status == "error"
            if format == "csv":
                rows.writerow(_csv_row(recognition, top_k))
            else:
                stream.write(json.dumps(_answer(recognition), allow_nan=False) + "\n")
    finally:
        if output:
            stream.close()
    return total, errors


def show_calibrate(calibration: Calibration) -> None:
    print(
        f"calibrated on {calibration.in_catalog_queries} in-catalog and"
        f" {calibration.out_of_catalog_queries} out-of-catalog queries, for a false-match rate"
        f" of {calibration.false_match_rate:g}"
    )
    for system, model in calibration.systems.items():
        print(
            f"  {system}: no_match below P = {model.threshold:.4f}; on these queries"
            f" false matches {model.false_match_rate:.4f}, right answers"
            f" {model.true_positive_rate:.4f}"
        )


def show_recognize(counts: tuple[int, int]) -> None:
    total, errors = counts
    print(f"recognised {total - errors} of {total} queries; {errors} errors", file=sys.stderr)


def _csv_row(recognition: Recognition, top_k: int) -> list[str]:
    """query_id, the top_k track ids (empty where there are fewer), the probability (empty
    on an index without calibration) and the status (ok, no_match or error: why)."""
    tracks = [match.track_id for match in recognition.matches][:top_k]
    tracks += [""] * (top_k - len(tracks))
    probability = "" if recognition.probability is None else f"{recognition.probability:.4f}"
    status = f"error: {recognition.error}" if recognition.status == "error" else recognition.status
    return [recognition.query_id, *tracks, probability, status]


def _answer(recognition: Recognition) -> dict[str, Any]:
    """One JSONL answer; a score or an offset that is not finite is null (JSON has no NaN)."""
    return {
        "query_id": recognition.query_id,
        "status": recognition.status,
        "error": recognition.error,
        "probability": (
            None if recognition.probability is None else _finite(recognition.probability, 4)
        ),
        "matches": [
            {
                "track_id": match.track_id,
                "score": _finite(match.score, 4),
                "offset_s": _finite(match.offset_s, 3),
                "speed_factor": _finite(match.speed_factor, 4),
                "pitch_semitones": _finite(match.pitch_semitones, 3),
            }
            for match in recognition.matches
        ],
    }


def _finite(value: float, digits: int) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None


def show_fuse(fitted: tuple[Fusion, int]) -> None:
    fusion, count = fitted
    exit_rule = fusion.early_exit
    print(
        f"fusion fitted on {count} queries over {', '.join(fusion.engines)}; "
        + (
            f"early exit: {exit_rule.engine} alone when P(right) >= {exit_rule.probability}"
            if exit_rule
            else "no early exit"
        )
    )


def show_removed(count: int) -> None:
    print(f"removed {count} track(s); their data goes at the next `acr index compact`")


def show_listing(listing: Listing, segments: bool = False) -> None:
    """Args:
    segments: list the segments (level, tracks written, tracks removed) instead of the tracks.
    """
    table = listing.segments if segments else listing.tracks
    table.to_csv(sys.stdout, index=False, lineterminator="\n")


@dataclass(frozen=True)
class IndexCommands:
    """``acr index`` builds an index; ``acr index add|replace|remove|list|compact`` change or
    show one."""

    build: Command
    changes: CommandGroup

    def run(self, prog: str, argv: Sequence[str]) -> int:
        if argv and argv[0] in self.changes:
            return self.changes.run(prog, argv)
        if argv and argv[0] in ("-h", "--help"):
            self.changes.run(prog, ["--help"])
            print(f"\n{prog} --catalog CATALOG --output DIR [options]: build an index")
        return self.build.run(prog, argv)


def replace_tracks(
    index: str, catalog: str, workers: int | None = None, save_every: int = 200
) -> BuildSummary:
    """Replace tracks of an index with new audio under the same ids.

    Each id must be in the index: the old track is removed and the new one added, in one
    change.

    Args:
        index: the index directory (acr index).
        catalog: a folder of audio or a CSV/JSONL table with track_id and path.
        workers: decoding processes (default: one per CPU core).
        save_every: tracks held in memory before they are written out as a segment.
    """
    return add_tracks(index, catalog, True, workers, save_every)


COMMANDS = {
    "index": IndexCommands(
        Command(build_index, show_index),
        CommandGroup(
            add=Command(add_tracks, show_index, positional=("index", "catalog")),
            replace=Command(replace_tracks, show_index, positional=("index", "catalog")),
            remove=Command(
                remove_tracks, show_removed, positional=("index",), variadic="track_ids"
            ),
            list=Command(list_index, show_listing, positional=("index",)),
            compact=Command(compact_index, show_index, positional=("index",)),
        ),
    ),
    "recognize": Command(recognize, show_recognize, variadic="files"),
    "fuse": Command(fit_fusion, show_fuse),
    "calibrate": Command(fit_calibration, show_calibrate),
}

"""Simulated query sets: degraded excerpts of catalog tracks, written as WAVs plus a table.

The table has exactly the columns ``acr evaluate`` reads: ``query_id, path, track_id,
offset_s, length_s, degradation`` (and ``degradation_params``, which is not a bucket), plus a
``strategy`` bucket when offsets come from a segment strategy other than ``random``
(acr.data.segments.strategies), and a ``suite`` bucket when the damage comes from the field
suite's independent generators (acr.augment.field). Everything is drawn from ``seed``, so the
same call writes the same queries.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from acr.audio import AudioError, load_audio, rms, save_audio
from acr.augment.degradations import (
    DEGRADATION_NAMES,
    DEGRADATIONS,
    MARGIN,
    Suite,
    UnusableExcerpt,
    check_degradations,
    check_suite,
    degrade,
)
from acr.augment.sources import recordings
from acr.data.catalogs import read_catalog
from acr.data.manifests import write_table
from acr.data.segments.analysis import TrackAnalysis, analysis_path, analyze
from acr.data.segments.strategies import (
    RandomStrategy,
    SegmentStrategy,
    StrategyName,
    get_strategy,
)
from acr.files import SKIPPED_COLUMNS, SKIPPED_FILE, output_path, safe_file_name
from acr.workers import rows_of_jobs

QUERIES_FILE = "queries.csv"
AUDIBLE_RMS = 10 ** (-45 / 20)  # excerpts quieter than -45 dBFS are re-drawn
DRAWS = 12  # offsets tried before giving up on an audible (or sung) excerpt


@dataclass(frozen=True)
class _TrackJob:
    index: int
    track_id: str
    path: str
    lengths_s: tuple[float, ...]
    degradations: tuple[str, ...]
    per_track: int
    seed: int
    sample_rate: int
    directory: str
    strategy: str = RandomStrategy.name
    analysis_file: str = ""  # the track's cached TrackAnalysis ("" = analyse, keep nothing)
    suite: str = "acr"
    speech_dir: str | None = None

    def skipped(self, reason: str) -> dict[str, str]:
        """A skipped.csv row for this track."""
        return {"track_id": self.track_id, "path": self.path, "reason": reason}


def make_queries(
    catalog: str,
    output: str,
    lengths_s: Sequence[float] = (1.0, 3.0, 10.0),
    degradations: Sequence[str] = DEGRADATION_NAMES,
    per_track: int = 1,
    seed: int = 0,
    sample_rate: int = 16000,
    max_tracks: int | None = None,
    workers: int | None = None,
    strategy: StrategyName = "random",
    out_of_catalog: str | None = None,
    suite: Suite = "acr",
    speech_dir: str | None = None,
) -> pd.DataFrame:
    """Write degraded query clips of catalog tracks and their queries.csv.

    ``per_track`` queries per (track, length, degradation). When the catalog is a table (a
    manifest), each track's segment analysis is cached beside it in ``analysis/``, shared with
    training anchors. Catalog rows that cannot be a track (an empty or unusable track_id, an
    empty path), tracks that cannot be read, or are too short for a length, are left out (of
    that length) and listed, ``track_id, path, reason``, in ``skipped.csv`` beside
    ``queries.csv`` and in the returned table's ``attrs["skipped"]``. A query's WAV is
    named from its id by acr.files.safe_file_name, so no id can write outside ``output``.

    Args:
        catalog: a folder of audio, or a CSV/JSONL with track_id and path.
        output: the query folder (queries.csv and audio/).
        lengths_s: query lengths, in seconds.
        degradations: names from the degradation registry (acr.augment.degradations).
        per_track: queries per track, length and degradation.
        seed: seeds the track sample, the excerpts and the degradations.
        sample_rate: the queries' sample rate, in Hz.
        max_tracks: a seeded sample of this many catalog tracks (default: all).
        workers: processes making queries (default: one per CPU core).
        strategy: where excerpts start, a segment strategy (acr.data.segments.strategies).
        out_of_catalog: an index the catalog's tracks are held out of: queries for acr
            calibrate and for the false-match rate of acr evaluate. Tracks the index holds
            are skipped (listed in skipped.csv), and every query has in_catalog = false. Only
            ids are compared: the same recording under another id is not found here (acr
            dedup finds it).
        suite: whose generators make the damage: ``acr`` (the ones training views share) or
            ``field`` (independent ones, acr.augment.field: espeak-ng crowds, Freeverb, Opus,
            Rubber Band, a pYIN singer), for figures that training cannot flatter. A field
            query set has a ``suite`` column, a bucket of acr evaluate.
        speech_dir: a folder of recorded speech that the field suite's crowds (noise,
            live_mix) speak instead of espeak-ng voices (experiments/fetch_speech.sh fetches
            five recorded voices).
    """
    check_degradations(degradations)
    check_suite(suite)
    if speech_dir is not None:
        if suite != "field":
            raise ValueError("speech_dir: only the field suite's crowds speak (use --suite field)")
        try:  # a missing folder, or one without audio, fails here, once
            recordings(speech_dir)
        except ValueError as error:
            raise ValueError(f"speech_dir: {error}") from error
        speech_dir = str(Path(speech_dir).expanduser().absolute())
    get_strategy(strategy)  # an unknown name fails here, not in every worker
    output = output_path(output, folder=True)
    tracks = read_catalog(catalog)
    # A table's rejected rows are named by the table and row, a folder's entries by their path.
    table_catalog = Path(catalog).is_file()
    skipped = [
        {**entry, "reason": f"{catalog}: {entry['reason']}" if table_catalog else entry["reason"]}
        for entry in tracks.attrs["rejected"]
    ]
    if out_of_catalog is not None:
        tracks, held = _held_out(tracks, out_of_catalog)
        skipped.extend(held)
    if max_tracks is not None:
        tracks = tracks.sample(n=min(max_tracks, len(tracks)), random_state=seed).sort_index()
    (output / "audio").mkdir(parents=True, exist_ok=True)
    # A folder catalog is the user's music: nothing is written into it.
    cache = Path(catalog).parent if table_catalog else None
    jobs = [
        _TrackJob(
            index,
            track_id,
            path,
            tuple(float(x) for x in lengths_s),
            tuple(degradations),
            per_track,
            seed,
            sample_rate,
            str(output),
            strategy,
            str(analysis_path(cache, track_id)) if cache else "",
            suite,
            speech_dir,
        )
        for index, (track_id, path) in enumerate(zip(tracks["track_id"], tracks["path"]))
    ]
    rows, problems = rows_of_jobs(
        _track_queries, jobs, workers, "track", "making queries", chunksize=2
    )
    skipped.extend(problems)
    table = pd.DataFrame(rows)
    if strategy != RandomStrategy.name and len(table):
        table["strategy"] = strategy
    if suite != "acr" and len(table):
        table["suite"] = suite
    if out_of_catalog is not None and len(table):
        table["in_catalog"] = False
    write_table(table, output / QUERIES_FILE)
    table.attrs["skipped"] = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS).fillna("")
    write_table(table.attrs["skipped"], output / SKIPPED_FILE)
    return table


def _held_out(tracks: pd.DataFrame, index: str) -> tuple[pd.DataFrame, list[dict[str, str]]]:
    """The catalog's tracks the index does not hold, and skipped.csv rows for those it does."""
    from acr.retrieval.store import IndexState, live_tracks  # only for out-of-catalog queries

    directory = Path(index)
    held = set(live_tracks(directory, IndexState.read(directory)))
    inside = tracks["track_id"].isin(held)
    skipped = [
        {"track_id": track_id, "path": path, "reason": f"in the index {index}: not out of catalog"}
        for track_id, path in zip(tracks["track_id"][inside], tracks["path"][inside])
    ]
    return tracks[~inside], skipped


def _track_queries(job: _TrackJob) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """All queries of one track; (rows, what could not be made: skipped.csv rows)."""
    try:
        audio = load_audio(job.path, job.sample_rate)
    except AudioError as error:
        return [], [job.skipped(error.reason)]
    strategy = get_strategy(job.strategy)
    # analysed once per track, shared by every length, degradation and repeat
    analysis = None if job.strategy == RandomStrategy.name else _analysis(job, audio)
    rows, problems = [], []
    for length_s in job.lengths_s:
        source_samples = int(round(MARGIN * length_s * job.sample_rate))  # room for a speed-up
        if len(audio) < source_samples:
            problems.append(job.skipped(f"shorter than {MARGIN * length_s:g} s"))
            continue
        for degradation in job.degradations:
            for repeat in range(job.per_track):
                rng = np.random.default_rng(
                    [
                        job.seed,
                        job.index,
                        int(length_s * 1000),
                        DEGRADATION_NAMES.index(degradation),
                        repeat,
                    ]
                )
                starts = _starts(audio, job.sample_rate, length_s, strategy, analysis, rng)
                row = _one_query(audio, job, length_s, degradation, repeat, rng, starts)
                if row is None:
                    problems.append(job.skipped(f"no {degradation} excerpt of {length_s:g} s"))
                else:
                    rows.append(row)
    return rows, problems


def _analysis(job: _TrackJob, audio: np.ndarray) -> TrackAnalysis:
    """The track's cached analysis, or a new one (cached when the job has a cache file)."""
    cached = Path(job.analysis_file) if job.analysis_file else None
    if cached and cached.is_file():
        try:
            return TrackAnalysis.load(cached)
        except ValueError:  # another ANALYSIS_VERSION: redo it
            pass
    analysis = analyze(audio, job.sample_rate)
    if cached:
        analysis.save(cached)
    return analysis


def _starts(
    audio: np.ndarray,
    sample_rate: int,
    length_s: float,
    strategy: SegmentStrategy,
    analysis: TrackAnalysis | None,
    rng: np.random.Generator,
) -> Iterator[int]:
    """Up to DRAWS excerpt starts (samples) for the source excerpt of MARGIN x length_s.

    ``random`` draws each start lazily from ``rng`` (as before strategies existed, so seeds give
    the same queries); other strategies draw DRAWS distinct starts from their best candidates.
    """
    source_length = int(round(MARGIN * length_s * sample_rate))
    if analysis is None:
        for _ in range(DRAWS):
            yield int(rng.integers(0, len(audio) - source_length + 1))
        return
    for segment in strategy.choose(analysis, source_length / sample_rate, rng, DRAWS):
        yield min(int(round(segment.start_s * sample_rate)), len(audio) - source_length)


def _one_query(
    audio: np.ndarray,
    job: _TrackJob,
    length_s: float,
    degradation: str,
    repeat: int,
    rng: np.random.Generator,
    starts: Iterable[int],
) -> dict[str, Any] | None:
    length = int(round(length_s * job.sample_rate))
    source_length = int(round(MARGIN * length_s * job.sample_rate))
    for start in starts:
        source = audio[start : start + source_length]
        if rms(source[:length]) < AUDIBLE_RMS:
            continue
        excerpt = source if DEGRADATIONS[degradation].margin else source[:length]
        try:
            query, params = degrade(
                excerpt, job.sample_rate, degradation, rng, job.suite, job.speech_dir
            )
        except UnusableExcerpt:
            continue
        query_id = f"{job.track_id}-{degradation}-{length_s:g}s-{repeat}"
        relative = Path("audio") / safe_file_name(query_id, ".wav")
        save_audio(Path(job.directory) / relative, query[:length], job.sample_rate)
        return {
            "query_id": query_id,
            "path": str(relative),
            "track_id": job.track_id,
            "offset_s": start / job.sample_rate,
            "length_s": length_s,
            "degradation": degradation,
            "degradation_params": ";".join(f"{k}={v:.4g}" for k, v in params.items()),
        }
    return None

"""Writing an index directory: a build from a catalog (parallel decoding, progress, resumable),
and the changes after it: add, replace and remove tracks, compact.

Every change writes new segments (acr.retrieval.store) under temporary names, then switches
``index.json`` atomically to list them, then deletes the segments no longer listed. A kill at
any moment leaves the previous state or the new one, and whatever it left half-written is
removed by the next writer. A build switches after every ``save_every`` tracks, so a rerun with
``--resume`` goes on from there; an add, replace or remove switches once, at the end, so a
rerun starts it again (tracks already added from the same file are not added twice).

Segments are merged as an LSM tree does (Bigtable, LevelDB): when the newest MERGE_FACTOR
segments have been merged equally often, they become one. A build of N tracks then writes each
posting about log_8(N / save_every) times, and a reader opens a handful of segments, where a
snapshot of the whole index every ``save_every`` tracks cost N^2 / save_every.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from tqdm.auto import tqdm

from acr.data.catalogs import read_catalog
from acr.data.manifests import write_table
from acr.files import SKIPPED_COLUMNS, SKIPPED_FILE, output_path, replacing, write_json
from acr.retrieval.devices import TrainerSettings
from acr.retrieval.distributed import Shards, extract_on_devices, predict_shards
from acr.retrieval.embedding import EmbeddingEngine, EmbeddingSettings
from acr.retrieval.engine import Engine, IndexDirectoryError, IndexLockedError
from acr.retrieval.extraction import Result, extract_in_workers
from acr.retrieval.fingerprint.engine import FingerprintSettings
from acr.retrieval.melody import MelodySettings
from acr.retrieval.store import (
    INDEX_FILE,
    SEGMENT_FILE,
    SEGMENT_NAME,
    IndexState,
    Segment,
    SegmentContents,
    engine_class,
    engine_names,
    live_tracks,
    read_segment,
)
from acr.status import STATUS_FILE, Heartbeat

LOCK_FILE = ".lock"  # held while a process writes the index (see index_lock)
EXTRACTING = "decoding/extracting"  # the heartbeat's stage between segments
MERGE_FACTOR = 8  # segments of one level merged into one of the next


@dataclass
class BuildSummary:
    directory: str
    engines: list[str]
    tracks: int
    skipped: int
    items: dict[str, int]
    audio_hours: float
    run_audio_s: float
    seconds: float
    index_bytes: int
    peak_rss_mb: float
    pushed: Any = None  # what acr.database.push_index did, with --database

    @property
    def real_time_factor(self) -> float:
        """Audio indexed by this run per second of this run (a resume counts only its part)."""
        return self.run_audio_s / max(self.seconds, 1e-9)

    @classmethod
    def of(cls, writer: IndexWriter, run_audio_s: float, seconds: float) -> BuildSummary:
        """The index as ``writer`` last committed it, and what this run did."""
        state = writer.state
        return cls(
            directory=str(writer.directory),
            engines=list(state.engines),
            tracks=state.tracks,
            skipped=state.skipped,
            items=state.items,
            audio_hours=state.audio_s / 3600,
            run_audio_s=run_audio_s,
            seconds=seconds,
            index_bytes=sum(_bytes(writer.directory / s.name) for s in state.segments),
            peak_rss_mb=_peak_rss_mb(),
        )


def build_index(
    catalog: str,
    output: str,
    engine: Literal["fingerprint", "embedding", "melody", "hybrid"] = "fingerprint",
    checkpoint: str | None = None,
    resume: bool = False,
    workers: int | None = None,
    save_every: int = 200,
    fingerprint: FingerprintSettings = FingerprintSettings(),  # noqa: B008 (frozen)
    embedding: EmbeddingSettings = EmbeddingSettings(),  # noqa: B008
    melody: MelodySettings = MelodySettings(),  # noqa: B008
    trainer: TrainerSettings = TrainerSettings(),  # noqa: B008
    database: str | None = None,
) -> BuildSummary | None:
    """Index every track of a catalog into an index directory, or go on with one.

    Args:
        catalog: a folder of audio (a track's id is its path below the folder without the
            extension) or a CSV/JSONL table with track_id and path.
        output: the index directory: a new or empty folder, or the index to resume.
        engine: the retrieval path to index, or hybrid for all three.
        checkpoint: an ``acr fit`` checkpoint (embedding and hybrid engines).
        resume: continue an interrupted build of ``output``, with the engines, settings and
            model it was started with.
        workers: decoding processes (default: one per CPU core).
        save_every: write a segment (what a resume goes on from) every this many tracks.
        fingerprint: the landmark engine's settings.
        embedding: the embedding engine's settings.
        melody: the melody engine's settings.
        trainer: extraction as a Lightning predict on every device and node
            (acr.retrieval.distributed); every rank runs the command, rank 0 alone writes the
            index and returns its summary, the others return None.
        database: then push the index's tracks into this PostgreSQL database
            (postgresql://...; acr.database), for services that share it.
    """
    directory = output_path(output, folder=True)
    names = engine_names(engine)
    if "embedding" in names and not checkpoint:
        raise IndexDirectoryError(
            f"engine {engine!r} needs --checkpoint CKPT (a checkpoint from `acr fit`)"
        )
    if save_every < 1:
        raise ValueError(f"save_every must be at least 1, got {save_every}")
    settings = {"fingerprint": fingerprint, "embedding": embedding, "melody": melody}
    ranks = None
    if trainer.devices is not None:
        # Loaded on the CPU, then moved to each rank's device by Lightning (each rank would
        # otherwise load it on the first GPU).
        settings["embedding"] = replace(embedding, device="cpu")
        from acr.retrieval.prediction import create_trainer

        ranks = create_trainer(trainer)  # before anything else: it knows this process's rank
        if ranks.global_rank != 0:
            engines = create_engines(names, checkpoint, settings)
            predict_shards(ranks, engines, None, workers, save_every, Shards(directory))
            return None
    tracks = read_catalog(catalog)
    with index_lock(directory):
        engines = create_engines(names, checkpoint, settings)
        writer = IndexWriter(directory, _open(directory, engines, resume, str(catalog)))
        if ranks is not None and not (directory / INDEX_FILE).is_file():
            writer.commit()  # the shards' engines and settings, for a --resume to check
        done, known = set(writer.live()), set()
        for contents in writer.contents.values():
            done |= set(contents.skipped["track_id"])
            known |= set(contents.skipped[SKIPPED_COLUMNS].itertuples(index=False, name=None))
        warn_of_catalog_size(engines, len(tracks))
        pending = Pending(writer.empty_engines(engines))
        for entry in tracks.attrs["rejected"]:  # catalog rows and entries that are no track
            if (row := tuple(entry[column] for column in SKIPPED_COLUMNS)) not in known:
                pending.skipped.append(list(row))
        jobs = [(t, p) for t, p in zip(tracks["track_id"], tracks["path"]) if t not in done]
        # Made once the directory is known to be this index, so that a refused build leaves no
        # heartbeat in someone else's folder, nor overwrites that of the build holding the lock.
        with Heartbeat(directory, "index") as heartbeat:
            if ranks is None:
                extractors = [(name, e.sample_rate, e.extractor()) for name, e in engines.items()]
                results = extract_in_workers(jobs, extractors, workers or os.cpu_count() or 1)
            else:
                results = extract_on_devices(
                    ranks, engines, jobs, len(tracks), workers, save_every, writer, heartbeat
                )
            summary = _index_tracks(
                jobs, len(tracks), writer, pending, results, save_every, heartbeat
            )
            Shards(directory).remove()  # in the index now (or left by a build's kill)
            heartbeat.finish(
                tracks=summary.tracks,
                failed=summary.skipped,
                audio_hours=summary.audio_hours,
                seconds=summary.seconds,
                items=summary.items,
                index_mb=summary.index_bytes / 1e6,
            )
    if database:
        from acr.database.push import push_index

        summary.pushed = push_index(str(directory), database)
    return summary


def _index_tracks(
    jobs: list[tuple[str, str]],
    total: int,
    writer: IndexWriter,
    pending: Pending,
    results: Iterator[Result],
    save_every: int,
    heartbeat: Heartbeat,
) -> BuildSummary:
    """Add the results of the catalog tracks not yet in the index (``jobs``, extracted as
    they are read), a segment every save_every."""
    state = writer.state
    started, audio_s = time.perf_counter(), 0.0
    audio_before_s = state.audio_s  # what a resumed build found indexed
    already_done = total - len(jobs)  # a resumed build counts from there
    heartbeat.update(stage=EXTRACTING, done=already_done, total=total, unit="tracks", force=True)
    progress = tqdm(
        total=total,
        initial=already_done,
        unit="track",
        desc=f"indexing ({'+'.join(state.engines)})",
    )
    for count, (track_id, path, features, duration_s) in enumerate(results, start=1):
        if isinstance(features, str):
            pending.skipped.append([track_id, path, features])
        else:
            pending.add(track_id, path, features, duration_s)
            audio_s += duration_s
        state.processed += 1
        progress.update()
        elapsed_s = time.perf_counter() - started
        progress.set_postfix(rt=f"{audio_s / elapsed_s:.0f}x", skipped=len(pending.skipped))
        heartbeat.update(
            stage=EXTRACTING,
            done=already_done + count,
            audio_hours=(audio_before_s + audio_s) / 3600,
            audio_hours_per_s=audio_s / 3600 / elapsed_s,
        )
        if count % save_every == 0:
            heartbeat.update(stage="writing a segment")
            pending = _write_pending(writer, pending)
    progress.close()
    state.complete = True
    heartbeat.update(stage="writing a segment")
    if pending or not state.segments:
        pending = _write_pending(writer, pending)
    else:
        writer.commit()
    return BuildSummary.of(writer, audio_s, time.perf_counter() - started)


def _write_pending(writer: IndexWriter, pending: Pending) -> Pending:
    """Write the pending tracks as a segment, list it, merge tiers, switch index.json; return
    an empty Pending for what comes next."""
    writer.state.segments.append(writer.write_segment(pending.engines, pending.contents()))
    writer.merge_tiers()
    writer.commit()
    return Pending(writer.empty_engines(pending.engines))


def warn_of_catalog_size(engines: dict[str, Engine], tracks: int) -> None:
    """Warn, before the work, of engine settings unfit for a catalog of ``tracks`` tracks."""
    fingerprint = engines.get("fingerprint")
    if fingerprint is not None and (message := fingerprint.settings.catalog_warning(tracks)):
        warnings.warn(message, stacklevel=2)


def create_engines(
    names: list[str], checkpoint: str | None, settings: dict[str, Any]
) -> dict[str, Engine]:
    """Empty engines of the given names with their settings (the embedding one loads a model)."""
    return {
        name: EmbeddingEngine(checkpoint, settings[name])
        if name == "embedding"
        else engine_class(name)(settings[name])
        for name in names
    }


@contextmanager
def index_lock(directory: Path) -> Iterator[None]:
    """Hold DIR/.lock while writing: a second writer (a build, an add, a remove, a compact)
    fails at once, naming the holder's pid, instead of racing it. The kernel drops the lock
    when its process dies, even by SIGKILL."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            raise IndexLockedError(
                f"{directory} is being written by another acr process (pid {holder}); wait"
                " for it to finish"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


build_lock = index_lock  # the name before segments


@dataclass
class Pending:
    """Tracks extracted since the last segment was written, in their engines."""

    engines: dict[str, Engine]
    track_ids: list[str] = field(default_factory=list)
    audio_s: list[float] = field(default_factory=list)
    items: dict[str, list[int]] = field(default_factory=dict)
    sources: list[list] = field(default_factory=list)
    skipped: list[list[str]] = field(default_factory=list)

    def add(self, track_id: str, path: str, features: dict[str, Any], duration_s: float) -> None:
        for name, engine_features in features.items():
            self.items.setdefault(name, []).append(
                self.engines[name].add(track_id, engine_features)
            )
        self.track_ids.append(track_id)
        self.audio_s.append(duration_s)
        self.sources.append(source_of(path))

    def contents(self) -> SegmentContents:
        items = {name: self.items.get(name, []) for name in self.engines}
        skipped = pd.DataFrame(self.skipped, columns=SKIPPED_COLUMNS)
        return SegmentContents(self.track_ids, self.audio_s, items, self.sources, skipped)

    def __bool__(self) -> bool:
        return bool(self.track_ids or self.skipped)


def source_of(path: str) -> list:
    """What identifies the file a track was read from: its path, size and modification time
    (an add run again after a kill skips the tracks it added from the same file)."""
    try:
        stat = os.stat(path)
        return [str(path), stat.st_size, stat.st_mtime_ns]
    except OSError:
        return [str(path), -1, -1]


class IndexWriter:
    """The one writer of an index directory (the caller holds :func:`index_lock`)."""

    def __init__(self, directory: Path, state: IndexState) -> None:
        self.directory = directory
        self.state = state
        self.contents = {s.name: read_segment(directory, s) for s in state.segments}
        self.remove_unlisted()

    def empty_engines(self, engines: dict[str, Engine]) -> dict[str, Engine]:
        return {name: engine.empty() for name, engine in engines.items()}

    def write_segment(
        self, engines: dict[str, Engine], contents: SegmentContents, level: int = 0
    ) -> Segment:
        """Write the engines' live tracks as a new segment; not listed until :meth:`commit`."""
        name = f"segment-{self.state.next_segment:06d}"
        self.state.next_segment += 1
        with replacing(self.directory / name) as temporary:
            temporary.mkdir()
            for engine_name, engine in engines.items():
                engine.save(temporary / engine_name)
            write_json(temporary / SEGMENT_FILE, contents.to_json(), indent=None)
            write_table(contents.skipped, temporary / SKIPPED_FILE)
        for engine_name, engine in engines.items():
            engine.saved(self.directory / name / engine_name)
        self.contents[name] = contents
        return Segment(name, len(contents.track_ids), [], level)

    def merge(self, segments: list[Segment]) -> Segment:
        """One segment holding the live tracks of ``segments`` (consecutive, in order)."""
        engines = {
            name: engine_class(name).open(
                [self.directory / segment.name / name for segment in segments],
                [segment.removed for segment in segments],
            )
            for name in self.state.engines
        }
        merged = SegmentContents([], [], {name: [] for name in self.state.engines}, [], None)
        skipped = []
        for segment in segments:
            contents = self.contents[segment.name]
            removed = set(segment.removed)
            for position, track_id in enumerate(contents.track_ids):
                if track_id in removed:
                    continue
                merged.track_ids.append(track_id)
                merged.audio_s.append(contents.audio_s[position])
                merged.sources.append(contents.sources[position])
                for name in merged.items:
                    merged.items[name].append(contents.items[name][position])
            skipped.append(contents.skipped)
        merged.skipped = pd.concat(skipped, ignore_index=True)
        return self.write_segment(engines, merged, max(s.level for s in segments) + 1)

    def merge_tiers(self) -> None:
        """While the newest MERGE_FACTOR segments are of one level, merge them."""
        segments = self.state.segments
        while (
            len(segments) >= MERGE_FACTOR and len({s.level for s in segments[-MERGE_FACTOR:]}) == 1
        ):
            merged = self.merge(segments[-MERGE_FACTOR:])
            segments[-MERGE_FACTOR:] = [merged]

    def live(self) -> dict[str, tuple[Segment, int]]:
        return live_tracks(self.directory, self.state)

    def commit(self) -> None:
        """Switch index.json to the state (atomically), then delete what it no longer lists."""
        state = self.state
        listed = [(segment, self.contents[segment.name]) for segment in state.segments]
        state.tracks = state.skipped = 0
        state.audio_s = 0.0
        state.items = {name: 0 for name in state.engines}
        for segment, contents in listed:
            removed = set(segment.removed)
            for position, track_id in enumerate(contents.track_ids):
                if track_id not in removed:
                    state.tracks += 1
                    state.audio_s += contents.audio_s[position]
                    for name in state.items:
                        state.items[name] += int(contents.items[name][position])
            state.skipped += len(contents.skipped)
        state.write(self.directory)
        skipped = [contents.skipped for _, contents in listed]
        all_skipped = pd.concat(skipped, ignore_index=True) if skipped else None
        write_table(
            all_skipped if all_skipped is not None else pd.DataFrame(columns=SKIPPED_COLUMNS),
            self.directory / SKIPPED_FILE,
        )
        self.remove_unlisted()

    @contextmanager
    def change(self) -> Iterator[IndexWriter]:
        """A change that switches index.json at most once, at its end: on an error, what it
        wrote is removed and the index stays as index.json says."""
        try:
            yield self
        except BaseException:
            self.state = IndexState.read(self.directory)
            self.remove_unlisted()
            raise

    def remove_unlisted(self) -> None:
        """Segments index.json does not list: written by a change that was killed before it
        switched, or replaced by a merge. A reader that opened one keeps its mapped pages; one
        that was about to follows index.json again (acr.retrieval.store.load_engines)."""
        listed = {segment.name for segment in self.state.segments}
        for path in self.directory.iterdir():
            stale_temporary = path.name.startswith(".segment-") and path.name.endswith(".tmp")
            if stale_temporary or (SEGMENT_NAME.fullmatch(path.name) and path.name not in listed):
                shutil.rmtree(path, ignore_errors=True)
                self.contents.pop(path.name, None)


def _open(directory: Path, engines: dict[str, Engine], resume: bool, catalog: str) -> IndexState:
    """The state of a new index of ``engines``, or, with ``resume``, of the existing one, which
    must have been started with the same engines and settings."""
    if (directory / INDEX_FILE).is_file():
        if not resume:
            raise IndexDirectoryError(
                f"{directory} already holds an index; pass --resume true to continue "
                "it, `acr index add` to add tracks, or choose another --output"
            )
        state = IndexState.read(directory)
        _check_same_settings(directory, state, engines)
        state.complete = False
        return state
    leftovers = [
        path
        for path in directory.iterdir()
        if path.name not in (LOCK_FILE, STATUS_FILE)
        and not (path.name.startswith(".segment-") or SEGMENT_NAME.fullmatch(path.name))
    ]
    if leftovers:
        raise IndexDirectoryError(
            f"{directory} exists and is not an acr index; choose an empty folder"
        )
    return IndexState(
        engines={name: e.recorded_settings() for name, e in engines.items()}, catalog=catalog
    )


def _check_same_settings(directory: Path, state: IndexState, engines: dict[str, Engine]) -> None:
    """A resumed build must add tracks exactly as the first part did."""
    if sorted(state.engines) != sorted(engines):
        raise IndexDirectoryError(
            f"{directory} was built with engines {sorted(state.engines)}, not {sorted(engines)}"
        )
    for name, engine in engines.items():
        requested = json.loads(json.dumps(engine.recorded_settings()))
        # A setting added since the build started was what UNRECORDED says.
        recorded = {**getattr(engine.settings, "UNRECORDED", {}), **state.engines[name]}
        for key, value in requested.items():
            if key == "checkpoint" or recorded.get(key) == value:
                continue  # the same model may sit at another path
            if key == "checkpoint_sha256":
                raise IndexDirectoryError(
                    f"{directory} was built with another model than {engine.checkpoint}"
                )
            raise IndexDirectoryError(
                f"{directory} was built with {name}.{key}={recorded.get(key)!r}, not {value!r};"
                " resume with the settings it was started with"
            )


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest finished worker."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + workers) / 1024  # Linux reports KiB


def _bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())

"""Building an index directory from a catalog: parallel decoding, progress, resumable snapshots.

A snapshot is written completely before ``index.json`` (acr.retrieval.store) is atomically
replaced to point at it, and only then is the previous snapshot deleted; a kill at any moment
leaves a consistent index to ``--resume`` from, with no track lost or added twice.
"""

from __future__ import annotations

import fcntl
import json
import os
import resource
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
from tqdm.auto import tqdm

from acr.data.catalogs import read_catalog
from acr.data.manifests import write_table
from acr.files import SKIPPED_COLUMNS, SKIPPED_FILE, output_path, replacing
from acr.retrieval.embedding import EmbeddingEngine, EmbeddingSettings
from acr.retrieval.engine import Engine, IndexDirectoryError
from acr.retrieval.extraction import extract_in_workers
from acr.retrieval.fingerprint.engine import FingerprintSettings
from acr.retrieval.melody import MelodySettings
from acr.retrieval.store import (
    INDEX_FILE,
    IndexState,
    engine_class,
    engine_names,
    load_engines,
    read_skipped,
)
from acr.status import STATUS_FILE, Heartbeat

LOCK_FILE = ".lock"  # held while a build writes (see build_lock)
EXTRACTING = "decoding/extracting"  # the heartbeat's stage between snapshots


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

    @property
    def real_time_factor(self) -> float:
        """Audio indexed by this run per second of this run (a resume counts only its part)."""
        return self.run_audio_s / max(self.seconds, 1e-9)


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
) -> BuildSummary:
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
        save_every: snapshot the index every this many tracks.
        fingerprint: the landmark engine's settings.
        embedding: the embedding engine's settings.
        melody: the melody engine's settings.
    """
    directory = output_path(output, folder=True)
    tracks = read_catalog(catalog)
    names = engine_names(engine)
    if "embedding" in names and not checkpoint:
        raise IndexDirectoryError(
            f"engine {engine!r} needs --checkpoint CKPT (a checkpoint from `acr fit`)"
        )
    settings = {"fingerprint": fingerprint, "embedding": embedding, "melody": melody}
    with build_lock(directory):
        engines, state, skipped = _open(
            directory, create_engines(names, checkpoint, settings), resume, str(catalog)
        )
        known = set(skipped[SKIPPED_COLUMNS].itertuples(index=False, name=None))
        for entry in tracks.attrs["rejected"]:  # catalog rows and entries that are no track
            if (row := tuple(entry[column] for column in SKIPPED_COLUMNS)) not in known:
                skipped.loc[len(skipped)] = list(row)
        # Made once the directory is known to be this index, so that a refused build leaves no
        # heartbeat in someone else's folder, nor overwrites that of the build holding the lock.
        with Heartbeat(directory, "index") as heartbeat:
            summary = _index_tracks(
                tracks, directory, engines, state, skipped, workers, save_every, heartbeat
            )
            heartbeat.finish(
                tracks=summary.tracks,
                failed=summary.skipped,
                audio_hours=summary.audio_hours,
                seconds=summary.seconds,
                items=summary.items,
                index_mb=summary.index_bytes / 1e6,
            )
    return summary


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
def build_lock(directory: Path) -> Iterator[None]:
    """Hold DIR/.lock for the whole build: a second ``acr index`` on the same directory (say, a
    ``--resume`` while the first still runs) fails at once instead of racing it. The kernel
    drops the lock when its process dies, even by SIGKILL."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexDirectoryError(
                f"{directory} is being written by another acr index"
            ) from None
        yield


def _index_tracks(
    tracks: pd.DataFrame,
    directory: Path,
    engines: dict[str, Engine],
    state: IndexState,
    skipped: pd.DataFrame,
    workers: int | None,
    save_every: int,
    heartbeat: Heartbeat,
) -> BuildSummary:
    """Extract and add the catalog tracks not yet in the engines, snapshotting as it goes."""
    done = set(skipped["track_id"]) | {t for e in engines.values() for t in e.track_ids}
    jobs = [(t, p) for t, p in zip(tracks["track_id"], tracks["path"]) if t not in done]
    extractors = [(name, e.sample_rate, e.extractor()) for name, e in engines.items()]
    started, audio_s = time.perf_counter(), 0.0
    already_done = len(tracks) - len(jobs)  # a resumed build counts from there
    heartbeat.update(
        stage=EXTRACTING, done=already_done, total=len(tracks), unit="tracks", force=True
    )
    progress = tqdm(
        total=len(tracks),
        initial=already_done,
        unit="track",
        desc=f"indexing ({'+'.join(engines)})",
    )
    for count, (track_id, path, features, duration_s) in enumerate(
        extract_in_workers(jobs, extractors, workers or os.cpu_count() or 1), start=1
    ):
        if isinstance(features, str):
            skipped.loc[len(skipped)] = [track_id, path, features]
        else:
            for name, engine_features in features.items():
                engines[name].add(track_id, engine_features)
            audio_s += duration_s
            state.audio_s += duration_s
        state.processed += 1
        progress.update()
        elapsed_s = time.perf_counter() - started
        progress.set_postfix(rt=f"{audio_s / elapsed_s:.0f}x", skipped=len(skipped))
        heartbeat.update(
            stage=EXTRACTING,
            done=already_done + count,
            skipped=len(skipped),
            audio_hours=state.audio_s / 3600,
            audio_hours_per_s=audio_s / 3600 / elapsed_s,
        )
        if count % save_every == 0:
            heartbeat.update(stage="saving snapshot")
            _snapshot(directory, engines, state, skipped)
    progress.close()
    state.complete = True
    heartbeat.update(stage="saving snapshot")
    _snapshot(directory, engines, state, skipped)
    return BuildSummary(
        directory=str(directory),
        engines=list(engines),
        tracks=state.tracks,
        skipped=state.skipped,
        items=state.items,
        audio_hours=state.audio_s / 3600,
        run_audio_s=audio_s,
        seconds=time.perf_counter() - started,
        index_bytes=_bytes(directory / state.snapshot),
        peak_rss_mb=_peak_rss_mb(),
    )


def _open(
    directory: Path, engines: dict[str, Engine], resume: bool, catalog: str
) -> tuple[dict[str, Engine], IndexState, pd.DataFrame]:
    """The fresh ``engines`` for a new index, or, with ``resume``, the last snapshot of an
    existing one, which must have been started with the same engines and settings."""
    if (directory / INDEX_FILE).is_file():
        if not resume:
            raise IndexDirectoryError(
                f"{directory} already holds an index; pass --resume true to continue "
                "it or choose another --output"
            )
        state = IndexState.read(directory)
        _check_same_settings(directory, state, engines)
        _remove_orphan_snapshots(directory, state.snapshot)
        state.complete = False
        return load_engines(directory), state, read_skipped(directory / state.snapshot)
    _remove_orphan_snapshots(directory, keep="")
    if any(path.name not in (LOCK_FILE, STATUS_FILE) for path in directory.iterdir()):
        raise IndexDirectoryError(
            f"{directory} exists and is not an acr index; choose an empty folder"
        )
    state = IndexState(
        engines={name: e.recorded_settings() for name, e in engines.items()}, catalog=catalog
    )
    return engines, state, pd.DataFrame(columns=SKIPPED_COLUMNS)


def _check_same_settings(directory: Path, state: IndexState, engines: dict[str, Engine]) -> None:
    """A resumed build must add tracks exactly as the first part did."""
    if sorted(state.engines) != sorted(engines):
        raise IndexDirectoryError(
            f"{directory} was built with engines {sorted(state.engines)}, not {sorted(engines)}"
        )
    for name, engine in engines.items():
        requested = json.loads(json.dumps(engine.recorded_settings()))
        recorded = state.engines[name]
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


def _remove_orphan_snapshots(directory: Path, keep: str) -> None:
    """Snapshots that index.json does not point at: a kill came between writing one and
    switching to it, or before deleting the one before. They hold nothing the index needs."""
    for path in [*directory.glob(".snapshot-*.tmp"), *directory.glob("snapshot-*")]:
        if path.name != keep:
            shutil.rmtree(path)


def _snapshot(
    directory: Path, engines: dict[str, Engine], state: IndexState, skipped: pd.DataFrame
) -> None:
    """Write a complete snapshot, point index.json at it, then drop the previous one (a reader
    that was pointed at that one follows index.json again: acr.retrieval.store.load_engines).

    With no track processed since the last snapshot, only index.json is written again: the
    build may have finished just after it (``complete``)."""
    previous = state.snapshot
    name = f"snapshot-{state.processed:06d}"
    if name != previous:
        with replacing(directory / name) as temporary:
            for engine_name, engine in engines.items():
                engine.save(temporary / engine_name)
            write_table(skipped, temporary / SKIPPED_FILE)
    state.snapshot = name
    state.tracks = len(next(iter(engines.values())).track_ids)
    state.items = {engine_name: engine.item_count for engine_name, engine in engines.items()}
    state.skipped = len(skipped)
    state.write(directory)
    write_table(skipped, directory / SKIPPED_FILE)  # the user-facing copy
    if previous and previous != name:
        shutil.rmtree(directory / previous, ignore_errors=True)


def _peak_rss_mb() -> float:
    """Peak resident memory of this process and of its largest finished worker."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + workers) / 1024  # Linux reports KiB


def _bytes(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())

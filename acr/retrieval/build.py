"""Building an index directory from a catalog: parallel decoding, progress, resumable snapshots.

Layout of an index directory::

    index.json        engines and their settings, model hash, acr version, totals, snapshot
    skipped.csv       tracks that could not be indexed, with the reason
    snapshot-NNNNNN/  the engines' state after NNNNNN catalog tracks were processed
    fusion.json       optional, written by ``acr fuse``
    .lock             held by the build that is writing (a second one is refused)
    status.json       the build's heartbeat, for ``acr status`` (acr.status)

A snapshot is written completely before ``index.json`` is atomically replaced to point at it,
and only then is the previous snapshot deleted; a kill at any moment leaves a consistent index
to ``--resume`` from, with no track lost or added twice.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

import acr
from acr.data.manifests import read_catalog, write_table
from acr.retrieval.embedding import EmbeddingEngine
from acr.retrieval.engine import Engine, IndexError_
from acr.retrieval.extraction import extract_in_workers
from acr.retrieval.fingerprint.engine import FingerprintEngine
from acr.retrieval.melody import MelodyEngine
from acr.status import STATUS_FILE, Heartbeat

INDEX_FILE = "index.json"
SKIPPED_FILE = "skipped.csv"
LOCK_FILE = ".lock"  # held while a build writes (see build_lock)
EXTRACTING = "decoding/extracting"  # the heartbeat's stage between snapshots
ENGINE_CLASSES: dict[str, type[Engine]] = {
    "fingerprint": FingerprintEngine,
    "embedding": EmbeddingEngine,
    "melody": MelodyEngine,
}
HYBRID = ("fingerprint", "embedding", "melody")


def engine_names(engine: str, checkpoint: str | None) -> list[str]:
    """``hybrid`` is all engines; the embedding engine needs a model."""
    names = list(HYBRID) if engine == "hybrid" else [engine]
    unknown = [name for name in names if name not in ENGINE_CLASSES]
    if unknown:
        raise IndexError_(
            f"unknown engine {unknown[0]!r}; choose from {', '.join([*ENGINE_CLASSES, 'hybrid'])}"
        )
    if "embedding" in names and not checkpoint:
        raise IndexError_(f"engine {engine!r} needs --model CKPT (a checkpoint from `acr fit`)")
    return names


def create_engines(names: list[str], checkpoint: str | None) -> dict[str, Engine]:
    return {
        name: EmbeddingEngine(checkpoint) if name == "embedding" else ENGINE_CLASSES[name]()
        for name in names
    }


@dataclass
class IndexState:
    """What ``index.json`` records."""

    engines: dict[str, dict[str, Any]]
    snapshot: str = ""
    processed: int = 0
    tracks: int = 0
    skipped: int = 0
    items: dict[str, int] = field(default_factory=dict)
    audio_s: float = 0.0
    complete: bool = False
    acr_version: str = acr.__version__
    catalog: str = ""
    updated: str = ""

    @classmethod
    def read(cls, directory: Path) -> IndexState:
        path = directory / INDEX_FILE
        if not path.is_file():
            raise IndexError_(f"{directory}: not an acr index (no {INDEX_FILE})")
        return cls(**json.loads(path.read_text()))

    def write(self, directory: Path) -> None:
        self.updated = datetime.now(UTC).isoformat(timespec="seconds")
        temporary = directory / f".{INDEX_FILE}.tmp"
        temporary.write_text(json.dumps(self.__dict__, indent=2))
        os.replace(temporary, directory / INDEX_FILE)  # atomic on POSIX


def load_engines(directory: str | Path) -> dict[str, Engine]:
    """The engines of an index directory, as of its last snapshot."""
    directory = Path(directory)
    state = IndexState.read(directory)
    snapshot = directory / state.snapshot
    return {name: ENGINE_CLASSES[name].load(snapshot / name) for name in state.engines}


def _read_skipped(directory: Path) -> pd.DataFrame:
    path = directory / SKIPPED_FILE
    if path.is_file():
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.DataFrame(columns=["track_id", "path", "reason"])


# -- the build -------------------------------------------------------------------------------
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
    catalog: str | Path,
    directory: str | Path,
    engine: str = "fingerprint",
    checkpoint: str | None = None,
    resume: bool = False,
    workers: int | None = None,
    save_every: int = 200,
) -> BuildSummary:
    """Index every track of ``catalog`` into ``directory`` (see the module docstring)."""
    directory = Path(directory)
    tracks = read_catalog(catalog)
    names = engine_names(engine, checkpoint)
    with build_lock(directory):
        return _build(tracks, directory, names, checkpoint, resume, workers, save_every, catalog)


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
            raise IndexError_(f"{directory} is being written by another acr index") from None
        yield


def _build(
    tracks: pd.DataFrame,
    directory: Path,
    names: list[str],
    checkpoint: str | None,
    resume: bool,
    workers: int | None,
    save_every: int,
    catalog: str | Path,
) -> BuildSummary:
    engines, state, skipped = _open(directory, names, checkpoint, resume, str(catalog))
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
    directory: Path, names: list[str], checkpoint: str | None, resume: bool, catalog: str
) -> tuple[dict[str, Engine], IndexState, pd.DataFrame]:
    """Fresh engines for a new index, or the last snapshot of an existing one (``resume``)."""
    if (directory / INDEX_FILE).is_file():
        if not resume:
            raise IndexError_(
                f"{directory} already holds an index; pass --resume to continue "
                "it or choose another --output"
            )
        state = IndexState.read(directory)
        if sorted(state.engines) != sorted(names):
            raise IndexError_(
                f"{directory} was built with engines {sorted(state.engines)}, not {sorted(names)}"
            )
        _remove_orphan_snapshots(directory, state.snapshot)
        engines = load_engines(directory)
        embedding = engines.get("embedding")
        if embedding is not None and checkpoint:
            requested = EmbeddingEngine.checkpoint_digest(checkpoint)
            if requested != embedding.checkpoint_sha256:
                raise IndexError_(f"{directory} was built with another model than {checkpoint}")
        state.complete = False
        return engines, state, _read_skipped(directory / state.snapshot)
    _remove_orphan_snapshots(directory, keep="")
    if any(path.name not in (LOCK_FILE, STATUS_FILE) for path in directory.iterdir()):
        raise IndexError_(f"{directory} exists and is not an acr index; choose an empty folder")
    directory.mkdir(parents=True, exist_ok=True)
    engines = create_engines(names, checkpoint)
    state = IndexState(engines={name: e.settings() for name, e in engines.items()}, catalog=catalog)
    return engines, state, pd.DataFrame(columns=["track_id", "path", "reason"])


def _remove_orphan_snapshots(directory: Path, keep: str) -> None:
    """Snapshots that index.json does not point at: a kill came between writing one and
    switching to it, or before deleting the one before. They hold nothing the index needs."""
    for path in [*directory.glob(".snapshot-*.tmp"), *directory.glob("snapshot-*")]:
        if path.name != keep:
            shutil.rmtree(path)


def _snapshot(
    directory: Path, engines: dict[str, Engine], state: IndexState, skipped: pd.DataFrame
) -> None:
    """Write a complete snapshot, point index.json at it, then drop the previous one."""
    previous = state.snapshot
    name = f"snapshot-{state.processed:06d}"
    if name == previous:
        return
    temporary = directory / f".{name}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    for engine_name, engine in engines.items():
        engine.save(temporary / engine_name)
    write_table(skipped, temporary / SKIPPED_FILE)
    os.replace(temporary, directory / name)
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

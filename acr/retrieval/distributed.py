"""An index's extraction on every device and node: ``acr index --trainer.devices N`` decodes the
catalog and runs the embedding model as a Lightning ``predict``, each rank a share of the tracks.

Every rank runs the whole command (Lightning's launcher runs the command line again for the
other ranks of a node; torchrun and SLURM start them all), so a build asks the Trainer its
global rank before anything else: rank 0 alone locks, opens and writes the index, the others
only extract. Each rank writes what it extracted to shard files in ``DIR/.extracted`` (atomically,
``save_every`` tracks a file); after a barrier rank 0 adds them to the index in catalog order,
through the loop a one-process build uses (acr.retrieval.build), then removes the folder. A
killed build leaves its shards: ``--resume`` extracts only the tracks none of them holds.

Lightning is imported only when a build asks for devices (acr.retrieval.prediction); what
``--trainer`` sets is acr.retrieval.devices.
"""

from __future__ import annotations

import functools
import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from acr.files import replacing
from acr.retrieval.engine import Engine
from acr.retrieval.extraction import Result

if TYPE_CHECKING:
    from lightning import Trainer

    from acr.retrieval.build import IndexWriter
    from acr.status import Heartbeat

SHARD_FOLDER = ".extracted"  # in the index directory, while a distributed build runs


class Shards:
    """What the ranks extracted, in ``DIR/.extracted``: pickle files that hold a list of track
    ids, then the results of those tracks (the ids read alone, without the features)."""

    def __init__(self, directory: Path) -> None:
        self.folder = Path(directory) / SHARD_FOLDER

    def files(self) -> list[Path]:
        """The complete shards (a shard being written has a hidden temporary name)."""
        return sorted(self.folder.glob("shard-*.pkl")) if self.folder.is_dir() else []

    def track_ids(self) -> dict[str, Path]:
        """Each extracted track and the shard that holds it (the first, if several do)."""
        where: dict[str, Path] = {}
        for path in self.files():
            with open(path, "rb") as stream:
                for track_id in pickle.load(stream):
                    where.setdefault(track_id, path)
        return where

    def write(self, results: list[Result], rank: int) -> None:
        name = f"shard-{rank:05d}-{uuid.uuid4().hex[:16]}.pkl"
        with replacing(self.folder / name) as temporary, open(temporary, "wb") as stream:
            pickle.dump([result[0] for result in results], stream, pickle.HIGHEST_PROTOCOL)
            pickle.dump(results, stream, pickle.HIGHEST_PROTOCOL)

    def results(self, jobs: list[tuple[str, str]], open_shards: int) -> Iterator[Result]:
        """Every job's result, in the jobs' order, reading each shard as few times as
        ``open_shards`` shards held at once allow (the ranks' shards interleave the catalog)."""
        where = self.track_ids()
        read = functools.lru_cache(maxsize=open_shards)(_read_shard)
        for track_id, _ in jobs:
            if track_id not in where:
                raise RuntimeError(f"no rank extracted track {track_id!r} (see {self.folder})")
            yield read(where[track_id])[track_id]

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _read_shard(path: Path) -> dict[str, Result]:
    with open(path, "rb") as stream:
        pickle.load(stream)  # the ids
        results = pickle.load(stream)
    return {result[0]: result for result in reversed(results)}  # a repeat: the first wins


def extract_on_devices(
    ranks: Trainer,
    engines: dict[str, Engine],
    jobs: list[tuple[str, str]],
    total: int,
    workers: int | None,
    save_every: int,
    writer: IndexWriter,
    heartbeat: Heartbeat,
) -> Iterator[Result]:
    """Rank 0's part of a build: extract, on every rank, the jobs no shard holds yet, then
    yield every job's result from the shards, in catalog order, for the build to add."""
    shards = Shards(writer.directory)
    written = shards.track_ids()
    missing = [job for job in jobs if job[0] not in written]
    stage = f"decoding/extracting on {ranks.world_size} processes"
    first = total - len(missing)

    def progress(extracted_here: int) -> None:  # an estimate: the ranks' shares are equal
        done = min(first + extracted_here * ranks.world_size, total)
        heartbeat.update(stage=stage, done=done, audio_hours=writer.state.audio_s / 3600)

    progress(0)
    predict_shards(ranks, engines, missing, workers, save_every, shards, progress)
    yield from shards.results(jobs, open_shards=2 * ranks.world_size)


def predict_shards(
    trainer: Trainer,
    engines: dict[str, Engine],
    jobs: list[tuple[str, str]] | None,
    workers: int | None,
    save_every: int,
    shards: Shards,
    progress: Callable[[int], None] | None = None,
) -> None:
    """Every rank's part: the Lightning predict that writes this rank's share of ``jobs`` (rank
    0's list; the other ranks pass None and receive it) to shards, ``save_every`` tracks a
    shard; returns once every rank has written its last one. ``progress`` hears how many tracks
    this rank has extracted."""
    from acr.retrieval.prediction import PendingTracks, ShardWriter, WindowEmbedder

    extractors = [(name, e.sample_rate, e.extractor()) for name, e in engines.items()]
    per_device = workers or max((os.cpu_count() or 1) // trainer.num_devices, 1)
    trainer.callbacks.append(ShardWriter(shards, save_every, progress))
    trainer.predict(
        WindowEmbedder(engines.get("embedding")),
        datamodule=PendingTracks(jobs, extractors, per_device),
        return_predictions=False,
    )

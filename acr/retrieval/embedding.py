"""The embedding engine: a trained embedder's sliding-window vectors in an HNSW index.

The windows must be the ones the model was trained on: every ``acr fit`` checkpoint records its
data's window length and hops (EmbedderModule.retrieval_windows), and the engine takes them
from there; asking for another window length is an error.

torch is imported by the engine, not the module: the settings are part of every ``acr index``
command line, and a fingerprint or melody index never needs torch (500 MB and seconds).
"""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from acr.audio import Resampled, fit_length, window_starts
from acr.files import sha256_file, write_json
from acr.retrieval.engine import (
    AudioPassthrough,
    Engine,
    IndexDirectoryError,
    TrackMatch,
    check_index,
    read_index_json,
    read_settings,
    reading,
)
from acr.retrieval.neighbors import Backend, SearchSettings
from acr.retrieval.windows import WindowIndex

MODEL_FILE = "model.ckpt"
SETTINGS_FILE = "settings.json"


@dataclass(frozen=True)
class EmbeddingSettings:
    """Settings of the embedding engine; the window and hops default to the checkpoint's.

    Args:
        window_s: window length in seconds; by default the one the checkpoint was trained on,
            which a different value contradicts (an error). Checkpoints from before acr
            recorded it need it given.
        hop_s: catalog window hop in seconds; by default the checkpoint's validation hop (Chang
            et al. 2021: 0.5 s), else half the window.
        query_hop_s: query window hop in seconds, denser than the catalog's so that some query
            window lines up; by default the checkpoint's, else a quarter of the window.
        neighbors: catalog windows retrieved per query window before voting.
        rescore: the (track, offset) cells with the most votes that are scored again with
            every query window against the track's windows at that offset (Chang et al.'s
            sequence search); 0 keeps the votes of the neighbours alone.
        batch_size: windows per forward pass; by default 64 on a CPU (the fastest on 2 cores,
            measured, and a quarter of 256's memory) and 512 on a GPU.
        device: where this process runs the model: cpu, cuda or auto (not recorded in the
            index).
        backend: the window search: hnsw (hnswlib, the default), flat (FAISS, exact) or ivfpq
            (FAISS inverted lists of product-quantised codes, pq_m bytes per window).
        nlist: IVF-PQ coarse cells (fewer when there are fewer than 39 training windows per
            cell).
        pq_m: IVF-PQ bytes per window (sub-quantisers); must divide the embedding size.
        nbits: IVF-PQ bits per sub-quantiser code; 4 scans them with FAISS's fast-scan
            kernels (pq_m 64 at 4 bits: the bytes of 32 at 8, scanned ~8x faster).
        nprobe: IVF-PQ cells visited per query window.
        train_windows: IVF-PQ training sample, in windows of the first segment written.
    """

    window_s: float | None = None
    hop_s: float | None = None
    query_hop_s: float | None = None
    neighbors: int = 20
    rescore: int = 32
    batch_size: int | None = None
    device: str = "auto"
    backend: Backend = "hnsw"
    nlist: int = 1024
    pq_m: int = 32
    nbits: int = 8
    nprobe: int = 32
    train_windows: int = 65536

    def __post_init__(self) -> None:
        """Settings that cannot work fail here, when a command line or an index is read."""
        if self.neighbors < 1:
            raise ValueError(f"neighbors must be >= 1, got {self.neighbors}")
        if self.rescore < 0:
            raise ValueError(f"rescore must be >= 0 (0: off), got {self.rescore}")

    @property
    def search(self) -> SearchSettings:
        return SearchSettings(
            backend=self.backend,
            nlist=self.nlist,
            pq_m=self.pq_m,
            nbits=self.nbits,
            nprobe=self.nprobe,
            train_windows=self.train_windows,
        )


@dataclass(frozen=True)
class Windows:
    """A clip's windows, cut one batch at a time: all of them at once would be
    ``window_s / hop_s`` times the audio (0.9 GB for a 2-hour track at a 0.5-s hop), and a long
    catalog track is not even in memory (acr.audio.Resampled reads the span a batch needs)."""

    read: Callable[[int, int], np.ndarray]  # samples [start, stop) of the audio
    starts: np.ndarray  # the first sample of each window
    window_samples: int

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, rows: slice) -> np.ndarray:
        starts = self.starts[rows]
        if len(starts) == 0:
            return np.zeros((0, self.window_samples), np.float32)
        first, stop = starts[0], starts[-1] + self.window_samples
        span = fit_length(self.read(first, stop), stop - first)  # zeros past the end
        view = np.lib.stride_tricks.sliding_window_view(span, self.window_samples)
        return np.ascontiguousarray(view[starts - first])


@dataclass(frozen=True)
class EmbeddedWindows:
    """A catalog track's window vectors and their start times, embedded where it was decoded
    (a rank of a distributed build): adding them to an index needs no model."""

    vectors: np.ndarray  # [windows, embed_dim], unit rows
    starts_s: np.ndarray


class EmbeddingEngine(Engine):
    """Windows of ``window_s`` every ``hop_s`` embedded by the model and searched with HNSW.

    ``checkpoint`` is an ``acr fit`` checkpoint; it is copied into the index so the index
    stands alone.
    """

    name = "embedding"

    def __init__(self, checkpoint: str | Path, settings: EmbeddingSettings | None = None) -> None:
        import torch

        from acr.models.trained import load_encoder

        settings = settings or EmbeddingSettings()
        device = settings.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        with reading(Path(checkpoint)):
            trained = load_encoder(checkpoint, device)
        self.encoder = trained.encoder
        self._sample_rate = trained.sample_rate
        self.batch_size = _batch_size(settings, device)
        self.checkpoint = str(checkpoint)
        # Kept in memory: the first part an index writes gets a copy, the others a link to it.
        self._checkpoint_bytes = Path(checkpoint).read_bytes()
        self._model_copy: Path | None = None
        self.checkpoint_sha256 = sha256_file(checkpoint)
        self.device = device
        self.settings = _with_checkpoint_windows(settings, trained.retrieval_windows, checkpoint)
        self.window_samples = int(round(self.settings.window_s * self.sample_rate))
        silence = np.zeros((1, self.window_samples), np.float32)
        self.embed_dim = self.embed(silence).shape[1]
        self.index = WindowIndex(self.embed_dim, self.settings.search)

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def recorded_settings(self) -> dict[str, Any]:
        settings = {key: value for key, value in asdict(self.settings).items() if key != "device"}
        return {
            "checkpoint": self.checkpoint,
            "checkpoint_sha256": self.checkpoint_sha256,
            **settings,
        }

    def extractor(self) -> AudioPassthrough:
        # Windows are cut in the main process, next to the model: they never cross processes.
        return AudioPassthrough()

    def embed(self, windows: np.ndarray | Windows) -> np.ndarray:
        """Unit embeddings of ``[n, window_samples]`` audio, in batches."""
        import torch

        parts = []
        batch_size = self.batch_size
        with torch.inference_mode():
            for first in range(0, len(windows), batch_size):
                batch = torch.from_numpy(windows[first : first + batch_size]).to(self.device)
                parts.append(self.encoder(batch).float().cpu().numpy())
        return np.concatenate(parts)

    def windows(self, audio: np.ndarray | Resampled, hop_s: float) -> tuple[Windows, np.ndarray]:
        """The ``[n, window_samples]`` windows every ``hop_s`` (cut a batch at a time) and
        their start times."""
        if isinstance(audio, np.ndarray):
            read: Callable[[int, int], np.ndarray] = functools.partial(
                _span, np.asarray(audio, np.float32)
            )
        else:
            read = audio
        starts_s = window_starts(len(audio) / self.sample_rate, self.settings.window_s, hop_s)
        starts = np.round(starts_s * self.sample_rate).astype(int)
        return Windows(read, starts, self.window_samples), starts_s

    def add(self, track_id: str, features: np.ndarray | Resampled | EmbeddedWindows) -> int:
        """Index a track's windows; ``features`` is its audio, for a long track the file read
        in spans (AudioPassthrough.in_spans), or its windows embedded elsewhere."""
        if not isinstance(features, EmbeddedWindows):
            features = self.embed_track(features)
        self.index.add(track_id, features.vectors, features.starts_s)
        return len(features.starts_s)

    def embed_track(self, audio: np.ndarray | Resampled) -> EmbeddedWindows:
        """A catalog track's window vectors, every ``hop_s``."""
        windows, starts_s = self.windows(audio, self.settings.hop_s)
        return EmbeddedWindows(self.embed(windows), starts_s)

    def to(self, device: str) -> None:
        """Run the model on ``device`` from now on (a rank's, acr.retrieval.distributed)."""
        self.encoder.to(device)
        self.device = device
        self.batch_size = _batch_size(self.settings, device)

    def search(self, audio: np.ndarray, top_k: int = 5) -> list[TrackMatch]:
        if len(self.index) == 0 or len(audio) == 0:
            return []
        windows, starts_s = self.windows(audio, self.settings.query_hop_s)
        return self.index.rank_tracks(
            self.embed(windows),
            starts_s,
            top_k,
            self.settings.neighbors,
            offset_bin_s=self.settings.hop_s,
            rescore=self.settings.rescore,
        )

    @property
    def track_ids(self) -> list[str]:
        return list(self.index.track_ids)

    @property
    def item_count(self) -> int:
        return len(self.index)

    def remove(self, track_ids: Collection[str]) -> None:
        self.index.remove(track_ids)

    def empty(self) -> EmbeddingEngine:
        """No track, the same model (shared, not loaded again)."""
        engine = copy.copy(self)
        engine.index = self.index.empty()
        return engine

    def save(self, directory: Path) -> None:
        """The window index, the settings and the model. Every part of an index holds the same
        model: a hard link to the copy written first, where the file system allows, so an index
        of many segments stores it once."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.index.save(directory / "hnsw")
        model_path = directory / MODEL_FILE
        try:
            if self._model_copy is None or not self._model_copy.is_file():
                raise FileNotFoundError
            os.link(self._model_copy, model_path)
        except OSError:
            model_path.write_bytes(self._checkpoint_bytes)
        write_json(directory / SETTINGS_FILE, self.recorded_settings())

    def saved(self, directory: Path) -> None:
        self._model_copy = Path(directory) / MODEL_FILE

    @classmethod
    def open(
        cls, directories: Sequence[Path], removed: Sequence[Collection[str]] = ()
    ) -> EmbeddingEngine:
        """The parts written by :meth:`save`, searched as one. Each part's model copy must have
        the digest the index recorded (checked before torch unpickles it: a truncated copy
        fails here) and the first part's; the model is loaded once, and the window index must
        have its embedding size."""
        if not directories:
            raise ValueError("no embedding index parts to open")
        digests = set()
        for directory in directories:
            settings_path, model_path = directory / SETTINGS_FILE, directory / MODEL_FILE
            recorded = read_index_json(settings_path, ("checkpoint", "checkpoint_sha256"))
            with reading(model_path):
                digest = _digest(model_path)
            check_index(
                digest == recorded["checkpoint_sha256"],
                model_path,
                f"not the model the index was built with (sha256 {digest[:12]},"
                f" {settings_path.name} records {str(recorded['checkpoint_sha256'])[:12]}):"
                " truncated or replaced",
            )
            check_index(
                not digests or digest in digests,
                model_path,
                f"another model than the one of {directories[0]}",
            )
            digests.add(digest)
        first = Path(directories[0])
        recorded = read_index_json(first / SETTINGS_FILE, ("checkpoint",))
        known = {field.name for field in fields(EmbeddingSettings)}
        settings = read_settings(
            EmbeddingSettings,
            {k: v for k, v in recorded.items() if k in known},
            first / SETTINGS_FILE,
        )
        engine = cls(first / MODEL_FILE, settings)  # the copy travels with the index
        engine.checkpoint = recorded["checkpoint"]
        engine._model_copy = first / MODEL_FILE
        engine.index = WindowIndex.open([Path(d) / "hnsw" for d in directories], removed)
        check_index(
            engine.index.search_settings.backend == settings.backend,
            first / "hnsw",
            f"windows searched by {engine.index.search_settings.backend}, where"
            f" {SETTINGS_FILE} records {settings.backend}",
        )
        check_index(
            engine.index.dim == engine.embed_dim,
            first / "hnsw",
            f"{engine.index.dim}-d windows for a model of {engine.embed_dim} dimensions",
        )
        return engine


@functools.lru_cache(maxsize=64)
def _digest_of(path: str, device: int, inode: int, size: int, modified_ns: int) -> str:
    return sha256_file(path)


def _digest(path: Path) -> str:
    """The sha256 of a model copy, computed once per file: the parts of an index are hard
    links to one copy."""
    stat = path.stat()
    return _digest_of(str(path), stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


def _batch_size(settings: EmbeddingSettings, device: str) -> int:
    return settings.batch_size or (512 if device.startswith("cuda") else 64)


def _span(samples: np.ndarray, start: int, stop: int) -> np.ndarray:
    return samples[start:stop]


def _with_checkpoint_windows(
    settings: EmbeddingSettings, recorded: dict[str, float] | None, checkpoint: str | Path
) -> EmbeddingSettings:
    """``settings`` with the window and hops filled in from the checkpoint's record."""
    recorded = recorded or {}
    window_s = recorded.get("window_s")
    if settings.window_s is not None and window_s is not None and settings.window_s != window_s:
        raise IndexDirectoryError(
            f"embedding.window_s={settings.window_s} but {checkpoint} was trained on"
            f" {window_s}-s windows; leave it unset to use the checkpoint's"
        )
    window_s = settings.window_s if settings.window_s is not None else window_s
    if window_s is None:
        raise IndexDirectoryError(
            f"{checkpoint} does not record the window it was trained on (an older checkpoint);"
            " give embedding.window_s (the data's window_s at training, usually 1.0)"
        )
    hop_s = settings.hop_s or recorded.get("hop_s") or window_s / 2
    query_hop_s = settings.query_hop_s or recorded.get("query_hop_s") or window_s / 4
    return replace(settings, window_s=window_s, hop_s=hop_s, query_hop_s=query_hop_s)

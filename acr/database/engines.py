"""The fingerprint and embedding engines answering from the database, and the Recognizer over
them (``database_recognizer``).

Each search fetches what the file engines would read from their arrays and graphs (the
postings of the query's hashes; the nearest windows, then the windows of the best candidates)
into a small in-memory view of the same classes, and lets the file engines' own shortlist,
voting and sequence scoring rank it: one implementation of the ranking, so the two backends
give the same fingerprint answers, and the embedding ones differ only where pgvector's HNSW
finds other neighbours than hnswlib's.
"""

from __future__ import annotations

import copy
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from acr.database.reader import DatabaseReader
from acr.database.schema import DatabaseError, redacted
from acr.files import sha256_file
from acr.retrieval.engine import Engine, TrackMatch, read_settings
from acr.retrieval.fingerprint.engine import FingerprintEngine, FingerprintSettings, Postings
from acr.retrieval.store import ENGINES as ENGINE_REGISTRY
from acr.retrieval.windows import WindowIndex

MODEL_CACHE = Path(tempfile.gettempdir()) / "acr-models"  # the checkpoint a replica reads


class DatabaseFingerprint(FingerprintEngine):
    """Landmark search over acr_postings; adding goes through acr.database.push."""

    def __init__(self, settings: FingerprintSettings, reader: DatabaseReader) -> None:
        super().__init__(settings)
        self.reader = reader
        self._grids: list | None = None
        self._numbers: dict[str, int] = {}  # a search view's track ids -> database numbers

    @property
    def track_ids(self) -> list[str]:
        return self.reader.tracks()["track_id"].tolist()

    def search(self, audio: np.ndarray, top_k: int = 5) -> list[TrackMatch]:
        audio = np.asarray(audio, dtype=np.float32)
        if len(audio) < self.settings.min_query_s * self.settings.sample_rate:
            return []
        grids = self._query_grids(audio)
        hashes = self._query_landmarks(grids, range(len(self.hypotheses)))[0]
        keys, tracks, frames = self.reader.postings(np.unique(hashes))
        if len(keys) == 0:
            return []
        numbers, local = np.unique(tracks, return_inverse=True)
        track_ids = self.reader.track_ids_of(numbers)
        view = copy.copy(self)
        view._grids = grids
        view._track_ids = track_ids
        view._live = {track_id: number for number, track_id in enumerate(track_ids)}
        view._parts = [
            Postings.from_unsorted(
                keys, local.astype(np.int32), frames,
                live=np.ones(len(track_ids), bool), first_track=0,
            )
        ]  # fmt: skip
        view._added, view._memory = [], None
        view._numbers = dict(zip(track_ids, numbers.tolist()))
        return FingerprintEngine.search(view, audio, top_k)

    def _spectra(self, requests: list[tuple[str, int, int]]) -> list[np.ndarray | None]:
        """The candidates' verification spectrograms, read from acr_spectra in one statement
        (a search's view knows the database numbers of the tracks its postings named)."""
        requests = [(self._numbers[track_id], first, end) for track_id, first, end in requests]
        return self.reader.spectra(requests, self.settings.verification_bands)

    def _query_grids(self, audio: np.ndarray) -> list:
        return self._grids if self._grids is not None else super()._query_grids(audio)


class _Fetched(WindowIndex):
    """Windows read for one query: track numbers of the query's own numbering (0..n-1 over
    ``track_ids``), start times and, for the sequence scoring, the vectors."""

    def __init__(
        self,
        dim: int,
        reader: DatabaseReader,
        numbers: np.ndarray,  # database track numbers, sorted: the query's numbering
        track_ids: list[str],
        tracks: np.ndarray,
        starts: np.ndarray,
        vectors: np.ndarray | None = None,
    ) -> None:
        super().__init__(dim)
        self.reader, self.numbers = reader, numbers
        self._all_ids = list(track_ids)
        self._live = {track_id: number for number, track_id in enumerate(track_ids)}
        self._track_parts = [np.asarray(tracks, np.int32)]
        self._start_parts = [np.asarray(starts, np.float32)]
        self._rows = vectors

    def _vectors(self, labels: np.ndarray) -> np.ndarray:
        return self._rows[labels]

    def _sequence_scores(
        self, embeddings: np.ndarray, start_s: np.ndarray, cells: np.ndarray, offset_bin_s: float
    ) -> np.ndarray:
        """The file index's sequence scores, over the candidate tracks' windows in the spans
        the cells can reach, read from the database first."""
        margin = 1.5 * offset_bin_s
        low = start_s.min() + cells[:, 1] * offset_bin_s - margin
        high = start_s.max() + cells[:, 1] * offset_bin_s + margin
        tracks, starts, vectors = self.reader.spans(self.numbers[cells[:, 0]], low, high)
        spans = _Fetched(
            self.dim, self.reader, self.numbers, self._all_ids,
            np.searchsorted(self.numbers, tracks), starts, vectors,
        )  # fmt: skip
        return WindowIndex._sequence_scores(spans, embeddings, start_s, cells, offset_bin_s)


class DatabaseWindows(WindowIndex):
    """The window index of a database catalog: neighbours from pgvector's HNSW index."""

    def __init__(self, dim: int, reader: DatabaseReader) -> None:
        super().__init__(dim)
        self.reader = reader

    @property
    def track_ids(self) -> list[str]:
        return self.reader.tracks()["track_id"].tolist()

    def __len__(self) -> int:
        return len(self.reader.tracks())  # not the windows: whether there is any to search

    def rank_tracks(
        self,
        embeddings: np.ndarray,
        start_s: np.ndarray,
        top_k: int = 5,
        neighbors: int = 20,
        offset_bin_s: float = 0.5,
        rescore: int = 0,
    ) -> list[TrackMatch]:
        window, tracks, starts, similarity = self.reader.neighbors(embeddings, neighbors)
        if len(window) == 0:
            return []
        numbers, local = np.unique(tracks, return_inverse=True)
        fetched = _Fetched(
            self.dim, self.reader, numbers, self.reader.track_ids_of(numbers), local, starts
        )
        # rank_from_neighbors reads [query window, k] arrays; a window with fewer than k
        # neighbours is padded with a similarity that never votes.
        labels = np.zeros((len(embeddings), neighbors), np.int64)
        similarities = np.full((len(embeddings), neighbors), -np.inf, np.float32)
        rank = np.arange(len(window)) - np.searchsorted(window, window)
        labels[window, rank] = np.arange(len(window))
        similarities[window, rank] = similarity
        return fetched.rank_from_neighbors(
            labels, similarities, start_s, top_k, offset_bin_s, embeddings, rescore
        )


def open_engines(reader: DatabaseReader) -> dict[str, Engine]:
    """The engines the database holds, in the order an index directory lists them."""
    from acr.retrieval.embedding import EmbeddingEngine, EmbeddingSettings

    engines: dict[str, Engine] = {}
    where = Path(redacted(reader.url))
    recorded_engines = reader.meta["engines"]
    # jsonb keeps keys in its own order: the index's order is the registry's (engine_names).
    for name in sorted(recorded_engines, key=list(ENGINE_REGISTRY).index):
        recorded = recorded_engines[name]
        if name == "fingerprint":
            settings = read_settings(FingerprintSettings, recorded, where)
            engines[name] = DatabaseFingerprint(settings, reader)
        elif name == "embedding":
            known = set(EmbeddingSettings.__dataclass_fields__)
            settings = read_settings(
                EmbeddingSettings, {k: v for k, v in recorded.items() if k in known}, where
            )
            engine = EmbeddingEngine(_model_file(reader, recorded["checkpoint_sha256"]), settings)
            engine.checkpoint = recorded["checkpoint"]
            engine.index = DatabaseWindows(engine.embed_dim, reader)
            engines[name] = engine
        else:
            raise DatabaseError(f"{where}: engine {name!r} has no database backend")
    return engines


def _model_file(reader: DatabaseReader, sha256: str) -> Path:
    """The model's checkpoint, written once per machine from acr_models and checked."""
    path = MODEL_CACHE / f"{sha256}.ckpt"
    if path.is_file() and sha256_file(path) == sha256:
        return path
    checkpoint = reader.checkpoint(sha256)
    if hashlib.sha256(checkpoint).hexdigest() != sha256:
        raise DatabaseError(f"{redacted(reader.url)}: acr_models holds a damaged {sha256[:12]}")
    MODEL_CACHE.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(checkpoint)
    os.replace(partial, path)  # whole or absent: replicas on one machine share it
    return path


def database_recognizer(reader: DatabaseReader, cascade: bool = True) -> Any:
    """A Recognizer over the database's engines, with the fusion and calibration it holds,
    read and checked as in an index directory (written to a temporary one for that)."""
    from acr.retrieval.calibration import CALIBRATION_FILE
    from acr.retrieval.recognizer import FUSION_FILE, Recognizer, read_fusion

    with tempfile.TemporaryDirectory(prefix="acr-db-") as folder:
        for name, key in ((FUSION_FILE, "fusion"), (CALIBRATION_FILE, "calibration")):
            if reader.meta.get(key) is not None:
                (Path(folder) / name).write_text(reader.meta[key])
        fusion, calibration = read_fusion(Path(folder))
    return Recognizer(open_engines(reader), fusion, cascade, calibration)

"""Recognizer: one object that answers queries with every engine of an index, fused.

It reads an index through acr.retrieval.store and never imports the build.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from acr.audio import MIN_MUSIC_S, AudioError, resample, rms
from acr.data.manifests import QueryClip, blank, line_numbers, read_queries
from acr.pitch import harmonicity
from acr.retrieval.engine import Engine, TrackMatch
from acr.retrieval.fusion import EngineMatches, Fusion, QueryFeatures
from acr.retrieval.store import load_engines
from acr.status import Heartbeat

FUSION_FILE = "fusion.json"
MIN_QUERY_S = MIN_MUSIC_S  # shorter clips hold no music to recognise
SILENT_QUERY_RMS = 10 ** (-60 / 20)  # -60 dBFS
QUERY_FEATURE_RATE = 8000  # harmonicity needs the first few harmonics of a voice, no more


@dataclass
class Recognition:
    """The answer for one query: ranked tracks, or an error status saying why there are none."""

    query_id: str
    status: str = "ok"
    error: str = ""
    matches: list[TrackMatch] = field(default_factory=list)
    engine_matches: EngineMatches = field(default_factory=dict)
    query_features: QueryFeatures = field(default_factory=dict)


class Recognizer:
    """Runs each engine on a query and fuses their rankings (a single engine needs no fusion).

    With ``cascade`` (the default), a fitted fusion's early-exit engine runs first, and the
    others only when it is not sure: the same answers, in a fraction of the time. Evaluation
    turns it off to score every engine on every query.
    """

    def __init__(
        self, engines: dict[str, Engine], fusion: Fusion | None = None, cascade: bool = True
    ) -> None:
        self.engines = engines
        self.fusion = fusion or Fusion()
        self.cascade = cascade
        # Engines run side by side: their heavy parts (numpy, torch, hnswlib) release the GIL.
        self._pool = ThreadPoolExecutor(len(engines) + 1) if len(engines) > 1 else None

    @classmethod
    def load(cls, directory: str | Path, cascade: bool = True) -> Recognizer:
        directory = Path(directory)
        fusion_path = directory / FUSION_FILE
        fusion = Fusion.load(fusion_path) if fusion_path.is_file() else None
        return cls(load_engines(directory), fusion, cascade)

    def recognize(self, audio: np.ndarray, sample_rate: int, top_k: int = 5) -> Recognition:
        """Rank tracks for mono audio, after checking it is long and loud enough."""
        recognition = Recognition(query_id="")
        duration_s = len(audio) / sample_rate
        if duration_s < MIN_QUERY_S:
            return _error(recognition, f"too short ({duration_s:.2f} s < {MIN_QUERY_S} s)")
        if rms(audio) < SILENT_QUERY_RMS:
            return _error(recognition, "silent (below -60 dBFS)")
        # Ask each engine for more than top_k so fusion sees tracks that one engine ranks low.
        depth = max(top_k, 20)

        def search(name: str) -> list[TrackMatch]:
            engine = self.engines[name]
            return engine.search(resample(audio, sample_rate, engine.sample_rate), depth)

        if self._pool is None:
            recognition.engine_matches = {name: search(name) for name in self.engines}
            recognition.matches = next(iter(recognition.engine_matches.values()))[:top_k]
            return recognition
        matches = recognition.engine_matches
        # The exit rule needs the query's harmonicity: computed beside the first engine.
        features = self._pool.submit(query_features, audio, sample_rate)
        early_exit = self.fusion.early_exit
        if self.cascade and early_exit and early_exit.engine in self.engines:
            matches[early_exit.engine] = search(early_exit.engine)
            recognition.query_features = features.result()
            if early_exit.decides(matches[early_exit.engine], recognition.query_features):
                recognition.matches = early_exit.ranking(
                    matches[early_exit.engine], recognition.query_features, top_k
                )
                return recognition
        pending = [name for name in self.engines if name not in matches]
        matches.update(zip(pending, self._pool.map(search, pending)))
        recognition.query_features = features.result()
        recognition.matches = self.fusion.fuse(matches, recognition.query_features, top_k)
        return recognition

    def recognize_file(self, path: str | Path, top_k: int = 5) -> Recognition:
        """:meth:`recognize_clip` for a whole file, named after it."""
        return self.recognize_clip(QueryClip(str(path)), Path(path).stem, top_k)

    def recognize_clip(self, clip: QueryClip, query_id: str, top_k: int = 5) -> Recognition:
        """Like :meth:`recognize` for a file or a stretch of one; unreadable files get an
        error status, not an exception."""
        try:
            audio, sample_rate = clip.read()
        except AudioError as error:
            return _error(Recognition(query_id), f"unreadable: {error.reason}")
        recognition = self.recognize(audio, sample_rate, top_k)
        recognition.query_id = query_id
        return recognition

    def recognize_queries(
        self, queries: pd.DataFrame, top_k: int = 5, heartbeat: Heartbeat | None = None
    ) -> Iterator[Recognition]:
        """Recognise every query of a table (acr.data.manifests.read_queries), with progress
        (a bar, and ``heartbeat`` when given). A row without a query_id or a clip gets an
        error status naming it (by its line in the table when it has no id), and the rows
        after it are answered as usual."""
        if heartbeat is not None:
            heartbeat.update(stage="recognising", done=0, total=len(queries), unit="queries")
        errors = 0
        rows = tqdm(queries.iterrows(), total=len(queries), unit="query", desc="recognising")
        for done, ((_, query), line) in enumerate(zip(rows, line_numbers(queries)), start=1):
            recognition = self._recognize_row(query, line, top_k)
            if heartbeat is not None:
                errors += recognition.status != "ok"
                heartbeat.update(done=done, errors=errors)
            yield recognition

    def _recognize_row(self, query: pd.Series, line: int, top_k: int) -> Recognition:
        if blank(query["query_id"]):
            return _error(Recognition(""), f"line {line}: empty query_id")
        try:
            clip = QueryClip.of(query)
        except ValueError as error:
            return _error(Recognition(query["query_id"]), f"no clip: {error}")
        return self.recognize_clip(clip, query["query_id"], top_k)


def fit_fusion(index: str, queries: list[str]) -> tuple[Fusion, int]:
    """Fit a hybrid index's fusion (calibration, weights, early exit) on validation queries.

    Use query tables you will not report on. The fusion is saved as INDEX/fusion.json;
    returns it and how many queries it was fitted on (those that could be read).

    Args:
        index: a hybrid index directory (two engines or more).
        queries: validation query tables; several are pooled row by row (tables made with
            other seeds may reuse query ids).
    """
    # Not Recognizer.load: the fusion.json there (perhaps from an older acr) is what is refitted.
    recognizer = Recognizer(load_engines(index), cascade=False)
    if len(recognizer.engines) < 2:
        raise ValueError(f"{index} has one engine; fusion needs a hybrid index")
    table = pd.concat([read_queries(path) for path in queries], ignore_index=True)
    answered = [
        (recognition, right)
        for recognition, right in zip(recognizer.recognize_queries(table, 20), table["track_id"])
        if recognition.status == "ok"
    ]
    fusion = Fusion.fit(
        [recognition.engine_matches for recognition, _ in answered],
        [right for _, right in answered],
        [recognition.query_features for recognition, _ in answered],
    )
    fusion.save(Path(index) / FUSION_FILE)
    return fusion, len(answered)


def query_features(audio: np.ndarray, sample_rate: int) -> QueryFeatures:
    """What fusion needs to know about the query itself (see :mod:`acr.retrieval.fusion`)."""
    voice = resample(audio, sample_rate, QUERY_FEATURE_RATE)
    return {
        "harmonicity": harmonicity(voice, QUERY_FEATURE_RATE),
        "log_duration_s": float(np.log(len(audio) / sample_rate)),
    }


def _error(recognition: Recognition, message: str) -> Recognition:
    recognition.status, recognition.error = "error", message
    return recognition

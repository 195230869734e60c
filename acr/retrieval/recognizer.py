"""Recognizer: one object that answers queries with every engine of an index, fused."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from acr.audio import AudioError, audio_info, load_audio, resample
from acr.pitch import harmonicity
from acr.retrieval.engine import Engine
from acr.retrieval.fusion import EngineMatches, Fusion, QueryFeatures
from acr.retrieval.windows import TrackMatch
from acr.retrieval.build import load_engines

FUSION_FILE = "fusion.json"
MIN_QUERY_S = 0.5
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
        if float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) < SILENT_QUERY_RMS:
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

    def recognize_file(
        self,
        path: str | Path,
        query_id: str | None = None,
        offset_s: float = 0.0,
        duration_s: float | None = None,
        top_k: int = 5,
    ) -> Recognition:
        """Like :meth:`recognize` for a file (or a stretch of one); unreadable files get an
        error status, not an exception."""
        query_id = query_id or Path(path).stem
        try:
            sample_rate = audio_info(path).sample_rate
            audio = load_audio(path, offset_s=offset_s, duration_s=duration_s)
        except AudioError as error:
            return _error(Recognition(query_id), f"unreadable: {error.reason}")
        recognition = self.recognize(audio, sample_rate, top_k)
        recognition.query_id = query_id
        return recognition


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

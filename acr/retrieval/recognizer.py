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
from acr.data.manifests import QueryClip, blank, line_numbers
from acr.pitch import harmonicity
from acr.retrieval.calibration import CALIBRATION_FILE, Calibration, file_digest
from acr.retrieval.engine import Engine, IndexDirectoryError, TrackMatch
from acr.retrieval.fusion import EngineMatches, Fusion, QueryFeatures
from acr.retrieval.store import HYBRID, load_engines
from acr.status import Heartbeat

FUSION_FILE = "fusion.json"
MIN_QUERY_S = MIN_MUSIC_S  # shorter clips hold no music to recognise
SILENT_QUERY_RMS = 10 ** (-60 / 20)  # -60 dBFS
QUERY_FEATURE_RATE = 8000  # harmonicity needs the first few harmonics of a voice, no more


@dataclass
class Recognition:
    """The answer for one query: ranked tracks, or an error status saying why there are none.

    On a calibrated index (acr calibrate), ``probability`` is P(the top track is right), and a
    status ``no_match`` says it is below the threshold: the ranked tracks are then candidates,
    not an answer."""

    query_id: str
    status: str = "ok"
    error: str = ""
    matches: list[TrackMatch] = field(default_factory=list)
    engine_matches: EngineMatches = field(default_factory=dict)
    query_features: QueryFeatures = field(default_factory=dict)
    probability: float | None = None
    duration_s: float = 0.0

    def ranking(self, system: str) -> list[TrackMatch]:
        """What ``system`` ranked: the fused answer (``hybrid``), or one engine's own."""
        return self.matches if system == HYBRID else self.engine_matches[system]

    @property
    def answered(self) -> bool:
        """Whether this recognition names a track (an ``ok`` status, not an error or no_match)."""
        return self.status == "ok"


class Recognizer:
    """Runs each engine on a query and fuses their rankings (a single engine needs no fusion).

    With ``cascade`` (the default), a fitted fusion's early-exit engine runs first, and the
    others only when it is not sure: the same answers, in a fraction of the time. Evaluation
    turns it off to score every engine on every query.

    With a ``calibration``, every answer gets its probability, and one below ``min_probability``
    (default: the threshold fitted for the index's false-match rate) is a ``no_match``.
    """

    def __init__(
        self,
        engines: dict[str, Engine],
        fusion: Fusion | None = None,
        cascade: bool = True,
        calibration: Calibration | None = None,
        min_probability: float | None = None,
    ) -> None:
        self.engines = engines
        self.fusion = fusion or Fusion()
        self.cascade = cascade
        self.calibration = calibration
        self.system = HYBRID if len(engines) > 1 else next(iter(engines))
        if min_probability is not None and not 0 <= min_probability <= 1:
            raise ValueError(f"min_probability must be in [0, 1], got {min_probability}")
        if calibration is not None and self.system not in calibration.systems:
            raise IndexDirectoryError(
                f"{CALIBRATION_FILE} has no calibration of {self.system!r}; fit it again with"
                " `acr calibrate`"
            )
        self.min_probability = min_probability
        # Engines run side by side: their heavy parts (numpy, torch, hnswlib) release the GIL.
        self._pool = ThreadPoolExecutor(len(engines) + 1) if len(engines) > 1 else None

    @classmethod
    def load(
        cls,
        directory: str | Path,
        cascade: bool = True,
        min_probability: float | None = None,
        calibrated: bool = True,
    ) -> Recognizer:
        """The index at ``directory``, its fusion and (``calibrated``) its calibration.

        ``min_probability`` needs a calibrated index."""
        directory = Path(directory)
        fusion, calibration = read_fusion(directory, calibrated)
        if min_probability is not None and calibration is None:
            raise ValueError(
                f"min_probability needs a calibrated index: {directory} has no"
                f" {CALIBRATION_FILE} (acr calibrate)"
            )
        return cls(load_engines(directory), fusion, cascade, calibration, min_probability)

    def recognize(self, audio: np.ndarray, sample_rate: int, top_k: int = 5) -> Recognition:
        """Rank tracks for mono audio, after checking it is long and loud enough; on a
        calibrated index, say how likely the top track is right, or no_match."""
        recognition = self._rank(audio, sample_rate, top_k)
        recognition.duration_s = len(audio) / sample_rate
        if self.calibration is not None and recognition.status == "ok":
            model = self.calibration.systems[self.system]
            probability = model.probability(recognition.matches, recognition.duration_s)
            recognition.probability = probability
            threshold = model.threshold if self.min_probability is None else self.min_probability
            if probability < threshold:
                recognition.status = "no_match"
        return recognition

    def _rank(self, audio: np.ndarray, sample_rate: int, top_k: int) -> Recognition:
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
                errors += recognition.status == "error"
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


def read_fusion(
    directory: Path, calibrated: bool = True
) -> tuple[Fusion | None, Calibration | None]:
    """The fusion.json and (``calibrated``) calibration.json of ``directory``, where there
    are; a calibration fitted with another fusion is refused."""
    fusion_path = directory / FUSION_FILE
    fusion = Fusion.load(fusion_path) if fusion_path.is_file() else None
    calibration_path = directory / CALIBRATION_FILE
    calibration = None
    if calibrated and calibration_path.is_file():
        calibration = Calibration.load(calibration_path)
        if calibration.fusion_sha256 != file_digest(fusion_path):
            raise IndexDirectoryError(
                f"{calibration_path}: fitted with another {FUSION_FILE}; fit it again with"
                " `acr calibrate`"
            )
    return fusion, calibration


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

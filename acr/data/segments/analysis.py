"""Track analysis for segment strategies: loudness, non-silent intervals, onsets, beats and
chroma repetition, computed once per track and cached.

``analyze`` turns audio into a :class:`TrackAnalysis`; ``TrackAnalysis.save``/``load`` keep it as
one small .npz beside a manifest (``analysis/<hash of track_id>.npz``), and ``analyze_tracks``
fills that cache for a table of tracks in worker processes, so trying several strategies or
lengths costs no second pass over the audio, and an interrupted analysis resumes where it
stopped.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import librosa
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from acr.audio import AudioError, load_audio, resample
from acr.files import replacing
from acr.workers import spawn_pool

ANALYSIS_DIR = "analysis"  # beside a manifest: one .npz per track (see analysis_path)
ANALYSIS_VERSION = 1  # bump when a feature changes meaning, so cached analyses are redone
ANALYSIS_RATE_HZ = 22050  # audio outside MIN_RATE_HZ..ANALYSIS_RATE_HZ is resampled to this
MIN_RATE_HZ = 16000  # chroma_cqt's top octave (C8, 4.2 kHz) needs at least this
N_FFT = 2048
FRAME_HOP_S = 0.025  # hop = largest power of two under this: 256 at 16 kHz, 512 at 22.05 kHz
CHROMA_HOP_S = 0.1  # repetition is a section-scale property; 10 chroma frames/s are plenty
CONTEXT_S = 1.0  # chroma sequences this long are compared, so one shared chord is no repeat
MIN_LAG_S = 4.0  # a frame matching itself a moment later is a held note, not a repeat
SILENCE_TOP_DB = 45.0  # frames this far below the loudest frame count as silence,
SILENCE_DBFS = -60.0  # and so do frames below this, however quiet the whole track is
FLOOR_DB = -100.0


@dataclass(frozen=True, eq=False)  # arrays: compare fields, not analyses
class TrackAnalysis:
    """Per-track features every strategy reads; computed once by ``analyze``.

    Frame arrays (``rms_db``, ``repetition``) are on a grid of ``hop_s`` from 0 s; event arrays
    hold times in seconds and a strength in [0, 1] (the onset envelope over its track maximum).
    """

    duration_s: float
    hop_s: float
    rms_db: np.ndarray
    non_silent_s: np.ndarray  # (intervals, 2) start and end in seconds
    onset_times_s: np.ndarray
    onset_strengths: np.ndarray
    beat_times_s: np.ndarray
    beat_strengths: np.ndarray
    tempo_bpm: float
    repetition: np.ndarray  # per frame, in [0, 1]: how closely this moment recurs elsewhere
    margin_s: float  # how far librosa.effects.split's intervals may reach into silence

    @property
    def frame_times_s(self) -> np.ndarray:
        return np.arange(len(self.rms_db)) * self.hop_s

    def save(self, path: str | Path) -> None:
        """One compressed .npz (a few tens of kB for 30 s), written atomically: a killed run
        leaves no half file for the next one to trust."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        with replacing(path) as temporary:
            np.savez_compressed(temporary, version=ANALYSIS_VERSION, **values)

    @classmethod
    def load(cls, path: str | Path) -> TrackAnalysis:
        """Read ``save``'s file; a file from another ANALYSIS_VERSION is a ValueError."""
        with np.load(path) as stored:
            if int(stored["version"]) != ANALYSIS_VERSION:
                raise ValueError(
                    f"{path}: analysis version {int(stored['version'])}, "
                    f"expected {ANALYSIS_VERSION}"
                )
            values = {field.name: stored[field.name] for field in fields(cls)}
        scalars = ("duration_s", "hop_s", "tempo_bpm", "margin_s")
        return cls(**{k: float(v) if k in scalars else v for k, v in values.items()})


def analysis_path(directory: Path, track_id: str) -> Path:
    """Where a track's analysis is cached beside a manifest (any track id makes a file name)."""
    digest = hashlib.sha1(track_id.encode()).hexdigest()[:16]
    return Path(directory) / ANALYSIS_DIR / f"{digest}.npz"


def analyze(audio: np.ndarray, sample_rate: int) -> TrackAnalysis:
    """Analyse mono audio once for all strategies (about 0.2 s of one core per 30 s; the first
    call in a process also pays ~5-9 s for librosa.beat's numba compilation)."""
    duration_s = len(audio) / sample_rate
    if not MIN_RATE_HZ <= sample_rate <= ANALYSIS_RATE_HZ:
        audio, sample_rate = resample(audio, sample_rate, ANALYSIS_RATE_HZ), ANALYSIS_RATE_HZ
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    hop = 2 ** int(math.log2(sample_rate * FRAME_HOP_S))
    magnitude = np.abs(librosa.stft(audio, n_fft=N_FFT, hop_length=hop))
    rms = librosa.feature.rms(S=magnitude, frame_length=N_FFT)[0]
    rms_db = np.maximum(20 * np.log10(np.maximum(rms, 1e-10)), FLOOR_DB).astype(np.float32)
    quietest_ref = 10 ** ((SILENCE_DBFS + SILENCE_TOP_DB) / 20)
    non_silent = librosa.effects.split(
        audio,
        top_db=SILENCE_TOP_DB,
        ref=lambda rms: max(float(np.max(rms)), quietest_ref),
        frame_length=N_FFT,
        hop_length=hop,
    )
    onsets_s, onset_strengths, beats_s, beat_strengths, tempo_bpm = _events(
        magnitude, sample_rate, hop
    )
    repetition = _repetition(audio, sample_rate, len(rms_db), hop / sample_rate)
    return TrackAnalysis(
        duration_s=duration_s,
        hop_s=hop / sample_rate,
        rms_db=rms_db,
        non_silent_s=(non_silent / sample_rate).reshape(-1, 2),
        onset_times_s=onsets_s,
        onset_strengths=onset_strengths,
        beat_times_s=beats_s,
        beat_strengths=beat_strengths,
        tempo_bpm=tempo_bpm,
        repetition=repetition,
        margin_s=(N_FFT // 2 + hop) / sample_rate,
    )


def _events(
    magnitude: np.ndarray, sample_rate: int, hop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
    """Onsets (librosa.onset.onset_detect) and beats (librosa.beat.beat_track, Ellis 2007)
    from one spectral-flux envelope (librosa.onset.onset_strength on a log-mel spectrogram).

    Strengths are read at the envelope peaks; times are moved back to the preceding envelope
    minimum (librosa.onset.onset_backtrack, meant for slicing) so an excerpt keeps its attack:
    the peaks lag the attack by 15-45 ms on plucks and drum hits.
    """
    mel = librosa.feature.melspectrogram(S=magnitude**2, sr=sample_rate)
    envelope = librosa.onset.onset_strength(
        S=librosa.power_to_db(mel), sr=sample_rate, hop_length=hop, n_fft=N_FFT
    )
    peak = max(float(envelope.max()), 1e-10)
    onsets = librosa.onset.onset_detect(onset_envelope=envelope, sr=sample_rate, hop_length=hop)
    tempo, beats = librosa.beat.beat_track(onset_envelope=envelope, sr=sample_rate, hop_length=hop)
    seconds = hop / sample_rate
    return (
        _backtrack(onsets, envelope) * seconds,
        (envelope[onsets] / peak).astype(np.float32),
        _backtrack(beats, envelope) * seconds,
        (envelope[beats] / peak).astype(np.float32),
        float(np.atleast_1d(tempo)[0]),
    )


def _backtrack(events: np.ndarray, envelope: np.ndarray) -> np.ndarray:
    """librosa.onset.onset_backtrack, which rejects an empty event list."""
    return librosa.onset.onset_backtrack(events, envelope) if len(events) else events


def _repetition(audio: np.ndarray, sample_rate: int, frames: int, hop_s: float) -> np.ndarray:
    """Per frame, the best cosine match of its chroma sequence at least MIN_LAG_S away.

    A dense form of librosa.segment.recurrence_matrix(mode="affinity") on time-delay-embedded
    chroma_cqt (librosa.feature.stack_memory), as in Serrà et al. 2012; the matrix is small at
    10 frames/s, and its k-NN search would cost more than all other features together.
    """
    chroma_hop = 2 ** round(math.log2(sample_rate * CHROMA_HOP_S))
    with warnings.catch_warnings():  # short tracks: the CQT's octave FFTs exceed the signal
        warnings.filterwarnings("ignore", message="n_fft=.* is too large")
        chroma = librosa.feature.chroma_cqt(
            y=audio, sr=sample_rate, hop_length=chroma_hop, tuning=0.0
        )
    steps = max(1, round(CONTEXT_S * sample_rate / chroma_hop))
    context = librosa.feature.stack_memory(chroma, n_steps=steps)
    context = context / np.maximum(np.linalg.norm(context, axis=0, keepdims=True), 1e-10)
    similarity = context.T @ context
    lag = np.abs(np.subtract.outer(np.arange(len(similarity)), np.arange(len(similarity))))
    similarity[lag < MIN_LAG_S * sample_rate / chroma_hop] = 0.0
    best = similarity.max(axis=1)
    span = float(best.max() - best.min()) if len(best) else 0.0
    if span < 1e-6:  # nothing to compare (silence, or too short to repeat): all neutral
        return np.full(frames, 0.5, np.float32)
    chroma_times_s = np.arange(len(best)) * chroma_hop / sample_rate
    frame_times_s = np.arange(frames) * hop_s
    return np.interp(frame_times_s, chroma_times_s, (best - best.min()) / span).astype(np.float32)


def analyze_tracks(tracks: pd.DataFrame, directory: Path, workers: int | None = None) -> None:
    """Analyse every track of ``tracks`` (track_id, path) that has no cached analysis yet."""
    missing = [
        (track_id, path, str(analysis_path(directory, track_id)))
        for track_id, path in zip(tracks["track_id"], tracks["path"])
        if not analysis_path(directory, track_id).is_file()
    ]
    if not missing:
        return
    (directory / ANALYSIS_DIR).mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(missing)))
    failures = []
    with spawn_pool(workers) as pool:
        results = pool.map(_analyze_one, missing, chunksize=4)
        for problem in tqdm(results, total=len(missing), unit="track", desc="analysing segments"):
            if problem:
                failures.append(problem)
    if failures:
        warnings.warn(
            f"{len(failures)} track(s) could not be analysed and get uniform anchors, "
            f"e.g. {failures[0]}",
            stacklevel=2,
        )


def _analyze_one(job: tuple[str, str, str]) -> str:
    """Analyse one track and save it atomically; returns a problem description or ''."""
    track_id, path, destination = job
    try:
        audio = load_audio(path, ANALYSIS_RATE_HZ)
    except AudioError as error:
        return f"{track_id}: {error}"
    analyze(audio, ANALYSIS_RATE_HZ).save(destination)
    return ""

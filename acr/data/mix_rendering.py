"""The audio of one evaluation recording (acr.data.mixes): its pieces planned end to end
from the recording's seed (catalog excerpts, out-of-catalog music, speech, silence, the
crossfades between them), each rendered (speed change, degradation, talk-over) and placed.

Apart from acr.data.mixes, which checks the options and the catalogs and writes truth.csv,
because this is what runs in each worker process.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from acr.audio import AudioError, AudioInfo, Resampled, power, save_audio
from acr.augment.degradations import degrade
from acr.augment.effects import MAX_SPEED_DENOMINATOR, change_speed
from acr.synth import synthesize_track
from acr.synth.speech import presenter_speech

SILENCE_S_RANGE = (1.0, 3.0)  # dead air between pieces
TALK_OVER_S_RANGE = (3.0, 12.0)  # how long a presenter talks over an excerpt
TALK_OVER_FADE_S = 0.05
SPEED_CONTEXT_S = 0.05  # read either side of a speed-changed span (the resampler's reach)
OUT_OF_CATALOG_SEED = 10**9  # generated out-of-catalog songs use seeds from here


def recording_name(index: int) -> str:
    """The file name of recording ``index``, as truth.csv's recording column gives it."""
    return f"mix_{index:03d}.wav"


@dataclass(frozen=True)
class Track:
    track_id: str
    path: str
    info: AudioInfo


@dataclass(frozen=True)
class MixSettings:
    duration_s: float
    min_excerpt_s: float
    max_excerpt_s: float
    min_gap_s: float
    max_gap_s: float
    speech_share: float
    silence_share: float
    back_to_back_share: float
    max_crossfade_s: float
    degradations: tuple[str, ...]
    speed_change_share: float
    max_speed_change: float
    talk_over_share: float
    talk_over_snr_db: float
    speech: str
    seed: int
    sample_rate: int


@dataclass(frozen=True)
class MixJob:
    index: int
    directory: str
    settings: MixSettings
    tracks: tuple[Track, ...]
    held_out: tuple[Track, ...]  # out-of-catalog tracks; empty: generated songs
    reserved_seeds: frozenset[int]  # numbers in catalog ids: no generated song uses them


@dataclass
class Piece:
    kind: str
    length: int  # samples between its two boundaries (crossfade midpoints)
    track: Track | None = None  # a catalog excerpt's track, or out-of-catalog music's
    speed_factor: float = 1.0
    head: int = 0  # half of the crossfade before it, in samples
    tail: int = 0  # half of the crossfade after it


def write_mix(job: MixJob) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Plan, render and write one recording; (truth rows, skipped.csv rows)."""
    settings, rate = job.settings, job.settings.sample_rate
    rng = np.random.default_rng([settings.seed, job.index])
    pieces = _plan(job, rng)
    recording = np.zeros(round(settings.duration_s * rate), dtype=np.float32)
    name, rows, skipped = recording_name(job.index), [], []
    start = 0
    for position, piece in enumerate(pieces):
        audio, row = _render(piece, job, rng, skipped, position)
        _place(recording, audio, start - piece.head, piece)
        row = {
            "recording": name,
            "start_s": start / rate,
            "end_s": (start + piece.length) / rate,
            "kind": piece.kind,
            **row,
            "crossfade_in_s": 2 * piece.head / rate,
            "crossfade_out_s": 2 * piece.tail / rate,
        }
        rows.append(row)
        start += piece.length
    save_audio(Path(job.directory) / name, recording, rate)
    return rows, skipped


def _plan(job: MixJob, rng: np.random.Generator) -> list[Piece]:
    """The pieces of one recording, end to end, and the crossfades between them."""
    settings, rate = job.settings, job.settings.sample_rate
    total = round(settings.duration_s * rate)
    max_crossfade = round(settings.max_crossfade_s * rate)
    pieces: list[Piece] = []
    placed, catalog_next, previous = 0, bool(rng.random() < 0.5), None
    while placed < total:
        remaining = total - placed
        if catalog_next and remaining >= settings.min_excerpt_s * rate:
            piece = _plan_excerpt(job, rng, previous, max_crossfade)
            previous = piece.track
            catalog_next = bool(rng.random() < settings.back_to_back_share)
        else:
            piece = _plan_break(job, rng, max_crossfade)
            catalog_next = True
        if piece.kind != "catalog" and piece.track is None and remaining - piece.length < rate:
            piece.length = remaining  # no sliver of a piece at the end
        if piece.length >= remaining:
            piece.length = remaining
            if piece.kind == "catalog" and remaining < settings.min_excerpt_s * rate:
                piece = Piece("speech", remaining)  # an excerpt cut below the shortest
        pieces.append(piece)
        placed += piece.length
    for before, after in zip(pieces, pieces[1:]):
        crossfade = int(rng.uniform(0, max_crossfade + 1))
        crossfade = min(crossfade, before.length, after.length) // 2
        before.tail = after.head = crossfade
    return pieces


def _plan_excerpt(
    job: MixJob, rng: np.random.Generator, previous: Track | None, max_crossfade: int
) -> Piece:
    """A catalog excerpt: its track (not the one just played), speed and length."""
    settings, rate = job.settings, job.settings.sample_rate
    choices = [track for track in job.tracks if track != previous] or list(job.tracks)
    track = choices[int(rng.integers(len(choices)))]
    speed_factor = 1.0
    if rng.random() < settings.speed_change_share:
        change = rng.uniform(-settings.max_speed_change, settings.max_speed_change)
        speed_factor = float(Fraction(1 + change).limit_denominator(MAX_SPEED_DENOMINATOR))
    available = len(Resampled(track.info, rate)) - 2 - math.ceil(SPEED_CONTEXT_S * rate)
    longest = min(settings.max_excerpt_s * rate, available / speed_factor - max_crossfade)
    shortest = min(settings.min_excerpt_s * rate, longest)
    return Piece("catalog", int(rng.uniform(shortest, longest)), track, speed_factor)


def _plan_break(job: MixJob, rng: np.random.Generator, max_crossfade: int) -> Piece:
    """What plays between excerpts: silence, speech or out-of-catalog music."""
    settings, rate = job.settings, job.settings.sample_rate
    if rng.random() < settings.silence_share:
        return Piece("silence", int(rng.uniform(*SILENCE_S_RANGE) * rate))
    length = int(rng.uniform(settings.min_gap_s, settings.max_gap_s) * rate)
    if rng.random() < settings.speech_share:
        return Piece("speech", length)
    if not job.held_out:
        return Piece("music", length)
    track = job.held_out[int(rng.integers(len(job.held_out)))]
    longest = len(Resampled(track.info, rate)) - max_crossfade - 2
    return Piece("music", min(length, longest), track)


def _render(
    piece: Piece, job: MixJob, rng: np.random.Generator, skipped: list, position: int
) -> tuple[np.ndarray, dict[str, Any]]:
    """The piece's audio with both crossfade halves (``head + length + tail`` samples) and the
    rest of its truth row. Out-of-catalog music that cannot be read after all goes to
    skipped.csv and a generated song plays instead."""
    settings, rate = job.settings, job.settings.sample_rate
    samples = piece.head + piece.length + piece.tail
    row: dict[str, Any] = {
        "track_id": "",
        "reference_start_s": None,
        "reference_end_s": None,
        "speed_factor": None,
        "degradation": "",
        "talk_over": False,
        "source": "",
        "degradation_params": "",
    }
    if piece.kind == "silence":
        return np.zeros(samples, dtype=np.float32), row
    if piece.kind == "speech":
        row["source"] = settings.speech
        return presenter_speech(samples, rate, rng, settings.speech), row
    if piece.kind == "music":
        if piece.track is not None:
            resampled = Resampled(piece.track.info, rate)
            first = int(rng.integers(0, len(resampled) - samples + 1))
            try:
                audio = _read(resampled, first, first + samples, piece.track)
                row["source"] = piece.track.track_id
                return audio, row
            except AudioError as error:
                track_id, path = piece.track.track_id, piece.track.path
                skipped.append({"track_id": track_id, "path": path, "reason": error.reason})
        song_seed = _song_seed(job, position)
        row["source"] = f"synth:{song_seed}"
        return synthesize_track(song_seed, samples / rate, rate), row
    audio, first = _excerpt(piece, job, rng, samples, skipped)
    degradation = settings.degradations[int(rng.integers(len(settings.degradations)))]
    audio, params = degrade(audio, rate, degradation, rng)
    audio = audio[:samples]
    talk_over = bool(rng.random() < settings.talk_over_share) and _talk_over(
        audio, piece, rng, settings
    )
    factor = piece.speed_factor
    row.update(
        track_id=piece.track.track_id,
        reference_start_s=(first + piece.head * factor) / rate,
        reference_end_s=(first + (piece.head + piece.length) * factor) / rate,
        speed_factor=factor,
        degradation=degradation,
        talk_over=talk_over,
        source=settings.speech if talk_over else "",
        degradation_params=";".join(f"{k}={v:.4g}" for k, v in params.items()),
    )
    return audio, row


def _excerpt(
    piece: Piece, job: MixJob, rng: np.random.Generator, samples: int, skipped: list
) -> tuple[np.ndarray, int]:
    """``samples`` of the excerpt's track at its speed, and the track sample they start at.

    A track that cannot be read after all (its header lied) goes to skipped.csv and another
    one long enough plays instead."""
    rate = job.settings.sample_rate
    ratio = Fraction(piece.speed_factor).limit_denominator(MAX_SPEED_DENOMINATOR)
    needed = math.ceil(samples * ratio) + 1  # track samples the played span reads
    candidates = [piece.track] + [
        job.tracks[i] for i in rng.permutation(len(job.tracks)) if job.tracks[i] != piece.track
    ]
    for track in candidates:
        resampled = Resampled(track.info, rate)
        if len(resampled) < needed:
            continue
        first = int(rng.integers(0, len(resampled) - needed + 1))
        try:
            audio = _played(resampled, first, needed, samples, ratio)
        except AudioError as error:
            skipped.append({"track_id": track.track_id, "path": track.path, "reason": error.reason})
            continue
        piece.track = track
        return audio, first
    raise AudioError(piece.track.path, "no catalog track long enough could be read")


def _played(resampled: Resampled, first: int, needed: int, samples: int, ratio: Fraction):
    """Track samples from ``first`` played at ``ratio`` (a turntable: acr.augment.effects.
    change_speed), ``samples`` long. Read with SPEED_CONTEXT_S either side where the track has
    it, on the resampling grid, so the resampler's edges fall outside the span."""
    if ratio == 1:
        return _read(resampled, first, first + samples, resampled.info)
    blocks = min(math.ceil(SPEED_CONTEXT_S * resampled.sample_rate / ratio.numerator),
                 first // ratio.numerator)  # fmt: skip
    before = blocks * ratio.numerator
    after = min(math.ceil(SPEED_CONTEXT_S * resampled.sample_rate), len(resampled) - first - needed)
    source = resampled(first - before, first + needed + after)
    played = change_speed(source, resampled.sample_rate, float(ratio))
    skip = blocks * ratio.denominator
    return np.ascontiguousarray(played[skip : skip + samples])


def _read(resampled: Resampled, start: int, stop: int, track: Track | AudioInfo) -> np.ndarray:
    """Samples ``[start, stop)``, or an AudioError when the file holds fewer than its header
    said (a truncated file)."""
    audio = resampled(start, stop)
    if len(audio) < stop - start:
        raise AudioError(track.path, f"decoded {len(audio)} samples, the header promised more")
    return audio


def _talk_over(
    audio: np.ndarray, piece: Piece, rng: np.random.Generator, settings: MixSettings
) -> bool:
    """Speech over part of the excerpt's full-level stretch, at ``talk_over_snr_db``; False
    when the stretch is too short to talk over (under TALK_OVER_S_RANGE[0])."""
    rate = settings.sample_rate
    full_level = piece.length - piece.head - piece.tail
    if full_level < TALK_OVER_S_RANGE[0] * rate:
        return False
    length = min(int(rng.uniform(*TALK_OVER_S_RANGE) * rate), full_level)
    start = 2 * piece.head + int(rng.integers(0, full_level - length + 1))
    stretch = audio[start : start + length]
    voice = presenter_speech(length, rate, rng, settings.speech)
    fade = np.minimum(1.0, np.minimum(np.arange(length) + 1, length - np.arange(length))
                      / (TALK_OVER_FADE_S * rate))  # fmt: skip
    voice_power = power(voice)
    if voice_power > 0:
        scale = math.sqrt(power(stretch) / voice_power / 10 ** (settings.talk_over_snr_db / 10))
        stretch += (scale * fade * voice).astype(np.float32)
    return True


def _place(recording: np.ndarray, audio: np.ndarray, start: int, piece: Piece) -> None:
    """Add the piece at ``start`` with equal-power fades over its crossfades (sin^2 + cos^2 =
    1: constant power between uncorrelated pieces)."""
    audio = audio.astype(np.float32, copy=True)
    for half, ending in ((piece.head, False), (piece.tail, True)):
        if half:
            ramp = np.sin(0.5 * np.pi * (np.arange(2 * half) + 0.5) / (2 * half))
            if ending:
                audio[-2 * half :] *= ramp[::-1].astype(np.float32)
            else:
                audio[: 2 * half] *= ramp.astype(np.float32)
    recording[start : start + len(audio)] += audio


def _song_seed(job: MixJob, song: int) -> int:
    """The seed of generated out-of-catalog song ``song`` of this recording: far from any
    seed a generated catalog uses, and no number found in a catalog id."""
    seed = OUT_OF_CATALOG_SEED + (job.settings.seed * 10_000 + job.index) * 1_000 + song
    while seed in job.reserved_seeds:
        seed += 10**8
    return seed

"""Evaluation recordings for ``acr monitor``: broadcast-like mixes of catalog excerpts,
out-of-catalog music, speech and silence, written as WAVs with a ground-truth table.

Each recording is a sequence of pieces laid end to end: catalog excerpts, separated by
out-of-catalog music, speech or a moment of silence (and sometimes following each other, as
in a DJ set), joined by equal-power crossfades of 0 to ``max_crossfade_s``. A catalog excerpt
may be played faster or slower like a turntable (pitch and tempo together), may carry one
degradation of the query registry (acr.augment.degradations), and may have speech over it.
Everything is drawn from ``seed`` and the recording's number, so the same call writes the
same bytes, and recordings are independent of each other (and of ``workers``).

``truth.csv`` has one row per piece: ``recording, start_s, end_s, kind, track_id,
reference_start_s, reference_end_s, speed_factor, degradation, talk_over``, then ``source``
(the voice of a speech row or of a talk-over, ``espeak-ng`` or ``babble``; the out-of-catalog
track, or ``synth:SEED``, of a music row), ``degradation_params`` and ``crossfade_in_s,
crossfade_out_s``. ``kind`` is catalog, music (out of catalog), speech or silence; only
catalog rows have a track_id, reference times and a speed factor. ``talk_over`` is true when
speech (3-12 s of it) plays over part of the excerpt's full-level stretch.

Crossfades are counted at their midpoint: a row ends, and the next begins, halfway through
the crossfade, so the rows tile the recording. A piece is at full level from ``start_s +
crossfade_in_s / 2`` to ``end_s - crossfade_out_s / 2`` and audible, fading, for half a
crossfade either side. ``reference_start_s`` is the track time heard at ``start_s``;
``reference_end_s - reference_start_s = (end_s - start_s) * speed_factor``.

Degradations are drawn per catalog excerpt (one name of ``degradations`` each, uniformly),
so that each excerpt's row says what it went through (a scoring bucket); out-of-catalog
music, speech and silence are left clean. They are applied after the speed change and before
talk-over, to the whole excerpt with its crossfade halves. Only the registry's
length-preserving degradations can be used: ``speed`` changes the length (DJ speed changes are
``speed_change_share``) and ``humming_like`` is a person, not a broadcast.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from acr.audio import AudioError, AudioInfo, Resampled, audio_info, power, save_audio
from acr.augment.degradations import DEGRADATION_NAMES, check_degradations, degrade
from acr.augment.effects import MAX_SPEED_DENOMINATOR, change_speed
from acr.data.catalogs import read_catalog
from acr.data.manifests import ManifestError, write_table
from acr.files import SKIPPED_COLUMNS, SKIPPED_FILE, output_path
from acr.synth import synthesize_track
from acr.synth.speech import presenter_speech, speech_voice
from acr.workers import rows_of_jobs

TRUTH_FILE = "truth.csv"
TRUTH_COLUMNS = ("recording", "start_s", "end_s", "kind", "track_id", "reference_start_s",
                 "reference_end_s", "speed_factor", "degradation", "talk_over")  # fmt: skip
KINDS = ("catalog", "music", "speech", "silence")
NOT_FOR_MIXES = ("speed", "humming_like")  # change the length / are not a broadcast
MIX_DEGRADATIONS = tuple(name for name in DEGRADATION_NAMES if name not in NOT_FOR_MIXES)
SILENCE_S_RANGE = (1.0, 3.0)  # dead air between pieces
TALK_OVER_S_RANGE = (3.0, 12.0)  # how long a presenter talks over an excerpt
TALK_OVER_FADE_S = 0.05
SPEED_CONTEXT_S = 0.05  # read either side of a speed-changed span (the resampler's reach)
OUT_OF_CATALOG_SEED = 10**9  # generated out-of-catalog songs use seeds from here


@dataclass(frozen=True)
class _Track:
    track_id: str
    path: str
    info: AudioInfo


@dataclass(frozen=True)
class _MixSettings:
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
class _MixJob:
    index: int
    directory: str
    settings: _MixSettings
    tracks: tuple[_Track, ...]
    held_out: tuple[_Track, ...]  # out-of-catalog tracks; empty: generated songs
    reserved_seeds: frozenset[int]  # numbers in catalog ids: no generated song uses them


@dataclass
class _Piece:
    kind: str
    length: int  # samples between its two boundaries (crossfade midpoints)
    track: _Track | None = None  # a catalog excerpt's track, or out-of-catalog music's
    speed_factor: float = 1.0
    head: int = 0  # half of the crossfade before it, in samples
    tail: int = 0  # half of the crossfade after it


def make_mixes(
    catalog: str,
    output: str,
    recordings: int = 4,
    duration_s: float = 300.0,
    min_excerpt_s: float = 5.0,
    max_excerpt_s: float = 120.0,
    out_of_catalog: str | None = None,
    min_gap_s: float = 3.0,
    max_gap_s: float = 30.0,
    speech_share: float = 0.5,
    silence_share: float = 0.1,
    back_to_back_share: float = 0.3,
    max_crossfade_s: float = 2.0,
    degradations: Sequence[str] = MIX_DEGRADATIONS,
    speed_change_share: float = 0.3,
    max_speed_change: float = 0.08,
    talk_over_share: float = 0.2,
    talk_over_snr_db: float = 0.0,
    speech: Literal["auto", "espeak-ng", "babble"] = "auto",
    seed: int = 0,
    sample_rate: int = 16000,
    workers: int | None = None,
) -> pd.DataFrame:
    """Write evaluation recordings for acr monitor (mix_000.wav...) and their truth.csv.

    Catalog rows' track_id is the catalog's id (acr.data.catalogs.read_catalog); tracks that
    cannot be read or are too short for an excerpt are left out and listed in skipped.csv.
    Returns the truth table, with skipped.csv's table in ``attrs["skipped"]``.

    Args:
        catalog: the indexed tracks: a folder of audio, or a CSV/JSONL with track_id and path.
        output: the folder for the recordings, truth.csv and skipped.csv.
        recordings: how many recordings to write.
        duration_s: each recording's length, in seconds.
        min_excerpt_s: the shortest catalog excerpt, in seconds (between crossfade midpoints).
        max_excerpt_s: the longest catalog excerpt, in seconds (a track shorter than this can
            play from start to end, less its crossfades).
        out_of_catalog: tracks that are NOT in the index (a folder or a table) played between
            excerpts; default: generated songs (acr.synth) with seeds no catalog id holds.
        min_gap_s: the shortest out-of-catalog music or speech between excerpts, in seconds.
        max_gap_s: the longest out-of-catalog music or speech between excerpts, in seconds.
        speech_share: the share of breaks between excerpts that are speech (else music).
        silence_share: the share of breaks that are 1-3 s of silence instead.
        back_to_back_share: the share of excerpts followed directly by another excerpt.
        max_crossfade_s: crossfades last 0 to this many seconds (uniformly).
        degradations: names from the degradation registry, one drawn per catalog excerpt
            (length-preserving ones only: not speed or humming_like).
        speed_change_share: the share of catalog excerpts played faster or slower.
        max_speed_change: the largest speed change, e.g. 0.08 for +-8 % (pitch and tempo
            together, as a turntable).
        talk_over_share: the share of catalog excerpts with speech over part of them.
        talk_over_snr_db: music-to-speech power ratio over a talk-over, in dB.
        speech: the voice: espeak-ng (the binary must be on PATH), generated babble
            (acr.augment.sources.babble), or auto (espeak-ng when installed, else babble).
        seed: seeds every choice; the same seed writes the same bytes.
        sample_rate: the recordings' sample rate, in Hz.
        workers: processes writing recordings (default: one per CPU core, at most one per
            recording).
    """
    settings = _check_settings(locals())
    output_dir = output_path(output, folder=True)
    tracks, skipped = _usable_tracks(catalog, settings, "catalog", min_excerpt_s)
    held_out: list[_Track] = []
    if out_of_catalog is not None:
        _require_disjoint(catalog, out_of_catalog)
        held_out, held_out_skipped = _usable_tracks(
            out_of_catalog, settings, "out_of_catalog", min_gap_s
        )
        skipped += held_out_skipped
    reserved = frozenset(
        int(number) for track in tracks for number in re.findall(r"\d+", track.track_id)
    )
    output_dir.mkdir(parents=True, exist_ok=True)
    jobs = [
        _MixJob(index, str(output_dir), settings, tuple(tracks), tuple(held_out), reserved)
        for index in range(recordings)
    ]
    rows, problems = rows_of_jobs(_write_mix, jobs, workers, "recording", "making mixes")
    skipped.extend(problems)
    truth = pd.DataFrame(rows)
    write_table(truth, output_dir / TRUTH_FILE)
    skipped_table = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS).drop_duplicates()
    truth.attrs["skipped"] = skipped_table.reset_index(drop=True).fillna("")
    write_table(truth.attrs["skipped"], output_dir / SKIPPED_FILE)
    return truth


def recording_name(index: int) -> str:
    """The file name of recording ``index``, as truth.csv's recording column gives it."""
    return f"mix_{index:03d}.wav"


def _check_settings(arguments: dict[str, Any]) -> _MixSettings:
    """The settings, or a ValueError naming the option that cannot work."""
    check_degradations(arguments["degradations"])
    unusable = sorted(set(arguments["degradations"]) & set(NOT_FOR_MIXES))
    if unusable:
        raise ValueError(f"degradations: {unusable} change an excerpt's length or are no "
                         "broadcast; use --speed_change_share for DJ speed changes")  # fmt: skip
    if not arguments["degradations"]:
        raise ValueError("degradations: give at least one (clean leaves excerpts as they are)")
    positive = ("duration_s", "min_excerpt_s", "max_excerpt_s", "min_gap_s", "max_gap_s",
                "sample_rate")  # fmt: skip
    for name in positive:
        if not arguments[name] > 0:
            raise ValueError(f"{name} must be > 0, got {arguments[name]}")
    if arguments["recordings"] < 1:
        raise ValueError(f"recordings must be >= 1, got {arguments['recordings']}")
    for name in ("speech_share", "silence_share", "back_to_back_share", "speed_change_share",
                 "talk_over_share"):  # fmt: skip
        if not 0 <= arguments[name] <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {arguments[name]}")
    if not 0 <= arguments["max_speed_change"] < 0.5:
        raise ValueError(
            f"max_speed_change must be in [0, 0.5), got {arguments['max_speed_change']}"
        )
    for low, high in (("min_excerpt_s", "max_excerpt_s"), ("min_gap_s", "max_gap_s")):
        if arguments[low] > arguments[high]:
            raise ValueError(f"{low} ({arguments[low]}) is above {high} ({arguments[high]})")
    crossfade_s = arguments["max_crossfade_s"]
    shortest = min(arguments["min_excerpt_s"], arguments["min_gap_s"])
    if not 0 <= crossfade_s <= shortest:
        raise ValueError(f"max_crossfade_s must be in [0, {shortest:g}] (min_excerpt_s and "
                         f"min_gap_s: the shortest pieces), got {crossfade_s}")  # fmt: skip
    if arguments["duration_s"] < arguments["min_excerpt_s"]:
        duration_s, min_excerpt_s = arguments["duration_s"], arguments["min_excerpt_s"]
        raise ValueError(f"duration_s ({duration_s:g} s) is shorter than min_excerpt_s "
                         f"({min_excerpt_s:g} s): no excerpt fits")  # fmt: skip
    fields = {name: arguments[name] for name in _MixSettings.__dataclass_fields__}
    fields["degradations"] = tuple(arguments["degradations"])
    fields["speech"] = speech_voice(arguments["speech"])
    return _MixSettings(**fields)


def _usable_tracks(
    catalog: str, settings: _MixSettings, option: str, shortest_s: float
) -> tuple[list[_Track], list[dict[str, str]]]:
    """The tracks long enough for the shortest piece (header durations), and skipped.csv rows
    for the others; a ManifestError naming ``catalog`` when none is left."""
    tracks = read_catalog(catalog)
    table_catalog = Path(catalog).is_file()
    skipped = [
        {**entry, "reason": f"{catalog}: {entry['reason']}" if table_catalog else entry["reason"]}
        for entry in tracks.attrs["rejected"]
    ]
    # the played span plus both crossfade halves, read at the largest speed-up
    needed_s = (shortest_s + settings.max_crossfade_s) * (1 + settings.max_speed_change) + 0.1
    pairs = list(zip(tracks["track_id"], tracks["path"]))
    with ThreadPoolExecutor(8) as pool:
        infos = list(pool.map(_header, [path for _, path in pairs]))
    usable = []
    for (track_id, path), info in zip(pairs, infos):
        if isinstance(info, str):
            skipped.append({"track_id": track_id, "path": path, "reason": info})
        elif info.duration_s < needed_s:
            reason = f"shorter than {needed_s:.1f} s ({option} pieces need it)"
            skipped.append({"track_id": track_id, "path": path, "reason": reason})
        else:
            usable.append(_Track(track_id, path, info))
    if not usable:
        example = f"; e.g. {skipped[0]['path']}: {skipped[0]['reason']}" if skipped else ""
        raise ManifestError(catalog, f"{option}: no usable track of at least {needed_s:.1f} s "
                                     f"({len(skipped)} skipped{example})")  # fmt: skip
    return usable, skipped


def _header(path: str) -> AudioInfo | str:
    try:
        return audio_info(path)
    except AudioError as error:
        return error.reason


def _require_disjoint(catalog: str, out_of_catalog: str) -> None:
    """Out-of-catalog tracks share no id and no file with the catalog."""
    indexed, held_out = read_catalog(catalog), read_catalog(out_of_catalog)
    shared_ids = sorted(set(indexed["track_id"]) & set(held_out["track_id"]))
    if shared_ids:
        raise ManifestError(out_of_catalog, f"out_of_catalog shares track_id {shared_ids[0]!r} "
                            f"with the catalog {catalog} ({len(shared_ids)} shared): "
                            "out-of-catalog tracks must not be in the index")  # fmt: skip
    indexed_paths = {os.path.realpath(path) for path in indexed["path"]}
    shared_paths = sorted(
        path for path in held_out["path"] if os.path.realpath(path) in indexed_paths
    )
    if shared_paths:
        raise ManifestError(out_of_catalog, f"out_of_catalog shares the file {shared_paths[0]} "
                            f"with the catalog {catalog}: it is in the index")  # fmt: skip


def _write_mix(job: _MixJob) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
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


def _plan(job: _MixJob, rng: np.random.Generator) -> list[_Piece]:
    """The pieces of one recording, end to end, and the crossfades between them."""
    settings, rate = job.settings, job.settings.sample_rate
    total = round(settings.duration_s * rate)
    max_crossfade = round(settings.max_crossfade_s * rate)
    pieces: list[_Piece] = []
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
                piece = _Piece("speech", remaining)  # an excerpt cut below the shortest
        pieces.append(piece)
        placed += piece.length
    for before, after in zip(pieces, pieces[1:]):
        crossfade = int(rng.uniform(0, max_crossfade + 1))
        crossfade = min(crossfade, before.length, after.length) // 2
        before.tail = after.head = crossfade
    return pieces


def _plan_excerpt(
    job: _MixJob, rng: np.random.Generator, previous: _Track | None, max_crossfade: int
) -> _Piece:
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
    return _Piece("catalog", int(rng.uniform(shortest, longest)), track, speed_factor)


def _plan_break(job: _MixJob, rng: np.random.Generator, max_crossfade: int) -> _Piece:
    """What plays between excerpts: silence, speech or out-of-catalog music."""
    settings, rate = job.settings, job.settings.sample_rate
    if rng.random() < settings.silence_share:
        return _Piece("silence", int(rng.uniform(*SILENCE_S_RANGE) * rate))
    length = int(rng.uniform(settings.min_gap_s, settings.max_gap_s) * rate)
    if rng.random() < settings.speech_share:
        return _Piece("speech", length)
    if not job.held_out:
        return _Piece("music", length)
    track = job.held_out[int(rng.integers(len(job.held_out)))]
    longest = len(Resampled(track.info, rate)) - max_crossfade - 2
    return _Piece("music", min(length, longest), track)


def _render(
    piece: _Piece, job: _MixJob, rng: np.random.Generator, skipped: list, position: int
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
    piece: _Piece, job: _MixJob, rng: np.random.Generator, samples: int, skipped: list
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


def _read(resampled: Resampled, start: int, stop: int, track: _Track | AudioInfo) -> np.ndarray:
    """Samples ``[start, stop)``, or an AudioError when the file holds fewer than its header
    said (a truncated file)."""
    audio = resampled(start, stop)
    if len(audio) < stop - start:
        raise AudioError(track.path, f"decoded {len(audio)} samples, the header promised more")
    return audio


def _talk_over(
    audio: np.ndarray, piece: _Piece, rng: np.random.Generator, settings: _MixSettings
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


def _place(recording: np.ndarray, audio: np.ndarray, start: int, piece: _Piece) -> None:
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


def _song_seed(job: _MixJob, song: int) -> int:
    """The seed of generated out-of-catalog song ``song`` of this recording: far from any
    seed a generated catalog uses, and no number found in a catalog id."""
    seed = OUT_OF_CATALOG_SEED + (job.settings.seed * 10_000 + job.index) * 1_000 + song
    while seed in job.reserved_seeds:
        seed += 10**8
    return seed


def truth_summary(truth: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Rows and seconds of each kind in a truth table."""
    lengths = truth["end_s"] - truth["start_s"]
    return {
        kind: {
            "rows": int((truth["kind"] == kind).sum()),
            "seconds": float(lengths[truth["kind"] == kind].sum()),
        }
        for kind in KINDS
    }

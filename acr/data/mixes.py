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

import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from acr.audio import AudioError, AudioInfo, audio_info
from acr.augment.degradations import DEGRADATION_NAMES, check_degradations
from acr.data.catalogs import read_catalog
from acr.data.manifests import ManifestError, write_table
from acr.data.mix_rendering import MixJob, MixSettings, Track, write_mix
from acr.files import SKIPPED_COLUMNS, SKIPPED_FILE, output_path
from acr.synth.speech import speech_voice
from acr.workers import rows_of_jobs

TRUTH_FILE = "truth.csv"
TRUTH_COLUMNS = ("recording", "start_s", "end_s", "kind", "track_id", "reference_start_s",
                 "reference_end_s", "speed_factor", "degradation", "talk_over")  # fmt: skip
KINDS = ("catalog", "music", "speech", "silence")
NOT_FOR_MIXES = ("speed", "humming_like")  # change the length / are not a broadcast
MIX_DEGRADATIONS = tuple(name for name in DEGRADATION_NAMES if name not in NOT_FOR_MIXES)


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
    held_out: list[Track] = []
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
        MixJob(index, str(output_dir), settings, tuple(tracks), tuple(held_out), reserved)
        for index in range(recordings)
    ]
    rows, problems = rows_of_jobs(write_mix, jobs, workers, "recording", "making mixes")
    skipped.extend(problems)
    truth = pd.DataFrame(rows)
    write_table(truth, output_dir / TRUTH_FILE)
    skipped_table = pd.DataFrame(skipped, columns=SKIPPED_COLUMNS).drop_duplicates()
    truth.attrs["skipped"] = skipped_table.reset_index(drop=True).fillna("")
    write_table(truth.attrs["skipped"], output_dir / SKIPPED_FILE)
    return truth


def _check_settings(arguments: dict[str, Any]) -> MixSettings:
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
    fields = {name: arguments[name] for name in MixSettings.__dataclass_fields__}
    fields["degradations"] = tuple(arguments["degradations"])
    fields["speech"] = speech_voice(arguments["speech"])
    return MixSettings(**fields)


def _usable_tracks(
    catalog: str, settings: MixSettings, option: str, shortest_s: float
) -> tuple[list[Track], list[dict[str, str]]]:
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
            usable.append(Track(track_id, path, info))
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

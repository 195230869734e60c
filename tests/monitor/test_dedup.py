"""acr.monitor.dedup: planted exact and partial duplicates in a catalog are found, and
nothing else."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import save_audio
from acr.cli import main
from acr.monitor.dedup import COLUMNS, find_duplicates, indexed_tracks
from acr.synth import synthesize_track

RATE = 16000


def _song(seed: int, duration_s: float) -> np.ndarray:
    return synthesize_track(seed, duration_s, RATE)


@pytest.fixture(scope="module")
def duplicated_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A catalog where ``same`` is ``original`` under another id and ``radio_edit`` holds
    15 s of ``album`` (its 5-20 s) between 8 s of other music either side."""
    root = tmp_path_factory.mktemp("dedup")
    original, album = _song(10, 30.0), _song(11, 30.0)
    edit = np.concatenate([_song(2000, 8.0), album[5 * RATE : 20 * RATE], _song(2001, 8.0)])
    tracks = {"original": original, "same": original, "album": album,
              "radio_edit": edit, "other": _song(12, 30.0)}  # fmt: skip
    for track_id, audio in tracks.items():
        save_audio(root / "catalog" / f"{track_id}.wav", audio, RATE)
    index = root / "index"
    assert main(["index", "--catalog", str(root / "catalog"), "--output", str(index),
                 "--workers", "1"]) == 0  # fmt: skip
    return index


def test_dedup_finds_the_planted_duplicates_and_nothing_else(
    duplicated_index: Path, tmp_path: Path
) -> None:
    output = tmp_path / "duplicates.csv"
    assert main(["dedup", "--index", str(duplicated_index), "--output", str(output)]) == 0
    with open(output, newline="") as rows:
        found = list(csv.DictReader(rows))
    assert found and list(found[0]) == list(COLUMNS)
    pairs = sorted((row["track_id"], row["duplicate_of"], row["kind"]) for row in found)
    assert pairs == [
        ("album", "radio_edit", "partial"),
        ("original", "same", "exact"),
        ("radio_edit", "album", "partial"),
        ("same", "original", "exact"),
    ]
    by_pair = {(row["track_id"], row["duplicate_of"]): row for row in found}
    expected = {  # (start_s, end_s, reference_start_s, reference_end_s)
        ("album", "radio_edit"): (5.0, 20.0, 8.0, 23.0),
        ("radio_edit", "album"): (8.0, 23.0, 5.0, 20.0),
        ("original", "same"): (0.0, 30.0, 0.0, 30.0),
    }
    for pair, times in expected.items():
        row = by_pair[pair]
        columns = ("start_s", "end_s", "reference_start_s", "reference_end_s")
        assert [float(row[c]) for c in columns] == pytest.approx(times, abs=1.0), row


def test_find_duplicates_flags_leakage_between_two_track_lists(
    duplicated_index: Path, tmp_path: Path
) -> None:
    """The hook for `acr data validate`: training tracks scanned against an evaluation
    catalog's index."""
    indexed = indexed_tracks(duplicated_index)
    assert sorted(indexed["track_id"]) == ["album", "original", "other", "radio_edit", "same"]
    assert (indexed["audio_s"] > 29).all()
    leaked = _song(12, 30.0)[10 * RATE : 22 * RATE]  # 12 s of "other"
    clean = _song(3000, 20.0)
    training = []
    for track_id, audio in (("train_leak", np.concatenate([clean[:6 * RATE], leaked])),
                            ("train_clean", clean), ("short", clean[: 2 * RATE])):  # fmt: skip
        save_audio(tmp_path / f"{track_id}.wav", audio, RATE)
        training.append((track_id, str(tmp_path / f"{track_id}.wav")))
    found = find_duplicates(duplicated_index, pd.DataFrame(training, columns=["track_id", "path"]))
    assert list(found["track_id"]) == ["train_leak"]
    row = found.iloc[0]
    assert row["duplicate_of"] == "other" and row["kind"] == "partial"
    assert (row["start_s"], row["reference_start_s"]) == pytest.approx((6.0, 10.0), abs=1.0)
    assert found.attrs["skipped"] == [
        ("short", str(tmp_path / "short.wav"),
         "too short (2.00 s < 10 s, one monitoring window; acr recognize answers clips)")
    ]  # fmt: skip


def test_find_duplicates_can_keep_a_track_s_own_hits(duplicated_index: Path) -> None:
    tracks = indexed_tracks(duplicated_index)
    tracks = tracks[tracks["track_id"] == "other"]
    assert find_duplicates(duplicated_index, tracks).empty
    itself = find_duplicates(duplicated_index, tracks, exclude_self=False)
    assert list(itself["duplicate_of"]) == ["other"] and list(itself["kind"]) == ["exact"]

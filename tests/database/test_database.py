"""The catalog in PostgreSQL (acr.database) against a real server: the same answers as the
index directory it was pushed from, whole tracks after a failed push, removal, refusals."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from acr.audio import load_audio
from acr.cli import main
from acr.database.engines import database_recognizer
from acr.database.push import push_index, remove_tracks
from acr.database.reader import DatabaseReader
from acr.database.schema import DatabaseError, DatabaseUnavailable, init_database
from acr.retrieval.build import build_index
from acr.retrieval.recognizer import Recognizer

RATE = 16000
SEEDS = tuple(range(8))


@pytest.fixture(scope="module")
def songs(song_folder) -> Path:
    return song_folder(seeds=SEEDS, duration_s=10.0)


@pytest.fixture(scope="module")
def fingerprint_index(songs: Path, tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("fp") / "index"
    build_index(str(songs), str(index), "fingerprint", workers=1, save_every=3)
    return index


@pytest.fixture(scope="module")
def hybrid_index(songs: Path, tiny_run: Path, tmp_path_factory) -> Path:
    index = tmp_path_factory.mktemp("hybrid") / "index"
    checkpoint = str(tiny_run / "checkpoints" / "last.ckpt")
    build_index(str(songs), str(index), "hybrid", checkpoint, workers=1, save_every=4)
    return index


def clips(songs: Path, count: int, seed: int = 0, length_s: float = 3.0) -> list:
    """(song id, clip) pairs: random songs at random offsets, some with noise."""
    rng = np.random.default_rng(seed)
    result = []
    for number in range(count):
        song = int(rng.choice(SEEDS))
        audio = load_audio(songs / f"song{song}.wav", RATE)
        start = int(rng.integers(0, len(audio) - int(length_s * RATE)))
        clip = audio[start : start + int(length_s * RATE)].copy()
        if number % 2:
            clip += rng.normal(0, 0.3 * clip.std(), len(clip)).astype(np.float32)
        result.append((f"song{song}", clip))
    return result


def test_init_is_idempotent_and_bad_urls_are_refused(database: str, postgres) -> None:
    first = init_database(database)
    assert first["schema_version"] == 1 and first["version"] == 0
    assert init_database(database) == first
    with pytest.raises(DatabaseError, match="not a postgresql://"):
        init_database("mysql://localhost/x")
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="cannot connect"):
        init_database("postgresql://nobody@127.0.0.1:9/none")
    assert time.monotonic() - started < 10
    with pytest.raises(DatabaseError, match="no catalog yet"):
        DatabaseReader(database)


RATE_FRAMES = 8000 / 256  # the fingerprint's STFT frames a second


def test_fingerprint_answers_are_those_of_the_index_directory(
    fingerprint_index: Path, songs: Path, database: str
) -> None:
    summary = push_index(str(fingerprint_index), database)
    assert (summary.added, summary.present) == (len(SEEDS), 0)
    assert summary.postings > 1000
    from_files = Recognizer.load(fingerprint_index)
    from_database = database_recognizer(DatabaseReader(database))
    right = 0
    for song, clip in clips(songs, 24):
        a, b = from_files.recognize(clip, RATE, 5), from_database.recognize(clip, RATE, 5)
        assert [(m.track_id, m.score, m.offset_s) for m in b.matches] == [
            (m.track_id, m.score, m.offset_s) for m in a.matches
        ]
        right += bool(b.matches) and b.matches[0].track_id == song
    assert right >= 22
    # Each track's verification spectrogram went in whole: 30 bands a frame, ~31 frames a s.
    spectra = DatabaseReader(database).execute(
        "SELECT t.track_id, length(s.spectrum), t.audio_s FROM acr_spectra s"
        " JOIN acr_tracks t ON t.number = s.track"
    )
    assert len(spectra) == len(SEEDS)
    for track_id, size, audio_s in spectra:
        assert size % 30 == 0 and abs(size / 30 - audio_s * RATE_FRAMES) < 5, track_id
    again = push_index(str(fingerprint_index), database)
    assert (again.added, again.present, again.postings) == (0, len(SEEDS), 0)


def test_embedding_answers_agree_with_the_index_directory(
    hybrid_index: Path, songs: Path, database: str
) -> None:
    summary = push_index(str(hybrid_index), database)
    assert summary.skipped_engines == ["melody"]
    assert summary.windows > 100
    reader = DatabaseReader(database)
    files = Recognizer.load(hybrid_index).engines
    engines = database_recognizer(reader).engines
    assert list(engines) == ["fingerprint", "embedding"]
    queries = clips(songs, 60, seed=1)
    same = sum(
        [m.track_id for m in engines["embedding"].search(clip, 5)[:1]]
        == [m.track_id for m in files["embedding"].search(clip, 5)[:1]]
        for _, clip in queries
    )
    assert same / len(queries) >= 0.99
    for _, clip in queries[:10]:
        assert engines["fingerprint"].search(clip, 5) == files["fingerprint"].search(clip, 5)


def test_a_failed_push_leaves_whole_tracks_and_a_rerun_completes(
    fingerprint_index: Path, tmp_path: Path, database: str
) -> None:
    import shutil

    index = tmp_path / "index"
    shutil.copytree(fingerprint_index, index)
    last = sorted(index.glob("segment-*"))[-1]
    keys = last / "fingerprint" / "keys.npy"
    kept = keys.read_bytes()
    keys.write_bytes(kept[: len(kept) // 2])  # the last segment is damaged
    with pytest.raises(Exception, match="keys.npy"):
        push_index(str(index), database)
    reader = DatabaseReader(database)
    tracks = reader.tracks()
    assert 0 < len(tracks) < len(SEEDS)
    counts = dict(reader.execute("SELECT track, count(*) FROM acr_postings GROUP BY track"))
    assert set(counts) == set(tracks["number"])  # no posting without its track, nor the reverse
    keys.write_bytes(kept)
    summary = push_index(str(index), database)
    assert summary.present == len(tracks) and summary.added == len(SEEDS) - len(tracks)
    assert sorted(reader.tracks()["track_id"]) == sorted(f"song{s}" for s in SEEDS)


def test_removed_tracks_are_never_answered_and_unknown_ids_change_nothing(
    fingerprint_index: Path, songs: Path, database: str
) -> None:
    push_index(str(fingerprint_index), database)
    reader = DatabaseReader(database)
    recognizer = database_recognizer(reader)
    clip = load_audio(songs / "song2.wav", RATE)[RATE * 3 : RATE * 6]
    assert recognizer.recognize(clip, RATE).matches[0].track_id == "song2"
    with pytest.raises(DatabaseError, match="'nope' is not in the database"):
        remove_tracks(database, ["song2", "nope"])
    assert "song2" in set(reader.tracks()["track_id"])
    assert remove_tracks(database, ["song2"]) == 1
    matches = recognizer.recognize(clip, RATE).matches
    assert all(m.track_id != "song2" for m in matches)
    left = reader.execute("SELECT count(*) FROM acr_postings")[0][0]
    assert left == reader.execute("SELECT count(*) FROM acr_postings p JOIN acr_tracks t"
                                  " ON p.track = t.number")[0][0]  # fmt: skip
    assert reader.execute("SELECT count(*) FROM acr_spectra")[0][0] == len(SEEDS) - 1


def test_another_catalog_is_refused(
    fingerprint_index: Path, songs: Path, tmp_path: Path, database: str
) -> None:
    push_index(str(fingerprint_index), database)
    other = tmp_path / "other"
    build_index(str(songs), str(other), "fingerprint", workers=1,
                fingerprint=__import__("acr.retrieval.fingerprint.engine", fromlist=["x"])
                .FingerprintSettings(fanout=3))  # fmt: skip
    with pytest.raises(DatabaseError, match="other settings"):
        push_index(str(other), database)


def test_the_commands(fingerprint_index: Path, songs: Path, database: str, capsys) -> None:
    assert main(["db", "init", "--database", database, "--hnsw.m", "8"]) == 0
    assert "HNSW m 8" in capsys.readouterr().out
    assert main(["db", "push", "--index", str(fingerprint_index), "--database", database]) == 0
    assert f"{len(SEEDS)} track(s) added" in capsys.readouterr().out
    assert main(["db", "remove", "--database", database, "song1"]) == 0
    assert "removed 1 track(s)" in capsys.readouterr().out
    assert main(["db", "list", "--database", database]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0].startswith("track_id,audio_s,source") and len(listed) == len(SEEDS)
    assert main(["db", "remove", "--database", database, "song1"]) != 0
    assert "'song1' is not in the database" in capsys.readouterr().err


def test_acr_index_pushes_with_database(songs: Path, tmp_path: Path, database: str, capsys):
    code = main(["index", "--catalog", str(songs), "--output", str(tmp_path / "i"),
                 "--workers", "1", "--database", database])  # fmt: skip
    assert code == 0
    assert f"{len(SEEDS)} track(s) added" in capsys.readouterr().out
    assert len(DatabaseReader(database).tracks()) == len(SEEDS)

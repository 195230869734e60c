"""acr.retrieval.changes: add, replace, remove and compact give the index a fresh build of the
final catalog would; bad requests and kills leave it as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import load_audio
from acr.cli import main
from acr.data.manifests import write_table
from acr.retrieval.build import build_index, index_lock
from acr.retrieval.changes import add_tracks, compact_index, list_index, remove_tracks
from acr.retrieval.embedding import EmbeddingSettings
from acr.retrieval.engine import IndexDirectoryError
from acr.retrieval.store import IndexState, load_engines

SAMPLE_RATE = 16000
SONGS = 8
CLIP_S = 3.0


@pytest.fixture(scope="module")
def songs(song_folder) -> Path:
    return song_folder(SONGS, 10.0, SAMPLE_RATE)


def table(songs: Path, path: Path, rows: list[tuple[str, int]]) -> Path:
    """A catalog table: (track id, number of the song whose audio it is)."""
    frame = pd.DataFrame(
        [(track_id, str(songs / f"song{song}.wav")) for track_id, song in rows],
        columns=["track_id", "path"],
    )
    write_table(frame, path)
    return path


def clips(songs: Path) -> list[np.ndarray]:
    """A 3-s clip of every song, 4 s in."""
    start, end = int(4 * SAMPLE_RATE), int((4 + CLIP_S) * SAMPLE_RATE)
    return [load_audio(songs / f"song{n}.wav", SAMPLE_RATE)[start:end] for n in range(SONGS)]


def answers(index: Path, queries: list[np.ndarray]) -> list[list[tuple[str, float, float]]]:
    engines = load_engines(index)
    from acr.audio import resample

    return [
        [
            (match.track_id, match.score, round(match.offset_s, 3))
            for name, engine in engines.items()
            for match in engine.search(resample(q, SAMPLE_RATE, engine.sample_rate), 8)
        ]
        for q in queries
    ]


# The story of one index: built from songs 0-3 in two segments, songs 4 and 5 added, song1
# removed, song2 replaced by the audio of song 6. A fresh build of the final catalog lists the
# live tracks in the order they were added.
FIRST = [("song0", 0), ("song1", 1), ("song2", 2), ("song3", 3)]
ADDED = [("song4", 4), ("song5", 5)]
REPLACEMENT = [("song2", 6)]
FINAL = [("song0", 0), ("song3", 3), ("song4", 4), ("song5", 5), ("song2", 6)]


def changed_index(songs: Path, work: Path) -> Path:
    index = work / "index"
    build_index(str(table(songs, work / "first.csv", FIRST)), str(index), workers=1, save_every=2)
    add_tracks(str(index), str(table(songs, work / "added.csv", ADDED)), workers=1)
    assert remove_tracks(str(index), ["song1"]) == 1
    add_tracks(str(index), str(table(songs, work / "new2.csv", REPLACEMENT)), True, workers=1)
    return index


def test_add_remove_replace_compact_answer_as_a_fresh_build(songs: Path, tmp_path: Path) -> None:
    index = changed_index(songs, tmp_path)
    fresh = tmp_path / "fresh"
    build_index(str(table(songs, tmp_path / "final.csv", FINAL)), str(fresh), workers=1)
    queries = clips(songs)
    expected = answers(fresh, queries)
    # Song 1 was removed and song 2's audio replaced: no answer names them; song 6's audio is
    # found as song2.
    assert all(match[0] != "song1" for match in expected[1])
    assert expected[6][0][0] == "song2" and expected[2][0][0] != "song2"
    state = IndexState.read(index)
    assert [s.removed for s in state.segments] == [["song1"], ["song2"], [], []]
    assert state.tracks == 5 and state.items == IndexState.read(fresh).items
    assert answers(index, queries) == expected

    listing = list_index(str(index))
    assert listing.tracks["track_id"].tolist() == [t for t, _ in FINAL]
    assert listing.segments["removed"].tolist() == [1, 1, 0, 0]

    compact_index(str(index))
    (segment,) = IndexState.read(index).segments
    assert segment.removed == [] and segment.level == 1
    assert answers(index, queries) == expected
    for name in ("keys", "starts", "tracks", "frames"):
        fresh_array = np.load(fresh / "segment-000001" / "fingerprint" / f"{name}.npy")
        compacted = np.load(index / segment.name / "fingerprint" / f"{name}.npy")
        assert np.array_equal(compacted, fresh_array), name
    names = sorted(path.name for path in index.iterdir() if "segment" in path.name)
    assert names == [segment.name]  # the merged segments are gone


def test_pair_hashes_warn_past_their_catalog_size_and_triplets_change_like_pairs(
    songs: Path, tmp_path: Path, monkeypatch
) -> None:
    """A build or an add that takes a pair-hash index past PAIR_HASH_TRACKS (here 3) warns,
    naming the setting; a triplet index does not, and its add/remove/compact answer as a fresh
    build of the final catalog does."""
    from acr.retrieval.fingerprint import engine as fingerprint_engine
    from acr.retrieval.fingerprint.engine import FingerprintSettings

    monkeypatch.setattr(fingerprint_engine, "PAIR_HASH_TRACKS", 3)
    first, added = (
        table(songs, tmp_path / "first.csv", FIRST[:3]),
        table(songs, tmp_path / "added.csv", ADDED),
    )
    pairs = tmp_path / "pairs"
    build_index(str(first), str(pairs), workers=1)  # 3 tracks: no warning
    with pytest.warns(UserWarning, match="5 tracks with pair hashes.*--fingerprint.hash_peaks 3"):
        add_tracks(str(pairs), str(added), workers=1)
    with pytest.warns(UserWarning, match="4 tracks with pair hashes"):
        build_index(
            str(table(songs, tmp_path / "four.csv", FIRST)), str(tmp_path / "four"), workers=1
        )

    triplets = FingerprintSettings(hash_peaks=3)
    index, fresh = tmp_path / "triplets", tmp_path / "fresh"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_index(str(first), str(index), workers=1, save_every=2, fingerprint=triplets)
        add_tracks(str(index), str(added), workers=1)
    remove_tracks(str(index), ["song1"])
    final = [("song0", 0), ("song2", 2), ("song4", 4), ("song5", 5)]
    build_index(
        str(table(songs, tmp_path / "final.csv", final)),
        str(fresh),
        workers=1,
        fingerprint=triplets,
    )
    queries = clips(songs)
    expected = answers(fresh, queries)
    assert answers(index, queries) == expected
    compact_index(str(index))
    assert answers(index, queries) == expected
    assert [expected[n][0][0] for n in (0, 2, 4, 5)] == ["song0", "song2", "song4", "song5"]
    assert all(match[0] != "song1" for matches in expected for match in matches)


def test_segments_merge_in_tiers_during_a_build(songs: Path, tmp_path: Path, monkeypatch) -> None:
    """With a merge factor of 2 and one track per segment, 8 tracks end in one segment of
    level 3, built by merges of 2 (every posting written 4 times, not 8)."""
    from acr.retrieval import build

    monkeypatch.setattr(build, "MERGE_FACTOR", 2)
    rows = [(f"song{n}", n) for n in range(SONGS)]
    index = tmp_path / "index"
    build_index(str(table(songs, tmp_path / "all.csv", rows)), str(index), workers=1, save_every=1)
    state = IndexState.read(index)
    assert [(s.level, s.tracks) for s in state.segments] == [(3, 8)]
    fresh = tmp_path / "fresh"
    build_index(str(tmp_path / "all.csv"), str(fresh), workers=1)
    assert answers(index, clips(songs)) == answers(fresh, clips(songs))


@pytest.fixture
def built(songs: Path, tmp_path: Path) -> Path:
    index = tmp_path / "index"
    build_index(
        str(table(songs, tmp_path / "first.csv", FIRST)), str(index), workers=1, save_every=2
    )
    return index


def unchanged(index: Path) -> dict[str, bytes]:
    """Every file of the index but the lock, by content."""
    return {
        str(path.relative_to(index)): path.read_bytes()
        for path in sorted(index.rglob("*"))
        if path.is_file() and path.name not in (".lock", "status.json")
    }


@pytest.mark.parametrize(
    "request_, message",
    [
        (lambda i, s, w: remove_tracks(str(i), ["song0", "nope"]), "track 'nope' is not in"),
        (
            lambda i, s, w: add_tracks(
                str(i), str(table(s, w / "a.csv", [("song0", 5)])), workers=1
            ),
            "track 'song0' is already in .*acr index replace",
        ),
        (
            lambda i, s, w: add_tracks(
                str(i), str(table(s, w / "r.csv", [("song9", 5)])), True, workers=1
            ),
            "track 'song9' is not in .*nothing to replace",
        ),
        (
            lambda i, s, w: add_tracks(
                str(i), str(table(s, w / "d.csv", [("new", 4), ("new", 5)])), workers=1
            ),
            "duplicate track_id 'new'",
        ),
    ],
    ids=["remove-unknown", "add-existing", "replace-unknown", "duplicate-in-one-add"],
)
def test_bad_requests_are_one_error_and_change_nothing(
    built: Path, songs: Path, tmp_path: Path, request_, message: str
) -> None:
    before = unchanged(built)
    with pytest.raises((IndexDirectoryError, ValueError), match=message):
        request_(built, songs, tmp_path)
    assert unchanged(built) == before


def test_a_file_that_cannot_be_decoded_stops_the_add_and_changes_nothing(
    built: Path, songs: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.mp3"
    broken.write_bytes(b"ID3" + b"\x00garbage" * 50)
    rows = pd.DataFrame(
        [("song4", str(songs / "song4.wav")), ("broken", str(broken))], columns=["track_id", "path"]
    )
    write_table(rows, tmp_path / "add.csv")
    before = unchanged(built)
    with pytest.raises(IndexDirectoryError, match=r"broken.mp3: cannot decode.*nothing was added"):
        add_tracks(str(built), str(tmp_path / "add.csv"), workers=1, save_every=1)
    assert unchanged(built) == before  # the segment written for song4 is gone too


def test_damaged_segments_and_a_second_writer_are_refused(
    built: Path, songs: Path, tmp_path
) -> None:
    added = str(table(songs, tmp_path / "added.csv", ADDED))
    with index_lock(built):
        with pytest.raises(
            IndexDirectoryError, match=rf"another acr process \(pid {os.getpid()}\)"
        ):
            remove_tracks(str(built), ["song0"])
    tracks = built / "segment-000002" / "fingerprint" / "tracks.npy"
    tracks.write_bytes(tracks.read_bytes()[:100])
    before = unchanged(built)
    for change in (
        lambda: add_tracks(str(built), added, workers=1),
        lambda: compact_index(str(built)),
    ):
        with pytest.raises(IndexDirectoryError, match="segment-000002/fingerprint/tracks.npy"):
            change()
        assert unchanged(built) == before
    state = IndexState.read(built)
    state.segments[1].name = "segment-000009"
    state.write(built)
    with pytest.raises(IndexDirectoryError, match="segment-000009: missing"):
        remove_tracks(str(built), ["song0"])


def test_the_index_commands_from_the_shell(
    built: Path, songs: Path, tmp_path: Path, capsys
) -> None:
    added = str(table(songs, tmp_path / "added.csv", ADDED))
    assert main(["index", "add", str(built), added, "--workers", "1"]) == 0
    assert main(["index", "remove", str(built), "song1", "song3"]) == 0
    assert "removed 2 track(s)" in capsys.readouterr().out
    assert main(["index", "remove", str(built), "missing"]) == 1
    assert "acr index remove: error: track 'missing' is not in" in capsys.readouterr().err
    assert main(["index", "list", str(built)]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert listed[0] == "track_id,segment,audio_s,path"
    assert [line.split(",")[0] for line in listed[1:]] == ["song0", "song2", "song4", "song5"]
    assert main(["index", "compact", str(built)]) == 0
    assert "tracks 4" in capsys.readouterr().out
    assert main(["index", "list", str(built), "--segments", "true"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == ["segment-000004,1,4,0"]


# kill -9 at random moments of each change, then the same command again: the index the
# uninterrupted change gives. The moments are drawn over the time the change holds the lock
# (after the interpreter has started), measured on an uninterrupted run.
CHANGES = {
    "add": lambda index, work: ["add", index, work["added"], "--workers", "1", "--save_every", "1"],
    "replace": lambda index, work: ["replace", index, work["replacement"], "--workers", "1"],
    "remove": lambda index, work: ["remove", index, "song1", "song3"],
    "compact": lambda index, work: ["compact", index],
}


@pytest.mark.slow
@pytest.mark.parametrize("change", list(CHANGES))
def test_kill_9_at_any_moment_then_rerun_gives_the_same_index(
    change: str, songs: Path, tmp_path: Path
) -> None:
    work = {
        "added": str(table(songs, tmp_path / "added.csv", ADDED)),
        "replacement": str(table(songs, tmp_path / "new2.csv", REPLACEMENT)),
    }
    first = table(songs, tmp_path / "first.csv", FIRST)
    command = [sys.executable, "-m", "acr", "index"]
    queries = clips(songs)

    def fresh_index(name: str) -> Path:
        index = tmp_path / name
        build_index(str(first), str(index), workers=1, save_every=2)
        if change == "compact":  # something to merge away
            remove_tracks(str(index), ["song1"])
        return index

    def start(index: Path) -> tuple[subprocess.Popen, float]:
        """The change on ``index``, once it holds the lock (its pid in .lock)."""
        process = subprocess.Popen(
            [*command, *CHANGES[change](str(index), work)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        lock, deadline = index / ".lock", time.time() + 60
        while time.time() < deadline and process.poll() is None:
            if lock.is_file() and lock.read_text().strip() == str(process.pid):
                break
            time.sleep(0.005)
        return process, time.perf_counter()

    reference = fresh_index("reference")
    process, locked = start(reference)
    assert process.wait() == 0
    holding_s = time.perf_counter() - locked
    expected = answers(reference, queries)
    expected_tracks = list_index(str(reference)).tracks["track_id"].tolist()
    rng = np.random.default_rng(0)
    for attempt, moment in enumerate(rng.uniform(0.0, 1.0, 4) * holding_s):
        index = fresh_index(f"killed{attempt}")
        process, _ = start(index)
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait()
        load_engines(index)  # consistent: the old state or the new one
        subprocess.run([*command, *CHANGES[change](str(index), work)], check=True,
                       capture_output=True)  # fmt: skip
        assert list_index(str(index)).tracks["track_id"].tolist() == expected_tracks
        assert answers(index, queries) == expected
        leftovers = {p.name for p in index.iterdir() if "segment" in p.name}
        assert leftovers == {s.name for s in IndexState.read(index).segments}


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["ivfpq", "flat"])
def test_an_embedding_index_on_faiss_changes_like_any_other(
    backend: str, songs: Path, tiny_run: Path, tmp_path: Path
) -> None:
    """The FAISS backends through build, add, remove and compact: the IVF-PQ training of the
    first segment serves every later one, removed tracks are never returned, and compaction
    (codes moved, not re-encoded) keeps the answers (scores may move where quantised
    similarities tie for a query's last neighbours: measured on 1 of 6 clips)."""
    checkpoint = str(tiny_run / "checkpoints" / "last.ckpt")
    settings = EmbeddingSettings(backend=backend, pq_m=8, nlist=8, nprobe=8)
    index = tmp_path / "index"
    first = table(songs, tmp_path / "first.csv", FIRST)
    build_index(str(first), str(index), "embedding", checkpoint, workers=1, save_every=2,
                embedding=settings)  # fmt: skip
    add_tracks(str(index), str(table(songs, tmp_path / "added.csv", ADDED)), workers=1)
    remove_tracks(str(index), ["song1"])
    state = IndexState.read(index)
    assert state.engines["embedding"]["backend"] == backend and len(state.segments) == 3
    faiss_files = sorted(index.glob("segment-*/embedding/hnsw/faiss.index"))
    assert len(faiss_files) == 3 and not list(index.glob("segment-*/embedding/hnsw/hnsw.bin"))
    queries = clips(songs)[:6]
    before = answers(index, queries)
    assert all(match[0] != "song1" for answer in before for match in answer)
    compact_index(str(index))
    after = answers(index, queries)
    assert [a[0][0] for a in after] == [b[0][0] for b in before]
    same_scores = [np.allclose([m[1] for m in a], [m[1] for m in b]) for a, b in zip(after, before)]
    assert sum(same_scores) >= len(queries) - 1
    models = {path.stat().st_ino for path in index.glob("segment-*/embedding/model.ckpt")}
    assert len(models) == 1

"""acr.data.readiness: is a folder (or a source's listed files) ready to train and test on?"""

from pathlib import Path

import pytest

from acr.data.inspection import inspect_audio
from acr.data.readiness import check_ready, describe_readiness

SAMPLE_RATE = 8000


@pytest.fixture(scope="module")
def music(song_folder, write_song) -> Path:
    """Twelve 4 s tracks in two albums, two 2 s tracks, and a hidden file the source ignores."""
    root = song_folder(12, 4.0, SAMPLE_RATE, nested=2)
    write_song(root / "short" / "jingle1.wav", 100, 2.0, SAMPLE_RATE)
    write_song(root / "short" / "jingle2.flac", 101, 2.0, SAMPLE_RATE)
    (root / "album0" / "._song0.wav").write_bytes(b"macOS resource fork, not audio")
    (root / "cover.jpg").write_bytes(b"jpeg")
    return root


def test_a_folder_with_enough_long_tracks_is_ready(music: Path) -> None:
    report = check_ready(music, query_length_s=3.0)
    assert report["ready"] is True and report["reasons"] == []
    assert (report["files"], report["long_enough"], report["too_short"]) == (14, 12, 2)
    assert report["unreadable"] == 0 and report["unreadable_files"] == []
    assert report["min_duration_s"] == pytest.approx(3.3)
    assert report["hours"] == pytest.approx((12 * 4.0 + 2 * 2.0) / 3600, abs=1e-3)
    assert report["usable_hours"] == pytest.approx(12 * 4.0 / 3600, abs=1e-3)
    assert sorted(Path(path).name for path in report["too_short_examples"]) == [
        "jingle1.wav",
        "jingle2.flac",
    ]
    assert report["warnings"] == [
        "1 hidden audio files (a name starting with '.') are ignored, as the folder source"
        " ignores them",
        "2 files are shorter than 3.3 s (1.1 x the 3 s query length): they make no query",
    ]


def test_a_query_longer_than_the_tracks_leaves_none_long_enough(music: Path) -> None:
    # 4 s tracks hold a 3.6 s query (3.96 s with its margin) but not a 4 s one (4.4 s).
    assert check_ready(music, query_length_s=3.6)["long_enough"] == 12
    report = check_ready(music, query_length_s=4.0)
    assert report["ready"] is False
    assert (report["long_enough"], report["too_short"]) == (0, 14)
    assert report["reasons"] == [
        "only 0 of 14 files are at least 4.4 s (1.1 x the 4 s query length); train, val and"
        " test splits need at least 10"
    ]


def test_too_few_long_tracks_for_the_splits(music: Path) -> None:
    report = check_ready(music, query_length_s=3.0, min_tracks=13)
    assert report["ready"] is False
    assert report["reasons"][0].startswith("only 12 of 14 files are at least 3.3 s")
    assert report["reasons"][0].endswith("splits need at least 13")


def test_unreadable_files_are_listed_and_block(song_folder, tmp_path: Path) -> None:
    song_folder(10, 4.0, SAMPLE_RATE, folder=tmp_path)
    (tmp_path / "broken.mp3").write_bytes(b"not an mp3 at all" * 10)
    report = check_ready(tmp_path, query_length_s=3.0)
    assert report["ready"] is False
    assert (report["files"], report["long_enough"], report["unreadable"]) == (11, 10, 1)
    [unreadable] = report["unreadable_files"]
    assert unreadable["path"] == str(tmp_path / "broken.mp3")
    assert "cannot decode" in unreadable["reason"]
    [reason] = report["reasons"]
    assert reason.startswith(f"1 unreadable files (listed in unreadable_files, e.g. {tmp_path}")
    assert reason.endswith("fix or remove them")


def test_a_folder_without_audio_is_not_ready(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no music here")
    report = check_ready(tmp_path)
    assert report["ready"] is False and report["files"] == 0
    assert report["reasons"] == [f"no audio files under {tmp_path}"]


def test_two_files_with_one_track_id_are_a_reason(song_folder, write_song, tmp_path: Path) -> None:
    song_folder(10, 4.0, SAMPLE_RATE, folder=tmp_path)
    write_song(tmp_path / "song0.flac", 0, 4.0, SAMPLE_RATE)
    report = check_ready(tmp_path)
    assert report["ready"] is False and report["long_enough"] == 11
    assert report["reasons"] == [
        f"1 track ids are shared by several files, e.g. 'song0' ({tmp_path / 'song0.flac'} and"
        f" {tmp_path / 'song0.wav'}): keep one file per track"
    ]


def test_listed_paths_with_splits_need_long_tracks_in_every_split(music: Path) -> None:
    long = sorted(music.glob("album*/song*.wav"))
    short = sorted(music.glob("short/*"))
    paths = [*long, *short, music / "gone.wav"]
    splits = ["train"] * 11 + ["val"] + ["test", "test"] + ["train"]
    report = check_ready(music, 3.0, paths=paths, splits=splits)
    assert report["ready"] is False
    assert report["splits"] == {
        "train": {"files": 12, "long_enough": 11},
        "val": {"files": 1, "long_enough": 1},
        "test": {"files": 2, "long_enough": 0},
    }
    assert report["unreadable_files"] == [
        {"path": str(music / "gone.wav"), "reason": "file does not exist"}
    ]
    assert report["reasons"][1:] == [
        "the test split has no track of at least 3.3 s (1.1 x the 3 s query length)"
    ]
    assert report["reasons"][0].startswith("1 unreadable files")
    # The hidden file is not listed, so it is neither counted nor mentioned.
    assert report["files"] == 15
    assert report["warnings"] == [
        "2 files are shorter than 3.3 s (1.1 x the 3 s query length): they make no query"
    ]


def test_inspect_and_check_share_one_header_scan(music: Path) -> None:
    long = sorted(music.glob("album*/song*.wav"))
    splits = ["train"] * 10 + ["val", "test"]
    inspected = inspect_audio(music, long, splits, source="folder")
    assert inspected["source"] == "folder" and "other_files" not in inspected
    assert inspect_audio(music, long)["source"] == "listed files"
    assert (inspected["files"], inspected["readable"]) == (12, 12)
    assert {split: row["files"] for split, row in inspected["splits"].items()} == {
        "train": 10,
        "val": 1,
        "test": 1,
    }
    checked = check_ready(music, paths=long, splits=splits)
    assert checked["ready"] is True
    unsplit = check_ready(music, paths=long, splits=[None] * 12)  # split later, by the source
    assert unsplit["ready"] is True and "splits" not in unsplit
    assert checked["hours"] == inspected["hours"]
    whole = inspect_audio(music)  # every audio file by extension, hidden ones included
    assert (whole["files"], whole["unreadable"], whole["other_files"]) == (15, 1, 1)
    assert whole["source"] == "folder of audio files" and "splits" not in whole


def test_bad_arguments_are_clear_errors(music: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_ready(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="query_length_s must be > 0"):
        check_ready(music, query_length_s=0)
    with pytest.raises(ValueError, match="splits: 1 given for 2 paths"):
        check_ready(music, paths=[music / "a.wav", music / "b.wav"], splits=["train"])
    with pytest.raises(ValueError, match="splits: 1 given for 2 paths"):
        inspect_audio(music, paths=[music / "a.wav", music / "b.wav"], splits=["train"])


def test_describe_readiness_gives_the_verdict_and_the_reasons(music: Path) -> None:
    text = describe_readiness(check_ready(music, query_length_s=4.0))
    lines = text.splitlines()
    assert lines[0] == f"{music}: NOT ready for 4 s queries"
    assert "  long enough  0 (>= 4.4 s, 0.00 h)" in lines
    assert lines[-1].startswith("  note: 1 hidden audio files")
    assert any(line.startswith("  reason: only 0 of 14 files") for line in lines)

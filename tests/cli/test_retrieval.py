"""acr index / recognize / evaluate (acr.cli.retrieval) in process, on a generated catalog,
and what they do with bad rows, hostile ids and outputs that cannot be written."""

import csv
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acr.audio import save_audio
from acr.cli import main
from acr.cli.retrieval import recognize
from acr.data.manifests import write_table
from acr.retrieval.engine import TrackMatch
from acr.retrieval.recognizer import Recognition, Recognizer
from acr.retrieval.store import load_engines
from acr.synth import synthesize_track

RATE = 16000


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, song_folder) -> Path:
    """A 5-song catalog, its fingerprint index and a small query set."""
    root = tmp_path_factory.mktemp("workspace")
    song_folder(5, 15.0, RATE, "ogg", folder=root / "catalog")
    assert (
        main(
            [
                "index",
                "--catalog",
                str(root / "catalog"),
                "--output",
                str(root / "index"),
                "--workers",
                "1",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "make-queries",
                "--catalog",
                str(root / "catalog"),
                "--output",
                str(root / "queries"),
                "--lengths_s",
                "[3]",
                "--degradations",
                "[clean, noise]",
                "--seed",
                "1",
                "--workers",
                "1",
            ]
        )
        == 0
    )
    save_audio(root / "silent.wav", np.zeros(3 * RATE, np.float32), RATE)
    save_audio(root / "short.wav", synthesize_track(0, 0.2, RATE), RATE)
    (root / "broken.wav").write_bytes(b"RIFF....WAVEfmt garbage")
    return root


def test_recognize_jsonl_with_error_statuses(workspace: Path, capsys) -> None:
    clip = workspace / "clip.wav"
    save_audio(clip, synthesize_track(2, 15.0, RATE)[5 * RATE : 8 * RATE], RATE)
    files = [
        str(clip),
        str(workspace / "silent.wav"),
        str(workspace / "short.wav"),
        str(workspace / "broken.wav"),
    ]
    assert main(["recognize", "--index", str(workspace / "index"), *files]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    by_id = {row["query_id"]: row for row in rows}
    assert by_id["clip"]["status"] == "ok"
    assert by_id["clip"]["matches"][0]["track_id"] == "song2"
    assert by_id["clip"]["matches"][0]["offset_s"] == pytest.approx(5.0, abs=0.1)
    assert by_id["silent"]["error"].startswith("silent")
    assert by_id["short"]["error"].startswith("too short (0.20 s")
    assert by_id["broken"]["error"].startswith("unreadable")


def test_recognize_csv_rows_are_best_first(workspace: Path) -> None:
    output = workspace / "answers.csv"
    assert (
        main(
            [
                "recognize",
                "--index",
                str(workspace / "index"),
                "--queries",
                str(workspace / "queries" / "queries.csv"),
                "--format",
                "csv",
                "--top_k",
                "3",
                "--output",
                str(output),
            ]
        )
        == 0
    )
    answers = pd.read_csv(output)
    assert list(answers.columns) == [
        "query_id",
        "track_1",
        "track_2",
        "track_3",
        "probability",
        "status",
    ]
    truth = pd.read_csv(workspace / "queries" / "queries.csv").set_index("query_id")["track_id"]
    clean = answers[answers["query_id"].str.contains("-clean-")]
    assert (clean["track_1"].to_numpy() == truth[clean["query_id"]].to_numpy()).all()


def test_evaluate_prints_and_writes_a_report(workspace: Path, capsys) -> None:
    report_path = workspace / "report.json"
    assert (
        main(
            [
                "evaluate",
                "--index",
                str(workspace / "index"),
                "--queries",
                str(workspace / "queries" / "queries.csv"),
                "--output",
                str(report_path),
                "--bootstrap",
                "200",
            ]
        )
        == 0
    )
    assert "95% Wilson interval" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    fingerprint = report["systems"]["fingerprint"]
    assert fingerprint["overall"]["queries"] == 10
    assert fingerprint["degradation=clean"]["top1"] == 1.0
    assert set(fingerprint["degradation=clean"]["ci95"]) == {"top1", "top5", "mrr"}


def test_failures_exit_non_zero_with_one_line(workspace: Path, capsys) -> None:
    assert (
        main(["index", "--catalog", str(workspace / "nowhere"), "--output", str(workspace / "x")])
        == 1
    )
    assert "catalog does not exist" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--index",
                str(workspace / "catalog"),
                "--queries",
                str(workspace / "queries" / "queries.csv"),
            ]
        )
        == 1
    )
    assert "not an acr index" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, problem",
    [
        (["--fingerprint.hash_peaks", "4"], "hash_peaks must be 2 (pairs) or 3 (triplets), got 4"),
        (
            ["--fingerprint.hash_peaks", "3", "--fingerprint.max_pair_frames", "63"],
            "hash fields need 34 bits; at most 32 fit",
        ),
        (["--fingerprint.pitch_step_semitones", "-1"], "pitch_step_semitones must be > 0"),
        (["--embedding.rescore", "-1"], "rescore must be >= 0 (0: off), got -1"),
    ],
)
def test_settings_that_cannot_work_are_a_one_line_error(
    workspace: Path, capsys, option: list[str], problem: str
) -> None:
    output = workspace / "refused"
    arguments = ["index", "--catalog", str(workspace / "catalog"), "--output", str(output)]
    assert main([*arguments, *option]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith(f"acr index: error: {problem}")
    assert not output.exists()


def test_hash_peaks_alone_takes_the_presets_of_its_width(workspace: Path, capsys) -> None:
    """``--fingerprint.hash_peaks 3`` (the README's triplet index) fills the fields left unset
    with the triplet presets, not with the pair presets of the default settings."""
    output = workspace / "triplets"
    arguments = ["index", "--catalog", str(workspace / "catalog"), "--output", str(output)]
    assert main([*arguments, "--workers", "1", "--fingerprint.hash_peaks", "3"]) == 0
    settings = json.loads((output / "index.json").read_text())["engines"]["fingerprint"]
    assert settings["hash_peaks"] == 3
    assert settings["max_pair_frames"] == 31 and settings["max_postings_per_hash"] == 100
    clip = workspace / "clip-triplets.wav"
    save_audio(clip, synthesize_track(3, 15.0, RATE)[6 * RATE : 9 * RATE], RATE)
    capsys.readouterr()
    assert main(["recognize", "--index", str(output), str(clip)]) == 0
    best = json.loads(capsys.readouterr().out)["matches"][0]
    assert best["track_id"] == "song3" and best["offset_s"] == pytest.approx(6.0, abs=0.1)


def _no_nan(constant: str) -> None:
    raise AssertionError(f"{constant} is not JSON")


def test_recognize_answers_every_row_after_a_bad_one(workspace: Path, capsys) -> None:
    clip = workspace / "clip3.wav"
    save_audio(clip, synthesize_track(3, 15.0, RATE)[4 * RATE : 7 * RATE], RATE)
    song = str(workspace / "catalog" / "song1.ogg")
    rows = [
        ("q,1", str(clip), "", "", ""),
        ("", str(clip), "", "", ""),
        ("no-clip", "", "", "", ""),
        ("no-offset", "", song, "", "3"),
        ('quote"d\r\nline', str(clip), "", "", ""),
        ("stretch", "", song, "5", "3"),
    ]
    columns = ["query_id", "path", "source", "offset_s", "length_s"]
    write_table(pd.DataFrame(rows, columns=columns), workspace / "mixed.csv")
    write_table(
        pd.DataFrame({"query_id": ["gap", "after"], "path": ["", str(clip)]}),
        workspace / "no_source.csv",
    )
    index = str(workspace / "index")
    assert main(["recognize", "--index", index, "--queries", str(workspace / "mixed.csv")]) == 0
    captured = capsys.readouterr()
    answers = [json.loads(line, parse_constant=_no_nan) for line in captured.out.splitlines()]
    assert [answer["query_id"] for answer in answers] == [row[0] for row in rows]
    assert [answer["status"] for answer in answers] == ["ok", *["error"] * 3, "ok", "ok"]
    assert [answers[row]["matches"][0]["track_id"] for row in (0, 4, 5)] == ["song3"] * 2 + [
        "song1"
    ]
    assert [answer["error"] for answer in answers[1:4]] == [
        "line 3: empty query_id",
        "no clip: no path, and no source with offset_s and length_s",
        "no clip: offset_s must be a number >= 0, not empty",
    ]
    assert "recognised 3 of 6 queries; 3 errors" in captured.err
    output = workspace / "no_source.csv.answers.csv"
    command = ["recognize", "--index", index, "--queries", str(workspace / "no_source.csv")]
    assert main([*command, "--format", "csv", "--output", str(output)]) == 0
    answers = pd.read_csv(output, dtype=str, keep_default_na=False)
    assert answers["query_id"].tolist() == ["gap", "after"]
    assert answers["status"].tolist() == ["error: no clip: no path, and no source with offset_s "
                                          "and length_s", "ok"]  # fmt: skip
    assert answers["track_1"].tolist() == ["", "song3"]


class _Answers:
    """A stand-in recognizer: file ``i`` is answered as query ``ids[i]`` with ``tracks``."""

    def __init__(self, ids: list[str], tracks: list[str]) -> None:
        self.ids, self.tracks = ids, tracks

    def recognize_file(self, path: str, top_k: int) -> Recognition:
        matches = [TrackMatch(track, 1.0, 0.5) for track in self.tracks[:top_k]]
        return Recognition(self.ids[int(path)], matches=matches)


@settings(max_examples=100, deadline=None)
@given(ids=st.lists(st.text(), min_size=1, max_size=4), tracks=st.lists(st.text(), max_size=3))
def test_recognize_writes_any_id_back_as_it_was(tmp_path_factory, ids, tracks) -> None:
    """CSV (RFC 4180, read back by the csv module and pandas) and JSONL keep every id and the
    columns after it, whatever the ids hold: commas, quotes, line breaks, NULs."""
    folder = tmp_path_factory.mktemp("answers")
    files = [str(number) for number in range(len(ids))]
    padded = tracks + [""] * (3 - len(tracks))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Recognizer, "load", lambda index, **_: _Answers(ids, tracks))
        recognize("index", files, top_k=3, output=str(folder / "a.csv"), format="csv")
        recognize("index", files, top_k=3, output=str(folder / "a.jsonl"))
    with open(folder / "a.csv", newline="") as stream:
        rows = list(csv.reader(stream))
    assert rows == [["query_id", "track_1", "track_2", "track_3", "probability", "status"]] + [
        [query_id, *padded, "", "ok"] for query_id in ids
    ]
    table = pd.read_csv(folder / "a.csv", dtype=str, keep_default_na=False)
    assert table.values.tolist() == rows[1:]
    lines = (folder / "a.jsonl").read_text().split("\n")
    answers = [json.loads(line) for line in lines[:-1]]
    assert [answer["query_id"] for answer in answers] == ids
    assert [[m["track_id"] for m in answer["matches"]] for answer in answers] == [tracks] * len(ids)


def test_evaluate_rejects_an_empty_or_unknown_truth(workspace: Path, capsys) -> None:
    queries = pd.read_csv(workspace / "queries" / "queries.csv", dtype=str)
    queries.loc[1, "track_id"] = ""
    queries.loc[3, "track_id"] = "nosuch"
    write_table(queries, workspace / "queries" / "bad_truth.csv")
    report = workspace / "bad_truth.json"
    command = ["evaluate", "--index", str(workspace / "index"), "--output", str(report)]
    assert main([*command, "--queries", str(workspace / "queries" / "bad_truth.csv")]) == 1
    [error] = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("acr evaluate: error: ") and "2 queries cannot be scored" in error
    assert f"query {queries.loc[1, 'query_id']!r}: empty track_id" in error
    assert f"query {queries.loc[3, 'query_id']!r}: track_id 'nosuch' is not in the index" in error
    assert not report.exists()


def test_outputs_that_cannot_be_written_are_one_line(workspace: Path, capsys) -> None:
    index, queries = str(workspace / "index"), str(workspace / "queries" / "queries.csv")
    a_file = workspace / "silent.wav"
    commands = {
        "recognize": ["recognize", "--index", index, str(a_file), "--output", str(workspace)],
        "evaluate": ["evaluate", "--index", index, "--queries", queries, "--output", index],
        "evaluate ": ["evaluate", "--index", index, "--queries", queries,
                      "--output", str(a_file / "report.json")],
        "index": ["index", "--catalog", str(workspace / "catalog"), "--output", str(a_file)],
    }  # fmt: skip
    for name, command in commands.items():
        assert main(command) == 1, name
        [error] = capsys.readouterr().err.strip().splitlines()
        assert error.startswith(f"acr {name.strip()}: error: output "), error


def test_index_skips_catalog_rows_without_a_track_id_or_path(workspace: Path, capsys) -> None:
    songs = workspace / "catalog"
    catalog = pd.DataFrame(
        {
            "track_id": ["song0", "", "gap", "tab\tid", "song3"],
            "path": [str(songs / f"song{seed}.ogg") if seed != 2 else "" for seed in range(5)],
        }
    )
    write_table(catalog, workspace / "rows.csv")
    output = workspace / "rows-index"
    assert main(["index", "--catalog", str(workspace / "rows.csv"), "--output", str(output),
                 "--workers", "1"]) == 0  # fmt: skip
    assert "tracks 2, skipped 3" in capsys.readouterr().out
    assert load_engines(output)["fingerprint"].track_ids == ["song0", "song3"]
    skipped = pd.read_csv(output / "skipped.csv", dtype=str, keep_default_na=False)
    assert skipped["reason"].tolist() == [
        "line 3: empty track_id",
        "line 4: empty path (track_id 'gap')",
        "line 5: track_id 'tab\\tid' holds a control character (U+0009)",
    ]
    resumed = ["index", "--catalog", str(workspace / "rows.csv"), "--output", str(output),
               "--resume", "true"]  # fmt: skip
    assert main(resumed) == 0
    assert pd.read_csv(output / "skipped.csv", dtype=str, keep_default_na=False).equals(skipped)


def test_index_skips_folder_entries_that_are_not_files(workspace: Path, tmp_path: Path) -> None:
    folder = tmp_path / "music"
    folder.mkdir()
    for seed in (0, 1):
        shutil.copy(workspace / "catalog" / f"song{seed}.ogg", folder)
    (folder / "album.wav").mkdir()
    os.symlink(folder / "nowhere.wav", folder / "gone.wav")
    os.symlink(folder / "loop.flac", folder / "loop.flac")
    output = tmp_path / "index"
    assert main(["index", "--catalog", str(folder), "--output", str(output), "--workers", "1"]) == 0
    assert load_engines(output)["fingerprint"].track_ids == ["song0", "song1"]
    skipped = pd.read_csv(output / "skipped.csv", dtype=str, keep_default_na=False)
    assert dict(zip(skipped["path"], skipped["reason"])) == {
        str(folder / "album.wav"): "a folder, not an audio file",
        str(folder / "gone.wav"): "a broken link: its target does not exist",
        str(folder / "loop.flac"): "a link loop: the link leads back to itself",
    }


def test_file_names_that_are_not_utf8_keep_their_bytes_end_to_end(tmp_path: Path, capsys) -> None:
    """Latin-1 names (b'caf\\xe9.wav') on a UTF-8 system: indexed, skipped with the reason when
    broken, and answered under their own bytes, never a UnicodeEncodeError."""
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    good, broken = (os.fsdecode(name) for name in (b"caf\xe9.wav", b"bro\xefken.wav"))
    try:
        save_audio(catalog / good, synthesize_track(1, 8.0, RATE), RATE)
    except OSError as error:  # a file system that stores names as Unicode refuses them
        pytest.skip(f"this file system refuses non-UTF-8 names: {error}")
    save_audio(catalog / "plain.wav", synthesize_track(2, 8.0, RATE), RATE)
    (catalog / broken).write_bytes(b"not audio at all")
    index = tmp_path / "index"
    assert main(["index", "--catalog", str(catalog), "--output", str(index), "--workers", "1"]) == 0
    skipped = (index / "skipped.csv").read_bytes()
    assert b"bro\xefken" in skipped and b"cannot decode" in skipped
    answers = tmp_path / "answers.csv"
    clip = tmp_path / os.fsdecode(b"clip\xe9.wav")
    save_audio(clip, synthesize_track(1, 8.0, RATE)[2 * RATE : 5 * RATE], RATE)
    arguments = ["recognize", "--index", str(index), str(clip), "--format", "csv"]
    assert main([*arguments, "--output", str(answers)]) == 0
    row = answers.read_bytes().splitlines()[1]
    assert row.startswith(b"clip\xe9,caf\xe9,") and row.endswith(b",ok")
    capsys.readouterr()
    assert main(["recognize", "--index", str(index), str(clip)]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["query_id"] == os.fsdecode(b"clip\xe9")
    assert answer["matches"][0]["track_id"] == os.fsdecode(b"caf\xe9")

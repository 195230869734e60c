"""Hostile inputs (issue 14) against the real CLI: every case of the tables below is run through
``acr index``, ``recognize``, ``evaluate``, ``data prepare folder``, ``data validate`` and
``data make-queries``, and each must give the right exit status, a one-line reason naming the
file, row or id (stderr, skipped.csv, or the row's error status), no traceback, and every good
input of the same run processed. Corrupt index directories are tests/retrieval/test_store.py's.

The commands run once per module on one folder that holds every good and bad file; each case
then checks its own file in the outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import fixtures_hostile as hostile
import pandas as pd
import pytest
from fixtures_hostile import Run, run

from acr.data.manifests import FILE_NAME_ERRORS, read_table, write_table
from acr.retrieval.store import load_engines

SONG_S = 6.0
NON_UTF8 = os.fsdecode(b"caf\xe9.wav")

# Good audio, each a different song: (file name, writer(path, seed, seconds)). Every one must be
# indexed, prepared and recognised as itself; 8 channels are mixed to mono, 192 kHz resampled.
GOOD = {
    "plain": ("song0.wav", hostile.plain),
    "8 channels": ("eight.wav", hostile.eight_channels),
    "192 kHz": ("hires.flac", hostile.rate_192khz),
    "unicode name": ("ünïcødé 歌.wav", hostile.plain),
    "spaces in name": ("with  spaces .wav", hostile.plain),
    "non-UTF-8 name": (NON_UTF8, hostile.plain),
    "AAC in m4a": ("aac.m4a", hostile.aac_m4a),
}


@dataclass(frozen=True)
class Bad:
    """A file that cannot be a track, and a word of the reason each command gives."""

    name: str
    write: Callable[[Path], None]
    index: str  # skipped.csv of acr index
    recognize: str  # the answer's error
    prepare: str | None  # skipped.csv of data prepare; None: kept (headers cannot tell; data
    # validate's full decode flags it)


BAD = {
    "corrupt mp3": Bad("corrupt_mp3.mp3", hostile.random_bytes, *["cannot decode"] * 3),
    "corrupt wav": Bad("corrupt_wav.wav", hostile.random_bytes, *["cannot decode"] * 3),
    "corrupt flac": Bad("corrupt_flac.flac", hostile.random_bytes, *["cannot decode"] * 3),
    "corrupt m4a": Bad("corrupt_m4a.m4a", hostile.random_bytes, *["cannot decode"] * 3),
    "empty file": Bad("empty.wav", hostile.empty, *["cannot decode"] * 3),
    "truncated": Bad("truncated.flac", hostile.truncated, "cannot decode", "cannot decode",
                     "truncated"),
    "silent": Bad("silent.wav", hostile.silent, "silent", "silent", None),
    "all NaN": Bad("nan.wav", hostile.all_nan, *["non-finite samples"] * 3),
    "1 sample": Bad("one.wav", hostile.one_sample, *["too short"] * 3),
    "50 Hz rate": Bad("rate50.wav", hostile.rate_50hz, *["below 8000 Hz"] * 3),
    "header claims 2 GB": Bad("claims.wav", hostile.claims_2gb, *["too short"] * 3),
    "folder x.wav": Bad("x.wav", hostile.folder, "a folder", "not a file", "a folder"),
    "broken link": Bad("gone.wav", hostile.broken_link, "broken link", "does not exist",
                       "broken link"),
}  # fmt: skip


def track_id(file_name: str) -> str:
    return str(Path(file_name).with_suffix(""))


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every GOOD and BAD file (a file system that refuses non-UTF-8 names
    leaves that one out)."""
    folder = tmp_path_factory.mktemp("hostile") / "music"
    folder.mkdir()
    for seed, (name, write) in enumerate(GOOD.values()):
        try:
            write(folder / name, seed, SONG_S)
        except OSError:
            assert name == NON_UTF8
    for bad in BAD.values():
        bad.write(folder / bad.name)
    return folder


def good_case(music: Path, case: str) -> str:
    name = GOOD[case][0]
    if not (music / name).exists():
        pytest.skip("this file system refuses non-UTF-8 names")
    return track_id(name)


@pytest.fixture(scope="module")
def indexed(music: Path) -> tuple[Run, Path]:
    index = music.parent / "index"
    return run("index", "--catalog", music, "--output", index, "--workers", "1"), index


@pytest.fixture(scope="module")
def index_tracks(indexed: tuple[Run, Path]) -> tuple[list[str], dict[str, str]]:
    """(indexed track ids, skipped path -> reason)."""
    result, index = indexed
    assert result.status == 0, result.err
    ids = load_engines(index)["fingerprint"].track_ids
    skipped = pd.read_csv(index / "skipped.csv", dtype=str, keep_default_na=False,
                          encoding_errors=FILE_NAME_ERRORS)  # fmt: skip
    return ids, dict(zip(skipped["path"], skipped["reason"]))


@pytest.fixture(scope="module")
def answers(music: Path, indexed: tuple[Run, Path]) -> dict[str, dict]:
    """``acr recognize`` of every entry of the folder, good and bad: query_id -> answer."""
    output = music.parent / "answers.jsonl"
    files = sorted(music.iterdir())
    result = run("recognize", "--index", indexed[1], *files, "--output", output)
    assert result.status == 0, result.err
    assert f"of {len(files)} queries" in result.err
    lines = output.read_text(errors=FILE_NAME_ERRORS).splitlines()
    return {answer["query_id"]: answer for answer in map(json.loads, lines)}


@pytest.fixture(scope="module")
def prepared(music: Path) -> Path:
    output = music.parent / "prepared"
    result = run("data", "prepare", "folder", music, "--output", output)
    assert result.status == 0, result.err
    return output


@pytest.mark.parametrize("case", BAD)
def test_index_skips_a_bad_file_with_its_reason(music, index_tracks, case: str) -> None:
    ids, skipped = index_tracks
    bad = BAD[case]
    assert track_id(bad.name) not in ids
    assert bad.index in skipped[str(music / bad.name)]


@pytest.mark.parametrize("case", GOOD)
def test_index_keeps_every_good_file(music, index_tracks, case: str) -> None:
    assert good_case(music, case) in index_tracks[0]


@pytest.mark.parametrize("case", BAD)
def test_recognize_answers_a_bad_file_with_an_error(answers, case: str) -> None:
    answer = answers[track_id(BAD[case].name)]
    assert answer["status"] == "error" and BAD[case].recognize in answer["error"]
    assert "\n" not in answer["error"]


@pytest.mark.parametrize("case", GOOD)
def test_recognize_answers_every_good_file_as_itself(music, answers, case: str) -> None:
    expected = good_case(music, case)
    answer = answers[expected]
    assert answer["status"] == "ok" and answer["matches"][0]["track_id"] == expected


@pytest.mark.parametrize("case", BAD)
def test_prepare_folder_skips_a_bad_entry_with_its_reason(music, prepared, case: str) -> None:
    bad = BAD[case]
    catalog = read_table(prepared / "catalog.csv")
    skipped = read_table(prepared / "skipped.csv").fillna("")
    reasons = dict(zip(skipped["path"], skipped["reason"]))
    if bad.prepare is None:  # a header and a tail decode cannot tell (validate's full decode can)
        assert str(music / bad.name) in set(catalog["path"])
    else:
        reason = reasons[str(music / bad.name)]
        assert bad.prepare in reason and ("truncated" in reason) == (case == "truncated")
        assert str(music / bad.name) not in set(catalog["path"])


@pytest.mark.parametrize("case", GOOD)
def test_prepare_folder_keeps_every_good_file(music, prepared, case: str) -> None:
    expected = good_case(music, case)
    catalog = read_table(prepared / "catalog.csv").set_index("track_id")
    assert catalog.loc[expected, "duration_s"] == pytest.approx(SONG_S, abs=0.01)


# -- data validate: one broken row (or column) of catalog.csv and its split table ----------------
def _set(column: str, value: str) -> Callable[[pd.DataFrame, int], pd.DataFrame]:
    def change(table: pd.DataFrame, row: int) -> pd.DataFrame:
        table[column] = table[column].astype(object)
        table.loc[row, column] = value
        return table

    return change


MANIFEST_CASES = {  # case: (change of the row, problem check, a word of the problem)
    "empty track_id": (_set("track_id", ""), "bad_id", "empty track_id"),
    "tab in track_id": (_set("track_id", "song0\tx"), "bad_id", "control character"),
    "empty path": (_set("path", ""), "missing_path", "empty path"),
    "missing file": (_set("path", "/nowhere/at/all.wav"), "missing_file", "does not exist"),
    "corrupt audio": ("corrupt_wav.wav", "undecodable", "cannot decode"),  # a file in music/
    "silent audio": ("silent.wav", "silent", "silent (below -80 dBFS)"),
    "duration_s not a number": (_set("duration_s", "long"), "bad_duration", "number > 0"),
}


@pytest.mark.parametrize("case", MANIFEST_CASES)
def test_validate_names_the_one_bad_row_and_checks_the_others(
    music: Path, prepared: Path, tmp_path: Path, case: str
) -> None:
    change, check, word = MANIFEST_CASES[case]
    if isinstance(change, str):
        change = _set("path", str(music / change))
    manifests = tmp_path / "manifests"
    shutil.copytree(prepared, manifests)
    for table in manifests.glob("*.csv"):  # prepare keeps the silent file: its own problem
        if table.name != "skipped.csv":
            rows = read_table(table)
            write_table(rows[rows["track_id"] != "silent"], table)
    catalog = read_table(manifests / "catalog.csv")
    row = int(catalog.index[catalog["track_id"] == "song0"][0])
    split_file = manifests / f"{catalog.loc[row, 'split']}.csv"
    split = read_table(split_file)
    write_table(change(catalog, row), manifests / "catalog.csv")
    write_table(change(split, int(split.index[split["track_id"] == "song0"][0])), split_file)
    report_path = tmp_path / "report.json"
    result = run("data", "validate", manifests, "--json", report_path)
    assert result.status == 1
    assert f"catalog.csv line {row + 2}" in result.error_line("data validate")
    report = json.loads(report_path.read_text())
    problems = [p for p in report["problems"] if p["check"] == check]
    assert {p["file"] for p in problems} == {"catalog.csv", split_file.name}
    assert all(word in p["problem"] and p["line"] for p in problems), problems
    assert {p["check"] for p in report["problems"]} <= {check, "not_in_catalog",
                                                        "not_in_split_table"}  # fmt: skip
    others = len(catalog) - 1  # every other file still exists and decodes
    assert report["files_decoded"] >= others


def test_validate_refuses_a_table_without_a_column(prepared: Path, tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    shutil.copytree(prepared, manifests)
    write_table(
        read_table(manifests / "catalog.csv").drop(columns="path"), manifests / "catalog.csv"
    )
    result = run("data", "validate", manifests, "--json", tmp_path / "report.json")
    assert result.status == 1
    assert "catalog.csv path: required column is missing" in result.error_line("data validate")


# -- make-queries: a folder with every bad file, and catalog tables with bad rows ---------------
def test_make_queries_leaves_out_bad_files_and_clips_every_good_one(music: Path) -> None:
    output = music.parent / "queries"
    arguments = ["--lengths_s", "[3]", "--degradations", "[clean]", "--workers", "1"]
    result = run("data", "make-queries", "--catalog", music, "--output", output, *arguments)
    assert result.status == 0, result.err
    present = [name for name, _ in GOOD.values() if (music / name).exists()]
    queries = read_table(output / "queries.csv")
    assert sorted(queries["track_id"]) == sorted(track_id(name) for name in present)
    assert f"{len(BAD)} left out (see {output / 'skipped.csv'}), e.g. " in result.out
    skipped = read_table(output / "skipped.csv")
    assert sorted(skipped["path"]) == sorted(str(music / bad.name) for bad in BAD.values())
    assert skipped["reason"].str.len().gt(5).all()
    assert all(Path(path).parent.name == "audio" for path in queries["path"])


CATALOG_CASES = {  # case: (rows as (track_id, path) or a change, exit status, a word of the reason)
    "empty track_id": ([("", "song0.wav")], 0, "line 4: empty track_id"),
    "empty path": ([("gap", "")], 0, "line 4: empty path (track_id 'gap')"),
    "newline in track_id": ([("a\nb", "song0.wav")], 0, "holds a control character"),
    "duplicate track_id": ([("song0", "eight.wav")], 1, "duplicate track_id 'song0'"),
    "no path column": ("path", 1, "missing column(s) ['path']"),
    "no track_id column": ("track_id", 1, "missing column(s) ['track_id']"),
}


def _catalog(music: Path, folder: Path, case: str) -> Path:
    """A catalog table of song0 and with spaces, plus the case's rows (or less its column)."""
    extra, _, _ = CATALOG_CASES[case]
    rows = [("song0", str(music / "song0.wav")), ("spaced", str(music / "with  spaces .wav"))]
    if isinstance(extra, list):
        rows += [(tid, str(music / path) if path else "") for tid, path in extra]
    table = pd.DataFrame(rows, columns=["track_id", "path"])
    if isinstance(extra, str):
        table = table.drop(columns=extra)
    write_table(table, folder / "catalog.csv")
    return folder / "catalog.csv"


@pytest.mark.parametrize("case", CATALOG_CASES)
def test_index_goes_on_past_a_bad_catalog_row_or_refuses_the_table(
    music: Path, tmp_path: Path, case: str
) -> None:
    catalog, (_, status, word) = _catalog(music, tmp_path, case), CATALOG_CASES[case]
    result = run("index", "--catalog", catalog, "--output", tmp_path / "index", "--workers", "1")
    assert result.status == status
    if status:
        assert word in result.error_line("index") and "catalog.csv" in result.error_line("index")
        return
    assert load_engines(tmp_path / "index")["fingerprint"].track_ids == ["song0", "spaced"]
    [reason] = read_table(tmp_path / "index" / "skipped.csv")["reason"]
    assert word in reason


@pytest.mark.parametrize("case", CATALOG_CASES)
def test_make_queries_goes_on_past_a_bad_catalog_row_or_refuses_the_table(
    music: Path, tmp_path: Path, case: str
) -> None:
    catalog, (_, status, word) = _catalog(music, tmp_path, case), CATALOG_CASES[case]
    arguments = ["--lengths_s", "[3]", "--degradations", "[clean]", "--workers", "1"]
    output = tmp_path / "queries"
    result = run("data", "make-queries", "--catalog", catalog, "--output", output, *arguments)
    assert result.status == status
    if status:
        assert word in result.error_line("data make-queries")
        return
    assert sorted(read_table(output / "queries.csv")["track_id"]) == ["song0", "spaced"]
    assert "1 left out (see " in result.out and word in result.out
    [reason] = read_table(output / "skipped.csv")["reason"]
    assert word in reason and "catalog.csv" in reason


# -- query tables: recognize answers every good row; evaluate scores or refuses the table -------
QUERY_CASES = {  # case: (a bad row, or a column to drop; recognize's, evaluate's outcome)
    "empty query_id": ({"query_id": ""}, "line 4: empty query_id", "line 4: empty query_id"),
    "NaN offset_s": ({"path": "", "offset_s": ""}, "offset_s must be a number >= 0", 0),
    "unknown truth": ({"track_id": "nosuch"}, None, "track_id 'nosuch' is not in the index"),
    "empty truth": ({"track_id": ""}, None, "empty track_id"),
    "corrupt audio": ({"path": "corrupt_mp3.mp3"}, "cannot decode", 0),
    "no query_id column": ("query_id", 1, "missing column(s) ['query_id']"),
    "no path or source column": (["path", "source"], 1, "missing column(s)"),
}


def _queries(music: Path, folder: Path, case: str) -> Path:
    """Two good queries (a file, a stretch of a recording) and the case's row or change."""
    change = QUERY_CASES[case][0]
    good = [
        {"query_id": "whole", "path": "song0.wav", "source": "", "offset_s": "",
         "length_s": "", "track_id": "song0"},
        {"query_id": "stretch", "path": "", "source": "with  spaces .wav", "offset_s": "1",
         "length_s": "3", "track_id": "with  spaces "},
    ]  # fmt: skip
    rows = good + ([{**good[1], "query_id": "bad", **change}] if isinstance(change, dict) else [])
    table = pd.DataFrame(rows)
    for column in ("path", "source"):
        table[column] = [str(music / name) if name else "" for name in table[column]]
    if not isinstance(change, dict):
        table = table.drop(columns=change)
    write_table(table, folder / "queries.csv")
    return folder / "queries.csv"


@pytest.mark.parametrize("case", QUERY_CASES)
def test_recognize_answers_every_good_query_past_a_bad_row(
    music: Path, indexed: tuple[Run, Path], tmp_path: Path, case: str
) -> None:
    queries, (_, outcome, evaluate_word) = _queries(music, tmp_path, case), QUERY_CASES[case]
    output = tmp_path / "answers.jsonl"
    result = run("recognize", "--index", indexed[1], "--queries", queries, "--output", output)
    if outcome == 1:
        assert result.status == 1 and evaluate_word in result.error_line("recognize")
        return
    assert result.status == 0, result.err
    answers = [json.loads(line) for line in output.read_text().splitlines()]
    assert [a["matches"][0]["track_id"] for a in answers[:2]] == ["song0", "with  spaces "]
    if outcome is None:  # the truth is not recognize's business
        assert answers[2]["status"] == "ok"
    else:
        assert answers[2]["status"] == "error" and outcome in answers[2]["error"]


@pytest.mark.parametrize("case", QUERY_CASES)
def test_evaluate_scores_every_good_query_or_refuses_the_table(
    music: Path, indexed: tuple[Run, Path], tmp_path: Path, case: str
) -> None:
    queries, (_, _, outcome) = _queries(music, tmp_path, case), QUERY_CASES[case]
    report = tmp_path / "report.json"
    result = run("evaluate", "--index", indexed[1], "--queries", queries, "--output", report,
                 "--bootstrap", "10")  # fmt: skip
    if outcome != 0:
        assert result.status == 1 and outcome in result.error_line("evaluate")
        assert not report.exists()
        return
    assert result.status == 0, result.err
    scored = json.loads(report.read_text())
    assert [error["query_id"] for error in scored["errors"]] == ["bad"]
    assert scored["systems"]["fingerprint"]["overall"]["queries"] == 3
    assert scored["systems"]["fingerprint"]["overall"]["top1"] == pytest.approx(2 / 3)


# -- out of process: what a user sees has no traceback --------------------------------------------
@pytest.mark.slow  # two interpreters that import acr
def test_commands_on_hostile_files_print_no_traceback(music: Path, tmp_path: Path) -> None:
    index = tmp_path / "index"
    commands = [
        ["index", "--catalog", str(music), "--output", str(index), "--workers", "1"],
        ["recognize", "--index", str(index), *map(str, sorted(music.iterdir()))],
    ]
    for command in commands:
        done = subprocess.run([sys.executable, "-m", "acr", *command], capture_output=True,
                              timeout=120)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert b"Traceback" not in done.stderr
    assert len(done.stdout.splitlines()) == len(list(music.iterdir()))

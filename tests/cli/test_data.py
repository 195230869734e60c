"""acr data inspect / prepare / validate / make-queries through the CLI, in process, on
generated look-alikes (acr.cli.data)."""

import json
import os
import re
import shutil
import typing
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import save_audio
from acr.cli import main
from acr.cli.data import COMMANDS
from acr.data.manifests import read_table, write_table
from acr.data.segments.strategies import STRATEGIES, StrategyName
from acr.datamodules.catalog import CatalogDataModule
from acr.synth import synthesize_track


@pytest.fixture(scope="module")
def audio_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five readable files (three formats, rates, channel counts), a corrupt one, a text file."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for relative, seconds, rate, channels in (
        ("a.wav", 2.0, 16000, 1),
        ("b.wav", 4.0, 16000, 1),
        ("album/c.flac", 12.0, 44100, 2),
        ("album/d.flac", 35.0, 8000, 2),
        ("album/disc 2/e.ogg", 1.0, 22050, 1),
    ):
        audio = 0.1 * rng.standard_normal((int(seconds * rate), channels)).astype(np.float32)
        save_audio(root / relative, audio.squeeze(), rate)
    (root / "album" / "broken.mp3").write_bytes(b"not an mp3 at all" * 10)
    (root / "album" / "cover.txt").write_text("cover art")
    return root


@pytest.fixture(scope="module")
def fma_manifests(fma_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("manifests") / "fma"
    assert main(["data", "prepare", "fma", str(fma_root), "--output", str(output)]) == 0
    return output


def test_inspect_counts_formats_and_lists_corrupt_files(
    audio_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    report_path = tmp_path / "inspect.json"
    assert main(["data", "inspect", str(audio_folder), "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "unreadable files (1)" in out and "durations" in out
    report = json.loads(report_path.read_text())
    assert (report["files"], report["readable"], report["unreadable"]) == (6, 5, 1)
    assert report["other_files"] == 1
    assert report["formats"] == {"wav": 2, "flac": 2, "ogg": 1}
    assert report["sample_rates_hz"] == {"16000": 2, "44100": 1, "8000": 1, "22050": 1}
    assert report["channels"] == {"1": 3, "2": 2}
    assert report["durations"] == {
        "<10 s": 3,
        "10-30 s": 1,
        "30-60 s": 1,
        "1-5 min": 0,
        "5-10 min": 0,
        ">10 min": 0,
    }
    assert report["hours"] == pytest.approx(54.0 / 3600, abs=1e-3)
    [unreadable] = report["unreadable_files"]
    assert unreadable["path"].endswith("album/broken.mp3")
    assert "cannot decode" in unreadable["reason"]


def test_inspect_json_dash_prints_only_json_with_splits_of_a_source(
    fma_root: Path, capsys: pytest.CaptureFixture
) -> None:
    assert main(["data", "inspect", str(fma_root), "--source", "fma", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == 8 and report["unreadable"] == 1  # headers only: truncated is read
    assert {split: row["files"] for split, row in report["splits"].items()} == {
        "train": 4,
        "val": 2,
        "test": 2,
    }


def test_missing_root_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    nowhere = str(tmp_path / "nowhere")
    assert main(["data", "inspect", nowhere]) == 1
    assert main(["data", "prepare", "fma", nowhere, "--output", str(tmp_path / "out")]) == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [
        f"acr data inspect: error: ROOT: {nowhere} does not exist",
        f"acr data prepare: error: ROOT: {nowhere} does not exist",
    ]


def test_prepare_fma_writes_split_manifests(fma_manifests: Path) -> None:
    catalog = read_table(fma_manifests / "catalog.csv")
    assert len(catalog) == 6 and set(catalog["source"]) == {"fma"}
    splits = {
        split: read_table(fma_manifests / f"{split}.csv") for split in ("train", "val", "test")
    }
    assert {split: len(table) for split, table in splits.items()} == {
        "train": 3,
        "val": 2,
        "test": 1,
    }
    assert sorted(splits["val"]["track_id"]) == ["002096", "010250"]
    assert set(splits["train"]["split"]) == {"train"}
    assert sorted(read_table(fma_manifests / "skipped.csv")["track_id"]) == ["001482", "099134"]
    settings = json.loads((fma_manifests / "settings.json").read_text())
    assert settings["source"] == "fma" and settings["tracks"] == 6


def test_second_prepare_reuses_the_cache_until_an_input_changes(
    fma_root: Path, fma_manifests: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    command = ["data", "prepare", "fma", str(fma_root), "--output", str(fma_manifests)]
    capsys.readouterr()
    with monkeypatch.context() as patch:
        patch.setattr(CatalogDataModule, "catalog_tables", _fail)  # a rebuild would fail
        assert main(command) == 0
    out = capsys.readouterr().out
    assert "reused the cached manifests" in out and "train          3 tracks" in out
    audio = fma_root / "fma_small" / "000" / "000002.mp3"
    stamps = (audio.stat().st_atime_ns, audio.stat().st_mtime_ns)
    os.utime(audio, ns=(stamps[0], stamps[1] + 10**9))
    try:
        assert main(command) == 0
    finally:
        os.utime(audio, ns=stamps)  # fma_root is the session's: leave it as it was
    assert "reused" not in capsys.readouterr().out


def test_prepare_mtg_jamendo_takes_its_options_and_rejects_others(
    jamendo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "jamendo"
    command = ["data", "prepare", "mtg_jamendo", str(jamendo_root), "--output", str(output)]
    assert main([*command, "--split", "0", "--tsv", "autotagging"]) == 0
    counts = {split: len(read_table(output / f"{split}.csv")) for split in ("train", "val", "test")}
    assert counts == {"train": 3, "val": 3, "test": 1}
    assert read_table(output / "skipped.csv")["reason"].tolist() == ["file does not exist"]
    assert main([*command, "--split", "0", "--tsv", "autotagging"]) == 0
    assert "reused the cached manifests" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main([*command, "--subset", "small"])
    assert "unrecognized arguments: --subset small" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*command, "--split", "one"])
    assert 'key "split"' in capsys.readouterr().err


def test_prepare_folder_keeps_groups_whole_and_validates_clean(
    audio_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    output = tmp_path / "folder"
    command = ["data", "prepare", "folder", str(audio_folder), "--output", str(output)]
    assert (
        main([*command, "--group_by", "parent", "--val_fraction", "0.2", "--split_seed", "1"]) == 0
    )
    catalog = read_table(output / "catalog.csv")
    assert sorted(catalog["track_id"]) == ["a", "album/c", "album/d", "album/disc 2/e", "b"]
    assert catalog.groupby("group")["split"].nunique().max() == 1
    assert (catalog["split"] == "val").any() and (catalog["split"] == "train").any()
    splits = sum(len(read_table(output / f"{split}.csv")) for split in ("train", "val", "test"))
    assert splits == 5
    assert read_table(output / "skipped.csv")["track_id"].tolist() == ["album/broken"]
    assert main(["data", "validate", str(output)]) == 0
    assert "clean" in capsys.readouterr().out


def test_validate_passes_on_prepared_manifests(
    fma_manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    report_path = tmp_path / "validate.json"
    command = ["data", "validate", str(fma_manifests), "--json", str(report_path)]
    assert main(command) == 0
    assert "clean" in capsys.readouterr().out
    report = json.loads(report_path.read_text())
    assert report["ok"] and report["files_checked"] == report["files_decoded"] == 6
    assert main(["data", "validate", str(fma_manifests), "--sample", "2", "--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["files_decoded"] == 2


def test_validate_names_every_problem_and_exits_1(
    fma_manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fma_manifests, broken)
    tables = {name: read_table(broken / f"{name}.csv") for name in ("catalog", "train", "val")}
    catalog, train, val = tables["catalog"], tables["train"], tables["val"]
    missing = str(Path(catalog.loc[0, "path"]).with_name("gone.mp3"))
    for table in (catalog, train):
        table.loc[table["track_id"] == "000002", "path"] = missing
        table.loc[table["track_id"] == "000005", "duration_s"] = 12.0
    catalog["group"] = catalog["track_id"].replace({"000140": "song-a", "002096": "song-a"})
    catalog = pd.concat([catalog, catalog[catalog["track_id"] == "010666"]])  # duplicate id
    leaked = train[train["track_id"] == "000140"].assign(split="val")  # a train track in val
    write_table(catalog, broken / "catalog.csv")
    write_table(train, broken / "train.csv")
    write_table(pd.concat([val, leaked]), broken / "val.csv")
    report_path = tmp_path / "report.json"
    assert main(["data", "validate", str(broken), "--json", str(report_path)]) == 1
    captured = capsys.readouterr()
    [error] = captured.err.strip().splitlines()
    assert error.startswith(f"acr data validate: error: {broken}: ") and "problem(s)" in error
    problems = json.loads(report_path.read_text())["problems"]
    found = {(p["check"], p["file"], p["field"], p["track_id"]) for p in problems}
    assert {
        ("missing_file", "catalog.csv", "path", "000002"),
        ("missing_file", "train.csv", "path", "000002"),
        ("duration_mismatch", "train.csv", "duration_s", "000005"),
        ("duplicate_id", "catalog.csv", "track_id", "010666"),
        ("leak", "val.csv", "track_id", "000140"),
        ("leak", "catalog.csv", "group", "002096"),
    } <= found
    mismatch = next(p for p in problems if p["check"] == "duration_mismatch")
    assert mismatch["path"].endswith("000005.mp3") and mismatch["problem"].endswith(
        "000005.mp3 decodes to 6.00 s"
    )
    assert "missing_file" in captured.out and "duration_mismatch" in captured.out  # the table


def test_validate_reports_missing_columns(
    fma_manifests: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    broken = tmp_path / "columns"
    shutil.copytree(fma_manifests, broken)
    write_table(read_table(broken / "test.csv").drop(columns="duration_s"), broken / "test.csv")
    assert main(["data", "validate", str(broken), "--json", "-"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["problems"][0] == {
        "check": "missing_column",
        "file": "test.csv",
        "line": None,
        "track_id": None,
        "field": "duration_s",
        "value": None,
        "path": None,
        "problem": "required column is missing",
    }


def test_make_queries_command_takes_a_strategy() -> None:
    assert set(typing.get_args(StrategyName)) == set(STRATEGIES)
    parser = COMMANDS["data"]["make-queries"].parser("acr data make-queries")
    arguments = ["--catalog", "c", "--output", "o"]
    assert parser.parse_args([*arguments, "--strategy", "beat_aware"]).strategy == "beat_aware"
    assert parser.parse_args(arguments).strategy == "random"
    with pytest.raises(SystemExit):
        parser.parse_args([*arguments, "--strategy", "loudest"])


def _fail(self) -> None:
    raise AssertionError("probed the files again")


def test_validate_finds_audio_leaked_under_another_id(
    tmp_path: Path, write_song, capsys: pytest.CaptureFixture
) -> None:
    """--near_duplicates: a test track that is 12 s of a training track (another id, another
    file) is a problem naming both and the time ranges; distinct songs are not."""
    rows = []
    for seed, split in ((0, "train"), (1, "train"), (2, "test"), (3, "val")):
        write_song(tmp_path / f"song{seed}.wav", seed, 20.0)
        rows.append((f"song{seed}", f"song{seed}.wav", 20.0, split))
    training = synthesize_track(1, 20.0, 16000)
    save_audio(tmp_path / "edit.wav", training[4 * 16000 : 16 * 16000], 16000)
    rows.append(("radio_edit", "edit.wav", 12.0, "test"))
    table = pd.DataFrame(rows, columns=["track_id", "path", "duration_s", "split"])
    table.assign(role="reference", source="folder").to_csv(tmp_path / "tracks.csv", index=False)
    assert main(["data", "validate", str(tmp_path), "--json", "-"]) == 0  # ids and files differ
    capsys.readouterr()
    command = ["data", "validate", str(tmp_path), "--near_duplicates", "true", "--json", "-"]
    assert main(command) == 1
    report = json.loads(capsys.readouterr().out)
    leaks = [p for p in report["problems"] if p["check"] == "near_duplicate"]
    assert [leak["track_id"] for leak in leaks] == ["radio_edit"]
    start, end, reference = re.search(
        r"^([\d.]+)-([\d.]+) s of it is training track 'song1' at ([\d.]+)-", leaks[0]["problem"]
    ).groups()
    assert float(start) < 1.0 and float(end) > 11.0 and abs(float(reference) - 4.0) < 1.0

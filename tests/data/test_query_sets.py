"""acr.data.query_sets (acr data make-queries): the table format, determinism, degradations,
humming, offsets taken from a segment strategy, and ids that must not name files."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import audio_info, load_audio
from acr.cli import main
from acr.data.manifests import write_table
from acr.data.query_sets import QUERIES_FILE, make_queries
from acr.data.segments.analysis import analysis_path

QUIET_S = 10.0  # the strategy tests' song is 30 dB quieter before this


@pytest.fixture(scope="module")
def catalog(song_folder, write_song) -> Path:
    root = song_folder(seeds=(11, 12), duration_s=20.0, sample_rate=22050)
    write_song(root / "short.wav", 13, 2.0, 22050)
    return root


def _quiet_start(seed: int, song: np.ndarray) -> np.ndarray:
    song[: int(QUIET_S * 16000)] *= 10 ** (-30 / 20)
    return song


@pytest.fixture(scope="module")
def quiet_then_loud(song_folder) -> Path:
    """A one-song catalog: 20 s of song 2 at 16 kHz, 30 dB quieter before QUIET_S."""
    return song_folder(seeds=(2,), duration_s=20.0, sample_rate=16000, edit=_quiet_start)


def make(catalog: Path, output: Path, **overrides) -> pd.DataFrame:
    settings = dict(
        lengths_s=(1.0, 3.0),
        degradations=("clean", "noise", "speed", "phone_codec", "live_mix", "humming_like"),
        per_track=1,
        seed=5,
        workers=1,
    )
    return make_queries(catalog, output, **{**settings, **overrides})


def test_table_has_the_evaluate_format_and_files_match_it(catalog: Path, tmp_path: Path) -> None:
    table = make(catalog, tmp_path / "queries")
    assert list(table.columns) == [
        "query_id",
        "path",
        "track_id",
        "offset_s",
        "length_s",
        "degradation",
        "degradation_params",
    ]
    written = pd.read_csv(tmp_path / "queries" / QUERIES_FILE)
    assert len(written) == len(table)
    for _, query in table.iterrows():
        info = audio_info(tmp_path / "queries" / query["path"])
        assert info.duration_s == pytest.approx(query["length_s"], abs=1e-3)
        assert info.sample_rate == 16000
    long_enough = table[table["track_id"] != "short"]
    assert (long_enough.groupby(["track_id", "length_s"]).size() >= 5).all()
    # short.wav (2 s) fits the 1-s queries but not the 3-s ones.
    assert set(table.loc[table["track_id"] == "short", "length_s"]) <= {1.0}
    skipped = pd.read_csv(tmp_path / "queries" / "skipped.csv")
    assert skipped.columns.tolist() == ["track_id", "path", "reason"]
    short = skipped[skipped["track_id"] == "short"]
    assert short["reason"].tolist() == ["shorter than 3.3 s"]
    assert short["path"].str.endswith("short.wav").all()
    pd.testing.assert_frame_equal(table.attrs["skipped"], skipped, check_dtype=False)


def test_clean_query_is_the_excerpt_at_its_offset(catalog: Path, tmp_path: Path) -> None:
    table = make(catalog, tmp_path / "queries", degradations=("clean",))
    query = table[(table["track_id"] == "song11") & (table["length_s"] == 3.0)].iloc[0]
    track = load_audio(catalog / "song11.wav", 16000)
    start = int(round(query["offset_s"] * 16000))
    np.testing.assert_allclose(
        load_audio(tmp_path / "queries" / query["path"]), track[start : start + 48000], atol=2e-4
    )


def test_same_seed_same_queries_other_seed_other_offsets(catalog: Path, tmp_path: Path) -> None:
    first = make(catalog, tmp_path / "a")
    second = make(catalog, tmp_path / "b")
    pd.testing.assert_frame_equal(first, second)
    for path in first["path"]:
        assert (tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes()
    other = make(catalog, tmp_path / "c", seed=6)
    assert not np.allclose(other["offset_s"], first["offset_s"])


def test_unknown_degradation_is_rejected(catalog: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="degradations: unknown .*vinyl"):
        make(catalog, tmp_path / "x", degradations=("vinyl",))


def test_make_queries_takes_offsets_from_the_strategy(
    quiet_then_loud: Path, tmp_path: Path
) -> None:
    table = make_queries(
        quiet_then_loud,
        tmp_path / "queries",
        lengths_s=(1.0, 3.0),
        degradations=("clean", "noise"),
        per_track=2,
        seed=3,
        workers=1,
        strategy="high_energy",
    )
    assert len(table) == 8 and set(table["strategy"]) == {"high_energy"}
    assert (table["offset_s"] >= QUIET_S - 0.5).all()
    with pytest.raises(ValueError, match="unknown segment strategy"):
        make_queries(quiet_then_loud, tmp_path / "x", strategy="loudest")


def test_make_queries_caches_analyses_beside_a_table_catalog(
    quiet_then_loud: Path, tmp_path: Path
) -> None:
    song = tmp_path / "music" / "song.wav"
    song.parent.mkdir()
    shutil.copy(quiet_then_loud / "song2.wav", song)
    catalog = tmp_path / "manifest" / "val.csv"
    write_table(pd.DataFrame({"track_id": ["a/1"], "path": [str(song)]}), catalog)
    options = {"lengths_s": (3.0,), "degradations": ("clean",), "workers": 1, "seed": 1}
    first = make_queries(catalog, tmp_path / "q1", strategy="high_energy", **options)
    cached = analysis_path(catalog.parent, "a/1")
    assert cached.is_file()
    stamp = cached.stat().st_mtime_ns
    second = make_queries(catalog, tmp_path / "q2", strategy="onset_aware", **options)
    assert cached.stat().st_mtime_ns == stamp  # read back, not redone
    assert first["offset_s"].iloc[0] >= QUIET_S - 0.5 and len(second) == 1
    make_queries(song.parent, tmp_path / "q3", strategy="high_energy", **options)
    assert not (song.parent / "analysis").exists()  # nothing written into a folder catalog


def _one_song_catalog(ids: list[str], catalog: Path, table: Path) -> Path:
    """A catalog table listing song11 under each of ``ids``."""
    song = str(catalog / "song11.wav")
    write_table(pd.DataFrame({"track_id": ids, "path": [song] * len(ids)}), table)
    return table


def test_track_ids_that_are_paths_never_write_outside_the_output(
    catalog: Path, tmp_path: Path
) -> None:
    """An id stays an id: its queries' file names are slugs plus a hash, all in audio/."""
    ids = ["../../escaped", f"{tmp_path}/absolute", "a/b", "a_b", ".hidden", "ok"]
    output = tmp_path / "deep" / "er" / "queries"
    table = make(
        _one_song_catalog(ids, catalog, tmp_path / "c.csv"),
        output,
        lengths_s=(1.0,),
        degradations=("clean",),
    )
    assert sorted(table["track_id"]) == sorted(ids)
    assert sorted(tmp_path.rglob("*.wav")) == sorted(output / path for path in table["path"])
    assert all(Path(path).parent == Path("audio") for path in table["path"])
    assert all(not Path(path).name.startswith(".") for path in table["path"])
    assert len(set(table["path"])) == len(table)
    written = pd.read_csv(output / QUERIES_FILE, dtype=str)
    assert written["track_id"].tolist() == table["track_id"].tolist()


def test_track_ids_that_are_not_plain_text_are_left_out_naming_the_row(
    catalog: Path, tmp_path: Path
) -> None:
    ids = ["", "nul\x00", "bell\x07", "ok"]
    listed = _one_song_catalog(ids, catalog, tmp_path / "c.csv")
    table = make(listed, tmp_path / "queries", lengths_s=(1.0,), degradations=("clean",))
    assert set(table["track_id"]) == {"ok"}
    assert table.attrs["skipped"]["reason"].tolist() == [
        f"{listed}: line 2: empty track_id",
        f"{listed}: line 3: track_id 'nul\\x00' holds a control character (U+0000)",
        f"{listed}: line 4: track_id 'bell\\x07' holds a control character (U+0007)",
    ]
    assert set(table.attrs["skipped"]["track_id"]) == {""}  # no rejected id is taken as one


def test_make_queries_output_that_is_a_file_is_one_line(
    catalog: Path, tmp_path: Path, capsys
) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    for output in (taken, taken / "queries"):
        command = ["data", "make-queries", "--catalog", str(catalog), "--output", str(output)]
        assert main(command) == 1
        [error] = capsys.readouterr().err.strip().splitlines()
        assert error.startswith(f"acr data make-queries: error: output {output}:")

"""acr data make-queries: the table format, determinism, degradations and humming."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from acr.audio import audio_info, load_audio, save_audio
from acr.data.query_sets import QUERIES_FILE, make_queries
from acr.synth import synthesize_track


@pytest.fixture(scope="module")
def catalog(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("catalog")
    for seed in (11, 12):
        save_audio(root / f"song{seed}.wav", synthesize_track(seed, 20.0, 22050), 22050)
    save_audio(root / "short.wav", synthesize_track(13, 2.0, 22050), 22050)
    return root


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
    assert any("short: shorter than 3.3 s" in problem for problem in table.attrs["skipped"])


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

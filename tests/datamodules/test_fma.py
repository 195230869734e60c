"""FMADataModule on a look-alike of the published layout: splits, genres, bad mp3s, cache, fit."""

from pathlib import Path

import pytest
from fixtures_data import DURATION_S, fit_two_steps
from fixtures_data import FMA_TRACKS as TRACKS
from fixtures_data import TINY_CATALOG as SETTINGS
from fixtures_runs import recomputed, validation_report

from acr.audio import audio_info
from acr.data.manifests import ManifestError, bucket_columns, read_table
from acr.datamodules import FMADataModule


@pytest.fixture(scope="module")
def prepared(fma_root: Path, tmp_path_factory: pytest.TempPathFactory) -> FMADataModule:
    datamodule = FMADataModule(str(tmp_path_factory.mktemp("data")), str(fma_root), **SETTINGS)
    with pytest.warns(UserWarning, match="skipped 2 of 8 tracks"):
        datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_tracks_follow_fma_splits_genres_and_layout(prepared: FMADataModule) -> None:
    tracks = prepared.tracks.set_index("track_id")
    assert sorted(prepared.train_tracks["track_id"]) == ["000002", "000005", "000140"]
    assert sorted(prepared.val_catalog["track_id"]) == ["002096", "010250"]
    assert tracks.loc["010666", "split"] == "test"
    assert tracks.loc["002096", "genre"] == "Rock" and tracks.loc["010250", "genre"] == "Folk"
    assert tracks.loc["000005", "artist_id"] == 1
    assert set(tracks["source"]) == {"fma"} and set(tracks["role"]) == {"reference"}
    assert tracks.loc["002096", "path"].endswith("fma_small/002/002096.mp3")
    assert tracks["duration_s"].to_numpy() == pytest.approx(DURATION_S, abs=0.05)


def test_unreadable_mp3s_are_skipped_and_reported(prepared: FMADataModule) -> None:
    skipped = read_table(prepared.manifest_dir / "skipped.csv").set_index("track_id")
    assert sorted(skipped.index) == ["001482", "099134"]
    assert skipped.loc["001482", "reason"].startswith("truncated")
    assert "cannot decode" in skipped.loc["099134", "reason"]
    assert not set(skipped.index) & set(prepared.tracks["track_id"])


def test_val_queries_are_degraded_clips_with_genre_buckets(prepared: FMADataModule) -> None:
    queries = prepared.val_queries
    assert bucket_columns(queries) == ["length_s", "degradation", "genre"]
    assert len(queries) == 2 * 2 * 2  # tracks x lengths x degradations
    assert set(queries["track_id"]) == {"002096", "010250"}
    genres = prepared.tracks.set_index("track_id")["genre"]
    assert (queries["genre"].to_numpy() == genres[queries["track_id"]].to_numpy()).all()
    for _, query in queries.iterrows():
        assert audio_info(query["path"]).duration_s == pytest.approx(query["length_s"], abs=1e-3)


def test_second_prepare_reuses_the_cache(prepared: FMADataModule, fma_root: Path) -> None:
    again = FMADataModule(str(prepared.data_dir), str(fma_root), **SETTINGS)
    assert again.manifest_dir == prepared.manifest_dir
    again.build_manifests = _fail  # a rebuild would raise
    again.prepare_data()
    again.setup("fit")
    assert again.tracks.equals(prepared.tracks)
    other = FMADataModule(str(prepared.data_dir), str(fma_root), **{**SETTINGS, "query_seed": 1})
    assert other.manifest_dir != prepared.manifest_dir


def test_subsets_are_nested(fma_root: Path, tmp_path: Path) -> None:
    medium = FMADataModule(str(tmp_path), str(fma_root), subset="medium").list_tracks()
    assert set(medium["track_id"]) == {f"{t[0]:06d}" for t in TRACKS if t[1] != "large"}
    assert medium.set_index("track_id").loc["000003", "path"].endswith("fma_medium/000/000003.mp3")
    (fma_root / "fma_large").mkdir()
    try:
        large = FMADataModule(str(tmp_path), str(fma_root), subset="large").list_tracks()
    finally:
        (fma_root / "fma_large").rmdir()  # fma_root is the session's: leave it as it was
    assert len(large) == len(TRACKS)
    assert large.set_index("track_id").loc["000020", "genre"] == "none"


def test_errors_name_the_field_or_file(fma_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"subset: unknown 'tiny'; choose one of \('small'"):
        FMADataModule(str(tmp_path), str(fma_root), subset="tiny")
    with pytest.raises(FileNotFoundError, match="root: .*nowhere is not a folder"):
        FMADataModule(str(tmp_path), str(tmp_path / "nowhere")).prepare_data()
    (tmp_path / "bare" / "fma_small").mkdir(parents=True)
    with pytest.raises(ManifestError, match="fma_metadata/tracks.csv: file does not exist"):
        FMADataModule(str(tmp_path), str(tmp_path / "bare")).list_tracks()
    with pytest.raises(FileNotFoundError, match="fma_full: no such folder"):
        FMADataModule(str(tmp_path), str(fma_root), subset="full").list_tracks()


@pytest.mark.slow
def test_fit_runs_from_the_shipped_config(fma_root: Path, shipped_config, workdir: Path) -> None:
    cli = fit_two_steps(
        shipped_config("fma_hybrid"), "runs/fma_hybrid", {"root": str(fma_root), **SETTINGS}
    )
    assert cli.trainer.global_step == 2
    # The one Rock validation track (002096): 2 lengths x 2 degradations, scored from its ranks.
    report = validation_report(workdir / "runs/fma_hybrid")
    rock = recomputed(report["per_query"], "genre=Rock")
    assert rock["queries"] == 4
    assert float(cli.trainer.callback_metrics["val/top1/genre=Rock"]) == pytest.approx(rock["top1"])
    assert (workdir / "runs/fma_hybrid/checkpoints/last.ckpt").is_file()


def _fail(directory: Path) -> None:
    raise AssertionError(f"rebuilt {directory}")

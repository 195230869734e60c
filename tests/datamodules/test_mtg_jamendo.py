"""MTGJamendoDataModule on a look-alike of the published TSVs and audio: splits, tags, fit."""

from pathlib import Path

import pytest
from fixtures_data import DURATION_S, fit_two_steps
from fixtures_data import TINY_CATALOG as SETTINGS
from fixtures_runs import recomputed, validation_report

from acr.data.manifests import ManifestError, bucket_columns, read_table
from acr.datamodules import MTGJamendoDataModule


@pytest.fixture(scope="module")
def prepared(jamendo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> MTGJamendoDataModule:
    data_dir = str(tmp_path_factory.mktemp("data"))
    datamodule = MTGJamendoDataModule(data_dir, str(jamendo_root), **SETTINGS)
    with pytest.warns(UserWarning, match="skipped 1 of 8 tracks"):
        datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_tracks_follow_the_official_split_with_tag_buckets(prepared: MTGJamendoDataModule) -> None:
    tracks = prepared.tracks.set_index("track_id")
    assert sorted(prepared.train_tracks["track_id"]) == [
        "track_0000214",
        "track_0000215",
        "track_0000300",
    ]
    assert sorted(prepared.val_catalog["track_id"]) == [
        "track_0000773",
        "track_0000775",
        "track_0003346",
    ]
    assert tracks.loc["track_0001729", "split"] == "test"
    # The track's genre tag that most tracks have: pop (3 tracks) over rock (2), electronic (4).
    assert tracks.loc["track_0000214", "genre"] == "pop"
    assert tracks.loc["track_0000775", "genre"] == "electronic"
    assert tracks.loc["track_0003346", "mood"] == "calm"
    assert tracks.loc["track_0000300", "mood"] == "none"
    assert (
        tracks.loc["track_0000215", "tags"] == "genre---rock,instrument---piano,mood/theme---happy"
    )
    assert tracks.loc["track_0000773", "artist_id"] == "artist_000104"
    assert tracks.loc["track_0000773", "path"].endswith("73/773.low.mp3")
    assert tracks["duration_s"].to_numpy() == pytest.approx(DURATION_S, abs=0.05)
    assert set(tracks["source"]) == {"mtg_jamendo"}


def test_missing_audio_is_skipped_and_reported(prepared: MTGJamendoDataModule) -> None:
    skipped = read_table(prepared.manifest_dir / "skipped.csv")
    assert skipped["track_id"].tolist() == ["track_0000999"]
    assert skipped["reason"].tolist() == ["file does not exist"]


def test_val_queries_carry_genre_and_mood_buckets(prepared: MTGJamendoDataModule) -> None:
    queries = prepared.val_queries
    assert bucket_columns(queries) == ["length_s", "degradation", "genre", "mood"]
    assert len(queries) == 2 * 2 * 2  # tracks x lengths x degradations
    assert set(queries["track_id"]) <= set(prepared.val_catalog["track_id"])


def test_second_prepare_reuses_the_cache(
    prepared: MTGJamendoDataModule, jamendo_root: Path
) -> None:
    again = MTGJamendoDataModule(str(prepared.data_dir), str(jamendo_root), **SETTINGS)
    assert again.manifest_dir == prepared.manifest_dir
    again.build_manifests = _fail
    again.prepare_data()
    again.setup("fit")
    assert again.queries.equals(prepared.queries)


def test_val_catalog_is_capped_around_the_queried_tracks(
    jamendo_root: Path, tmp_path: Path
) -> None:
    settings = {**SETTINGS, "query_lengths_s": (1.0,), "query_degradations": ("clean",)}
    capped = MTGJamendoDataModule(
        str(tmp_path),
        str(jamendo_root),
        **{**settings, "val_query_tracks": 1},
        val_catalog_tracks=2,
    )
    with pytest.warns(UserWarning, match="skipped 1"):
        capped.prepare_data()
    capped.setup("fit")
    assert len(capped.val_catalog) == 2
    assert set(capped.val_queries["track_id"]) < set(capped.val_catalog["track_id"])
    with pytest.raises(ValueError, match="val_catalog_tracks=1 cannot be below val_query_tracks=2"):
        MTGJamendoDataModule(str(tmp_path), str(jamendo_root), **SETTINGS, val_catalog_tracks=1)


def test_errors_name_the_field_or_file(jamendo_root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"split: unknown 7; choose one of \(0, 1, 2, 3, 4\)"):
        MTGJamendoDataModule(str(tmp_path), str(jamendo_root), split=7)
    with pytest.raises(ValueError, match=r"tsv: unknown 'tags'; choose one of \('autotagging'"):
        MTGJamendoDataModule(str(tmp_path), str(jamendo_root), tsv="tags")
    with pytest.raises(ManifestError, match="split-1/autotagging-train.tsv: file does not exist"):
        MTGJamendoDataModule(str(tmp_path), str(jamendo_root), split=1).list_tracks()
    broken = tmp_path / "broken" / "splits" / "split-0"
    broken.mkdir(parents=True)
    (broken / "autotagging-train.tsv").write_text("TRACK_ID\tPATH\ntrack_1\t01/1.mp3\n")
    with pytest.raises(ManifestError, match=r"train.tsv: header \['TRACK_ID', 'PATH'\]"):
        MTGJamendoDataModule(str(tmp_path), str(tmp_path / "broken")).list_tracks()


@pytest.mark.slow
def test_fit_runs_from_the_shipped_config(
    jamendo_root: Path, shipped_config, workdir: Path
) -> None:
    cli = fit_two_steps(
        shipped_config("mtg_jamendo"),
        "runs/mtg_jamendo",
        {"root": str(jamendo_root), "val_catalog_tracks": 3, **SETTINGS},
    )
    assert cli.trainer.global_step == 2
    # Both queried tracks (775, 3346) are calm: 2 x 2 lengths x 2 degradations, from their ranks.
    report = validation_report(workdir / "runs/mtg_jamendo")
    calm = recomputed(report["per_query"], "mood=calm")
    assert calm["queries"] == 8
    assert float(cli.trainer.callback_metrics["val/top1/mood=calm"]) == pytest.approx(calm["top1"])
    assert (workdir / "runs/mtg_jamendo/checkpoints/last.ckpt").is_file()


def _fail(directory: Path) -> None:
    raise AssertionError(f"rebuilt {directory}")

"""FolderDataModule on nested folders of synthetic audio: ids, seeded group splits, fit."""

import json
from pathlib import Path

import pandas as pd
import pytest
from fixtures_data import fit_two_steps
from fixtures_runs import recomputed, validation_report

from acr.data.manifests import ManifestError, bucket_columns, check_no_leakage, read_table
from acr.datamodules import FolderDataModule

SAMPLE_RATE = 16000
DURATION_S = 4.0
# Eight album folders that all hold song1 and song2, a nested disc, a loose file at the top.
AUDIO = [
    *(f"album{album}/song{song}.wav" for album in range(1, 9) for song in (1, 2)),
    "album8/disc2/song1.flac",
    "loose.wav",
]
BROKEN = "album3/broken.wav"
IGNORED = ["album1/cover.jpg", ".trash/song9.wav", "album2/._song1.wav"]
SETTINGS = dict(
    val_fraction=0.25,
    test_fraction=0.15,
    val_query_tracks=2,
    query_lengths_s=(1.0,),
    query_degradations=("clean",),
    batch_size=4,
    steps_per_epoch=2,
    num_workers=0,
    query_workers=1,
    probe_workers=2,
)


def write_folder(root: Path, write_song) -> Path:
    for seed, relative in enumerate(AUDIO):
        write_song(root / relative, seed, DURATION_S, SAMPLE_RATE)
    (root / BROKEN).write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio at all")
    for relative in IGNORED:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"\x00" * 64)
    return root


def write_metadata(path: Path) -> Path:
    """artist and genre for albums 1-6 by relative path; one row names a file that is not there."""
    rows = [
        {"path": f"album{album}/song{song}.wav", "artist": f"artist{(album + 1) // 2}"}
        | {"genre": "Rock & Pop" if album % 2 else "Folk"}
        for album in range(1, 7)
        for song in (1, 2)
    ]
    rows.append({"path": "album9/gone.wav", "artist": "artist9", "genre": "Jazz"})
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def music(tmp_path_factory: pytest.TempPathFactory, write_song) -> Path:
    return write_folder(tmp_path_factory.mktemp("music"), write_song)


@pytest.fixture(scope="module")
def metadata(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_metadata(tmp_path_factory.mktemp("metadata") / "tracks.csv")


@pytest.fixture(scope="module")
def prepared(
    music: Path, metadata: Path, tmp_path_factory: pytest.TempPathFactory
) -> FolderDataModule:
    datamodule = FolderDataModule(
        str(tmp_path_factory.mktemp("data")),
        str(music),
        group_by="parent",
        metadata=str(metadata),
        bucket_columns=("genre",),
        **SETTINGS,
    )
    with pytest.warns(UserWarning) as caught:
        datamodule.prepare_data()
    messages = [str(warning.message) for warning in caught]
    assert any("skipped 1 of 19 tracks" in message for message in messages), messages
    assert any("1 row(s) match no audio file" in message for message in messages), messages
    datamodule.setup("fit")
    return datamodule


def test_track_ids_are_relative_paths_without_extension(prepared: FolderDataModule) -> None:
    tracks = prepared.tracks.set_index("track_id")
    expected = {path.rsplit(".", 1)[0] for path in AUDIO}
    assert set(tracks.index) == expected  # song1 of eight albums: eight tracks, no collision
    assert tracks.loc["album8/disc2/song1", "path"].endswith("album8/disc2/song1.flac")
    assert tracks.loc["album8/disc2/song1", "parent"] == "album8/disc2"
    assert tracks.loc["loose", "parent"] == "."
    assert tracks["duration_s"].to_numpy() == pytest.approx(DURATION_S, abs=0.01)
    assert set(tracks["source"]) == {"folder"} and set(tracks["role"]) == {"reference"}


def test_training_and_validation_tracks_are_read_from_the_decode_cache(
    prepared: FolderDataModule,
) -> None:
    tracks = prepared.tracks
    used = tracks["split"].isin(["train", "val"])
    assert tracks.loc[used, "read_path"].str.endswith(".pcm16.npy").all()
    assert (tracks.loc[~used, "read_path"] == tracks.loc[~used, "path"]).all()  # test: not read


def test_group_split_keeps_every_folder_in_one_split(prepared: FolderDataModule) -> None:
    tracks = prepared.tracks
    assert (tracks.groupby("parent")["split"].nunique() == 1).all()
    assert (tracks["group"] == tracks["parent"]).all()
    assert set(tracks["split"]) == {"train", "val", "test"}
    check_no_leakage(tracks, "tracks.csv")  # as setup() does: it reads the group column
    sizes = tracks[tracks["split"] == "val"].groupby("parent").size()
    leaked = tracks.copy()
    leaked.loc[(leaked["parent"] == sizes.idxmax()).idxmax(), "split"] = "train"
    with pytest.raises(ManifestError, match="train/eval leakage"):
        check_no_leakage(leaked, "tracks.csv")


def test_corrupt_file_is_skipped_and_reported(prepared: FolderDataModule) -> None:
    skipped = read_table(prepared.manifest_dir / "skipped.csv")
    assert skipped["track_id"].tolist() == ["album3/broken"]
    assert "cannot decode" in skipped["reason"][0]


def test_metadata_columns_become_query_buckets(prepared: FolderDataModule) -> None:
    tracks = prepared.tracks.set_index("track_id")
    assert tracks.loc["album1/song2", "genre"] == "Rock & Pop"
    assert tracks.loc["album4/song1", "artist"] == "artist2"
    assert tracks.loc["album7/song1", "genre"] == "none"  # no metadata row
    queries = prepared.val_queries
    assert bucket_columns(queries) == ["length_s", "degradation", "genre"]
    assert len(queries) == 2
    genres = tracks["genre"][queries["track_id"]].to_numpy()
    assert (queries["genre"].to_numpy() == genres).all()


def test_split_is_seeded_and_sized_by_the_fractions(music: Path, tmp_path: Path) -> None:
    def split(seed: int) -> pd.Series:
        listed = FolderDataModule(str(tmp_path), str(music), split_seed=seed, **SETTINGS)
        return listed.list_tracks().set_index("track_id")["split"]

    first = split(0)
    assert first.equals(split(0))
    assert not first.equals(split(1))
    # 19 files: val holds the units starting before 0.25 x 19, test those before 0.4 x 19.
    assert first.value_counts().to_dict() == {"train": 11, "val": 5, "test": 3}


def test_metadata_can_group_by_artist_by_track_id(music: Path, tmp_path: Path) -> None:
    rows = [
        {"track_id": f"album{a}/song{s}", "artist": f"artist{a % 3}"}
        for a in range(1, 9)
        for s in (1, 2)
    ]
    table = tmp_path / "artists.jsonl"
    table.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    listed = FolderDataModule(
        str(tmp_path), str(music), group_by="artist", metadata=str(table), **SETTINGS
    ).list_tracks()
    grouped = listed.dropna(subset=["artist"])
    assert (grouped.groupby("artist")["split"].nunique() == 1).all()
    assert pd.isna(listed.set_index("track_id").loc["loose", "group"])  # its own unit
    check_no_leakage(listed, table)


def test_queries_cached_inside_root_are_not_tracks(song_folder, tmp_path: Path) -> None:
    song_folder(4, DURATION_S, SAMPLE_RATE, folder=tmp_path)
    datamodule = FolderDataModule(str(tmp_path), str(tmp_path), **SETTINGS)  # data_dir = root
    datamodule.prepare_data()
    # Four songs at val_fraction 0.25: one validation track, one length, one degradation.
    assert len(list((datamodule.manifest_dir / "queries" / "audio").glob("*.wav"))) == 1
    listed = FolderDataModule(str(tmp_path), str(tmp_path), split_seed=1).list_tracks()
    assert listed["track_id"].tolist() == ["song0", "song1", "song2", "song3"]


@pytest.mark.filterwarnings("ignore:.*match no audio file")
def test_errors_name_the_argument_or_file(music: Path, metadata: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"val_fraction must be in \(0, 1\), got 0"):
        FolderDataModule(str(tmp_path), str(music), val_fraction=0)
    with pytest.raises(ValueError, match=r"test_fraction must be in \[0, 1\), got -0.1"):
        FolderDataModule(str(tmp_path), str(music), test_fraction=-0.1)
    with pytest.raises(ValueError, match="val_fraction \\+ test_fraction = 1 leaves nothing"):
        FolderDataModule(str(tmp_path), str(music), val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(ValueError, match=r"\['artist'\] are not folder columns"):
        FolderDataModule(str(tmp_path), str(music), group_by="artist")
    unknown = FolderDataModule(
        str(tmp_path), str(music), metadata=str(metadata), bucket_columns=("mood",)
    )
    with pytest.raises(ManifestError, match=r"tracks.csv: bucket_columns: no column\(s\) \['mood'"):
        unknown.list_tracks()
    (tmp_path / "empty").mkdir()
    with pytest.raises(ManifestError, match="empty: no audio file"):
        FolderDataModule(str(tmp_path), str(tmp_path / "empty")).list_tracks()
    with pytest.raises(FileNotFoundError, match="root: .*nowhere is not a folder"):
        FolderDataModule(str(tmp_path), str(tmp_path / "nowhere")).prepare_data()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["folder", "folder_music"])
def test_fit_runs_from_the_shipped_config_through_the_decode_cache(
    name: str, music: Path, shipped_config, workdir: Path
) -> None:
    with pytest.warns(UserWarning, match="skipped 1 of 19 tracks"):
        cli = fit_two_steps(shipped_config(name), f"runs/{name}", {"root": str(music), **SETTINGS})
    assert cli.trainer.global_step == 2
    # val/top1 is the share of the two queries whose track ranks first.
    report = validation_report(workdir / f"runs/{name}")
    overall = recomputed(report["per_query"])
    assert overall["queries"] == 2
    assert float(cli.trainer.callback_metrics["val/top1"]) == pytest.approx(overall["top1"])
    assert (workdir / f"runs/{name}/checkpoints/last.ckpt").is_file()
    [manifest_dir] = (workdir / f"data/{name}").glob("folderdatamodule-*")
    tracks = read_table(manifest_dir / "tracks.csv")
    decoded = tracks.loc[tracks["split"].isin(["train", "val"]), "track_id"]
    assert len(list(manifest_dir.glob("pcm-16000/*.pcm16.npy"))) == len(decoded) > 0

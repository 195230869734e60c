"""SyntheticDataModule: cached manifests, unseen validation songs, hard cases, training pairs."""

from pathlib import Path

import lightning as L
import numpy as np
import pytest
import scipy.signal
import torch

from acr.audio import audio_info, load_audio, window_starts
from acr.augment.training import TrainingAugmentation
from acr.data.manifests import bucket_columns
from acr.datamodules import SyntheticDataModule


def tiny(data_dir: Path, **overrides) -> SyntheticDataModule:
    settings = dict(
        train_tracks=3,
        val_tracks=2,
        confusable_versions=1,
        track_duration_s=10.0,
        query_lengths_s=(1.0, 3.0),
        batch_size=4,
        steps_per_epoch=2,
        num_workers=0,
        generation_workers=1,
    )
    return SyntheticDataModule(str(data_dir), **{**settings, **overrides})


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataModule:
    datamodule = tiny(tmp_path_factory.mktemp("synthetic"))
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def test_validation_songs_are_unseen_and_versions_share_a_group(prepared) -> None:
    tracks = prepared.tracks
    assert sorted(prepared.train_tracks["track_id"]) == ["song00000", "song00001", "song00002"]
    assert sorted(prepared.val_catalog["track_id"]) == ["song00003", "song00003-v1", "song00004"]
    train_groups = set(prepared.train_tracks["group"])
    assert train_groups.isdisjoint(prepared.val_catalog["group"])
    versions = tracks[tracks["group"] == "song00003"]
    assert sorted(versions["version"]) == [0, 1]
    original, version = (load_audio(p) for p in versions.sort_values("version")["path"])
    assert abs(np.corrcoef(original, version)[0, 1]) < 0.5  # another orchestration, not a copy
    assert all(audio_info(p).duration_s == pytest.approx(10.0) for p in tracks["path"])


def test_queries_cover_every_bucket_with_the_right_lengths(prepared) -> None:
    queries = prepared.val_queries
    assert bucket_columns(queries) == ["length_s", "degradation", "hard_case"]
    # 2 songs x 2 lengths x (7 degradations + humming)
    assert len(queries) == 32
    assert set(queries["degradation"]) == {
        "clean",
        "noise",
        "reverb",
        "phone_codec",
        "speed",
        "pitch",
        "live_mix",
        "humming_like",
    }
    confused = queries[queries["hard_case"] == "confused"]
    assert set(confused["track_id"]) == {"song00003"}
    assert set(queries.loc[queries["degradation"] == "humming_like", "hard_case"]) == {
        "humming_like"
    }
    for _, query in queries.iterrows():
        assert audio_info(query["path"]).duration_s == pytest.approx(query["length_s"], abs=1e-3)


def test_clean_query_is_the_track_excerpt_it_claims(prepared) -> None:
    query = prepared.val_queries.query("degradation == 'clean' and length_s == 3").iloc[0]
    track_path = prepared.tracks.set_index("track_id").at[query["track_id"], "path"]
    excerpt = load_audio(track_path, offset_s=query["offset_s"], duration_s=3.0)
    np.testing.assert_allclose(load_audio(query["path"]), excerpt, atol=2e-4)  # 16-bit wav


def test_second_prepare_reuses_the_cache_and_new_settings_do_not(prepared) -> None:
    tracks_file = prepared.manifest_dir / "tracks.csv"
    before = tracks_file.stat().st_mtime_ns
    again = tiny(prepared.data_dir)
    again.prepare_data()
    assert again.manifest_dir == prepared.manifest_dir
    assert tracks_file.stat().st_mtime_ns == before
    assert tiny(prepared.data_dir, generation_seed=1).manifest_dir != prepared.manifest_dir


def test_interrupted_build_resumes_with_identical_files(tmp_path: Path) -> None:
    datamodule = tiny(tmp_path, train_tracks=1, val_tracks=1, confusable_versions=0)
    datamodule.prepare_data()
    directory = datamodule.manifest_dir
    audio_file = directory / "audio" / "song00001.wav"
    original = audio_file.read_bytes()
    # Simulate a kill before the end: no completion marker, one file missing.
    (directory / "settings.json").unlink()
    audio_file.unlink()
    datamodule.prepare_data()
    assert audio_file.read_bytes() == original
    assert (directory / "settings.json").is_file()


def test_training_pairs_are_two_views_of_one_moment(prepared) -> None:
    torch.manual_seed(0)
    batch = next(iter(prepared.train_dataloader()))
    anchors, positives = batch["anchor"], batch["positive"]
    assert anchors.shape == positives.shape == (4, 16000)
    assert torch.isfinite(positives).all() and not torch.equal(anchors, positives)

    # Views of the same moment are more alike than views of different moments.
    def spectrum(x: torch.Tensor) -> torch.Tensor:
        return torch.log1p(
            torch.stft(x, 512, window=torch.hann_window(512), return_complex=True).abs().mean(-1)
        )

    same = torch.nn.functional.cosine_similarity(spectrum(anchors), spectrum(positives))
    other = torch.nn.functional.cosine_similarity(spectrum(anchors), spectrum(positives.roll(1, 0)))
    assert same.mean() > other.mean()


def test_validation_windows_cover_catalog_and_queries(prepared) -> None:
    windows = prepared.validation_windows()
    catalog_windows = 3 * len(window_starts(10.0, 1.0, 0.5))  # 3 catalog tracks of 10 s
    query_windows = sum(
        len(window_starts(length, 1.0, 0.25)) for length in prepared.val_queries["length_s"]
    )
    assert len(windows) == catalog_windows + query_windows
    item = windows[len(windows) - 1]
    assert item["audio"].shape == (16000,) and item["kind"] == 1


def test_bad_settings_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown \\['vinyl'\\]"):
        tiny(tmp_path, query_degradations=("clean", "vinyl"))
    with pytest.raises(ValueError, match="do not fit"):
        tiny(tmp_path, query_lengths_s=(10.0,))


def test_hummed_queries_are_sung_not_silent(prepared) -> None:
    hummed = prepared.val_queries.query("degradation == 'humming_like'")
    for path in hummed["path"]:
        audio = load_audio(path)
        frames = audio[: len(audio) // 400 * 400].reshape(-1, 400)  # 25 ms at 16 kHz
        voiced_share = (np.sqrt((frames**2).mean(axis=1)) > 0.01).mean()
        assert voiced_share > 0.4, path


@pytest.mark.slow  # a second prepared DataModule, its loader and a Trainer
def test_batched_augmentation_degrades_positives_on_the_device_only_in_training(
    prepared,
) -> None:
    settings = TrainingAugmentation(speed_probability=0.0, pitch_probability=0.0)
    datamodule = tiny(prepared.data_dir, batch_augmentation=True, augmentation=settings)
    datamodule.prepare_data()  # the cached manifests: batch_augmentation does not change them
    datamodule.setup("fit")
    torch.manual_seed(0)
    batch = next(iter(datamodule.train_dataloader()))
    # Workers only change speed and pitch (off here): each positive is its anchor, shifted.
    for anchor, positive in zip(batch["anchor"].numpy(), batch["positive"].numpy(), strict=True):
        lag = int(np.argmax(scipy.signal.correlate(positive, anchor))) - (anchor.size - 1)
        overlap = anchor.size - abs(lag)
        shifted = anchor[max(0, -lag) :][:overlap]
        np.testing.assert_array_equal(positive[max(0, lag) :][:overlap], shifted)

    datamodule.trainer = L.Trainer(accelerator="cpu", logger=False)
    untouched = datamodule.on_after_batch_transfer(dict(batch), 0)  # not training: validation
    assert torch.equal(untouched["positive"], batch["positive"])
    datamodule.trainer.training = True
    degraded = datamodule.on_after_batch_transfer(dict(batch), 0)
    assert torch.equal(degraded["anchor"], batch["anchor"])
    assert not torch.allclose(degraded["positive"], batch["positive"], atol=1e-3)
    assert float(degraded["positive"].abs().max()) <= 1.0

"""acr.augment.training: the one-view training chain is seeded, keeps the length, and names
bad settings."""

import numpy as np
import pytest
from fixtures_signals import music_like, sine

from acr.augment.training import TrainingAugmentation

ALWAYS_ON = dict(
    noise_probability=1.0,
    reverb_probability=1.0,
    speed_probability=1.0,
    pitch_probability=1.0,
    band_limit_probability=1.0,
)


@pytest.mark.parametrize(
    "augmentation", [TrainingAugmentation(), TrainingAugmentation(**ALWAYS_ON)]
)
def test_training_augmentation_keeps_length_and_is_deterministic_per_seed(
    augmentation: TrainingAugmentation,
) -> None:
    audio = music_like(duration_s=1.2)
    for seed in range(4):
        view = augmentation(audio, np.random.default_rng(seed))
        assert view.dtype == np.float32 and view.shape == audio.shape
        assert np.all(np.isfinite(view)) and np.max(np.abs(view)) <= 1.0
        assert np.array_equal(view, augmentation(audio, np.random.default_rng(seed)))
        assert not np.allclose(view, audio)


def test_training_augmentation_views_of_one_segment_differ() -> None:
    audio = music_like(duration_s=1.2)
    rng = np.random.default_rng(0)
    augmentation = TrainingAugmentation(**ALWAYS_ON)
    assert not np.allclose(augmentation(audio, rng), augmentation(audio, rng))


def test_training_augmentation_rejects_bad_probability() -> None:
    with pytest.raises(ValueError, match="noise_probability"):
        TrainingAugmentation(noise_probability=1.5)


def test_overdriven_views_are_clipped_flat() -> None:
    augmentation = TrainingAugmentation(
        **{name: 0.0 for name in ALWAYS_ON}, clip_probability=1.0, drive_db_range=(12.0, 12.0)
    )
    view = augmentation(sine(440.0), np.random.default_rng(0))
    assert np.mean(np.isclose(np.abs(view), np.abs(view).max(), rtol=1e-4)) > 0.3


def test_missing_noise_or_room_folders_are_named(tmp_path) -> None:
    with pytest.raises(ValueError, match="noise_dir: .*not a folder"):
        TrainingAugmentation(noise_dir=str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="rir_dir: .*no audio files"):
        TrainingAugmentation(rir_dir=str(tmp_path / "empty"))

"""Hard-case-aware training pairs: type-weighted sampling, per-pair loss weights, and groups of
versions cut at one moment as each other's negatives."""

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import binomtest

from acr.audio import save_audio
from acr.data.datasets import ContrastivePairDataset
from acr.data.hard_cases import HardCases, track_types

RATE = 8000
DURATION_S = 8.0


def identity(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return audio


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """Five tracks whose samples say which track and which moment they are: track k is a ramp
    (time / duration) scaled by (k + 1) / 8. Tracks 0-2 are versions of one song, 3-4 are
    singles."""
    folder = tmp_path_factory.mktemp("ramps")
    ramp = np.arange(int(DURATION_S * RATE), dtype=np.float32) / (DURATION_S * RATE)
    rows = []
    for k, (group, kind) in enumerate(
        [("a", "confused"), ("a", "confused"), ("a", "confused"), ("b", "none"), ("c", None)]
    ):
        path = folder / f"t{k}.wav"
        save_audio(path, ramp * (k + 1) / 8, RATE)
        rows.append(dict(track_id=f"t{k}", path=str(path), duration_s=DURATION_S, group=group,
                         hard_case=kind))  # fmt: skip
    return pd.DataFrame(rows)


def dataset(tracks: pd.DataFrame, hard_cases: HardCases, batch: int = 8) -> ContrastivePairDataset:
    return ContrastivePairDataset(
        tracks, RATE, window_s=0.5, examples_per_epoch=batch * 10, augmentation=identity,
        positive_offset_s=0.0, hard_cases=hard_cases,
    )  # fmt: skip


def track_and_time(anchor: torch.Tensor) -> tuple[int, float]:
    """Which ramp an anchor was cut from, and where (its first sample's time)."""
    samples = anchor.numpy().astype(float)
    slope = (samples[-1] - samples[0]) / (len(samples) - 1) * DURATION_S * RATE  # (k + 1) / 8
    track = round(slope * 8) - 1
    return track, samples[0] / slope * DURATION_S


def test_types_come_from_hard_case_then_type_else_none(tracks) -> None:
    assert list(track_types(tracks)) == ["confused"] * 3 + ["none", "none"]
    business = pd.DataFrame({"type": ["live", "cover", None]})
    assert list(track_types(business)) == ["live", "cover", "none"]
    assert list(track_types(pd.DataFrame({"x": [1, 2]}))) == ["none", "none"]


def test_negatives_put_versions_in_one_batch_at_one_moment(tracks) -> None:
    torch.manual_seed(0)
    pairs = dataset(tracks, HardCases(negatives=0.5)).__getitems__(list(range(8)))
    assert len(pairs) == 8
    drawn = [track_and_time(pair["anchor"]) for pair in pairs]
    # Half the batch is the song's three versions (one group at a time, each at one moment).
    grouped = drawn[:4]
    assert {track for track, _ in grouped[:3]} == {0, 1, 2}
    times = [t for _, t in grouped[:3]]
    assert max(times) - min(times) < 0.02  # ms apart: 16-bit ramps
    assert grouped[3][0] in (0, 1, 2)
    # The positive is the same moment (no offset, identity augmentation).
    for pair in pairs:
        assert torch.allclose(pair["anchor"], pair["positive"])


def test_without_hard_cases_a_batch_is_drawn_pair_by_pair_as_before(tracks) -> None:
    plain = dataset(tracks, HardCases())
    torch.manual_seed(1)
    batch = plain.__getitems__(list(range(8)))
    torch.manual_seed(1)
    one_by_one = [plain[index] for index in range(8)]
    for left, right in zip(batch, one_by_one):
        assert torch.equal(left["anchor"], right["anchor"])
        assert "weight" not in left


def test_sampling_draws_a_type_as_often_as_its_weight_says(tracks) -> None:
    # Three confused tracks at weight 6 against two others at 1: P(confused) = 18 / 20.
    weighted = dataset(tracks, HardCases(sampling={"confused": 6.0}))
    torch.manual_seed(2)
    draws = 400
    confused = sum(track_and_time(weighted[i]["anchor"])[0] <= 2 for i in range(draws))
    interval = binomtest(confused, draws).proportion_ci(0.99, method="wilson")
    assert interval.low <= 0.9 <= interval.high
    assert confused / draws > 0.8  # uniform sampling would give 0.6


def test_loss_weights_ride_with_each_pair(tracks) -> None:
    weighted = dataset(tracks, HardCases(loss_weights={"confused": 3.0, "none": 0.5}))
    torch.manual_seed(3)
    for index in range(20):
        pair = weighted[index]
        track, _ = track_and_time(pair["anchor"])
        assert pair["weight"].item() == (3.0 if track <= 2 else 0.5)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(negatives=1.5), r"negatives must be in \[0, 1\]"),
        (dict(sampling={"live": -1.0}), "finite and >= 0"),
        (dict(loss_weights={"live": float("nan")}), "finite and >= 0"),
    ],
)
def test_impossible_settings_are_refused(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        HardCases(**settings)


def test_negatives_need_groups_of_two(tracks) -> None:
    singles = tracks.iloc[3:]
    with pytest.raises(ValueError, match="no group has two training tracks"):
        dataset(singles, HardCases(negatives=0.5))
    with pytest.raises(ValueError, match="needs a 'group' column"):
        dataset(tracks.drop(columns="group"), HardCases(negatives=0.5))
    with pytest.raises(ValueError, match="every training track weight 0"):
        dataset(tracks, HardCases(sampling={"confused": 0.0, "none": 0.0}))

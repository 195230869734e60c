"""The batched training chain: each step does what its one-view counterpart does
(acr.augment.effects, acr.augment.training)."""

from __future__ import annotations

import numpy as np
import pedalboard
import pytest
import torch

from acr.augment.batch import (
    BatchAugmentation,
    _biquad,
    add_noise_at_snr,
    band_pass,
    fft_convolve,
    high_shelf,
    low_shelf,
    peak,
    pink_noise_batch,
    synthetic_rooms,
)
from acr.augment.effects import band_limit
from acr.augment.training import TrainingAugmentation

RATE = 16000


@pytest.fixture
def views() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return 0.1 * torch.randn(6, RATE, generator=generator)


def snr_db(clean: torch.Tensor, degraded: torch.Tensor) -> np.ndarray:
    noise = degraded.double() - clean.double()
    return (10 * torch.log10(clean.double().square().sum(1) / noise.square().sum(1))).numpy()


def only(**probabilities: float) -> TrainingAugmentation:
    """Settings with every step off but the given ones, and no gain change."""
    steps = ("noise", "reverb", "speed", "pitch", "eq", "band_limit", "codec", "clip")
    off = {f"{step}_probability": 0.0 for step in steps}
    return TrainingAugmentation(**{**off, **probabilities, "gain_db_range": (0.0, 0.0)})


def test_band_pass_equals_the_one_view_band_limit_row_by_row(views) -> None:
    low_hz = torch.tensor([60.0, 100.0, 200.0, 300.0, 350.0, 400.0])
    high_hz = torch.tensor([3000.0, 3500.0, 4000.0, 5000.0, 6000.0, 7000.0])
    batched = band_pass(views, low_hz, high_hz, RATE).numpy()
    for row, low, high in zip(range(len(views)), low_hz.tolist(), high_hz.tolist(), strict=True):
        expected = band_limit(views[row].numpy(), RATE, low, high)
        np.testing.assert_allclose(batched[row], expected, atol=1e-6)


@pytest.mark.parametrize(
    ("coefficients", "pedalboard_filter"),
    [
        (
            lambda n: low_shelf(torch.full((n,), 150.0), torch.full((n,), 6.0), RATE),
            pedalboard.LowShelfFilter(150.0, 6.0),
        ),
        (
            lambda n: high_shelf(torch.full((n,), 4000.0), torch.full((n,), -9.0), RATE),
            pedalboard.HighShelfFilter(4000.0, -9.0),
        ),
        (
            lambda n: peak(
                torch.full((n,), 1000.0), torch.full((n,), -8.0), torch.full((n,), 1.3), RATE
            ),
            pedalboard.PeakFilter(1000.0, -8.0, 1.3),
        ),
    ],
    ids=["low_shelf", "high_shelf", "peak"],
)
def test_eq_filters_equal_pedalboards(views, coefficients, pedalboard_filter) -> None:
    batched = _biquad(views, *coefficients(len(views))).numpy()
    for row in range(len(views)):
        expected = pedalboard_filter(views[row].numpy(), RATE)
        np.testing.assert_allclose(batched[row], expected, atol=1e-5)


def test_noise_lands_at_each_rows_snr_and_silence_stays_silent(views) -> None:
    views[2] = 0.0
    noise = pink_noise_batch(views)
    wanted = torch.tensor([-3.0, 0.0, 5.0, 10.0, 15.0, 20.0])
    noisy = add_noise_at_snr(views, noise, wanted)
    measured = snr_db(views, noisy)
    keep = np.arange(len(views)) != 2
    np.testing.assert_allclose(measured[keep], wanted.numpy()[keep], atol=0.01)
    assert torch.equal(noisy[2], views[2])


def test_pink_noise_has_unit_rms_and_a_falling_spectrum(views) -> None:
    noise = pink_noise_batch(views)
    np.testing.assert_allclose(noise.square().mean(1).sqrt().numpy(), 1.0, atol=1e-4)
    power = torch.fft.rfft(noise).abs().square().mean(0)
    # 1/f: each octave carries the same power, so a bin an octave up has half the power.
    low, high = power[100:200].mean(), power[1600:3200].mean()
    assert 12 < float(low / high) < 20  # 16 for a bin 16 times higher


def test_synthetic_rooms_start_at_the_direct_path_and_end_at_their_rt60() -> None:
    rt60_s = torch.tensor([0.2, 0.5, 1.0])
    rooms = synthetic_rooms(rt60_s, RATE)
    assert rooms.shape == (3, RATE + 1)
    np.testing.assert_allclose(rooms.square().sum(1).numpy(), 1.0, atol=1e-5)
    assert torch.equal(rooms.abs().argmax(1), torch.zeros(3, dtype=torch.long))
    assert float(rooms[0, int(0.2 * RATE) + 2 :].abs().max()) == 0.0
    # A longer RT60 puts more energy in the tail (reverberant-to-direct ratio grows with it).
    tail_energy = rooms[:, int(0.05 * RATE) :].square().sum(1)
    assert bool((tail_energy.diff() > 0).all())


def test_room_keeps_length_and_rms_and_delays_nothing(views) -> None:
    augment = BatchAugmentation(only(reverb_probability=1.0))
    torch.manual_seed(1)
    reverberant = augment(views)
    assert reverberant.shape == views.shape
    np.testing.assert_allclose(
        reverberant.square().mean(1).numpy(), views.square().mean(1).numpy(), rtol=1e-3
    )
    impulse = torch.zeros(1, 400)
    impulse[0, 10] = 1.0
    assert (
        int(fft_convolve(impulse, synthetic_rooms(torch.tensor([0.5]), RATE)).abs().argmax()) == 10
    )


def test_babble_bank_noise_stays_in_the_snr_range(views) -> None:
    settings = only(noise_probability=1.0)
    settings.snr_db_range, settings.babble_share = (4.0, 6.0), 1.0
    augment = BatchAugmentation(settings, noise_bank_clips=2, noise_bank_clip_s=2.0)
    torch.manual_seed(2)
    measured = snr_db(views, augment(views))
    assert ((measured > 3.99) & (measured < 6.01)).all(), measured
    assert augment._noise_bank.shape == (2, 2 * RATE)


def test_codec_rows_are_coded_on_the_cpu_and_stay_aligned(views) -> None:
    augment = BatchAugmentation(only(codec_probability=1.0))
    torch.manual_seed(3)
    coded = augment(views)
    assert not torch.allclose(coded, views, atol=1e-3)
    for row in range(len(views)):
        correlation = np.corrcoef(coded[row].numpy(), views[row].numpy())[0, 1]
        assert correlation > 0.3  # a lossy copy, in step with its source


def test_overdrive_clips_flat_and_every_view_peaks_at_most_one(views) -> None:
    settings = only(clip_probability=1.0)
    settings.drive_db_range = (12.0, 12.0)
    driven = BatchAugmentation(settings)(views * 30)
    assert float(driven.abs().max()) <= 1.0
    peaks = driven.abs().amax(1, keepdim=True)
    flat = (driven.abs() > 0.999 * peaks).float().mean(1)
    assert bool((flat > 0.1).all())  # 12 dB of drive flattens many samples at the peak


def test_the_full_chain_is_reproducible_from_the_seed(views) -> None:
    settings = TrainingAugmentation(codec_probability=0.5)
    outputs = []
    for _ in range(2):
        torch.manual_seed(4)
        outputs.append(
            BatchAugmentation(settings, noise_bank_clips=2, noise_bank_clip_s=1.0)(views)
        )
    assert torch.equal(*outputs)
    assert outputs[0].shape == views.shape and float(outputs[0].abs().max()) <= 1.0


def test_bad_views_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[batch, samples\]"):
        BatchAugmentation(TrainingAugmentation())(torch.zeros(RATE))

import pytest
import torch
import torch.nn.functional as F

from acr.models.ecapa import ECAPATDNN

SAMPLE_RATE = 16000


def small_model() -> ECAPATDNN:
    torch.manual_seed(0)
    return ECAPATDNN(channels=64, embedding_dim=32, se_channels=16, attention_channels=16)


def noise(batch: int, duration_s: float, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, int(duration_s * SAMPLE_RATE), generator=generator)


def parameter_count(model: torch.nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())


@pytest.mark.parametrize(
    ("config", "embedding_dim"),
    [({"channels": 64, "embedding_dim": 32}, 32), ({}, 128)],
)
def test_output_has_shape_batch_by_embedding_dim_and_unit_norm(config, embedding_dim):
    model = ECAPATDNN(**config)
    embeddings = model(noise(3, 1.0))
    assert embeddings.shape == (3, embedding_dim)
    torch.testing.assert_close(embeddings.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)


@pytest.mark.parametrize("duration_s", [0.5, 1.0, 3.0])
def test_accepts_variable_lengths(duration_s):
    embeddings = small_model()(noise(2, duration_s))
    assert embeddings.shape == (2, 32)
    assert torch.isfinite(embeddings).all()


def test_channel_dimension_input_matches_flat_input():
    model = small_model().eval()
    waveform = noise(2, 1.0)
    with torch.no_grad():
        torch.testing.assert_close(model(waveform.unsqueeze(1)), model(waveform))


def test_rejects_wrong_input_rank():
    with pytest.raises(ValueError, match="batch"):
        small_model()(torch.zeros(SAMPLE_RATE))


def test_gradient_reaches_first_convolution():
    model = small_model().train()
    model(noise(2, 1.0))[:, 0].sum().backward()
    gradient = model.input_block.convolution.weight.grad
    assert gradient is not None
    assert gradient.abs().sum() > 0


def test_eval_batch_of_one_is_deterministic():
    model = small_model().eval()
    waveform = noise(1, 1.0)
    with torch.no_grad():
        first, second = model(waveform), model(waveform)
    assert first.shape == (1, 32)
    torch.testing.assert_close(first, second, atol=0, rtol=0)


def test_embedding_is_nearly_gain_invariant():
    model = small_model().eval()
    waveform = noise(2, 1.0)
    with torch.no_grad():
        similarity = F.cosine_similarity(model(waveform), model(0.5 * waveform), dim=1)
    assert (similarity > 0.99).all()


def test_parameter_count_grows_with_channels():
    counts = [parameter_count(ECAPATDNN(channels=channels)) for channels in (32, 64, 128)]
    assert counts[0] < counts[1] < counts[2]


def test_declares_sample_rate_and_embedding_dim():
    model = ECAPATDNN(sample_rate=8000, embedding_dim=48)
    assert (model.sample_rate, model.embedding_dim) == (8000, 48)


def test_rejects_channels_not_divisible_by_res2net_scale():
    with pytest.raises(ValueError, match="divisible"):
        ECAPATDNN(channels=60, res2net_scale=8)


def test_front_end_stays_float32_under_autocast():
    model = small_model().eval()
    waveform = noise(2, 1.0)
    with torch.no_grad():
        reference = model(waveform)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            log_mel = model.log_mel(waveform)
            embeddings = model(waveform)
    assert log_mel.dtype == torch.float32
    similarity = F.cosine_similarity(reference, embeddings.float(), dim=1)
    assert (similarity > 0.99).all()

import math

import pytest
import torch

from acr.models.losses import NTXentLoss


def test_matches_hand_computed_value():
    # Rows of [a1, a2, p1, p2] after L2 normalisation: a1=(1,0), a2=(0,1), p1=(0.6,0.8), p2=(0,1).
    anchors = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    temperature = 0.5
    t = temperature
    # Each row: -log softmax of its pair among the three other items.
    row_a1 = -0.6 / t + math.log(math.exp(0.0 / t) + math.exp(0.6 / t) + math.exp(0.0 / t))
    row_a2 = -1.0 / t + math.log(math.exp(0.0 / t) + math.exp(0.8 / t) + math.exp(1.0 / t))
    row_p1 = -0.6 / t + math.log(math.exp(0.6 / t) + math.exp(0.8 / t) + math.exp(0.8 / t))
    row_p2 = -1.0 / t + math.log(math.exp(0.0 / t) + math.exp(1.0 / t) + math.exp(0.8 / t))
    expected = (row_a1 + row_a2 + row_p1 + row_p2) / 4
    loss = NTXentLoss(temperature=temperature)(anchors, positives)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_pair_weights_give_the_weighted_mean_of_the_rows():
    # The rows of the hand-checked example above: weights (3, 1) count pair 1's rows 3 times.
    anchors = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    positives = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    t = 0.5
    row_a1 = -0.6 / t + math.log(math.exp(0.0 / t) + math.exp(0.6 / t) + math.exp(0.0 / t))
    row_a2 = -1.0 / t + math.log(math.exp(0.0 / t) + math.exp(0.8 / t) + math.exp(1.0 / t))
    row_p1 = -0.6 / t + math.log(math.exp(0.6 / t) + math.exp(0.8 / t) + math.exp(0.8 / t))
    row_p2 = -1.0 / t + math.log(math.exp(0.0 / t) + math.exp(1.0 / t) + math.exp(0.8 / t))
    loss = NTXentLoss(temperature=t)
    weighted = loss(anchors, positives, torch.tensor([3.0, 1.0]))
    expected = (3 * (row_a1 + row_p1) + row_a2 + row_p2) / 8
    assert weighted.item() == pytest.approx(expected, rel=1e-6)
    unweighted = loss(anchors, positives).item()
    assert loss(anchors, positives, torch.tensor([2.0, 2.0])).item() == pytest.approx(unweighted)
    with pytest.raises(ValueError, match=r"weights must be \[N\] = \[2\]"):
        loss(anchors, positives, torch.ones(3))


def test_bfloat16_embeddings_are_scored_in_float32():
    # What bf16-mixed training hands the loss: the same value as float32 inputs rounded alike.
    generator = torch.Generator().manual_seed(0)
    anchors, positives = torch.randn(2, 16, 8, generator=generator).bfloat16()
    loss = NTXentLoss(temperature=0.05)
    value = loss(anchors, positives)
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(loss(anchors.float(), positives.float()).item(), rel=1e-6)


def test_matched_pairs_give_smaller_loss_than_mismatched():
    basis = torch.eye(4)
    loss = NTXentLoss(temperature=0.1)
    matched = loss(basis, basis.clone())
    mismatched = loss(basis, basis.roll(1, dims=0))
    assert matched < mismatched


@pytest.mark.parametrize("temperature", [0.2, 0.5, 1.0, 2.0])
def test_temperature_scales_loss_for_orthogonal_negatives(temperature):
    # Identical pairs, orthogonal negatives: each row is log(1 + 2 * exp(-1 / tau)).
    basis = torch.eye(2)
    loss = NTXentLoss(temperature=temperature)(basis, basis.clone())
    expected = math.log(1 + 2 * math.exp(-1 / temperature))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_lower_temperature_sharpens_loss_for_perfect_pairs():
    basis = torch.eye(3)
    cold = NTXentLoss(temperature=0.05)(basis, basis.clone())
    warm = NTXentLoss(temperature=1.0)(basis, basis.clone())
    assert cold < warm


def test_gradient_flows_to_both_inputs():
    anchors = torch.randn(4, 8, requires_grad=True)
    positives = torch.randn(4, 8, requires_grad=True)
    NTXentLoss()(anchors, positives).backward()
    assert anchors.grad.abs().sum() > 0
    assert positives.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("anchor_shape", "positive_shape"),
    [((4, 8), (4, 7)), ((4, 8), (3, 8)), ((4, 8, 1), (4, 8, 1))],
)
def test_rejects_mismatched_shapes(anchor_shape, positive_shape):
    with pytest.raises(ValueError, match="same shape"):
        NTXentLoss()(torch.randn(anchor_shape), torch.randn(positive_shape))


def test_rejects_single_pair():
    with pytest.raises(ValueError, match="at least 2 pairs"):
        NTXentLoss()(torch.randn(1, 8), torch.randn(1, 8))


def test_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="positive"):
        NTXentLoss(temperature=0.0)


@pytest.mark.slow  # two spawned processes joined by gloo
def test_under_ddp_every_rank_scores_against_the_global_batch(tmp_path) -> None:
    """Two ranks of two pairs each: every row has the other rank's pairs as negatives too
    (6, not 2), and with DDP's averaging over ranks the gradients are the whole batch's."""
    from fixtures_distributed import ntxent_on_shard, run_ranks

    temperature = 1.0
    basis = torch.eye(4)  # four orthogonal pairs, each anchor equal to its positive
    ranks = run_ranks(ntxent_on_shard, 2, tmp_path, basis, basis.clone(), temperature)
    # A row's pair scores 1/t, its 6 negatives 0 (its own item is masked): log(1 + 6 e^-1/t).
    global_batch = math.log(1 + 6 * math.exp(-1 / temperature))
    own_batch_only = math.log(1 + 2 * math.exp(-1 / temperature))  # what each rank had before
    for rank in ranks:
        assert rank["loss"].item() == pytest.approx(global_batch, rel=1e-6)
        assert rank["loss"].item() > own_batch_only + 0.5
    # Random embeddings: mean of the ranks' losses is the one-process loss of all pairs, and
    # each rank's gradient, averaged over ranks as DDP does, is the one-process gradient.
    generator = torch.Generator().manual_seed(0)
    anchors, positives = torch.randn(2, 8, 5, generator=generator)
    ranks = run_ranks(ntxent_on_shard, 2, tmp_path, anchors, positives, 0.1)
    whole = anchors.clone().requires_grad_(True), positives.clone().requires_grad_(True)
    loss = NTXentLoss(0.1)(*whole)
    loss.backward()
    for rank in ranks:  # every rank computes the whole batch's loss
        assert rank["loss"].item() == pytest.approx(loss.item(), rel=1e-5)
    anchor_grad = torch.cat([r["anchor_grad"] for r in ranks]) / 2
    positive_grad = torch.cat([r["positive_grad"] for r in ranks]) / 2
    torch.testing.assert_close(anchor_grad, whole[0].grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(positive_grad, whole[1].grad, rtol=1e-5, atol=1e-6)

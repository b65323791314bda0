"""Sampling modes: counts, ignored RoIs never sampled, parity with torchvision's sampler."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection._utils import BalancedPositiveNegativeSampler

from softsampling.sampling import keep_first_candidates, sample_rois


def make_labels(num_pos: int, num_neg: int, num_ignored: int, seed: int = 0) -> torch.Tensor:
    labels = torch.cat(
        [torch.randint(1, 5, (num_pos,)), torch.zeros(num_neg, dtype=torch.int64), torch.full((num_ignored,), -1)]
    )
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))]


def test_all_mode_takes_every_non_ignored() -> None:
    labels = torch.tensor([1, 0, -1, 0, 3, -1, 0])
    assert sample_rois(labels, "all").tolist() == [0, 1, 3, 4, 6]
    assert sample_rois(torch.zeros(0, dtype=torch.int64), "all").numel() == 0


@pytest.mark.parametrize(
    ("num_pos", "num_neg", "want_pos", "want_neg"),
    [(300, 1000, 128, 384), (5, 1000, 5, 507), (5, 20, 5, 20), (300, 10, 128, 10), (0, 0, 0, 0)],
)
def test_balanced_counts(num_pos: int, num_neg: int, want_pos: int, want_neg: int) -> None:
    labels = make_labels(num_pos, num_neg, num_ignored=50)
    keep = sample_rois(labels, "balanced", generator=torch.Generator().manual_seed(1))
    picked = labels[keep]
    assert int((picked > 0).sum()) == want_pos
    assert int((picked == 0).sum()) == want_neg
    assert int((picked < 0).sum()) == 0
    assert torch.equal(keep, keep.sort().values) and keep.unique().numel() == keep.numel()


def test_balanced_custom_sizes_and_seed() -> None:
    labels = make_labels(100, 100, 10)
    a = sample_rois(labels, batch_size_per_image=64, positive_fraction=0.5, generator=torch.Generator().manual_seed(3))
    b = sample_rois(labels, batch_size_per_image=64, positive_fraction=0.5, generator=torch.Generator().manual_seed(3))
    c = sample_rois(labels, batch_size_per_image=64, positive_fraction=0.5, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert int((labels[a] > 0).sum()) == 32 and a.numel() == 64


def test_balanced_global_rng_matches_torchvision() -> None:
    labels = make_labels(40, 900, 30)
    torch.manual_seed(123)
    ours = sample_rois(labels, batch_size_per_image=512, positive_fraction=0.25)
    torch.manual_seed(123)
    pos_mask, neg_mask = BalancedPositiveNegativeSampler(512, 0.25)([labels])
    theirs = torch.where(pos_mask[0].bool() | neg_mask[0].bool())[0]
    assert torch.equal(ours, theirs)


def test_errors() -> None:
    with pytest.raises(ValueError, match="unknown sampling mode"):
        sample_rois(torch.zeros(3, dtype=torch.int64), "random")
    with pytest.raises(ValueError, match="positive_fraction"):
        sample_rois(torch.zeros(3, dtype=torch.int64), positive_fraction=1.5)
    with pytest.raises(ValueError, match="k must be"):
        keep_first_candidates(torch.zeros(3, dtype=torch.int64), -1)


def test_keep_first_candidates() -> None:
    labels = torch.tensor([-1, 0, 2, -1, 0, 0, 1, -1])
    assert keep_first_candidates(labels, 3).tolist() == [-1, 0, 2, -1, 0, -1, -1, -1]
    assert keep_first_candidates(labels, 0).tolist() == [-1] * 8
    assert torch.equal(keep_first_candidates(labels, 100), labels)
    assert labels.tolist() == [-1, 0, 2, -1, 0, 0, 1, -1]  # input untouched


def test_hard_negative_topk_pipeline() -> None:
    """Paper: from 6000 objectness-ordered proposals keep the top 300 with overlap > min_overlap."""
    from softsampling.sampling import assign

    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(6000, 2, generator=gen) * 200
    proposals = torch.cat([xy, xy + 20 + torch.rand(6000, 2, generator=gen) * 40], dim=1)
    gt = torch.tensor([[50.0, 50.0, 90.0, 90.0], [120.0, 40.0, 160.0, 100.0]])
    a = assign("hard_negative", proposals, gt, torch.tensor([1, 2]), min_overlap=0.1)
    labels = keep_first_candidates(a.labels, 300)
    keep = sample_rois(labels, "all")
    assert keep.numel() == 300
    assert bool((a.overlaps[keep] >= 0.1).all())
    candidates = torch.where(a.labels >= 0)[0]
    assert torch.equal(keep, candidates[:300])  # the first 300 in objectness order

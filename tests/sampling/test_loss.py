"""Weighted Fast R-CNN loss: hand values, parity with torchvision, and the gradient property."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import fastrcnn_loss

from softsampling.sampling import assign, gompertz_weight, weighted_fastrcnn_loss


def test_hand_values_count_and_weight_sum() -> None:
    logits = torch.zeros(3, 3)  # CE = ln 3 for every RoI
    labels = torch.tensor([0, 2, 0])
    weights = torch.tensor([0.5, 1.0, 0.25])
    box_regression = torch.zeros(3, 12)
    box_regression[1, 8:12] = torch.tensor([0.1, 0.0, 1.0, 0.0])  # class-2 deltas of the foreground RoI
    targets = torch.zeros(3, 4)
    targets[0] = 5.0  # background RoI: never regressed
    cls, box = weighted_fastrcnn_loss(logits, box_regression, labels, targets, weights)
    assert cls.item() == pytest.approx(1.75 * math.log(3) / 3, rel=1e-6)
    # smooth-L1, beta 1/9: |0.1| < beta -> 0.5 * 0.1**2 * 9 ; |1.0| -> 1 - 1/18 ; summed, / N (3)
    assert box.item() == pytest.approx((0.5 * 0.01 * 9 + (1.0 - 1 / 18)) / 3, rel=1e-6)
    cls_ws, box_ws = weighted_fastrcnn_loss(
        logits, box_regression, labels, targets, weights, normalization="weight_sum"
    )
    assert cls_ws.item() == pytest.approx(math.log(3), rel=1e-6)
    assert box_ws.item() == pytest.approx(box.item())  # regression is never weighted


def test_unit_weights_equal_torchvision() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(10, 4, generator=gen)
    box_regression = torch.randn(10, 16, generator=gen)
    labels = [torch.tensor([0, 1, 3, 0, 0]), torch.tensor([2, 0, 0, 1, 0])]
    targets = [torch.randn(5, 4, generator=gen), torch.randn(5, 4, generator=gen)]
    ours = weighted_fastrcnn_loss(logits, box_regression, labels, targets, [torch.ones(5), torch.ones(5)])
    theirs = fastrcnn_loss(logits, box_regression, labels, targets)
    assert torch.allclose(ours[0], theirs[0]) and torch.allclose(ours[1], theirs[1])


def test_weight_reaches_the_gradient() -> None:
    """d(loss)/d(logits) of a background RoI is exactly w(o) times the unweighted gradient."""
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    proposals = torch.tensor(
        [[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 4.0], [0.0, 0.0, 10.0, 2.0], [30.0, 30.0, 40.0, 40.0]]
    )
    a = assign("overlap_soft", proposals, gt, torch.tensor([1]))
    assert a.labels.tolist() == [1, 0, 0, 0]
    logits = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), requires_grad=True)
    box_regression = torch.zeros(4, 12, requires_grad=True)
    targets = torch.zeros(4, 4)

    weighted, _ = weighted_fastrcnn_loss(logits, box_regression, a.labels, targets, a.weights)
    (grad_weighted,) = torch.autograd.grad(weighted, logits)
    plain, _ = weighted_fastrcnn_loss(logits, box_regression, a.labels, targets, torch.ones(4))
    (grad_plain,) = torch.autograd.grad(plain, logits)

    expected_w = gompertz_weight(a.overlaps)
    for i in (1, 2, 3):  # background RoIs
        assert torch.allclose(grad_weighted[i], expected_w[i] * grad_plain[i], rtol=1e-6, atol=1e-9)
        assert not torch.allclose(grad_weighted[i], grad_plain[i])  # the weight really changed it (w < 1)
    assert torch.allclose(grad_weighted[0], grad_plain[0])  # foreground weight 1
    # and the unweighted gradient is the textbook (softmax - onehot) / N
    onehot = F.one_hot(a.labels, 3).float()
    assert torch.allclose(grad_plain, (logits.softmax(1) - onehot) / 4, atol=1e-7)


def test_empty_batch_and_errors() -> None:
    logits = torch.zeros(0, 3, requires_grad=True)
    cls, box = weighted_fastrcnn_loss(
        logits, torch.zeros(0, 12), torch.zeros(0, dtype=torch.int64), torch.zeros(0, 4), torch.zeros(0)
    )
    assert cls.item() == 0.0 and box.item() == 0.0
    cls.backward()
    assert logits.grad is not None
    with pytest.raises(ValueError, match="normalization"):
        weighted_fastrcnn_loss(
            torch.zeros(1, 3),
            torch.zeros(1, 12),
            torch.zeros(1, dtype=torch.int64),
            torch.zeros(1, 4),
            torch.ones(1),
            normalization="mean",
        )
    with pytest.raises(ValueError, match="one row per sampled RoI"):
        weighted_fastrcnn_loss(
            torch.zeros(2, 3), torch.zeros(2, 12), torch.zeros(2, dtype=torch.int64), torch.zeros(2, 4), torch.ones(3)
        )

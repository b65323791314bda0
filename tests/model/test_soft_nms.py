"""Vectorised Soft-NMS against a straightforward reference loop."""

from __future__ import annotations

import math

import pytest
import torch

from softsampling.model import SoftNMS, batched_soft_nms, soft_nms


def iou(a: list[float], b: list[float]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference(boxes, scores, classes, method, sigma, nt, thresh) -> dict[int, float]:
    """Bodla et al.'s Algorithm 1, one class at a time, in plain Python."""
    result: dict[int, float] = {}
    for cls in set(classes):
        remaining = {i: scores[i] for i in range(len(scores)) if classes[i] == cls and scores[i] >= thresh}
        while remaining:
            best = max(remaining, key=lambda i: (remaining[i], -i))  # highest score, lowest index
            result[best] = remaining.pop(best)
            for i in list(remaining):
                o = iou(boxes[best], boxes[i])
                if method == "gaussian":
                    remaining[i] *= math.exp(-(o * o) / sigma)
                elif o > nt:
                    remaining[i] *= 1 - o
                if remaining[i] < thresh:
                    del remaining[i]
    return result


@pytest.mark.parametrize("method", ["gaussian", "linear"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(method: str, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n = 60
    xy = torch.rand(n, 2, generator=gen) * 40
    boxes = torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=gen) * 20], dim=1)
    scores = torch.rand(n, generator=gen)
    classes = torch.randint(0, 3, (n,), generator=gen)
    keep, new_scores = batched_soft_nms(
        boxes, scores, classes, method=method, sigma=0.5, iou_threshold=0.3, score_threshold=0.05
    )
    want = reference(boxes.tolist(), scores.tolist(), classes.tolist(), method, 0.5, 0.3, 0.05)
    got = dict(zip(keep.tolist(), new_scores.tolist(), strict=True))
    assert set(got) == set(want)
    for i in want:
        assert got[i] == pytest.approx(want[i], rel=1e-5, abs=1e-7)
    assert bool((new_scores[1:] <= new_scores[:-1]).all())  # sorted by decreasing new score
    assert len(set(keep.tolist())) == keep.numel()


def test_hand_example() -> None:
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [50.0, 50.0, 60.0, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.5])
    keep, s = soft_nms(boxes, scores, method="gaussian", sigma=0.5)
    assert keep.tolist() == [0, 2, 1]
    assert s.tolist() == pytest.approx([0.9, 0.5, 0.8 * math.exp(-0.64 / 0.5)], rel=1e-6)
    keep, s = soft_nms(boxes, scores, method="linear", iou_threshold=0.3)
    assert keep.tolist() == [0, 2, 1]
    assert s.tolist() == pytest.approx([0.9, 0.5, 0.8 * 0.2], rel=1e-6)
    keep, _ = soft_nms(boxes, scores, method="linear", iou_threshold=0.85)  # IoU 0.8 below threshold: untouched
    assert keep.tolist() == [0, 1, 2]
    keep, s = soft_nms(torch.zeros(0, 4), torch.zeros(0))
    assert keep.numel() == 0 and s.numel() == 0


def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="method"):
        SoftNMS(method="box")
    with pytest.raises(ValueError, match="sigma"):
        SoftNMS(sigma=0.0)
    keep, _ = SoftNMS(method="linear")(
        torch.tensor([[0.0, 0.0, 1.0, 1.0]] * 2), torch.tensor([0.9, 0.8]), torch.tensor([0, 1])
    )
    assert sorted(keep.tolist()) == [0, 1]

"""Soft-NMS (Bodla et al., ICCV 2017), vectorised in torch.

Instead of deleting the boxes that overlap a kept box, Soft-NMS decays their
scores: ``s *= exp(-iou**2 / sigma)`` (gaussian) or ``s *= 1 - iou`` when
``iou > iou_threshold`` (linear); boxes whose score falls below
``score_threshold`` are dropped. The paper's detector uses it at inference.

Soft-NMS is sequential within a class (each pick changes the later scores),
but classes are independent: :func:`batched_soft_nms` makes one pick *per
class* in each step, so the number of steps is the size of the largest class,
not the total number of boxes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

METHODS: tuple[str, ...] = ("gaussian", "linear")


def _pairwise_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of a[i] with b[i] for every row: float [N]."""
    top_left = torch.maximum(a[:, :2], b[:, :2])
    bottom_right = torch.minimum(a[:, 2:], b[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(dim=1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(dim=1)
    union = area_a + area_b - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def _check(method: str, sigma: float) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown soft-NMS method {method!r}; choose one of {', '.join(METHODS)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")


def batched_soft_nms(
    boxes: Tensor,
    scores: Tensor,
    idxs: Tensor,
    *,
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS run independently for each category in ``idxs``.

    Args:
        boxes: float [N, 4] xyxy.
        scores: float [N].
        idxs: int64 [N] category of each box; boxes of different categories
            never affect each other.
        method: ``gaussian`` (``iou_threshold`` unused) or ``linear``.
        sigma: gaussian width.
        iou_threshold: linear decay only above this IoU.
        score_threshold: boxes whose (decayed) score falls below it are dropped.

    Returns:
        ``(keep, new_scores)``: int64 [K] indices into the input, sorted by
        decreasing new score (ties: earlier pick first), and float [K] their
        decayed scores.

    Example:
        >>> boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
        >>> keep, s = batched_soft_nms(boxes, torch.tensor([0.9, 0.8, 0.7]), torch.tensor([0, 0, 1]), method="linear")
        >>> keep.tolist()  # the duplicate of class 0 decays to 0; class 1 is untouched
        [0, 2]
    """
    _check(method, sigma)
    n = boxes.shape[0]
    device = boxes.device
    if n == 0:
        return torch.zeros(0, dtype=torch.int64, device=device), scores.new_zeros(0)
    _, cls = torch.unique(idxs, return_inverse=True)
    num_cls = int(cls.max()) + 1
    current = scores.clone().float()
    active = current >= score_threshold
    order = torch.arange(n, device=device)
    picked_index: list[Tensor] = []
    picked_score: list[Tensor] = []
    while bool(active.any()):
        # One pick per class: the highest active score, lowest index on ties.
        masked = torch.where(active, current, torch.full_like(current, -float("inf")))
        class_max = torch.full((num_cls,), -float("inf"), device=device).scatter_reduce(0, cls, masked, reduce="amax")
        is_top = active & (masked == class_max[cls])
        candidate_index = torch.where(is_top, order, torch.full_like(order, n))
        first = torch.full((num_cls,), n, dtype=torch.int64, device=device).scatter_reduce(
            0, cls, candidate_index, reduce="amin"
        )
        picks = first[first < n]
        picked_index.append(picks)
        picked_score.append(current[picks])
        active[picks] = False

        # Decay every still-active box by its IoU with the pick of its class.
        pick_of_class = torch.full((num_cls,), -1, dtype=torch.int64, device=device)
        pick_of_class[cls[picks]] = picks
        ref = pick_of_class[cls]
        has_ref = active & (ref >= 0)
        iou = _pairwise_iou(boxes[has_ref].float(), boxes[ref[has_ref]].float())
        if method == "gaussian":
            decay = torch.exp(-(iou * iou) / sigma)
        else:
            decay = torch.where(iou > iou_threshold, 1.0 - iou, torch.ones_like(iou))
        current[has_ref] = current[has_ref] * decay
        active &= current >= score_threshold

    keep = torch.cat(picked_index)
    new_scores = torch.cat(picked_score)
    # Stable sort keeps the pick order among equal scores.
    ranking = torch.sort(new_scores, descending=True, stable=True).indices
    return keep[ranking], new_scores[ranking].to(scores.dtype)


def soft_nms(
    boxes: Tensor,
    scores: Tensor,
    *,
    method: str = "gaussian",
    sigma: float = 0.5,
    iou_threshold: float = 0.3,
    score_threshold: float = 0.001,
) -> tuple[Tensor, Tensor]:
    """Soft-NMS over boxes of a single class; see :func:`batched_soft_nms` for the arguments.

    Example:
        >>> boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [50.0, 50.0, 60.0, 60.0]])
        >>> keep, s = soft_nms(boxes, torch.tensor([0.9, 0.8, 0.5]))
        >>> keep.tolist(), [round(v, 3) for v in s.tolist()]  # IoU 0.8: 0.8 * exp(-0.64 / 0.5)
        ([0, 2, 1], [0.9, 0.5, 0.222])
    """
    idxs = torch.zeros(boxes.shape[0], dtype=torch.int64, device=boxes.device)
    return batched_soft_nms(
        boxes, scores, idxs, method=method, sigma=sigma, iou_threshold=iou_threshold, score_threshold=score_threshold
    )


@dataclass(frozen=True)
class SoftNMS:
    """Soft-NMS settings for :class:`~softsampling.model.SoftSamplingRoIHeads` (``soft_nms=SoftNMS()``)."""

    method: str = "gaussian"
    sigma: float = 0.5
    iou_threshold: float = 0.3
    score_threshold: float = 0.001

    def __post_init__(self) -> None:
        _check(self.method, self.sigma)

    def __call__(self, boxes: Tensor, scores: Tensor, idxs: Tensor) -> tuple[Tensor, Tensor]:
        return batched_soft_nms(
            boxes,
            scores,
            idxs,
            method=self.method,
            sigma=self.sigma,
            iou_threshold=self.iou_threshold,
            score_threshold=self.score_threshold,
        )

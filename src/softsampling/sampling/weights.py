"""Soft-sampling weight curves (pure tensor math).

Both curves are the Gompertz function ``a + (1 - a) * exp(-b * exp(-c * x))``
(PAPER.md, "Label-assignment variants"): ``a`` is about the weight at ``x = 0``,
``b`` shifts the curve along ``x``, ``c`` sets how fast it rises to 1.

- Overlap-based soft sampling uses ``x = o``, the RoI's max IoU with any
  annotated box: background RoIs far from every annotation (``o ~ 0``) weigh
  ``~a``; hard negatives (``o`` near 0.5) weigh ``~1``.
- Score-based soft sampling uses ``x = T - s``: a background RoI that a prior
  detector scores well above the class threshold ``T`` (probably an
  unannotated object) weighs ``~a``.
"""

from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_A = 0.25
DEFAULT_B = 50.0
DEFAULT_C = 20.0


def _as_float_tensor(values: Tensor | float | list[float]) -> Tensor:
    tensor = torch.as_tensor(values)
    if not tensor.is_floating_point():
        tensor = tensor.to(torch.float32)
    return tensor


def gompertz_weight(overlaps: Tensor, a: float = DEFAULT_A, b: float = DEFAULT_B, c: float = DEFAULT_C) -> Tensor:
    """Overlap-based soft-sampling weight ``w(o) = a + (1 - a) * exp(-b * exp(-c * o))``.

    Args:
        overlaps: any shape, IoU values (normally in [0, 1]); integer input is
            treated as float32.
        a, b, c: curve parameters (paper: a=0.25, b=50, c=20).

    Returns:
        Tensor of the same shape (and floating dtype) as ``overlaps``, values in
        ``[a, 1]`` for ``b, c >= 0`` and non-negative overlaps, non-decreasing in ``o``.

    Example:
        >>> w = gompertz_weight(torch.tensor([0.0, 0.2, 0.5]))
        >>> [round(v, 4) for v in w.tolist()]
        [0.25, 0.5502, 0.9983]
    """
    o = _as_float_tensor(overlaps)
    return a + (1.0 - a) * torch.exp(-b * torch.exp(-c * o))


def score_weight(
    scores: Tensor,
    thresholds: Tensor | float,
    a: float = DEFAULT_A,
    b: float = DEFAULT_B,
    c: float = DEFAULT_C,
) -> Tensor:
    """Score-based soft-sampling weight ``G(s, T) = a + (1 - a) * exp(-b * exp(-c * (T - s)))``.

    Args:
        scores: any shape, a prior detector's score ``s`` of each RoI.
        thresholds: ``T``, broadcastable to ``scores`` (per-class threshold
            already gathered for each RoI, or a scalar).
        a, b, c: curve parameters (paper: a=0.25, b=50, c=20).

    Returns:
        Tensor of the broadcast shape; ``~1`` when ``s`` is well below ``T``,
        ``~a`` when ``s`` is well above ``T``; non-increasing in ``s``.

    Example:
        >>> w = score_weight(torch.tensor([0.0, 0.5, 1.0]), 0.5)
        >>> [round(v, 4) for v in w.tolist()]
        [0.9983, 0.25, 0.25]
    """
    s = _as_float_tensor(scores)
    t = torch.as_tensor(thresholds, dtype=s.dtype, device=s.device)
    return a + (1.0 - a) * torch.exp(-b * torch.exp(-c * (t - s)))


def median_thresholds(gt_scores: Tensor, gt_labels: Tensor, num_classes: int, *, default: float = 0.5) -> Tensor:
    """Per-class threshold ``T``: the median prior score of the annotated boxes of each class.

    This is how the paper sets ``T`` for score-based soft sampling: run the
    round-one detector on the training set, score every annotated box as a RoI
    (its probability for its own class) and take the median per class.

    Args:
        gt_scores: float [M], the prior's score of each annotated box for its own class.
        gt_labels: int64 [M], class ids in ``1..num_classes-1``.
        num_classes: C, including background (class 0).
        default: ``T`` for classes without any scored box (and for the background slot 0).

    Returns:
        float32 [C]; entry 0 (background) is ``default`` and unused.

    Example:
        >>> median_thresholds(torch.tensor([0.2, 0.9, 0.6, 0.3]), torch.tensor([1, 1, 1, 2]), 3).tolist()
        [0.5, 0.6000000238418579, 0.30000001192092896]
    """
    gt_scores = torch.as_tensor(gt_scores, dtype=torch.float32).reshape(-1)
    gt_labels = torch.as_tensor(gt_labels, dtype=torch.int64).reshape(-1)
    if gt_scores.shape != gt_labels.shape:
        raise ValueError(
            f"gt_scores {tuple(gt_scores.shape)} and gt_labels {tuple(gt_labels.shape)} must have the same length"
        )
    if gt_labels.numel() and (int(gt_labels.min()) < 1 or int(gt_labels.max()) >= num_classes):
        raise ValueError(f"gt_labels must lie in 1..{num_classes - 1} (0 is background)")
    thresholds = torch.full((num_classes,), float(default), dtype=torch.float32)
    for cls in range(1, num_classes):
        cls_scores = gt_scores[gt_labels == cls]
        if cls_scores.numel():
            thresholds[cls] = torch.quantile(cls_scores, 0.5)
    return thresholds

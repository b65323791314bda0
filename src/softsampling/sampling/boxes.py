"""Box geometry shared by the matcher and the rules (pure tensor code)."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou


def check_boxes(name: str, boxes: Tensor) -> None:
    """Raise ``ValueError`` unless ``boxes`` is a tensor of shape ``[N, 4]``."""
    if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[1] != 4:
        shape = tuple(boxes.shape) if isinstance(boxes, Tensor) else type(boxes).__name__
        raise ValueError(f"{name} must be a float tensor of shape [N, 4] (x1, y1, x2, y2), got {shape}")


def group_of_coverage(proposals: Tensor, group_boxes: Tensor) -> Tensor:
    """Fraction of each proposal's own area inside each box: float [N, G] in [0, 1].

    Zero-area proposals get coverage 0.

    Example:
        >>> group_of_coverage(torch.tensor([[0., 0., 10., 10.]]), torch.tensor([[0., 0., 5., 10.]])).tolist()
        [[0.5]]
    """
    top_left = torch.maximum(proposals[:, None, :2], group_boxes[None, :, :2])
    bottom_right = torch.minimum(proposals[:, None, 2:], group_boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    area = (proposals[:, 2] - proposals[:, 0]).clamp(min=0) * (proposals[:, 3] - proposals[:, 1]).clamp(min=0)
    return torch.where(area[:, None] > 0, inter / area[:, None].clamp(min=1e-12), torch.zeros_like(inter))


def max_iou(proposals: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Max IoU of each proposal with ``boxes`` and the argmax (0.0 and -1 when there are none).

    Example:
        >>> best, index = max_iou(torch.tensor([[0., 0., 10., 10.]]), torch.zeros(0, 4))
        >>> best.tolist(), index.tolist()
        ([0.0], [-1])
    """
    n = proposals.shape[0]
    if boxes.shape[0] == 0 or n == 0:
        return (
            torch.zeros(n, dtype=torch.float32, device=proposals.device),
            torch.full((n,), -1, dtype=torch.int64, device=proposals.device),
        )
    best, index = box_iou(proposals.float(), boxes.float()).max(dim=1)
    return best, index

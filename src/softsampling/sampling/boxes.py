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
        >>> group_of_coverage(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([[0.0, 0.0, 5.0, 10.0]])).tolist()
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
        >>> best, index = max_iou(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.zeros(0, 4))
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


def centered_box_iou(anchors: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """FCOS's overlap of a location with a box: IoU of the box with a copy of itself centred on the location.

    The location is the centre of each anchor (torchvision's FCOS anchors are
    squares centred on the feature-map locations). For a box of size ``w x h``
    whose centre lies ``(dx, dy)`` away, the overlap is
    ``i / (2 w h - i)`` with ``i = max(0, w - |dx|) * max(0, h - |dy|)``: 1 at
    the box centre, 1/3 on the middle of an edge, 0 one box width away. It is
    the IoU the best-shaped anchor at that location would have, so it needs no
    anchor size and works on every pyramid level.

    Returns the max over ``boxes`` and the argmax per anchor (0.0 and -1 when there are none).

    Example:
        >>> anchors = torch.tensor(
        ...     [[0.0, 0.0, 8.0, 8.0], [6.0, 0.0, 14.0, 8.0], [40.0, 40.0, 48.0, 48.0]]
        ... )  # centres x=4, 10, 44
        >>> best, index = centered_box_iou(
        ...     anchors, torch.tensor([[-6.0, -6.0, 14.0, 14.0]])
        ... )  # 20x20 box centred at 4,4
        >>> [round(v, 4) for v in best.tolist()], index.tolist()
        ([1.0, 0.5385, 0.0], [0, 0, 0])
    """
    n = anchors.shape[0]
    if boxes.shape[0] == 0 or n == 0:
        return (
            torch.zeros(n, dtype=torch.float32, device=anchors.device),
            torch.full((n,), -1, dtype=torch.int64, device=anchors.device),
        )
    anchors, boxes = anchors.float(), boxes.float()
    centres = (anchors[:, :2] + anchors[:, 2:]) / 2
    size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0)  # [G, 2]
    offset = (centres[:, None, :] - (boxes[None, :, :2] + boxes[None, :, 2:]) / 2).abs()  # [N, G, 2]
    inter = (size[None] - offset).clamp(min=0).prod(dim=2)
    area = size.prod(dim=1)[None]
    iou = inter / (2 * area - inter).clamp(min=1e-12)
    return iou.max(dim=1)

"""Pseudo boxes from a teacher's detections (pure tensor code; used by ``pseudo_label``).

Two steps per training image:

1. :func:`merge_flip_detections` averages the teacher's detections on the
   image and on its horizontal flip (flipped back): a detection of one view
   pairs with the best-IoU unpaired detection of the same class in the other
   view (IoU >= ``iou``, greedy by score); a pair becomes the mean box with
   the mean score; an unpaired detection keeps its box with half its score
   (the other view gave it ~0).
2. :func:`select_pseudo_boxes` keeps a detection whose score reaches its
   class's threshold and that duplicates no annotation: it duplicates one when
   its IoU with any annotated box is ``>= duplicate_iou`` or more than
   ``duplicate_inside`` of its own area lies inside an annotated box of its class.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_iou

from softsampling.sampling.boxes import group_of_coverage


def flip_boxes(boxes: Tensor, width: int | float) -> Tensor:
    """Mirror xyxy boxes horizontally in an image ``width`` pixels wide.

    >>> flip_boxes(torch.tensor([[1.0, 2.0, 4.0, 5.0]]), 10).tolist()
    [[6.0, 2.0, 9.0, 5.0]]
    """
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)


def merge_flip_detections(
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor,
    flip_boxes_back: Tensor,
    flip_labels: Tensor,
    flip_scores: Tensor,
    *,
    iou: float = 0.5,
) -> tuple[Tensor, Tensor, Tensor]:
    """Average two views' detections of one image (see the module docstring).

    Args:
        boxes, labels, scores: [D, 4], [D], [D] detections on the image.
        flip_boxes_back, flip_labels, flip_scores: [E, 4], [E], [E] detections on
            the flipped image, boxes already mapped back (:func:`flip_boxes`).

    Returns:
        ``(boxes, labels, scores)`` of the merged detections, pairs first (in the
        order of the first view's scores), then unpaired ones of each view.

    Example:
        >>> b, l, s = merge_flip_detections(
        ...     torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
        ...     torch.tensor([1]),
        ...     torch.tensor([0.8]),
        ...     torch.tensor([[0.0, 0.0, 10.0, 12.0]]),
        ...     torch.tensor([1]),
        ...     torch.tensor([0.6]),
        ... )
        >>> b.tolist(), l.tolist(), [round(v, 3) for v in s.tolist()]
        ([[0.0, 0.0, 10.0, 11.0]], [1], [0.7])
    """
    d, e = boxes.shape[0], flip_boxes_back.shape[0]
    pair_of = torch.full((d,), -1, dtype=torch.int64)
    if d and e:
        overlap = box_iou(boxes.float(), flip_boxes_back.float())
        overlap[labels[:, None] != flip_labels[None, :]] = -1.0
        taken = torch.zeros(e, dtype=torch.bool)
        for i in torch.argsort(scores, descending=True, stable=True).tolist():
            row = overlap[i].masked_fill(taken, -1.0)
            j = int(row.argmax())
            if float(row[j]) >= iou:
                pair_of[i] = j
                taken[j] = True
    paired = pair_of >= 0
    first, second = torch.where(paired)[0], pair_of[paired]
    unpaired_flip = torch.ones(e, dtype=torch.bool)
    unpaired_flip[second] = False
    out_boxes = torch.cat(
        [
            (boxes[first].float() + flip_boxes_back[second].float()) / 2,
            boxes[~paired].float(),
            flip_boxes_back[unpaired_flip].float(),
        ]
    )
    out_labels = torch.cat([labels[first], labels[~paired], flip_labels[unpaired_flip]]).to(torch.int64)
    out_scores = torch.cat(
        [
            (scores[first].float() + flip_scores[second].float()) / 2,
            scores[~paired].float() / 2,
            flip_scores[unpaired_flip].float() / 2,
        ]
    )
    return out_boxes.reshape(-1, 4), out_labels, out_scores


def select_pseudo_boxes(
    boxes: Tensor,
    labels: Tensor,
    scores: Tensor,
    thresholds: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    duplicate_iou: float = 0.5,
    duplicate_inside: float = 0.9,
) -> Tensor:
    """Which detections become pseudo boxes: bool [D] (see the module docstring).

    Args:
        boxes, labels, scores: the teacher's detections [D, 4], [D] (>= 1), [D].
        thresholds: float [C] per-class score threshold (index 0, background, unused).
        gt_boxes, gt_labels: the image's annotated boxes [G, 4] and classes [G].

    Example:
        >>> dets = torch.tensor(
        ...     [[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 4.0, 4.0], [20.0, 20.0, 30.0, 30.0], [40.0, 40.0, 50.0, 50.0]]
        ... )
        >>> select_pseudo_boxes(
        ...     dets,
        ...     torch.tensor([1, 1, 1, 2]),
        ...     torch.tensor([0.9, 0.9, 0.9, 0.1]),
        ...     torch.tensor([0.0, 0.5, 0.5]),
        ...     torch.tensor([[0.0, 0.0, 10.0, 10.0]]),
        ...     torch.tensor([1]),
        ... ).tolist()
        [False, False, True, False]
    """
    thresholds = torch.as_tensor(thresholds, dtype=torch.float32).reshape(-1)
    keep = scores.float() >= thresholds[labels]
    if gt_boxes.shape[0] and boxes.shape[0]:
        duplicate = box_iou(boxes.float(), gt_boxes.float()).max(dim=1).values >= duplicate_iou
        inside = group_of_coverage(boxes.float(), gt_boxes.float())
        inside = inside.masked_fill(labels[:, None] != gt_labels[None, :], 0.0)
        duplicate |= inside.max(dim=1).values > duplicate_inside
        keep &= ~duplicate
    return keep

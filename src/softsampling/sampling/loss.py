"""Classification losses with a per-RoI (per-anchor) weight.

- :func:`weighted_fastrcnn_loss`: like torchvision's ``fastrcnn_loss``, a plain
  function beside the RoI head. The only change is the weight ``w_i`` on each
  RoI's cross-entropy; the box regression loss is torchvision's (foreground
  only, unweighted, smooth-L1 with beta 1/9, summed and divided by the number
  of sampled RoIs).
- :func:`weighted_focal_loss`: torchvision's sigmoid focal loss of one-stage
  detectors (RetinaNet, FCOS) with a weight per anchor and, for the anchors
  the ``brl`` rule marks, the Background Recalibration Loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import sigmoid_focal_loss

NORMALIZATIONS: tuple[str, ...] = ("count", "weight_sum")


def _cat(values: Tensor | list[Tensor]) -> Tensor:
    return torch.cat(list(values), dim=0) if isinstance(values, (list, tuple)) else values


def weighted_fastrcnn_loss(
    class_logits: Tensor,
    box_regression: Tensor,
    labels: Tensor | list[Tensor],
    regression_targets: Tensor | list[Tensor],
    weights: Tensor | list[Tensor],
    *,
    normalization: str = "count",
    regress: Tensor | list[Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Weighted Fast R-CNN loss over the sampled RoIs of a batch.

    Args:
        class_logits: float [N, C] (C includes background).
        box_regression: float [N, C * 4] class-specific box deltas.
        labels: int64 [N] (or a per-image list), ``0`` background, ``> 0`` class;
            no ignored (-1) entries: those are never sampled.
        regression_targets: float [N, 4] (or list) encoded targets; used for foreground only.
        weights: float [N] (or list) classification-loss weight per RoI.
        normalization: ``count``: ``sum_i w_i CE_i / N`` (torchvision and the
            authors' code); ``weight_sum``: ``sum_i w_i CE_i / sum_i w_i``.
        regress: bool [N] (or list), which foreground RoIs train box regression
            (default: all; ``pseudo_label`` leaves out RoIs on pseudo boxes
            unless ``pseudo_regress``). The normaliser stays ``N``.

    Returns:
        ``(loss_classifier, loss_box_reg)`` scalars. With all weights 1 and
        ``count`` they equal torchvision's ``fastrcnn_loss``. An empty batch
        gives zeros that still backpropagate.

    Example:
        >>> logits = torch.zeros(2, 3)
        >>> cls, box = weighted_fastrcnn_loss(
        ...     logits, torch.zeros(2, 12), torch.tensor([0, 2]), torch.zeros(2, 4), torch.tensor([0.5, 1.0])
        ... )
        >>> round(cls.item(), 4), box.item()  # (0.5 + 1) * ln(3) / 2
        (0.824, 0.0)
    """
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
    labels = _cat(labels)
    regression_targets = _cat(regression_targets)
    weights = _cat(weights).to(class_logits.dtype)
    n = labels.numel()
    if not (class_logits.shape[0] == n == weights.numel() == regression_targets.shape[0]):
        raise ValueError(
            f"class_logits ({class_logits.shape[0]}), labels ({n}), weights ({weights.numel()}) and "
            f"regression_targets ({regression_targets.shape[0]}) must have one row per sampled RoI"
        )
    if n == 0:
        zero = class_logits.sum() * 0.0 + box_regression.sum() * 0.0
        return zero, zero.clone()

    per_roi = F.cross_entropy(class_logits, labels, reduction="none")
    weighted_sum = (weights * per_roi).sum()
    if normalization == "count":
        loss_classifier = weighted_sum / n
    else:
        loss_classifier = weighted_sum / weights.sum().clamp(min=torch.finfo(weights.dtype).eps)

    has_box = labels > 0
    if regress is not None:
        has_box &= _cat(regress).to(device=labels.device, dtype=torch.bool)
    foreground = torch.where(has_box)[0]
    deltas = box_regression.reshape(n, -1, 4)[foreground, labels[foreground]]
    loss_box_reg = F.smooth_l1_loss(deltas, regression_targets[foreground], beta=1 / 9, reduction="sum") / n
    return loss_classifier, loss_box_reg


def weighted_focal_loss(
    logits: Tensor,
    labels: Tensor,
    weights: Tensor,
    recalibrate: Tensor | None = None,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
    beta: float = 1.0,
) -> Tensor:
    """Summed sigmoid focal loss of anchors, each weighted; BRL on the marked background anchors.

    Per anchor ``i`` and class column ``k`` (torchvision's one-stage layout:
    column ``k`` is class id ``k``), with ``p = sigmoid(logits[i, k])`` and
    target ``t = 1`` for the anchor's class, else 0, the term is torchvision's
    ``sigmoid_focal_loss``: ``-alpha (1-p)^gamma log(p)`` for ``t = 1``,
    ``-(1-alpha) p^gamma log(1-p)`` for ``t = 0``. For a background anchor with
    ``recalibrate[i]`` and ``p >= 0.5`` the negative term is replaced by the
    mirrored ``-(1-alpha) beta (1-p)^gamma log(p)`` (Background Recalibration
    Loss, ICASSP 2020): a confident detection far from every annotation is
    probably an unannotated object, so it is pushed up, not down.

    Args:
        logits: float [N, K] class logits of N anchors.
        labels: int64 [N]: ``> 0`` class, ``0`` background, ``-1`` ignored (left out).
        weights: float [N] classification-loss weight per anchor.
        recalibrate: bool [N] or None: confusion anchors (only background ones count).
        alpha, gamma: focal loss parameters (torchvision's RetinaNet and FCOS: 0.25, 2).
        beta: the mirrored term's factor.

    Returns:
        ``sum_i w_i sum_k term_ik``, a scalar; the caller normalises it (torchvision
        divides by the number of foreground anchors). With every weight 1 and no
        recalibration it equals ``sigmoid_focal_loss(..., reduction="sum")`` over
        the non-ignored anchors exactly.

    Example:
        >>> logits = torch.tensor([[0.0, 2.0], [0.0, 2.0]])  # p = 0.5, 0.881
        >>> focal = weighted_focal_loss(logits, torch.tensor([0, 0]), torch.tensor([1.0, 0.5]))
        >>> brl = weighted_focal_loss(logits, torch.tensor([0, 0]), torch.ones(2), torch.tensor([True, False]))
        >>> round(focal.item(), 4), round(brl.item(), 4)
        (2.0513, 1.4988)
    """
    n = labels.shape[0]
    if logits.dim() != 2 or logits.shape[0] != n or weights.shape != (n,):
        raise ValueError(
            f"logits must be [N, K] and labels, weights [N]: got {tuple(logits.shape)}, "
            f"{tuple(labels.shape)}, {tuple(weights.shape)}"
        )
    valid = labels >= 0
    targets = torch.zeros_like(logits)
    foreground = torch.where(labels > 0)[0]
    targets[foreground, labels[foreground]] = 1.0
    terms: Tensor = sigmoid_focal_loss(logits[valid], targets[valid], alpha=alpha, gamma=gamma, reduction="none")
    if recalibrate is not None:
        x = logits[valid]
        p = torch.sigmoid(x)
        mirrored = (1 - alpha) * beta * (1 - p) ** gamma * -F.logsigmoid(x)
        confusion = (recalibrate[valid] & (labels[valid] == 0))[:, None] & (p >= 0.5)
        terms = torch.where(confusion, mirrored, terms)
    return (terms * weights[valid].to(terms.dtype)[:, None]).sum()

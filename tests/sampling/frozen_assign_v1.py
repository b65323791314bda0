"""FROZEN copy of sampling/assign.py before the rule framework (commit 9104fa3), the reference that
tests/sampling/test_rules_equivalence.py compares the named compositions against. Do not edit."""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor
from torchvision.ops import box_iou

from softsampling.sampling.weights import DEFAULT_A, DEFAULT_B, DEFAULT_C, gompertz_weight, score_weight

STRATEGIES: tuple[str, ...] = ("baseline", "hard_negative", "overlap_soft", "score_soft", "upper_bound")

_REQUIRED = object()
# Parameters every strategy accepts.
COMMON_PARAMS: dict[str, Any] = {"fg_iou": 0.5, "bg_iou": None, "group_of_threshold": 0.9}
# Strategy-specific parameters and their defaults (_REQUIRED: no default).
STRATEGY_PARAMS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "hard_negative": {"min_overlap": 0.1},
    "overlap_soft": {"a": DEFAULT_A, "b": DEFAULT_B, "c": DEFAULT_C},
    "score_soft": {"thresholds": _REQUIRED, "a": DEFAULT_A, "b": DEFAULT_B, "c": DEFAULT_C},
    "upper_bound": {},
}


class Assignment(NamedTuple):
    """Per-RoI result of :func:`assign`; every field has one entry per input proposal."""

    labels: Tensor  # int64 [N]: class id > 0 foreground, 0 background, -1 ignored
    weights: Tensor  # float32 [N]: classification-loss weight; 0 where ignored
    overlaps: Tensor  # float32 [N]: max IoU with any annotated box (0 without annotations)
    matched_gt: Tensor  # int64 [N]: index into gt_boxes for foreground RoIs, -1 otherwise


def resolve_params(strategy: str, params: dict[str, Any]) -> dict[str, Any]:
    """Check a strategy name and its parameters; return them with defaults filled in.

    Raises:
        ValueError: unknown strategy, unknown parameter, missing required
            parameter, or a value out of range.

    Example:
        >>> resolve_params("hard_negative", {"min_overlap": 0.2})["min_overlap"]
        0.2
    """
    if strategy not in STRATEGY_PARAMS:
        raise ValueError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    allowed = {**COMMON_PARAMS, **STRATEGY_PARAMS[strategy]}
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        names = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"strategy {strategy!r} got unknown parameter(s) {unknown}; it accepts: {names}")
    resolved = {**allowed, **params}
    missing = sorted(name for name, value in resolved.items() if value is _REQUIRED)
    if missing:
        raise ValueError(f"strategy {strategy!r} needs parameter(s) {missing}")
    if resolved["bg_iou"] is None:
        resolved["bg_iou"] = resolved["fg_iou"]
    fg, bg = float(resolved["fg_iou"]), float(resolved["bg_iou"])
    if not 0.0 < fg <= 1.0:
        raise ValueError(f"fg_iou must be in (0, 1], got {fg}")
    if not 0.0 <= bg <= fg:
        raise ValueError(f"bg_iou must be in [0, fg_iou={fg}], got {bg}")
    if not 0.0 <= float(resolved["group_of_threshold"]) <= 1.0:
        raise ValueError(f"group_of_threshold must be in [0, 1], got {resolved['group_of_threshold']}")
    if "min_overlap" in resolved and not 0.0 <= float(resolved["min_overlap"]) <= fg:
        raise ValueError(f"min_overlap must be in [0, fg_iou={fg}], got {resolved['min_overlap']}")
    if "a" in resolved:
        if not 0.0 <= float(resolved["a"]) <= 1.0:
            raise ValueError(f"a (the weight floor) must be in [0, 1], got {resolved['a']}")
        if float(resolved["b"]) < 0 or float(resolved["c"]) < 0:
            raise ValueError(f"b and c must be >= 0, got b={resolved['b']}, c={resolved['c']}")
    return resolved


def _check_boxes(name: str, boxes: Tensor) -> None:
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


def _max_iou(proposals: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Max IoU of each proposal with ``boxes`` and the argmax (-1 and 0.0 when there are none)."""
    n = proposals.shape[0]
    if boxes.shape[0] == 0 or n == 0:
        return (
            torch.zeros(n, dtype=torch.float32, device=proposals.device),
            torch.full((n,), -1, dtype=torch.int64, device=proposals.device),
        )
    best, index = box_iou(proposals.float(), boxes.float()).max(dim=1)
    return best, index


def assign(
    strategy: str,
    proposals: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    *,
    dropped_boxes: Tensor | None = None,
    proposal_scores: Tensor | None = None,
    group_of: Tensor | None = None,
    **params: Any,
) -> Assignment:
    """Assign labels and classification-loss weights to the proposals of one image.

    Args:
        strategy: one of ``baseline``, ``hard_negative``, ``overlap_soft``,
            ``score_soft``, ``upper_bound`` (see the module docstring).
        proposals: float [N, 4] xyxy RoIs.
        gt_boxes: float [G, 4] xyxy annotated boxes (G may be 0).
        gt_labels: int64 [G] class ids >= 1.
        dropped_boxes: float [K, 4] boxes removed by curation; required by
            ``upper_bound`` (pass an empty [0, 4] tensor when none were dropped),
            ignored by the other strategies.
        proposal_scores: float [N, C] softmax scores of a prior detector,
            background in column 0; required by ``score_soft``, ignored otherwise.
        group_of: bool [G], True for Open Images group-of boxes (default: none).
        **params: ``fg_iou`` (0.5), ``bg_iou`` (= fg_iou), ``group_of_threshold``
            (0.9) for every strategy; ``min_overlap`` (0.1) for ``hard_negative``;
            ``a, b, c`` (0.25, 50, 20) for ``overlap_soft`` and ``score_soft``;
            ``thresholds`` (float [C] per-class T, required) for ``score_soft``.

    Returns:
        :class:`Assignment` with one entry per proposal.

    Raises:
        ValueError: unknown strategy or parameter, missing required input, bad shapes.

    Example:
        >>> proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [20.0, 20.0, 30.0, 30.0]])
        >>> a = assign("overlap_soft", proposals, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([3]))
        >>> a.labels.tolist(), [round(w, 3) for w in a.weights.tolist()]
        ([3, 3, 0], [1.0, 1.0, 0.25])
    """
    p = resolve_params(strategy, params)
    _check_boxes("proposals", proposals)
    _check_boxes("gt_boxes", gt_boxes)
    gt_labels = torch.as_tensor(gt_labels, device=proposals.device).reshape(-1).to(torch.int64)
    if gt_labels.shape[0] != gt_boxes.shape[0]:
        raise ValueError(f"gt_labels has {gt_labels.shape[0]} entries but gt_boxes has {gt_boxes.shape[0]} boxes")
    if gt_labels.numel() and int(gt_labels.min()) < 1:
        raise ValueError("gt_labels must be >= 1 (class 0 is background)")
    n = proposals.shape[0]
    device = proposals.device
    gt_boxes = gt_boxes.to(device)

    # Common rules: foreground / background / ignored band.
    overlaps, best_gt = _max_iou(proposals, gt_boxes)
    foreground = overlaps >= p["fg_iou"]
    labels = torch.zeros(n, dtype=torch.int64, device=device)
    labels[foreground] = gt_labels[best_gt[foreground]]
    labels[(overlaps >= p["bg_iou"]) & ~foreground] = -1
    matched_gt = torch.where(foreground, best_gt, torch.full_like(best_gt, -1))

    if group_of is not None:
        group_of = torch.as_tensor(group_of, device=device).reshape(-1).to(torch.bool)
        if group_of.shape[0] != gt_boxes.shape[0]:
            raise ValueError(f"group_of has {group_of.shape[0]} entries but gt_boxes has {gt_boxes.shape[0]} boxes")
        if bool(group_of.any()) and n:
            coverage = group_of_coverage(proposals.float(), gt_boxes[group_of].float()).max(dim=1).values
            labels[(labels == 0) & (coverage > p["group_of_threshold"])] = -1

    weights = torch.ones(n, dtype=torch.float32, device=device)
    background = labels == 0
    if strategy == "hard_negative":
        labels[background & (overlaps < p["min_overlap"])] = -1
    elif strategy == "overlap_soft":
        weights[background] = gompertz_weight(overlaps[background], p["a"], p["b"], p["c"]).float()
    elif strategy == "score_soft":
        weights[background] = _score_soft_weights(proposal_scores, p, n)[background]
    elif strategy == "upper_bound":
        if dropped_boxes is None:
            raise ValueError(
                "strategy 'upper_bound' needs dropped_boxes (float [K, 4]; pass an empty [0, 4] tensor for none)"
            )
        _check_boxes("dropped_boxes", dropped_boxes)
        dropped_overlaps, _ = _max_iou(proposals, dropped_boxes.to(device))
        matches_dropped = (dropped_overlaps >= p["fg_iou"]) & (dropped_overlaps > overlaps)
        labels[matches_dropped] = -1
        matched_gt[matches_dropped] = -1

    weights[labels == -1] = 0.0
    return Assignment(labels=labels, weights=weights, overlaps=overlaps.float(), matched_gt=matched_gt)


def _score_soft_weights(proposal_scores: Tensor | None, p: dict[str, Any], n: int) -> Tensor:
    """G(score of the top non-background class, T of that class) for every proposal: float32 [N]."""
    if proposal_scores is None:
        raise ValueError("strategy 'score_soft' needs proposal_scores (float [N, C] prior softmax scores)")
    scores = torch.as_tensor(proposal_scores)
    thresholds = torch.as_tensor(p["thresholds"], dtype=torch.float32, device=scores.device).reshape(-1)
    if scores.dim() != 2 or scores.shape[0] != n or scores.shape[1] < 2:
        raise ValueError(
            f"proposal_scores must have shape [N={n}, C>=2] (background in column 0), got {tuple(scores.shape)}"
        )
    if thresholds.shape[0] != scores.shape[1]:
        raise ValueError(
            f"thresholds must have one entry per class including background (C={scores.shape[1]}), "
            f"got {thresholds.shape[0]}"
        )
    top_score, top_class = scores[:, 1:].float().max(dim=1)
    return score_weight(top_score, thresholds[top_class + 1], p["a"], p["b"], p["c"]).float()

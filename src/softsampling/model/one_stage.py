"""Label-assignment strategies in torchvision's one-stage detectors, RetinaNet and FCOS.

One-stage detectors train every anchor (FCOS: every feature-map location) with
a sigmoid focal loss, so unannotated objects reach the loss far more often
than in the sampled second stage of a Faster R-CNN. Here the detector's *head*
is switched in place (same modules and weights, no new parameters) to a thin
subclass whose ``compute_loss``:

1. keeps torchvision's own matcher (RetinaNet: IoU ``Matcher`` with low-quality
   matches; FCOS: centre sampling and scale ranges) and turns its
   ``matched_idxs`` into an :class:`~softsampling.sampling.Assignment`
   (:func:`~softsampling.sampling.from_matches`);
2. applies the strategy's rules, resolved once at install time, per image;
3. computes the classification loss with
   :func:`~softsampling.sampling.weighted_focal_loss` (per-anchor weights, BRL)
   and normalises it as torchvision does: by the number of foreground anchors
   (RetinaNet per image, then the mean over images; FCOS over the batch);
4. delegates box regression (and FCOS's centerness) to torchvision's code on
   the foreground anchors of annotated boxes (and pseudo boxes with
   ``pseudo_regress``).

The overlap ``o`` that the rules read is, for RetinaNet, the anchor's max IoU
with the annotated boxes. For FCOS it is
:func:`~softsampling.sampling.centered_box_iou`: the IoU of each annotated box
with a copy of itself centred on the location (the best-shaped anchor there).
Inference is torchvision's, unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.fcos import FCOS, FCOSHead
from torchvision.models.detection.retinanet import RetinaNet, RetinaNetHead

from softsampling.model.extra_boxes import rescale_extra_boxes
from softsampling.sampling import (
    Assignment,
    Composition,
    centered_box_iou,
    from_matches,
    image_context,
    resolve_strategy,
    weighted_focal_loss,
)
from softsampling.sampling.boxes import max_iou

ONE_STAGE_DETECTORS = (RetinaNet, FCOS)


class RecordingMatcher(det_utils.Matcher):
    """torchvision's ``Matcher`` that also keeps each call's per-anchor max IoU for the head.

    ``RetinaNet.compute_loss`` computes every image's anchor-box IoU for its matcher and passes
    the head only the matches; the rules read the max IoU again. Keeping the matrix's column
    maximum here saves that second IoU per image (the largest part of the weighting's cost).
    :meth:`take` hands the records over and forgets them.
    """

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool = False) -> None:
        super().__init__(high_threshold, low_threshold, allow_low_quality_matches)
        self.recorded: list[tuple[Tensor, Tensor]] = []

    def __call__(self, match_quality_matrix: Tensor) -> Tensor:
        if match_quality_matrix.numel():
            self.recorded.append(match_quality_matrix.max(dim=0))
        return super().__call__(match_quality_matrix)

    def take(self) -> list[tuple[Tensor, Tensor]]:
        out, self.recorded = self.recorded, []
        return out


class OneStageStrategy:
    """What both one-stage heads share: the resolved strategy, per-anchor assignment, regression targets.

    A mixin for torchvision's ``RetinaNetHead`` and ``FCOSHead``; :func:`use_one_stage_strategy`
    sets its attributes (plain attributes, nothing enters the ``state_dict``).
    """

    composition: Composition
    overlap: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] = staticmethod(max_iou)
    iteration: int | None = None
    iterations: int | None = None
    _rescale_hook: Any = None
    _matcher: RecordingMatcher | None = None  # RetinaNet: its matcher, whose max IoUs the rules reuse

    @property
    def strategy(self) -> str:
        return self.composition.name

    def set_progress(self, iteration: int, iterations: int) -> None:
        """Tell the rules where training stands (the training loop calls this every step)."""
        self.iteration, self.iterations = int(iteration), int(iterations)

    def assign_anchors(
        self, targets: list[dict[str, Tensor]], anchors: list[Tensor], matched_idxs: list[Tensor]
    ) -> list[Assignment]:
        """Per image: torchvision's matches, then the strategy's rules (labels, weights, BRL marks)."""
        params = self.composition.params
        states = []
        reused = self._matcher_overlaps(targets, anchors)
        for anchors_per_image, target, matched, record in zip(anchors, targets, matched_idxs, reused, strict=True):
            overlap = self.overlap if record is None else _reuse_for(target["boxes"], record, self.overlap)
            ctx = image_context(
                anchors_per_image,
                target["boxes"],
                target["labels"],
                group_of=target.get("group_of"),
                dropped_boxes=target.get("dropped_boxes"),
                pseudo_boxes=target.get("pseudo_boxes"),
                pseudo_labels=target.get("pseudo_labels"),
                pseudo_scores=target.get("pseudo_scores"),
                iteration=self.iteration,
                iterations=self.iterations,
                overlap=overlap,
            )
            state = from_matches(ctx, matched, params["group_of_threshold"])
            states.append(self.composition.apply_rules(state, ctx))
        return states

    def _matcher_overlaps(
        self, targets: list[dict[str, Tensor]], anchors: list[Tensor]
    ) -> list[tuple[Tensor, Tensor] | None]:
        """Per image, the (max IoU, argmax) the detector's matcher just computed, or ``None`` to compute it.

        RetinaNet calls its matcher once per image with annotated boxes, in order, right before the
        head's loss. Anything else (no recording matcher, a head called directly, records left by an
        interrupted step, shapes that do not fit) falls back to computing the overlap.
        """
        none: list[tuple[Tensor, Tensor] | None] = [None] * len(targets)
        if self._matcher is None:
            return none
        records = self._matcher.take()
        with_boxes = [i for i, t in enumerate(targets) if t["boxes"].numel()]
        if len(records) < len(with_boxes) or not with_boxes:
            return none
        out = list(none)
        for i, (best, index) in zip(with_boxes, records[len(records) - len(with_boxes) :], strict=True):
            if best.shape != (anchors[i].shape[0],) or int(index.max()) >= targets[i]["boxes"].shape[0]:
                return none
            out[i] = (best.float(), index)
        return out

    def regression_targets(
        self, targets: list[dict[str, Tensor]], states: list[Assignment]
    ) -> tuple[list[dict[str, Tensor]], list[Tensor]]:
        """Targets and ``matched_idxs`` for torchvision's box losses: the final foreground anchors.

        Anchors on annotated boxes regress (unless a rule ignored them, e.g. ``upper_bound``);
        anchors a rule made foreground of pseudo box ``j`` (``matched_gt = G + j``) regress
        towards it only with ``pseudo_regress``, then the pseudo boxes are appended to ``boxes``.
        """
        pseudo_regress = bool(self.composition.params.get("pseudo_regress", False))
        out_targets, out_matched = [], []
        for target, state in zip(targets, states, strict=True):
            num_gt = target["boxes"].shape[0]
            regress = (state.labels > 0) & (state.matched_gt >= 0)
            if pseudo_regress and "pseudo_boxes" in target:
                target = {
                    **target,
                    "boxes": torch.cat([target["boxes"], target["pseudo_boxes"].to(target["boxes"])]),
                    "labels": torch.cat([target["labels"], target["pseudo_labels"].to(target["labels"])]),
                }
            else:
                regress &= state.matched_gt < num_gt
            out_targets.append(target)
            out_matched.append(torch.where(regress, state.matched_gt, torch.full_like(state.matched_gt, -1)))
        return out_targets, out_matched

    def focal(self, logits: Tensor, labels: Tensor, weights: Tensor, recalibrate: Tensor | None) -> Tensor:
        """Summed weighted focal loss of anchors, with BRL where the ``brl`` rule marked them."""
        if "brl" not in self.composition.rules:
            return weighted_focal_loss(logits, labels, weights)
        return weighted_focal_loss(
            logits, labels, weights, recalibrate, beta=float(self.composition.params["brl_beta"])
        )


def _reuse_for(
    gt_boxes: Tensor, recorded: tuple[Tensor, Tensor], compute: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
) -> Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]:
    """An overlap function that returns ``recorded`` for ``gt_boxes`` (the same tensor) and computes otherwise."""

    def overlap(anchors: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
        return recorded if boxes is gt_boxes else compute(anchors, boxes)

    return overlap


class SoftSamplingRetinaNetHead(OneStageStrategy, RetinaNetHead):
    """torchvision's ``RetinaNetHead`` whose classification loss follows a strategy.

    The overlap the rules read is the anchor's max IoU with the annotated boxes.
    Normalisation is torchvision's: per image the summed focal loss over the
    non-ignored anchors divided by ``max(1, number of foreground anchors)``,
    then the mean over images (computed in one focal-loss call over the batch, each
    anchor's weight divided by its image's normaliser). Regression: torchvision's
    ``RetinaNetRegressionHead.compute_loss`` on the final foreground anchors.
    """

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        states = self.assign_anchors(targets, anchors, matched_idxs)
        # One focal-loss call for the batch: image i's anchors carry weight w / (max(1, foreground_i) * images),
        # which is torchvision's per-image normalisation and mean over images, without a loop of small calls.
        labels = torch.stack([s.labels for s in states])
        per_image = (labels > 0).sum(dim=1).clamp(min=1) * len(states)
        weights = torch.stack([s.weights for s in states]) / per_image[:, None]
        recalibrate = torch.stack([_recalibrated(s) for s in states]) if "brl" in self.composition.rules else None
        classification = self.focal(
            head_outputs["cls_logits"].flatten(0, 1),
            labels.flatten(),
            weights.flatten(),
            None if recalibrate is None else recalibrate.flatten(),
        )
        reg_targets, reg_matched = self.regression_targets(targets, states)
        return {
            "classification": classification,
            "bbox_regression": self.regression_head.compute_loss(reg_targets, head_outputs, anchors, reg_matched),
        }


def _recalibrated(state: Assignment) -> Tensor:
    """``state.recalibrate``, or all False where the Assignment was built without it."""
    if state.recalibrate is None:
        return torch.zeros_like(state.labels, dtype=torch.bool)
    return state.recalibrate


class SoftSamplingFCOSHead(OneStageStrategy, FCOSHead):
    """torchvision's ``FCOSHead`` whose classification loss follows a strategy.

    The overlap the rules read is :func:`~softsampling.sampling.centered_box_iou`
    of the location (anchor centre) with the annotated boxes. Normalisation is
    torchvision's: the focal loss summed over the batch divided by
    ``max(1, number of foreground locations in the batch)``. GIoU regression and
    centerness are torchvision's ``FCOSHead.compute_loss`` on the final
    foreground locations (its own classification term is replaced).
    """

    overlap = staticmethod(centered_box_iou)

    def compute_loss(
        self,
        targets: list[dict[str, Tensor]],
        head_outputs: dict[str, Tensor],
        anchors: list[Tensor],
        matched_idxs: list[Tensor],
    ) -> dict[str, Tensor]:
        states = self.assign_anchors(targets, anchors, matched_idxs)
        reg_targets, reg_matched = self.regression_targets(targets, states)
        losses = super().compute_loss(reg_targets, head_outputs, anchors, reg_matched)
        cls_logits = head_outputs["cls_logits"]
        labels = torch.cat([s.labels for s in states])
        loss = self.focal(
            cls_logits.flatten(0, 1),
            labels,
            torch.cat([s.weights for s in states]),
            torch.cat([_recalibrated(s) for s in states]),
        )
        losses["classification"] = loss / max(1, int((labels > 0).sum()))
        return losses


HEADS: dict[type, tuple[type, type]] = {
    RetinaNet: (RetinaNetHead, SoftSamplingRetinaNetHead),
    FCOS: (FCOSHead, SoftSamplingFCOSHead),
}
# use_strategy arguments that only a two-stage RoI head uses (None: not set)
TWO_STAGE_ONLY = ("batch_size_per_image", "positive_fraction", "soft_nms", "prior", "thresholds", "generator")


def use_one_stage_strategy(
    detector: RetinaNet | FCOS,
    strategy: str | Sequence[str],
    *,
    normalization: str = "count",
    **params: Any,
) -> RetinaNet | FCOS:
    """Install ``strategy`` into a torchvision ``RetinaNet`` or ``FCOS`` (in place; returns it).

    Called by :func:`softsampling.model.use_strategy` for one-stage detectors.
    The head keeps its modules and weights; its class becomes
    :class:`SoftSamplingRetinaNetHead` / :class:`SoftSamplingFCOSHead`. Every anchor
    trains (there is no RoI sampling); ``normalization`` must be ``count``
    (torchvision's: by the number of foreground anchors). For RetinaNet,
    ``fg_iou``/``bg_iou`` default to the detector's matcher thresholds (0.5/0.4)
    and, when given, rebuild it. Calling it again replaces the strategy.

    Raises:
        ValueError: a rule that needs a two-stage detector (``score_soft``,
            ``objectness_mining``), ``hard_negative_topk`` or ``pseudo_rpn`` set,
            another normalisation, or a head that is not torchvision's own.
    """
    kind = type(detector) if type(detector) in HEADS else next(k for k in HEADS if isinstance(detector, k))
    stock, ours = HEADS[kind]
    head = detector.head
    if type(head) not in (stock, ours):
        raise ValueError(
            f"use_strategy needs torchvision's own {stock.__name__} in the {kind.__name__}, got {type(head).__name__}"
        )
    if normalization != "count":
        raise ValueError(
            f"normalization {normalization!r} does not apply to one-stage detectors; they normalise "
            "by the number of foreground anchors (normalization: count)"
        )
    params = dict(params)
    if kind is RetinaNet:
        matcher = detector.proposal_matcher
        fg = float(params.pop("fg_iou", matcher.high_threshold))
        bg = float(params.pop("bg_iou", min(matcher.low_threshold, fg)))
        composition = resolve_strategy(strategy, {**params, "fg_iou": fg, "bg_iou": bg})
        rebuilt = (fg, bg) != (matcher.high_threshold, matcher.low_threshold)  # new thresholds: low-quality on
        low_quality = True if rebuilt else matcher.allow_low_quality_matches
        detector.proposal_matcher = RecordingMatcher(fg, bg, allow_low_quality_matches=low_quality)
    else:
        composition = resolve_strategy(strategy, params)
    composition.check_detector("one_stage")
    for option in ("hard_negative_topk", "pseudo_rpn"):
        if composition.params.get(option):
            raise ValueError(f"{option} applies to two-stage detectors (it needs an RPN); leave it unset here")
    old_hook = getattr(head, "_rescale_hook", None)
    if old_hook is not None:
        old_hook.remove()
    head.__class__ = ours
    head.composition = composition
    head._matcher = detector.proposal_matcher if kind is RetinaNet else None
    head._rescale_hook = None
    if composition.needs & {"dropped_boxes", "pseudo_boxes"}:
        head._rescale_hook = detector.transform.register_forward_hook(rescale_extra_boxes)
    return detector


def is_one_stage(detector: nn.Module) -> bool:
    """Whether ``detector`` is a torchvision RetinaNet or FCOS (``use_strategy`` installs into its head)."""
    return isinstance(detector, ONE_STAGE_DETECTORS)

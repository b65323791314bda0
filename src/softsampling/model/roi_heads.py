"""torchvision's RoI head with a pluggable label-assignment strategy.

:class:`SoftSamplingRoIHeads` subclasses torchvision's ``RoIHeads`` and swaps
only the training-time assignment, sampling and loss:

1. the ground-truth boxes are appended to the proposals (torchvision's
   ``add_gt_proposals``);
2. the strategy, resolved once into a :class:`~softsampling.sampling.Composition`
   when the head is built, labels every RoI and gives it a classification
   weight (the common matcher, then the strategy's rules in order);
3. :func:`softsampling.sampling.sample_rois` picks the RoIs that train
   (``balanced`` like torchvision, or ``all`` like the authors' code);
4. :func:`softsampling.sampling.weighted_fastrcnn_loss` replaces torchvision's
   ``fastrcnn_loss``.

Inference is torchvision's, optionally with Soft-NMS. Mask R-CNN's mask branch
trains on the foreground RoIs exactly as in torchvision. Keypoint heads are not
supported.

:func:`use_strategy` installs the head into any torchvision two-stage
detector, keeping its existing submodules and weights.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.fcos import FCOS
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.retinanet import RetinaNet
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork

from softsampling.model.extra_boxes import rescale_extra_boxes
from softsampling.model.one_stage import TWO_STAGE_ONLY, is_one_stage, use_one_stage_strategy
from softsampling.model.soft_nms import SoftNMS
from softsampling.sampling import (
    NORMALIZATIONS,
    SAMPLING_MODES,
    Assignment,
    image_context,
    keep_first_candidates,
    resolve_strategy,
    sample_rois,
    weighted_fastrcnn_loss,
)


class PriorScorer:
    """Scores RoIs with a frozen, already trained detector (round one of score soft sampling).

    The prior runs its *own* backbone (features of two models are not
    interchangeable) on the images as the trained detector's transform
    prepared them, then its box head on the given RoIs. Cost per training step:
    one extra backbone forward without gradient plus the box head on the
    sampled RoIs: +17-20% step time on the digit model (bench/train_step_speed.py). The prior must use the same
    image transform (size and normalisation) as the detector being trained,
    which holds when it was trained with the same configuration.

    It is deliberately not an ``nn.Module`` attribute of the head, so its
    weights stay out of the trained model's ``state_dict`` and optimiser.
    """

    def __init__(self, detector: GeneralizedRCNN) -> None:
        if not isinstance(getattr(detector, "roi_heads", None), RoIHeads):
            raise ValueError("prior must be a torchvision two-stage detector (with .backbone and .roi_heads)")
        self.detector = detector.eval()
        for parameter in self.detector.parameters():
            parameter.requires_grad_(False)

    @property
    def transform(self) -> nn.Module:
        return self.detector.transform

    @torch.no_grad()
    def score_proposals(
        self, images: Tensor, image_shapes: list[tuple[int, int]], proposals: list[Tensor]
    ) -> list[Tensor]:
        """Softmax class scores of RoIs on already transformed images.

        Args:
            images: float [B, 3, H, W], the padded batch (``ImageList.tensors``).
            image_shapes: [(h, w)] per image before padding.
            proposals: per image float [N_i, 4] RoIs in those transformed coordinates.

        Returns:
            per image float [N_i, C] softmax scores, background in column 0.
        """
        detector = self.detector.eval()  # a training loop's model.train() never reaches it; be sure anyway
        first = next(detector.parameters(), None)
        if first is not None and first.device != images.device:
            detector.to(images.device)
        features = detector.backbone(images)
        if isinstance(features, Tensor):
            features = OrderedDict([("0", features)])
        heads = detector.roi_heads
        box_features = heads.box_head(heads.box_roi_pool(features, proposals, image_shapes))
        class_logits, _ = heads.box_predictor(box_features)
        scores = F.softmax(class_logits.float(), dim=-1)
        return list(scores.split([p.shape[0] for p in proposals]))

    @torch.no_grad()
    def score_images(self, images: list[Tensor], boxes: list[Tensor]) -> list[Tensor]:
        """Softmax class scores of given boxes on raw images (e.g. annotated boxes, to set ``T``).

        Args:
            images: per image float [3, H, W] in [0, 1], as the detector takes them.
            boxes: per image float [N_i, 4] xyxy in original pixel coordinates.

        Returns:
            per image float [N_i, C] softmax scores, background in column 0.
        """
        detector = self.detector.eval()
        device = next(detector.parameters()).device
        images = [image.to(device) for image in images]
        targets = [
            {"boxes": b.to(device).float(), "labels": torch.zeros(b.shape[0], dtype=torch.int64, device=device)}
            for b in boxes
        ]
        image_list, targets = detector.transform(images, targets)
        return self.score_proposals(image_list.tensors, image_list.image_sizes, [t["boxes"] for t in targets])


class ObjectnessRecord:
    """Hands the RPN's objectness of the last training step's proposals to the RoI head.

    A plain object (not a module), shared by the RPN and the head, so nothing
    enters the ``state_dict``.
    """

    def __init__(self) -> None:
        self.scores: list[Tensor] | None = None

    def take(self) -> list[Tensor] | None:
        scores, self.scores = self.scores, None
        return scores


class ObjectnessRecordingRPN(RegionProposalNetwork):
    """torchvision's RPN that also records, in training, the objectness probability of each kept proposal.

    :func:`use_strategy` switches an existing RPN to this class in place (same
    modules and weights) when a rule needs the objectness (``objectness_mining``).
    """

    objectness_record: ObjectnessRecord | None = None

    def filter_proposals(self, proposals, objectness, image_shapes, num_anchors_per_level):
        boxes, scores = super().filter_proposals(proposals, objectness, image_shapes, num_anchors_per_level)
        if self.training and self.objectness_record is not None:
            self.objectness_record.scores = [s.detach() for s in scores]
        return boxes, scores


class SampledRoIs(NamedTuple):
    """The RoIs that train in one step, per image (output of ``select_weighted_samples``)."""

    proposals: list[Tensor]  # float [S_i, 4]
    matched_idxs: list[Tensor]  # int64 [S_i], matched annotated box (0 for background, as torchvision)
    labels: list[Tensor]  # int64 [S_i], 0 background, > 0 class
    regression_targets: list[Tensor]  # float [S_i, 4]
    weights: list[Tensor]  # float32 [S_i], classification-loss weight
    regress: list[Tensor]  # bool [S_i], foreground RoIs whose box regression trains


class SoftSamplingRoIHeads(RoIHeads):
    """torchvision ``RoIHeads`` whose training step asks a strategy for labels and loss weights.

    The positional arguments are torchvision's ``RoIHeads`` arguments. Extra keyword arguments:

    Args:
        strategy: a named strategy (``softsampling.sampling.STRATEGIES``) or a list of rule names.
        strategy_params: the strategy's parameters (see ``softsampling.sampling.RULES``), checked
            here once; ``fg_iou``/``bg_iou`` here override ``fg_iou_thresh``/``bg_iou_thresh``.
            ``hard_negative_topk`` (rule ``hard_negative``): keep only the first k non-ignored RPN
            proposals (ordered by objectness) before sampling; the paper's 300 out of 6000. The
            appended ground-truth boxes always stay candidates.
        sampling: ``balanced`` (``batch_size_per_image``, ``positive_fraction``) or ``all``.
        normalization: ``count`` or ``weight_sum`` (see ``weighted_fastrcnn_loss``).
        soft_nms: a :class:`~softsampling.model.soft_nms.SoftNMS` to replace hard NMS at inference.
        prior: for ``score_soft``, a :class:`PriorScorer` (or a trained detector) that scores
            the sampled RoIs; it needs the transformed images, which :func:`use_strategy`
            arranges with a forward hook on the detector's transform.
        thresholds: for ``score_soft``, float [C] per-class T (background slot included).
        generator: torch RNG for ``balanced`` sampling; ``None`` (default) uses the global RNG.

    Targets may carry, besides torchvision's ``boxes``/``labels``(/``masks``):
    ``dropped_boxes`` float [K, 4] (``upper_bound``), ``group_of`` bool [G], and
    ``pseudo_boxes`` float [P, 4], ``pseudo_labels`` int64 [P], ``pseudo_scores`` float [P]
    (``pseudo_label``; in the same coordinates as ``boxes``). ``objectness_mining`` reads the
    RPN's objectness, which :func:`use_strategy` records; its warm-up needs the training
    progress, set with :meth:`set_progress` (the training loop does; without it the rule
    always applies).
    """

    # set by torchvision's RoIHeads.__init__; postprocess_detections swaps them for one call
    nms_thresh: float
    detections_per_img: int

    def __init__(
        self,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] | None = None,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
        mask_roi_pool: nn.Module | None = None,
        mask_head: nn.Module | None = None,
        mask_predictor: nn.Module | None = None,
        *,
        strategy: str | Sequence[str] = "baseline",
        strategy_params: dict[str, Any] | None = None,
        sampling: str = "balanced",
        normalization: str = "count",
        soft_nms: SoftNMS | None = None,
        prior: PriorScorer | GeneralizedRCNN | None = None,
        thresholds: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        params = dict(strategy_params or {})
        fg_iou_thresh = float(params.pop("fg_iou", fg_iou_thresh))
        bg_iou_thresh = float(params.pop("bg_iou", bg_iou_thresh))
        # resolved and checked once, here; applied to every image of every step
        composition = resolve_strategy(strategy, {**params, "fg_iou": fg_iou_thresh, "bg_iou": bg_iou_thresh})
        composition.check_detector("two_stage")
        if "prior_scores" in composition.needs and (prior is None or thresholds is None):
            raise ValueError(
                f"strategy {composition.name!r} needs prior=<the detector trained in round one on the "
                "curated data> and thresholds=<per-class T>"
            )
        if sampling not in SAMPLING_MODES:
            raise ValueError(f"unknown sampling mode {sampling!r}; choose one of {', '.join(SAMPLING_MODES)}")
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization {normalization!r}; choose one of {', '.join(NORMALIZATIONS)}")
        if soft_nms is not None and not isinstance(soft_nms, SoftNMS):
            raise ValueError("soft_nms must be a softsampling.model.SoftNMS (or None for torchvision's hard NMS)")
        super().__init__(
            box_roi_pool,
            box_head,
            box_predictor,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            bbox_reg_weights,
            score_thresh,
            nms_thresh,
            detections_per_img,
            mask_roi_pool,
            mask_head,
            mask_predictor,
        )
        self.composition = composition
        self.strategy = composition.name
        self.strategy_params = params
        self.sampling = sampling
        self.normalization = normalization
        self.hard_negative_topk: int | None = composition.params.get("hard_negative_topk")
        self.soft_nms = soft_nms
        self.prior = prior if prior is None or isinstance(prior, PriorScorer) else PriorScorer(prior)
        self.thresholds = None if thresholds is None else torch.as_tensor(thresholds, dtype=torch.float32)
        self.generator = generator
        self.iteration: int | None = None  # training progress for rules with a warm-up (set_progress)
        self.iterations: int | None = None
        self.objectness = ObjectnessRecord()  # filled by the RPN when a rule needs it (use_strategy)
        self._images: Tensor | None = None  # set by capture_images (forward hook on the transform)
        self._capture_hook: Any = None  # the hook's handle, kept so use_strategy can remove it

    def set_progress(self, iteration: int, iterations: int) -> None:
        """Tell the rules where training stands (``objectness_mining``'s warm-up)."""
        self.iteration, self.iterations = int(iteration), int(iterations)

    # ------------------------------------------------------------------ training
    def capture_images(self, module: nn.Module, inputs: Any, output: Any) -> None:
        """Forward hook for the detector's transform: remember the batch the prior must score."""
        if self.training and self.prior is not None:
            self._images = output[0].tensors

    def select_weighted_samples(
        self, proposals: list[Tensor], targets: list[dict[str, Tensor]], image_shapes: list[tuple[int, int]]
    ) -> SampledRoIs:
        """Append GT boxes to the proposals, assign with the strategy's rules, sample; per image.

        Rules that weight with a prior (``score_soft``) run after sampling on the sampled RoIs
        only (assignment is per RoI), so the prior scores only those; every other rule runs
        once on all RoIs before sampling.
        """
        self.check_targets(targets)
        composition = self.composition
        dtype = proposals[0].dtype
        device = proposals[0].device
        gt_boxes = [t["boxes"].to(dtype) for t in targets]
        num_rpn = [p.shape[0] for p in proposals]
        objectness = self._take_objectness(num_rpn) if "objectness" in composition.needs else None
        proposals = self.add_gt_proposals(proposals, gt_boxes)
        sampled = SampledRoIs([], [], [], [], [], [])
        contexts, states = [], []
        for i, (image_proposals, target, image_gt, n_rpn) in enumerate(
            zip(proposals, targets, gt_boxes, num_rpn, strict=True)
        ):
            ctx = image_context(
                image_proposals,
                image_gt,
                target["labels"],
                group_of=target.get("group_of"),
                dropped_boxes=target.get("dropped_boxes"),
                pseudo_boxes=target.get("pseudo_boxes"),
                pseudo_labels=target.get("pseudo_labels"),
                pseudo_scores=target.get("pseudo_scores"),
                objectness=(
                    None
                    if objectness is None
                    else torch.cat([objectness[i].to(device), torch.zeros(image_gt.shape[0], device=device)])
                ),
                iteration=self.iteration,
                iterations=self.iterations,
            )
            result = composition.assign_before_sampling(ctx)
            labels = result.labels
            if self.hard_negative_topk is not None:
                labels = torch.cat([keep_first_candidates(labels[:n_rpn], self.hard_negative_topk), labels[n_rpn:]])
            keep = sample_rois(
                labels,
                self.sampling,
                batch_size_per_image=self.fg_bg_sampler.batch_size_per_image,
                positive_fraction=self.fg_bg_sampler.positive_fraction,
                generator=self.generator,
            )
            state = Assignment(
                labels[keep],
                result.weights[keep],
                result.overlaps[keep],
                result.matched_gt[keep],
                None if result.recalibrate is None else result.recalibrate[keep],
            )
            contexts.append(replace(ctx, proposals=image_proposals[keep], objectness=None))
            states.append(state)
            sampled.proposals.append(image_proposals[keep])
        if composition.after_sampling:
            scores = self._prior_scores(sampled.proposals, image_shapes)
            states = [
                composition.assign_after_sampling(state, replace(ctx, prior_scores=s, thresholds=self.thresholds))
                for state, ctx, s in zip(states, contexts, scores, strict=True)
            ]
        regress_pseudo = bool(composition.params.get("pseudo_regress", False))
        matched_boxes = []
        for state, ctx, image_gt in zip(states, contexts, gt_boxes, strict=True):
            num_gt = image_gt.shape[0]
            boxes = image_gt
            if ctx.pseudo_boxes is not None and ctx.pseudo_boxes.shape[0]:
                boxes = torch.cat([image_gt, ctx.pseudo_boxes.to(dtype=dtype, device=device)])
            matched = state.matched_gt.clamp(min=0)
            sampled.labels.append(state.labels)
            sampled.weights.append(state.weights)
            sampled.matched_idxs.append(matched)
            sampled.regress.append((state.labels > 0) & ((state.matched_gt < num_gt) | regress_pseudo))
            matched_boxes.append(
                (boxes if boxes.shape[0] else torch.zeros((1, 4), dtype=dtype, device=device))[matched]
            )
        sampled.regression_targets.extend(self.box_coder.encode(matched_boxes, sampled.proposals))
        return sampled

    def _take_objectness(self, num_rpn: list[int]) -> list[Tensor]:
        """The RPN objectness of this step's proposals, zeros appended for the ground-truth boxes."""
        scores = self.objectness.take()
        if scores is None or [s.shape[0] for s in scores] != num_rpn:
            raise ValueError(
                f"strategy {self.strategy!r} needs the RPN's objectness of the proposals; install the head with "
                "softsampling.model.use_strategy(detector, ...), which records it from torchvision's RPN"
            )
        return scores

    def _prior_scores(self, proposals: list[Tensor], image_shapes: list[tuple[int, int]]) -> list[Tensor]:
        if self.prior is None:
            raise ValueError(
                f"strategy {self.strategy!r} needs a prior detector: use_strategy(..., prior=trained_detector)"
            )
        if self._images is None:
            raise ValueError(
                f"{self.strategy}: the head has not seen the transformed images; install it with "
                "softsampling.model.use_strategy(detector, 'score_soft', prior=...), which hooks the transform"
            )
        scores = self.prior.score_proposals(self._images, image_shapes, proposals)
        self._images = None
        return scores

    def select_training_samples(self, proposals, targets):
        """torchvision's contract (4-tuple), with this head's strategy and sampling (weights dropped).

        Not used by this head's own ``forward``; ``score_soft`` needs ``select_weighted_samples``
        (it has no image shapes here).
        """
        if targets is None:
            raise ValueError("targets should not be None")
        sampled = self.select_weighted_samples(proposals, targets, [])
        return sampled.proposals, sampled.matched_idxs, sampled.labels, sampled.regression_targets

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Inference: torchvision's ``RoIHeads.forward``. Training: weighted losses.

        torchvision's forward calls the module-level ``fastrcnn_loss`` and has no
        place for per-RoI weights, so the training path is re-stated here: the
        three box-branch calls and, for Mask R-CNN, torchvision's mask loss on
        the foreground RoIs. Everything else is delegated.
        """
        if not self.training:
            return super().forward(features, proposals, image_shapes, targets)
        if targets is None:
            raise ValueError("targets should not be None in training mode")
        if self.has_keypoint():
            raise ValueError("SoftSamplingRoIHeads does not support keypoint heads")
        for target in targets:
            if not target["boxes"].is_floating_point() or target["labels"].dtype != torch.int64:
                raise TypeError("target boxes must be float and target labels int64")

        sampled = self.select_weighted_samples(proposals, targets, image_shapes)
        box_features = self.box_head(self.box_roi_pool(features, sampled.proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        loss_classifier, loss_box_reg = weighted_fastrcnn_loss(
            class_logits,
            box_regression,
            sampled.labels,
            sampled.regression_targets,
            sampled.weights,
            normalization=self.normalization,
            regress=sampled.regress,
        )
        losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
        if self.has_mask():
            losses["loss_mask"] = self._mask_loss(features, sampled, image_shapes, targets)
        return [], losses

    def _mask_loss(
        self,
        features: dict[str, Tensor],
        sampled: SampledRoIs,
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]],
    ) -> Tensor:
        """torchvision's Mask R-CNN loss on the sampled foreground RoIs of annotated boxes (unweighted)."""
        foreground = [
            torch.where((labels > 0) & (m < t["boxes"].shape[0]))[0]
            for labels, m, t in zip(sampled.labels, sampled.matched_idxs, targets, strict=True)
        ]
        mask_proposals = [p[i] for p, i in zip(sampled.proposals, foreground, strict=True)]
        matched = [m[i] for m, i in zip(sampled.matched_idxs, foreground, strict=True)]
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes)))
        return maskrcnn_loss(
            mask_logits, mask_proposals, [t["masks"] for t in targets], [t["labels"] for t in targets], matched
        )

    # ----------------------------------------------------------------- inference
    def postprocess_detections(self, class_logits, box_regression, proposals, image_shapes):
        """torchvision's post-processing, with Soft-NMS instead of hard NMS when ``soft_nms`` is set.

        torchvision decodes, clips, thresholds by ``score_thresh`` and drops tiny
        boxes; its hard NMS is switched off for that call (IoU threshold 1.0
        keeps every box, no top-k cut), then Soft-NMS per class and the top
        ``detections_per_img`` follow.
        """
        if self.soft_nms is None:
            return super().postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        saved = (self.nms_thresh, self.detections_per_img)
        self.nms_thresh, self.detections_per_img = 1.0, class_logits.shape[0] * class_logits.shape[1] + 1
        try:
            all_boxes, all_scores, all_labels = super().postprocess_detections(
                class_logits, box_regression, proposals, image_shapes
            )
        finally:
            self.nms_thresh, self.detections_per_img = saved
        for i, (boxes, scores, labels) in enumerate(zip(all_boxes, all_scores, all_labels, strict=True)):
            keep, new_scores = self.soft_nms(boxes, scores, labels)
            keep, new_scores = keep[: self.detections_per_img], new_scores[: self.detections_per_img]
            all_boxes[i], all_scores[i], all_labels[i] = boxes[keep], new_scores, labels[keep]
        return all_boxes, all_scores, all_labels


def use_strategy(
    detector: GeneralizedRCNN | RetinaNet | FCOS,
    strategy: str | Sequence[str],
    *,
    sampling: str = "balanced",
    normalization: str = "count",
    batch_size_per_image: int | None = None,
    positive_fraction: float | None = None,
    soft_nms: SoftNMS | None = None,
    prior: PriorScorer | GeneralizedRCNN | None = None,
    thresholds: Tensor | None = None,
    generator: torch.Generator | None = None,
    **params: Any,
) -> GeneralizedRCNN | RetinaNet | FCOS:
    """Install a :class:`SoftSamplingRoIHeads` with ``strategy`` into a torchvision two-stage detector.

    Works with ``FasterRCNN`` (any backbone, torchvision's own builders included)
    and ``MaskRCNN`` (the box branch gets the strategy; the mask loss stays
    torchvision's). One-stage detectors (``RetinaNet``, ``FCOS``) get the strategy
    in their head instead (:func:`softsampling.model.one_stage.use_one_stage_strategy`:
    every anchor trains, so ``sampling`` does not apply; the RoI-head arguments
    ``batch_size_per_image`` ... ``generator`` must stay unset). The existing ``box_roi_pool``, ``box_head``,
    ``box_predictor`` and mask modules are reused (same objects, same weights);
    IoU thresholds, sampler sizes, box-coder weights and inference settings are
    copied unless overridden here. Calling it again replaces the strategy.

    Args:
        detector: the model; modified in place and returned.
        strategy: a named strategy or a list of rule names (see :func:`softsampling.sampling.assign`).
        sampling, normalization, soft_nms, generator: see
            :class:`SoftSamplingRoIHeads`; ``soft_nms=None`` keeps the current
            setting (hard NMS for a stock torchvision detector).
        batch_size_per_image, positive_fraction: override the detector's sampler sizes.
        prior, thresholds: the trained round-one detector and the per-class T, required by ``score_soft``.
        **params: strategy parameters (``fg_iou``, ``min_overlap``, ``hard_negative_topk``, ``a``, ``b``,
            ``c``, ``pseudo_weight``, ``tau``, ...; see ``softsampling.sampling.RULES``).

    Also installed, for rules that read them: a hook on the transform that rescales
    ``dropped_boxes`` and ``pseudo_boxes`` with ``boxes`` when images are resized; for rules that read
    the RPN's objectness, the RPN records it (:class:`ObjectnessRecordingRPN`);
    with ``pseudo_rpn=True`` the RPN also trains on the pseudo boxes.

    Returns:
        ``detector``, whose ``roi_heads`` is now a ``SoftSamplingRoIHeads``.

    Example:
        >>> from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
        >>> model = fasterrcnn_mobilenet_v3_large_fpn(weights=None, weights_backbone=None, num_classes=3)
        >>> model = use_strategy(model, "overlap_soft", a=0.25, b=50.0, c=20.0)
        >>> type(model.roi_heads).__name__, model.roi_heads.strategy
        ('SoftSamplingRoIHeads', 'overlap_soft')
    """
    if is_one_stage(detector):
        given = {
            "batch_size_per_image": batch_size_per_image,
            "positive_fraction": positive_fraction,
            "soft_nms": soft_nms,
            "prior": prior,
            "thresholds": thresholds,
            "generator": generator,
        }
        extra = [name for name in TWO_STAGE_ONLY if given[name] is not None]
        if extra:
            raise ValueError(
                f"{', '.join(extra)} apply to two-stage detectors only; {type(detector).__name__} trains every anchor"
            )
        return use_one_stage_strategy(detector, strategy, normalization=normalization, **params)
    old = getattr(detector, "roi_heads", None)
    if not isinstance(old, RoIHeads):
        raise ValueError(
            f"use_strategy needs a torchvision two-stage detector with RoIHeads, got {type(detector).__name__}"
        )
    if old.has_keypoint():
        raise ValueError("use_strategy does not support keypoint detectors (KeypointRCNN)")
    if soft_nms is None and isinstance(old, SoftSamplingRoIHeads):
        soft_nms = old.soft_nms  # keep inference settings when switching strategy
    prior_scorer = prior if prior is None or isinstance(prior, PriorScorer) else PriorScorer(prior)
    if prior_scorer is not None:
        _check_same_transform(detector.transform, prior_scorer.transform)
    head = SoftSamplingRoIHeads(
        old.box_roi_pool,
        old.box_head,
        old.box_predictor,
        old.proposal_matcher.high_threshold,
        old.proposal_matcher.low_threshold,
        batch_size_per_image if batch_size_per_image is not None else old.fg_bg_sampler.batch_size_per_image,
        positive_fraction if positive_fraction is not None else old.fg_bg_sampler.positive_fraction,
        old.box_coder.weights,
        old.score_thresh,
        old.nms_thresh,
        old.detections_per_img,
        old.mask_roi_pool,
        old.mask_head,
        old.mask_predictor,
        strategy=strategy,
        strategy_params=params,
        sampling=sampling,
        normalization=normalization,
        soft_nms=soft_nms,
        prior=prior_scorer,
        thresholds=thresholds,
        generator=generator,
    )
    head.train(old.training)
    for name in ("_capture_hook", "_rescale_hook", "_rpn_pseudo_hook"):
        old_hook = getattr(old, name, None)
        if old_hook is not None:
            old_hook.remove()
    if prior_scorer is not None:
        head._capture_hook = detector.transform.register_forward_hook(head.capture_images)
    if head.composition.needs & {"dropped_boxes", "pseudo_boxes"}:
        head._rescale_hook = detector.transform.register_forward_hook(rescale_extra_boxes)
    if head.composition.params.get("pseudo_rpn", False):
        head._rpn_pseudo_hook = detector.rpn.register_forward_pre_hook(_rpn_with_pseudo_boxes)
    if "objectness" in head.composition.needs:
        if not isinstance(detector.rpn, RegionProposalNetwork):
            raise ValueError(
                f"strategy {head.strategy!r} needs torchvision's RegionProposalNetwork, "
                f"got {type(detector.rpn).__name__}"
            )
        detector.rpn.__class__ = ObjectnessRecordingRPN
        detector.rpn.objectness_record = head.objectness
    elif isinstance(detector.rpn, ObjectnessRecordingRPN):
        detector.rpn.objectness_record = None
    detector.roi_heads = head
    return detector


def _rpn_with_pseudo_boxes(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook on the RPN: append each target's ``pseudo_boxes`` to its ``boxes``."""
    if len(args) < 3 or args[2] is None:
        return None
    images, features, targets = args[:3]
    full = []
    for target in targets:
        pseudo = target.get("pseudo_boxes")
        if pseudo is None or pseudo.shape[0] == 0:
            full.append(target)
        else:
            full.append({**target, "boxes": torch.cat([target["boxes"], pseudo.to(target["boxes"])])})
    return (images, features, full, *args[3:])


def _check_same_transform(ours: nn.Module, theirs: nn.Module) -> None:
    for name in ("image_mean", "image_std", "min_size", "max_size"):
        if getattr(ours, name, None) != getattr(theirs, name, None):
            raise ValueError(
                f"the prior detector's transform differs in {name} ({getattr(theirs, name, None)} vs "
                f"{getattr(ours, name, None)}); train the prior with the same model configuration"
            )


def _rpn_with_dropped_boxes(module: nn.Module, args: tuple) -> tuple | None:
    """Forward pre-hook on the RPN: append each target's ``dropped_boxes`` to its ``boxes``."""
    if len(args) < 3 or args[2] is None:
        return None
    images, features, targets = args[:3]
    full = []
    for target in targets:
        dropped = target.get("dropped_boxes")
        if dropped is None or dropped.shape[0] == 0:
            full.append(target)
        else:
            full.append({**target, "boxes": torch.cat([target["boxes"], dropped.to(target["boxes"])])})
    return (images, features, full, *args[3:])


def train_rpn_on_full_annotations(detector: GeneralizedRCNN) -> GeneralizedRCNN:
    """Let the RPN train on the full annotations (annotated + ``dropped_boxes``); the RoI head does not.

    The paper's ablation: the RPN hardly suffers from missing annotations.
    Installs a forward pre-hook on ``detector.rpn`` (torchvision's RPN only reads
    the targets' ``boxes``); targets without ``dropped_boxes`` are unchanged.
    Returns ``detector``; the hook's handle is ``detector.rpn_full_annotations_hook``.
    """
    previous = getattr(detector, "rpn_full_annotations_hook", None)
    if previous is not None:
        previous.remove()
    detector.rpn_full_annotations_hook = detector.rpn.register_forward_pre_hook(_rpn_with_dropped_boxes)
    return detector

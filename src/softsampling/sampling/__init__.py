"""Label-assignment strategies, sampling and the weighted loss (pure tensor code).

This package knows nothing about models or files: given the RoIs of an image,
its annotated boxes (and, per strategy, dropped boxes or a prior detector's
scores) it says which RoIs train, with which label and loss weight.
See docs/strategies.md.
"""

from softsampling.sampling.assign import (
    Composition,
    assign,
    from_matches,
    image_context,
    match,
    parameter_defaults,
    resolve_params,
    resolve_strategy,
    strategy_name,
)
from softsampling.sampling.boxes import centered_box_iou, group_of_coverage
from softsampling.sampling.loss import NORMALIZATIONS, weighted_fastrcnn_loss, weighted_focal_loss
from softsampling.sampling.pseudo import merge_flip_detections, select_pseudo_boxes
from softsampling.sampling.rules import (
    COMMON_PARAMS,
    DETECTORS,
    PRIOR_RULES,
    RULES,
    STRATEGIES,
    Assignment,
    ImageContext,
    RuleSpec,
)
from softsampling.sampling.sampler import SAMPLING_MODES, keep_first_candidates, sample_rois
from softsampling.sampling.weights import gompertz_weight, median_thresholds, score_weight

__all__ = [
    "parameter_defaults",
    "COMMON_PARAMS",
    "DETECTORS",
    "NORMALIZATIONS",
    "SAMPLING_MODES",
    "PRIOR_RULES",
    "RULES",
    "STRATEGIES",
    "Assignment",
    "Composition",
    "ImageContext",
    "RuleSpec",
    "assign",
    "centered_box_iou",
    "from_matches",
    "gompertz_weight",
    "group_of_coverage",
    "image_context",
    "match",
    "merge_flip_detections",
    "keep_first_candidates",
    "median_thresholds",
    "resolve_params",
    "resolve_strategy",
    "select_pseudo_boxes",
    "sample_rois",
    "score_weight",
    "strategy_name",
    "weighted_fastrcnn_loss",
    "weighted_focal_loss",
]

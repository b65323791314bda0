"""Label-assignment strategies, sampling and the weighted loss (pure tensor code).

This package knows nothing about models or files: given the RoIs of an image,
its annotated boxes (and, per strategy, dropped boxes or a prior detector's
scores) it says which RoIs train, with which label and loss weight.
See docs/strategies.md.
"""

from softsampling.sampling.assign import (
    COMMON_PARAMS,
    STRATEGIES,
    STRATEGY_PARAMS,
    Assignment,
    assign,
    group_of_coverage,
    resolve_params,
)
from softsampling.sampling.loss import NORMALIZATIONS, weighted_fastrcnn_loss
from softsampling.sampling.sampler import SAMPLING_MODES, keep_first_candidates, sample_rois
from softsampling.sampling.weights import gompertz_weight, median_thresholds, score_weight

__all__ = [
    "COMMON_PARAMS",
    "NORMALIZATIONS",
    "SAMPLING_MODES",
    "STRATEGIES",
    "STRATEGY_PARAMS",
    "Assignment",
    "assign",
    "gompertz_weight",
    "group_of_coverage",
    "keep_first_candidates",
    "median_thresholds",
    "resolve_params",
    "sample_rois",
    "score_weight",
    "weighted_fastrcnn_loss",
]

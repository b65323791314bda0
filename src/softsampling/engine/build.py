"""The detector of a run's config, with its label-assignment strategy installed.

Training builds it to train, prediction (``load_run``) to load a trained
``model.pt`` into, and the pseudo-label round to check that the prior run's
model sees images as this one will.
"""

from __future__ import annotations

from typing import Any

import torch

from softsampling.engine.config import RunConfig
from softsampling.errors import SoftSamplingError


def build_model(
    cfg: RunConfig,
    num_classes: int,
    *,
    prior: torch.nn.Module | None = None,
    thresholds: torch.Tensor | None = None,
    load_weights: bool = True,
) -> torch.nn.Module:
    """The detector of ``cfg.model`` with the label-assignment strategy of ``cfg`` installed.

    ``score_soft`` also needs the round-one detector (``prior``) and the per-class ``thresholds``
    (see :mod:`softsampling.engine.prior`); both are passed beside, not inside, the strategy's parameters.
    ``load_weights=False`` builds the same layout without reading ``model.weights`` /
    ``model.backbone_weights`` (a trained run's ``model.pt`` holds every weight). What loading
    detector weights skipped is in ``model.weights_report`` (``None`` without ``model.weights``).
    """
    from softsampling.model import (
        build_digits_model,
        build_one_stage_model,
        build_paper_model,
        train_rpn_on_full_annotations,
        use_strategy,
    )
    from softsampling.model.builders import ONE_STAGE_MODEL_NAMES
    from softsampling.model.weights import load_detector_weights

    m = cfg.model
    size: dict[str, Any] = {k: v for k, v in (("min_size", m.min_size), ("max_size", m.max_size)) if v is not None}
    size.update(m.options)
    try:
        if m.name in ONE_STAGE_MODEL_NAMES:
            unsupported = {
                "model.weights": m.weights,
                "model.backbone_weights": m.backbone_weights,
                "model.soft_nms": m.soft_nms,
                "model.deformable_conv5": m.deformable_conv5,
                "rpn_full_annotations": cfg.rpn_full_annotations,
            }
            given = [key for key, value in unsupported.items() if value]
            if given:
                raise SoftSamplingError(
                    f"{', '.join(given)} not supported for the one-stage model {m.name}",
                    fix="leave them unset (one-stage models train from scratch here)",
                )
            model = build_one_stage_model(m.name, num_classes, **size)
            model.weights_report = None
        elif m.name == "digits":
            if m.backbone_weights is not None:
                raise SoftSamplingError(
                    "model.backbone_weights applies to model.name=resnet50_fpn or resnet50_fpn_v2",
                    fix="leave it null for the digits model (model.weights loads a whole detector)",
                )
            model = build_digits_model(num_classes=num_classes, **size)
            model.weights_report = None
            if m.weights is not None and load_weights:
                model.weights_report = load_detector_weights(model, m.weights, model_name="digits")
        else:
            pretrained = m.weights is not None or m.backbone_weights is not None
            model = build_paper_model(
                num_classes,
                backbone_weights=m.backbone_weights if load_weights else None,
                weights=m.weights if load_weights else None,
                version=2 if m.name == "resnet50_fpn_v2" else 1,
                frozen_batch_norm=pretrained,
                deformable_conv5=m.deformable_conv5,
                soft_nms=m.soft_nms,
                **size,
            )
    except (TypeError, ValueError) as exc:
        if not m.options:
            raise
        raise SoftSamplingError(
            f"config model.options {m.options}: the {m.name} builder refused them ({exc})",
            fix="check the option values against torchvision's FasterRCNN arguments",
        ) from None
    if m.name in ONE_STAGE_MODEL_NAMES:  # every anchor trains: no RoI sampling
        return use_strategy(model, cfg.strategy, normalization=cfg.normalization, **cfg.strategy_params)
    model = use_strategy(
        model,
        cfg.strategy,
        sampling=cfg.sampling,
        normalization=cfg.normalization,
        prior=prior,
        thresholds=thresholds,
        **cfg.strategy_params,
    )
    if cfg.rpn_full_annotations:
        train_rpn_on_full_annotations(model)
    return model

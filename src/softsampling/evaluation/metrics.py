"""The metric behind each ``--metric`` name of ``softsampling evaluate``, with its options bound.

:func:`metric_function` returns ``metric(gt, dets) -> dict`` (the result of
:func:`~softsampling.evaluation.voc_metric.voc_ap`,
:func:`~softsampling.evaluation.coco_metric.coco_metric` or
:func:`~softsampling.evaluation.openimages_metric.openimages_metric`), which the
command and the score-threshold sweep call.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from softsampling.errors import SoftSamplingError
from softsampling.structures.detections import Detections
from softsampling.structures.records import DetectionDataset

METRICS = ("voc", "voc07", "voc07_exact", "coco", "openimages")

Metric = Callable[[DetectionDataset, Detections], dict[str, Any]]


def _parse_iou(text: str | None) -> list[float] | None:
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(not 0.0 <= v <= 1.0 for v in values):
        raise SoftSamplingError(f"cannot read --iou {text!r}", fix="give thresholds in [0, 1], e.g. --iou 0.5,0.75")
    return values


def metric_function(
    name: str,
    gt: DetectionDataset,
    *,
    iou: str | None = None,
    hierarchy: Path | None = None,
    exhaustive: bool = True,
    coco_backend: str = "numpy",
) -> Metric:
    """``metric(gt, dets) -> dict`` for ``--metric name`` with its options bound.

    ``exhaustive`` (openimages metric only): the ground truth annotates every
    class in every image (VOC, COCO, txt), so every class counts as verified
    everywhere; otherwise the verified labels come from the Open Images
    reader's image-level labels (``--labels``).
    """
    ious = _parse_iou(iou)
    if hierarchy is not None and name != "openimages":
        raise SoftSamplingError("--hierarchy applies to --metric openimages only", fix="leave --hierarchy out")
    if name in ("voc", "voc07", "voc07_exact"):
        from softsampling.evaluation.voc_metric import voc_ap

        return partial(
            voc_ap,
            iou_thresholds=tuple(ious or (0.5,)),
            use_07_metric=name != "voc",
            exact_tenths=name == "voc07_exact",
        )
    if name == "coco":
        if ious is not None:
            raise SoftSamplingError(
                "--metric coco uses COCO's fixed IoU thresholds 0.50:0.05:0.95",
                fix="leave --iou out (AP50 and AP75 are among its numbers)",
            )
        from softsampling.evaluation.coco_metric import coco_metric

        return partial(coco_metric, backend=coco_backend)
    if name == "openimages":
        if ious is not None and len(ious) != 1:
            raise SoftSamplingError("--metric openimages takes one IoU threshold", fix="e.g. --iou 0.5")
        from softsampling.evaluation.openimages_metric import ImageLabels, openimages_metric

        labels = exhaustive_labels(gt) if exhaustive else ImageLabels.from_dataset(gt)
        return partial(openimages_metric, image_labels=labels, iou=(ious or [0.5])[0], hierarchy=hierarchy)
    raise SoftSamplingError(f"unknown metric {name!r}", fix=f"use one of {', '.join(METRICS)}")


def exhaustive_labels(gt: DetectionDataset) -> dict[int, tuple[list[int], list[int]]]:
    """Image-level labels for an exhaustively annotated dataset: every class is verified in every image,
    positive where it has a box, negative elsewhere."""
    all_ids = [c.id for c in gt.categories]
    present: list[set[int]] = [set() for _ in range(gt.num_images)]
    for row, label in zip(gt.box_image.tolist(), gt.labels.tolist(), strict=True):
        present[row].add(label)
    return {row: (sorted(p), [c for c in all_ids if c not in p]) for row, p in enumerate(present)}

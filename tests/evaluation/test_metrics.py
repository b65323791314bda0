"""metric_function: each --metric name binds the right metric and refuses options it cannot honour."""

from __future__ import annotations

import numpy as np
import pytest

from softsampling.errors import SoftSamplingError
from softsampling.evaluation.metrics import METRICS, exhaustive_labels, metric_function
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset


def two_images() -> DetectionDataset:
    return DetectionDataset.from_lists(
        images=[
            {"id": 1, "file_name": "a.png", "width": 100, "height": 100},
            {"id": 2, "file_name": "b.png", "width": 100, "height": 100},
        ],
        boxes=[
            {"image_index": 0, "bbox": [10, 10, 50, 50], "label": 1},
            {"image_index": 1, "bbox": [20, 20, 60, 60], "label": 2},
        ],
        categories=[Category(1, "cat"), Category(2, "dog")],
    )


def test_exhaustive_labels_verify_every_class_in_every_image() -> None:
    assert exhaustive_labels(two_images()) == {0: ([1], [2]), 1: ([2], [1])}


@pytest.mark.parametrize("name", METRICS)
def test_every_metric_name_scores_perfect_detections_as_one(name: str) -> None:
    gt = two_images()
    dets = Detections(image_index=[0, 1], boxes=gt.boxes, labels=gt.labels, scores=[0.9, 0.8])
    assert metric_function(name, gt)(gt, dets)["mAP"] == pytest.approx(1.0)


def test_the_iou_option_reaches_the_voc_metric() -> None:
    gt = two_images()
    shifted = gt.boxes + np.float32(12)  # IoU ~0.3 with its ground-truth box
    dets = Detections(image_index=[0, 1], boxes=shifted, labels=gt.labels, scores=[0.9, 0.8])
    assert metric_function("voc", gt, iou="0.5")(gt, dets)["mAP"] == 0.0
    assert metric_function("voc", gt, iou="0.25")(gt, dets)["mAP"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("coco", {"iou": "0.5"}, "fixed IoU thresholds"),
        ("openimages", {"iou": "0.5,0.75"}, "one IoU threshold"),
        ("voc", {"iou": "1.5"}, "cannot read --iou"),
        ("voc", {"hierarchy": "h.json"}, "--hierarchy applies to --metric openimages only"),
        ("map", {}, "unknown metric"),
    ],
)
def test_options_a_metric_cannot_honour_are_refused(name: str, options: dict, message: str) -> None:
    with pytest.raises(SoftSamplingError, match=message):
        metric_function(name, two_images(), **options)

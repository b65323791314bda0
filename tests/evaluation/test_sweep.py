"""Score-threshold sweep and its plot."""

from __future__ import annotations

import itertools
from functools import partial

import numpy as np
import pytest
from PIL import Image

from softsampling.errors import SoftSamplingError
from softsampling.evaluation.io import read_txt_layout
from softsampling.evaluation.sweep import parse_thresholds, plot_sweep, score_threshold_sweep
from softsampling.evaluation.voc_metric import voc_ap
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset


def four_boxes():
    gt = DetectionDataset.from_lists(
        images=[{"id": 0, "file_name": "a.jpg", "width": 100, "height": 100}],
        boxes=[{"image_index": 0, "bbox": [20 * k, 0, 20 * k + 10, 10], "label": 1} for k in range(4)],
        categories=[Category(1, "cat")],
    )
    # scores .9 (TP), .7 (FP), .5 (TP), .3 (TP)
    dets = Detections(
        [0] * 4, [[0, 0, 10, 10], [0, 50, 10, 60], [20, 0, 30, 10], [40, 0, 50, 10]], [1] * 4, [0.9, 0.7, 0.5, 0.3]
    )
    return gt, dets


def test_sweep_by_hand():
    gt, dets = four_boxes()
    curve = score_threshold_sweep(gt, dets, [0.0, 0.3, 0.31, 0.5, 0.8, 0.95], voc_ap)
    # all: T F T T over 4 -> .25*1 + .5*.75 = .625; >=.5 (score equal to threshold kept): T F T -> .25 + .25*2/3;
    # >=.8: T -> .25; >=.95: nothing -> 0.
    assert [t for t, _ in curve] == [0.0, 0.3, 0.31, 0.5, 0.8, 0.95]
    assert [m for _, m in curve] == pytest.approx([0.625, 0.625, 0.25 + 0.25 * 2 / 3, 0.25 + 0.25 * 2 / 3, 0.25, 0.0])


def test_sweep_passes_metric_options():
    gt, dets = four_boxes()
    curve = score_threshold_sweep(gt, dets, [0.0], partial(voc_ap, use_07_metric=True))
    # T F T T over 4, 11-point: t<=.25 -> 1 (3 points), t in .3...75 -> .75 (5 points): (3 + 3.75) / 11
    assert curve == [(0.0, pytest.approx(6.75 / 11))]


def test_sweep_on_cartucho_never_rises(cartucho_dir):
    gt, dets = read_txt_layout(cartucho_dir / "ground-truth", cartucho_dir / "detection-results", notes=[])
    curve = score_threshold_sweep(gt, dets, parse_thresholds("0:0.9:0.1"), voc_ap)
    maps = [m for _, m in curve]
    assert maps[0] == pytest.approx(voc_ap(gt, dets)["mAP"])
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(maps))  # dropping the tail of a ranking cannot add area
    assert maps[-1] < 0.5 * maps[0]


def test_parse_thresholds():
    assert parse_thresholds("0:0.9:0.1") == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert parse_thresholds("0.5:0.5:0.1") == [0.5]
    assert parse_thresholds("0,0.25, 0.9") == [0.0, 0.25, 0.9]
    for bad in ("0:1:0", "1:0:0.1", "a:b:c", "0.5,x", "0:1"):
        with pytest.raises(SoftSamplingError, match="cannot read score thresholds"):
            parse_thresholds(bad)


def test_plot_sweep_writes_a_png(tmp_path):
    path = tmp_path / "out" / "sweep.png"
    plot_sweep(
        {"baseline": [(0.0, 0.8), (0.5, 0.6), (0.9, 0.2)], "soft sampling": [(0.0, 0.82), (0.5, 0.75)]},
        path,
        "mAP vs. threshold",
    )
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size == (720, 480)
        pixels = np.asarray(im.convert("L"))
    assert pixels.min() < 100  # something was drawn
    assert [p.name for p in path.parent.iterdir()] == ["sweep.png"]  # no temp file left behind


# ----------------------------------------------------------------------------- sweeps reuse matches
def _random_voc_like(seed: int):
    from tests.evaluation.test_coco_metric import _random_case

    gt, dets = _random_case(seed)
    gt.difficult[: gt.num_boxes // 5] = True
    gt.group_of[gt.num_boxes // 2 :: 4] = True
    return gt, dets


SCORES = [0.0, 0.1, 0.3, 0.30000001, 0.5, 0.55, 0.9, 0.95]


@pytest.mark.parametrize("seed", range(4))
def test_each_metric_sweep_equals_evaluating_each_threshold(seed):
    from softsampling.evaluation.coco_metric import coco_metric
    from softsampling.evaluation.openimages_metric import openimages_metric
    from softsampling.evaluation.sweep import sweep_results

    gt, dets = _random_voc_like(seed)
    labels = {i: ({1, 2}, {3, 4}) for i in range(gt.num_images)}
    metrics = [
        partial(voc_ap, iou_thresholds=(0.5, 0.7)),
        partial(voc_ap, use_07_metric=True),
        voc_ap,
        coco_metric,
        partial(coco_metric, max_dets=(1, 2, 3)),
        partial(openimages_metric, image_labels=labels, iou=0.5),
    ]
    for metric in metrics:
        swept = sweep_results(gt, dets, SCORES, metric)
        assert swept == [metric(gt, dets.above(t)) for t in SCORES], metric


def test_sweep_with_other_callables_evaluates_each_threshold():
    gt, dets = four_boxes()
    calls = []

    def metric(g, d):
        calls.append(len(d))
        return {"mAP": float(len(d))}

    assert score_threshold_sweep(gt, dets, [0.0, 0.6], metric) == [(0.0, 4.0), (0.6, 2.0)]
    assert calls == [4, 2]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_dets", [(1, 10, 100), (1, 2, 3), (5, 3, 1), (2, 2, 2)])
def test_coco_sweep_equals_each_threshold_from_scratch(seed, max_dets):
    """Thresholds on tied scores, between them, keeping all and keeping nothing; per-image maxDets
    below and above the number of detections an image keeps; one sweep over more thresholds than the
    numpy backend handles at once."""
    from softsampling.evaluation.coco_metric import coco_metric, coco_metric_sweep

    gt, dets = _random_voc_like(seed)
    thresholds = [*SCORES, 0.7, 0.99, 1.5, *np.linspace(0.05, 0.95, 12).tolist()]
    swept = coco_metric_sweep(gt, dets, thresholds, max_dets=max_dets)
    assert swept == [coco_metric(gt, dets.above(t), max_dets=max_dets) for t in thresholds]
    assert swept[thresholds.index(1.5)]["AP50"] == 0.0  # nothing kept

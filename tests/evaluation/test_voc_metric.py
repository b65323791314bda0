"""VOC metric: hand-computed cases for each devkit rule, and equality with a
straightforward devkit-style reference (written below, per-detection loop) on
random data."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from softsampling.errors import SoftSamplingError
from softsampling.evaluation.voc_metric import average_precision, voc_ap
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset

# ---------------------------------------------------------------------------
# Independent reference: a line-by-line port of the devkit's logic
# (VOCevaldet.m + VOCap.m) on *inclusive* pixel coordinates with the +1.
# Plain Python, one detection at a time. Also used by test_io and the bench.
# ---------------------------------------------------------------------------


def devkit_reference(gt_boxes, dets, iou_threshold=0.5, use_07_metric=False, exact_tenths=False):
    """``gt_boxes``: list of ``(image, cls, xmin, ymin, xmax, ymax, difficult)``;
    ``dets``: list of ``(image, cls, score, xmin, ymin, xmax, ymax)``; inclusive
    pixel coordinates. Returns ``({cls: ap}, mAP)`` over classes with
    non-difficult ground truth. The 11 points are py-faster-rcnn's
    ``np.arange(0.0, 1.1, 0.1)``, or the decimals ``k / 10`` with ``exact_tenths``."""
    classes = sorted({g[1] for g in gt_boxes})
    aps = {}
    for cls in classes:
        objects = {}  # image -> list of gt records of this class
        npos = 0
        for g in gt_boxes:
            if g[1] == cls:
                objects.setdefault(g[0], []).append({"bb": g[2:6], "diff": g[6], "det": False})
                if not g[6]:
                    npos += 1
        if npos == 0:
            continue
        ranked = sorted([d for d in dets if d[1] == cls], key=lambda d: -d[2])  # stable, as MATLAB sort
        tp, fp = [], []
        for d in ranked:
            bb = d[3:7]
            ovmax, jmax = -math.inf, -1
            for j, obj in enumerate(objects.get(d[0], [])):
                bbgt = obj["bb"]
                iw = min(bb[2], bbgt[2]) - max(bb[0], bbgt[0]) + 1
                ih = min(bb[3], bbgt[3]) - max(bb[1], bbgt[1]) + 1
                if iw > 0 and ih > 0:
                    ua = (
                        (bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                        + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                        - iw * ih
                    )
                    ov = iw * ih / ua
                    if ov > ovmax:
                        ovmax, jmax = ov, j
            if ovmax >= iou_threshold:
                obj = objects[d[0]][jmax]
                if obj["diff"]:
                    tp.append(0)
                    fp.append(0)
                elif not obj["det"]:
                    tp.append(1)
                    fp.append(0)
                    obj["det"] = True
                else:
                    tp.append(0)
                    fp.append(1)
            else:
                tp.append(0)
                fp.append(1)
        rec, prec = [], []
        ctp = cfp = 0
        for t, f in zip(tp, fp, strict=True):
            ctp += t
            cfp += f
            rec.append(ctp / npos)
            prec.append(ctp / max(ctp + cfp, np.finfo(np.float64).eps))
        if use_07_metric:
            ap = 0.0
            points = [k / 10 for k in range(11)] if exact_tenths else np.arange(0.0, 1.1, 0.1)
            for t in points:
                ps = [p for r, p in zip(rec, prec, strict=True) if r >= t]
                ap += (max(ps) if ps else 0.0) / 11
        else:
            mrec = [0.0] + rec + [1.0]
            mpre = [0.0] + prec + [0.0]
            for i in range(len(mpre) - 2, -1, -1):
                mpre[i] = max(mpre[i], mpre[i + 1])
            ap = sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
        aps[cls] = ap
    return aps, (sum(aps.values()) / len(aps) if aps else float("nan"))


# ---------------------------------------------------------------------------
# Converters: reference tuples (inclusive) -> our records (continuous xyxy).
# ---------------------------------------------------------------------------


def to_records(gt_boxes, dets, num_images, num_classes=3):
    ds = DetectionDataset.from_lists(
        images=[{"id": f"im{i}", "file_name": f"im{i}.jpg", "width": 100, "height": 100} for i in range(num_images)],
        boxes=[
            {"image_index": g[0], "bbox": [g[2] - 1, g[3] - 1, g[4], g[5]], "label": g[1], "difficult": g[6]}
            for g in gt_boxes
        ],
        categories=[Category(c, f"class{c}") for c in range(1, num_classes + 1)],
    )
    detections = Detections(
        image_index=[d[0] for d in dets],
        boxes=np.array([[d[3] - 1, d[4] - 1, d[5], d[6]] for d in dets], dtype=np.float64).reshape(-1, 4),
        labels=[d[1] for d in dets],
        scores=[d[2] for d in dets],
    )
    return ds, detections


def one_image(gt, dets, *, difficult=(), classes=1):
    """Continuous-coordinate helper: gt = [(cls, box)], dets = [(cls, score, box)] on one image."""
    ds = DetectionDataset.from_lists(
        images=[{"id": "a", "file_name": "a.jpg", "width": 200, "height": 200}],
        boxes=[{"image_index": 0, "bbox": b, "label": c, "difficult": i in difficult} for i, (c, b) in enumerate(gt)],
        categories=[Category(c, f"c{c}") for c in range(1, classes + 1)],
    )
    d = Detections(
        image_index=[0] * len(dets),
        boxes=np.array([b for _, _, b in dets], dtype=np.float64).reshape(-1, 4),
        labels=[c for c, _, _ in dets],
        scores=[s for _, s, _ in dets],
    )
    return ds, d


# ---------------------------------------------------------------------------
# Hand-computed rules
# ---------------------------------------------------------------------------


def test_average_precision_area_and_11_point_by_hand():
    # ranked TP/FP: T F T F F T, 4 positives.
    # recall    .25 .25 .5  .5  .5  .75 ; precision 1 .5 .667 .5 .4 .5
    # envelope   1  .667 .667 .5 .5 .5
    # area = .25*1 + .25*(2/3) + .25*.5 = 13/24
    # 11-point: t=0,.1,.2 -> 1; t=.3,.4,.5 -> 2/3; t=.6,.7 -> .5; t>=.8 -> 0: (3 + 2 + 1) / 11
    tp = np.array([1, 0, 1, 0, 0, 1], dtype=bool)
    assert average_precision(tp, 4) == pytest.approx(13 / 24, abs=1e-12)
    assert average_precision(tp, 4, use_07_metric=True) == pytest.approx(6 / 11, abs=1e-12)


def voc_eval_11_point(tp, npos):
    """py-faster-rcnn ``voc_eval.py`` (``voc_eval`` + ``voc_ap(use_07_metric=True)``), line by line;
    detectron2's ``pascal_voc_evaluation.py`` has the same loop."""
    fp = np.cumsum(1 - np.asarray(tp, dtype=float))
    tp = np.cumsum(np.asarray(tp, dtype=float))
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    ap = 0.0
    for t in np.arange(0.0, 1.1, 0.1):
        p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
        ap = ap + p / 11.0
    return ap


def test_11_point_recall_exactly_three_tenths():
    # T T F T with 10 positives: recall reaches exactly 0.3 with precision 0.75.
    # voc07 (np.arange): t=0,.1,.2 -> 1; t=0.30000000000000004 is above the recall 0.3 -> 0: 3/11.
    # voc07_exact: t=.3 -> .75 as well: 3.75/11.
    tp = np.array([1, 1, 0, 1], dtype=bool)
    expected = voc_eval_11_point(tp, 10)
    assert expected == pytest.approx(3 / 11, abs=1e-12)
    assert average_precision(tp, 10, use_07_metric=True) == pytest.approx(expected, abs=1e-12)
    assert average_precision(tp, 10, use_07_metric=True, exact_tenths=True) == pytest.approx(3.75 / 11, abs=1e-12)


def test_voc07_equals_voc_eval_when_recalls_hit_tenths():
    # One image, 10 "cat" boxes; 7 detections find 3, 6 and then 7 of them (recalls 0.3, 0.6, 0.7).
    boxes = [[20.0 * i, 0.0, 20.0 * i + 10, 10.0] for i in range(10)]
    gt = DetectionDataset.from_lists(
        images=[{"id": "a", "file_name": "a.jpg", "width": 200, "height": 10}],
        boxes=[{"image_index": 0, "bbox": b, "label": 1} for b in boxes],
        categories=[Category(1, "cat")],
    )
    found = [0, 1, 2, None, 3, 4, 5, None, 6]  # box index, or None for a miss
    det_boxes = [boxes[i] if i is not None else [0.0, 5.0, 5.0, 9.0] for i in found]
    dets = Detections(
        image_index=[0] * len(found), boxes=det_boxes, labels=[1] * len(found), scores=np.linspace(0.9, 0.1, len(found))
    )
    tp = [i is not None for i in found]
    r07 = voc_ap(gt, dets, use_07_metric=True)
    exact = voc_ap(gt, dets, use_07_metric=True, exact_tenths=True)
    assert r07["metric"] == "voc07" and exact["metric"] == "voc07_exact"
    assert r07["mAP"] == pytest.approx(voc_eval_11_point(tp, 10), abs=1e-12)
    # ranks T T T F T T T F T: recall .1 .2 .3 .3 .4 .5 .6 .6 .7, precision 1 1 1 .75 .8 .833 6/7 .75 7/9.
    # exact points: t=0..0.3 -> 1; t=.4,.5,.6 -> 6/7; t=.7 -> 7/9; t>=.8 -> 0.
    # np.arange: t=0..0.2 -> 1; t=0.30000000000000004,.4,.5 -> 6/7; t=0.6000000000000001 -> 7/9;
    # t>=0.7000000000000001 -> 0.
    assert exact["mAP"] == pytest.approx((4 + 3 * 6 / 7 + 7 / 9) / 11, abs=1e-12)
    assert r07["mAP"] == pytest.approx((3 + 3 * 6 / 7 + 7 / 9) / 11, abs=1e-12)
    with pytest.raises(SoftSamplingError, match="11-point"):
        voc_ap(gt, dets, exact_tenths=True)


def test_no_detections_gives_zero_ap():
    assert average_precision(np.zeros(0, dtype=bool), 3) == 0.0
    assert average_precision(np.zeros(0, dtype=bool), 3, use_07_metric=True) == 0.0


def test_duplicate_detection_is_false_positive():
    gt, dets = one_image(
        [(1, [0, 0, 10, 10]), (1, [50, 50, 60, 60])], [(1, 0.9, [0, 0, 10, 10]), (1, 0.8, [0, 0, 10, 10])]
    )
    r = voc_ap(gt, dets)
    # T F with 2 positives: recall .5 at precision 1 -> AP .5
    assert r["mAP"] == pytest.approx(0.5)
    assert r["per_class"][1] == {
        "name": "c1",
        "ap": pytest.approx(0.5),
        "ap_per_iou": [pytest.approx(0.5)],
        "num_gt": 2,
        "num_det": 2,
    }


def test_no_fallback_to_second_best_box():
    # Box B overlaps the second detection with IoU 80/120 = .67, but the detection's best box is A,
    # already taken: the devkit calls it a duplicate (FP) instead of matching B.
    gt, dets = one_image(
        [(1, [0, 0, 10, 10]), (1, [2, 0, 12, 10])], [(1, 0.9, [0, 0, 10, 10]), (1, 0.8, [0, 0, 10, 10])]
    )
    assert voc_ap(gt, dets)["mAP"] == pytest.approx(0.5)


def test_difficult_box_neither_helps_nor_hurts():
    gt_list = [(1, [0, 0, 10, 10]), (1, [50, 50, 60, 60])]  # second one is difficult
    dets_list = [(1, 0.9, [50, 50, 60, 60]), (1, 0.8, [0, 0, 10, 10]), (1, 0.7, [100, 100, 110, 110])]
    gt, dets = one_image(gt_list, dets_list, difficult={1})
    r = voc_ap(gt, dets)
    # ranked: ignored, T, F -> recall 1 at precision 1 -> AP 1; the difficult box is not counted.
    assert r["mAP"] == pytest.approx(1.0)
    assert r["per_class"][1]["num_gt"] == 1
    assert r["per_class"][1]["num_det"] == 3
    # Missing the difficult box costs nothing; the same miss on a normal box halves AP (T F over 2).
    gt2, dets2 = one_image(gt_list, dets_list[1:], difficult={1})
    assert voc_ap(gt2, dets2)["mAP"] == pytest.approx(1.0)
    gt3, dets3 = one_image(gt_list, dets_list[1:])
    assert voc_ap(gt3, dets3)["mAP"] == pytest.approx(0.5)


def test_duplicates_on_a_difficult_box_are_ignored_too():
    gt, dets = one_image(
        [(1, [0, 0, 10, 10]), (1, [50, 50, 60, 60])],
        [(1, 0.9, [50, 50, 60, 60]), (1, 0.85, [50, 50, 60, 60]), (1, 0.8, [0, 0, 10, 10])],
        difficult={1},
    )
    assert voc_ap(gt, dets)["mAP"] == pytest.approx(1.0)


def test_plus_one_iou_edge_case():
    # Inclusive pixels (1,1)-(10,10) is 10x10 = 100 px; (1,1)-(10,5) is 10x5 = 50 px: devkit IoU = .5 exactly,
    # a TP under the devkit's ">=" rule. Read as continuous boxes without the +1 mapping it would be
    # 9x4 / 9x9 = .44, a FP.
    gt_ref = [(0, 1, 1, 1, 10, 10, False)]
    det_ref = [(0, 1, 0.9, 1, 1, 10, 5)]
    aps, m = devkit_reference(gt_ref, det_ref)
    assert m == 1.0
    gt, dets = to_records(gt_ref, det_ref, 1)
    assert gt.boxes.tolist() == [[0, 0, 10, 10]]
    assert voc_ap(gt, dets)["mAP"] == 1.0
    raw_gt, raw_dets = one_image([(1, [1, 1, 10, 10])], [(1, 0.9, [1, 1, 10, 5])])
    assert voc_ap(raw_gt, raw_dets)["mAP"] == 0.0


def test_touching_boxes_do_not_overlap():
    gt, dets = one_image([(1, [0, 0, 10, 10])], [(1, 0.9, [10, 0, 20, 10])])
    assert voc_ap(gt, dets, iou_thresholds=(0.0,))["mAP"] == 0.0


def test_several_iou_thresholds_in_one_call():
    # IoU = 60/100 = .6: TP at .5, FP at .75.
    gt, dets = one_image([(1, [0, 0, 10, 10])], [(1, 0.9, [0, 0, 10, 6])])
    r = voc_ap(gt, dets, iou_thresholds=(0.5, 0.75))
    assert r["iou_thresholds"] == [0.5, 0.75]
    assert r["mAP_per_iou"] == [1.0, 0.0]
    assert r["mAP"] == 1.0
    assert r["per_class"][1]["ap_per_iou"] == [1.0, 0.0]


def test_mean_only_over_classes_with_ground_truth():
    # class 1: AP 1; class 2: detections but no boxes; class 3: only a difficult box.
    gt, dets = one_image(
        [(1, [0, 0, 10, 10]), (3, [50, 50, 60, 60])],
        [(1, 0.9, [0, 0, 10, 10]), (2, 0.8, [0, 0, 10, 10]), (3, 0.7, [50, 50, 60, 60])],
        difficult={1},
        classes=3,
    )
    r = voc_ap(gt, dets)
    assert r["mAP"] == 1.0
    assert r["per_class"][2] == {"name": "c2", "ap": None, "ap_per_iou": [None], "num_gt": 0, "num_det": 1}
    assert r["per_class"][3]["ap"] is None and r["per_class"][3]["num_gt"] == 0


def test_class_without_detections_has_zero_ap():
    gt, dets = one_image([(1, [0, 0, 10, 10]), (2, [50, 50, 60, 60])], [(1, 0.9, [0, 0, 10, 10])], classes=2)
    r = voc_ap(gt, dets)
    assert r["per_class"][2]["ap"] == 0.0
    assert r["mAP"] == 0.5


def test_score_ties_keep_input_order():
    # Same score: the detection listed first is ranked first.
    fp_box, tp_box = [100, 100, 110, 110], [0, 0, 10, 10]
    gt, dets = one_image([(1, tp_box)], [(1, 0.5, fp_box), (1, 0.5, tp_box)])
    assert voc_ap(gt, dets)["mAP"] == pytest.approx(0.5)  # F T
    gt, dets = one_image([(1, tp_box)], [(1, 0.5, tp_box), (1, 0.5, fp_box)])
    assert voc_ap(gt, dets)["mAP"] == pytest.approx(1.0)  # T F


def test_iou_tie_between_boxes_goes_to_the_first_box():
    # The detection overlaps A and B equally (IoU 50/150 = 1/3 each; threshold .3). A comes first and is
    # difficult, so the detection is ignored rather than matching B.
    gt, dets = one_image([(1, [0, 0, 10, 10]), (1, [10, 0, 20, 10])], [(1, 0.9, [5, 0, 15, 10])], difficult={0})
    r = voc_ap(gt, dets, iou_thresholds=(0.3,))
    assert r["per_class"][1]["num_gt"] == 1
    assert r["mAP"] == 0.0  # B never matched, the only detection ignored


def test_detection_on_image_without_ground_truth_is_false_positive():
    gt = DetectionDataset.from_lists(
        images=[{"id": i, "file_name": f"{i}.jpg", "width": 50, "height": 50} for i in range(2)],
        boxes=[{"image_index": 0, "bbox": [0, 0, 10, 10], "label": 1}],
        categories=[Category(1, "a")],
    )
    dets = Detections([1, 0], [[0, 0, 10, 10], [0, 0, 10, 10]], [1, 1], [0.9, 0.8])
    assert voc_ap(gt, dets)["mAP"] == pytest.approx(0.5)  # F T


def test_bad_inputs_raise_user_errors():
    gt, dets = one_image([(1, [0, 0, 10, 10])], [(1, 0.9, [0, 0, 10, 10])])
    with pytest.raises(SoftSamplingError, match="IoU thresholds"):
        voc_ap(gt, dets, iou_thresholds=(1.5,))
    with pytest.raises(SoftSamplingError, match="image row 3"):
        voc_ap(gt, Detections([3], [[0, 0, 1, 1]], [1], [0.5]))
    only_difficult, _ = one_image([(1, [0, 0, 10, 10])], [], difficult={0})
    with pytest.raises(SoftSamplingError, match="no non-difficult"):
        voc_ap(only_difficult, Detections.empty())


def test_pair_chunking_gives_the_same_result(monkeypatch):
    import softsampling.evaluation.voc_metric as vm

    rng = np.random.default_rng(0)
    gt_ref, det_ref = random_scene(rng, num_images=6, gt_per_image=8, det_per_image=30)
    gt, dets = to_records(gt_ref, det_ref, 6)
    full = voc_ap(gt, dets, iou_thresholds=(0.5, 0.7))
    monkeypatch.setattr(vm, "_PAIR_CHUNK", 7)
    assert voc_ap(gt, dets, iou_thresholds=(0.5, 0.7)) == full


# ---------------------------------------------------------------------------
# Random data: equality with the reference and invariants
# ---------------------------------------------------------------------------


def random_scene(rng, num_images, gt_per_image, det_per_image, num_classes=3):
    """Integer inclusive boxes; detections are jittered ground truth or random boxes; scores with ties."""
    gt_ref, det_ref = [], []
    for im in range(num_images):
        for _ in range(rng.integers(0, gt_per_image + 1)):
            x, y = rng.integers(1, 40, size=2)
            w, h = rng.integers(0, 20, size=2)
            gt_ref.append(
                (
                    im,
                    int(rng.integers(1, num_classes + 1)),
                    int(x),
                    int(y),
                    int(x + w),
                    int(y + h),
                    bool(rng.random() < 0.2),
                )
            )
        own = [g for g in gt_ref if g[0] == im]
        for _ in range(rng.integers(0, det_per_image + 1)):
            if own and rng.random() < 0.6:
                g = own[rng.integers(len(own))]
                j = rng.integers(-1, 2, size=4)
                x1, y1 = g[2] + j[0], g[3] + j[1]
                box = (int(x1), int(y1), int(max(x1, g[4] + j[2])), int(max(y1, g[5] + j[3])))
                cls = g[1] if rng.random() < 0.9 else int(rng.integers(1, num_classes + 1))
            else:
                x, y = rng.integers(1, 40, size=2)
                w, h = rng.integers(0, 15, size=2)
                box = (int(x), int(y), int(x + w), int(y + h))
                cls = int(rng.integers(1, num_classes + 1))
            det_ref.append((im, cls, float(rng.integers(0, 10)) / 10, *box))
    return gt_ref, det_ref


def _check_against_reference(gt_ref, det_ref, num_images, iou, use_07, exact_tenths=False):
    aps, ref_map = devkit_reference(gt_ref, det_ref, iou, use_07, exact_tenths)
    gt, dets = to_records(gt_ref, det_ref, num_images)
    if not aps:
        with pytest.raises(SoftSamplingError):
            voc_ap(gt, dets, iou_thresholds=(iou,), use_07_metric=use_07, exact_tenths=exact_tenths)
        return None
    r = voc_ap(gt, dets, iou_thresholds=(iou,), use_07_metric=use_07, exact_tenths=exact_tenths)
    assert r["mAP"] == pytest.approx(ref_map, abs=1e-12)
    for cls, ap in aps.items():
        assert r["per_class"][cls]["ap"] == pytest.approx(ap, abs=1e-12)
    for cls, entry in r["per_class"].items():
        assert (entry["ap"] is None) == (cls not in aps)
        if entry["ap"] is not None:
            assert 0.0 <= entry["ap"] <= 1.0
    return r


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    num_images=st.integers(1, 4),
    iou=st.sampled_from([0.3, 0.5, 0.7]),
    metric=st.sampled_from(["voc", "voc07", "voc07_exact"]),
)
def test_equals_devkit_reference_on_random_data(seed, num_images, iou, metric):
    rng = np.random.default_rng(seed)
    gt_ref, det_ref = random_scene(rng, num_images, gt_per_image=5, det_per_image=10)
    _check_against_reference(gt_ref, det_ref, num_images, iou, metric != "voc", metric == "voc07_exact")


def test_equals_devkit_reference_on_a_larger_scene():
    rng = np.random.default_rng(1234)
    gt_ref, det_ref = random_scene(rng, num_images=40, gt_per_image=10, det_per_image=15, num_classes=5)
    for use_07 in (False, True):
        r = _check_against_reference(gt_ref, det_ref, 40, 0.5, use_07)
        assert 0.1 < r["mAP"] < 0.9  # a meaningful scene, neither trivial nor empty


@st.composite
def disjoint_scene(draw):
    """Ground truth in distinct cells of a 5x5 grid (so no two boxes overlap), random classes/difficult."""
    num_images = draw(st.integers(1, 4))
    gt_ref = []
    for im in range(num_images):
        cells = draw(st.lists(st.integers(0, 24), unique=True, max_size=6))
        for cell in cells:
            x0, y0 = 20 * (cell % 5) + 1, 20 * (cell // 5) + 1
            w, h = draw(st.integers(0, 15)), draw(st.integers(0, 15))
            gt_ref.append((im, draw(st.integers(1, 3)), x0, y0, x0 + w, y0 + h, draw(st.booleans())))
    return num_images, gt_ref


@settings(max_examples=60, deadline=None)
@given(scene=disjoint_scene(), seed=st.integers(0, 2**31 - 1))
def test_perfect_detections_score_one_and_order_does_not_matter(scene, seed):
    num_images, gt_ref = scene
    if all(g[6] for g in gt_ref):  # no scorable class
        return
    rng = np.random.default_rng(seed)
    det_ref = [(g[0], g[1], float(s), *g[2:6]) for g, s in zip(gt_ref, rng.permutation(len(gt_ref)) + 1, strict=True)]
    gt, dets = to_records(gt_ref, det_ref, num_images)
    for use_07 in (False, True):
        assert voc_ap(gt, dets, use_07_metric=use_07)["mAP"] == pytest.approx(1.0, abs=1e-12)

    # Add false positives with distinct scores, then permute detections and images.
    extra = [
        (int(rng.integers(num_images)), int(rng.integers(1, 4)), len(det_ref) + 0.5 + k, 101, 101, 110, 110)
        for k in range(5)
    ]
    det_ref = det_ref + extra
    gt, dets = to_records(gt_ref, det_ref, num_images)
    base = voc_ap(gt, dets, iou_thresholds=(0.5, 0.75))
    assert 0.0 <= base["mAP"] <= 1.0

    perm = rng.permutation(len(dets))
    shuffled = dets.select(perm)
    assert voc_ap(gt, shuffled, iou_thresholds=(0.5, 0.75)) == base

    image_perm = rng.permutation(num_images)  # new row k holds old image image_perm[k]
    new_row = np.argsort(image_perm)
    gt_perm = DetectionDataset.from_lists(
        images=[
            {"id": gt.image_ids[i], "file_name": gt.file_names[i], "width": 100, "height": 100} for i in image_perm
        ],
        boxes=[
            {
                "image_index": int(new_row[gt.box_image[b]]),
                "bbox": gt.boxes[b].tolist(),
                "label": int(gt.labels[b]),
                "difficult": bool(gt.difficult[b]),
            }
            for b in range(gt.num_boxes)
        ],
        categories=gt.categories,
    )
    dets_perm = Detections(new_row[dets.image_index], dets.boxes, dets.labels, dets.scores)
    assert voc_ap(gt_perm, dets_perm, iou_thresholds=(0.5, 0.75)) == base

"""Open Images challenge metric: one hand-computed case per rule, and agreement with a
straightforward per-image loop written from the reference's description."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from softsampling.errors import SoftSamplingError
from softsampling.evaluation.openimages_metric import (
    ImageLabels,
    average_precision,
    load_hierarchy,
    openimages_metric,
    precision_recall,
)
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset

CATS = [Category(1, "/m/animal"), Category(2, "/m/dog"), Category(3, "/m/cat")]
HIERARCHY = {
    "LabelName": "/m/entity",
    "Subcategory": [{"LabelName": "/m/animal", "Subcategory": [{"LabelName": "/m/dog"}, {"LabelName": "/m/cat"}]}],
}


def _dataset(n_images: int, boxes: list[dict]) -> DetectionDataset:
    return DetectionDataset.from_lists(
        images=[{"id": f"img{i}", "file_name": f"img{i}.jpg", "width": 300, "height": 300} for i in range(n_images)],
        boxes=boxes,
        categories=CATS,
    )


def _dets(rows: list[tuple[int, list[float], int, float]]) -> Detections:
    """rows: (image row, xyxy box, category id, score)."""
    return Detections(
        image_index=[r[0] for r in rows],
        boxes=[r[1] for r in rows],
        labels=[r[2] for r in rows],
        scores=[r[3] for r in rows],
    )


def _column(result: dict, key: str) -> dict[int, object]:
    return {c: v[key] for c, v in result["per_class"].items()}


# ----------------------------------------------------------------------------- AP arithmetic
def test_average_precision_uses_monotone_envelope_and_recall_steps() -> None:
    # TP, FP, TP, FP, TP with 4 positives:
    #   precision 1, 1/2, 2/3, 2/4, 3/5 ; recall .25, .25, .5, .5, .75
    #   envelope  1, 2/3, 2/3, 3/5, 3/5 ; recall steps at .25 (p 1), .5 (p 2/3), .75 (p 3/5)
    #   AP = .25*1 + .25*2/3 + .25*3/5 = 0.5666...
    p, r = precision_recall(np.array([1, 0, 1, 0, 1], dtype=bool), 4)
    assert average_precision(p, r) == pytest.approx(0.25 + 0.25 * 2 / 3 + 0.25 * 3 / 5, abs=1e-15)
    assert average_precision(np.zeros(0), np.zeros(0)) == 0.0


# ----------------------------------------------------------------------------- rule 1: verification
def test_unverified_class_is_ignored_and_verified_negative_counts_as_false_positive() -> None:
    # image 0: one dog box. image 1: no boxes.
    # a dog detection on image 1 with the top score is ignored while dog is not verified there:
    #   entries: 0.8 TP -> AP(dog) = 1
    # once image 1 says "no dog" (negative label) it is a false positive ranked first:
    #   entries: 0.9 FP, 0.8 TP -> precision 0, 1/2; recall 0, 1 -> AP = 1 * 1/2 = 0.5
    gt = _dataset(2, [{"image_index": 0, "bbox": [0, 0, 100, 100], "label": 2}])
    dets = _dets([(0, [0, 0, 100, 100], 2, 0.8), (1, [0, 0, 100, 100], 2, 0.9)])

    unverified = openimages_metric(gt, dets, image_labels={})
    assert unverified["per_class"][2]["ap"] == 1.0
    assert unverified["per_class"][2]["num_det"] == 1

    negative = openimages_metric(gt, dets, image_labels={1: (set(), {2})})
    assert negative["per_class"][2]["ap"] == pytest.approx(0.5, abs=1e-15)
    assert negative["per_class"][2]["num_det"] == 2
    # a positive label verifies the class just the same
    positive = openimages_metric(gt, dets, image_labels=ImageLabels.from_sets({1: ({2}, set())}))
    assert positive["per_class"][2]["ap"] == pytest.approx(0.5, abs=1e-15)


def test_classes_without_positives_are_nan_and_left_out_of_the_mean() -> None:
    # dog: 1 TP of 1 -> AP 1. cat: verified absent in image 0, one FP -> no positives -> nan.
    # animal: positive image-level label but no boxes -> no positives -> nan. mAP = 1.
    gt = _dataset(1, [{"image_index": 0, "bbox": [0, 0, 100, 100], "label": 2}])
    dets = _dets([(0, [0, 0, 100, 100], 2, 0.8), (0, [0, 0, 50, 50], 3, 0.9)])
    r = openimages_metric(gt, dets, image_labels={0: ({1}, {3})})
    assert r["per_class"][2]["ap"] == 1.0 and r["per_class"][3]["ap"] is None and r["per_class"][1]["ap"] is None
    assert r["mAP"] == 1.0
    assert _column(r, "num_gt") == {1: 0, 2: 1, 3: 0}


# ----------------------------------------------------------------------------- rule 3: matching
def test_detection_only_tries_its_best_iou_box() -> None:
    # boxes A=[0,0,10,10], B=[0,3,10,13] (dog). d1 = A exactly (0.9) takes A.
    # d2=[0,1,10,11] (0.8): IoU(A)=90/110=.82, IoU(B)=80/120=.67; its best box A is taken, so it is
    # a FP even though B is free -> entries TP, FP with 2 positives:
    #   precision 1, 1/2; recall 1/2, 1/2 -> AP = 1/2 * 1 = 0.5
    gt = _dataset(
        1,
        [
            {"image_index": 0, "bbox": [0, 0, 10, 10], "label": 2},
            {"image_index": 0, "bbox": [0, 3, 10, 13], "label": 2},
        ],
    )
    dets = _dets([(0, [0, 0, 10, 10], 2, 0.9), (0, [0, 1, 10, 11], 2, 0.8)])
    r = openimages_metric(gt, dets, image_labels={})
    assert r["per_class"][2]["ap"] == pytest.approx(0.5, abs=1e-15)
    assert r["per_class"][2]["num_tp"] == 1


def test_iou_threshold_is_inclusive_and_configurable() -> None:
    # det [0,0,10,20] vs box [0,0,10,10]: IoU = 100/200 = 0.5 exactly -> TP at iou=0.5, FP at 0.6
    gt = _dataset(1, [{"image_index": 0, "bbox": [0, 0, 10, 10], "label": 2}])
    dets = _dets([(0, [0, 0, 10, 20], 2, 0.9)])
    assert openimages_metric(gt, dets, image_labels={})["mAP"] == 1.0
    assert openimages_metric(gt, dets, image_labels={}, iou=0.6)["mAP"] == 0.0


# ----------------------------------------------------------------------------- rule 4: group-of
def test_three_detections_in_one_group_box_make_one_true_positive() -> None:
    # dog group-of box G=[0,0,100,100] and a plain dog box P=[200,200,300,300].
    # three detections inside G (0.9, 0.6, 0.3): ignored, G becomes one TP with score 0.9.
    # a FP elsewhere (0.8), a TP on P (0.5). Entries: .9 TP, .8 FP, .5 TP; 2 positives:
    #   precision 1, 1/2, 2/3; recall 1/2, 1/2, 1
    #   envelope  1, 2/3, 2/3 -> AP = 1/2 * 1 + 1/2 * 2/3 = 5/6
    gt = _dataset(
        1,
        [
            {"image_index": 0, "bbox": [0, 0, 100, 100], "label": 2, "group_of": True},
            {"image_index": 0, "bbox": [200, 200, 300, 300], "label": 2},
        ],
    )
    dets = _dets(
        [
            (0, [10, 10, 30, 30], 2, 0.9),
            (0, [40, 40, 60, 60], 2, 0.6),
            (0, [70, 70, 90, 90], 2, 0.3),
            (0, [150, 0, 190, 40], 2, 0.8),
            (0, [200, 200, 300, 300], 2, 0.5),
        ]
    )
    r = openimages_metric(gt, dets, image_labels={})
    assert r["per_class"][2]["ap"] == pytest.approx(5 / 6, abs=1e-15)
    assert r["per_class"][2]["num_gt"] == 2 and r["per_class"][2]["num_tp"] == 2 and r["per_class"][2]["num_det"] == 5


def test_group_box_uses_intersection_over_detection_area() -> None:
    # det [80,0,120,40] has half its area inside G=[0,0,100,100]: IoA = 0.5 -> absorbed (TP, AP 1)
    # det [85,0,125,40]: IoA = 15*40/1600 = 0.375 -> a FP, G missed -> AP 0
    gt = _dataset(1, [{"image_index": 0, "bbox": [0, 0, 100, 100], "label": 2, "group_of": True}])
    assert openimages_metric(gt, _dets([(0, [80, 0, 120, 40], 2, 0.9)]), image_labels={})["mAP"] == 1.0
    assert openimages_metric(gt, _dets([(0, [85, 0, 125, 40], 2, 0.9)]), image_labels={})["mAP"] == 0.0
    # an unmatched group-of box is a missed object: 1 TP (P) of 2 positives -> AP 0.5
    gt2 = _dataset(
        1,
        [
            {"image_index": 0, "bbox": [0, 0, 100, 100], "label": 2, "group_of": True},
            {"image_index": 0, "bbox": [200, 200, 300, 300], "label": 2},
        ],
    )
    r = openimages_metric(gt2, _dets([(0, [200, 200, 300, 300], 2, 0.9)]), image_labels={})
    assert r["mAP"] == pytest.approx(0.5, abs=1e-15)


def test_non_group_boxes_are_matched_before_group_boxes() -> None:
    # plain dog P=[10,10,50,50] inside dog group-of G=[0,0,100,100].
    # d1 = P (0.9): matched to P first -> TP. d2=[60,60,90,90] (0.8): IoU(P)=0, inside G -> absorbed,
    # G is a TP with score 0.8. Entries .9 TP, .8 TP of 2 positives -> AP 1.
    # (Matching group-of boxes first would absorb both into G and miss P: AP 0.5.)
    gt = _dataset(
        1,
        [
            {"image_index": 0, "bbox": [0, 0, 100, 100], "label": 2, "group_of": True},
            {"image_index": 0, "bbox": [10, 10, 50, 50], "label": 2},
        ],
    )
    dets = _dets([(0, [10, 10, 50, 50], 2, 0.9), (0, [60, 60, 90, 90], 2, 0.8)])
    r = openimages_metric(gt, dets, image_labels={})
    assert r["per_class"][2]["ap"] == 1.0 and r["per_class"][2]["num_tp"] == 2
    # a duplicate of P is not a FP when it lies in G: its best box is taken, then G absorbs it
    dup = _dets([(0, [10, 10, 50, 50], 2, 0.9), (0, [12, 12, 50, 50], 2, 0.8)])
    assert openimages_metric(gt, dup, image_labels={})["per_class"][2]["ap"] == 1.0


# ----------------------------------------------------------------------------- rule 2: invalid + cap
def test_invalid_boxes_dropped_and_per_image_class_cap() -> None:
    gt = _dataset(1, [{"image_index": 0, "bbox": [0, 0, 10, 10], "label": 2}])
    flat = _dets([(0, [5, 5, 5, 9], 2, 0.99), (0, [0, 0, 10, 10], 2, 0.5)])  # zero-width box is dropped
    r = openimages_metric(gt, flat, image_labels={})
    assert r["mAP"] == 1.0 and r["per_class"][2]["num_det"] == 1
    n = 10_005
    many = Detections(
        np.zeros(n), np.tile([[100.0, 100.0, 120.0, 120.0]], (n, 1)), np.full(n, 2), np.linspace(0.1, 0.2, n)
    )
    assert openimages_metric(gt, many, image_labels={})["per_class"][2]["num_det"] == 10_000


# ----------------------------------------------------------------------------- rule 7: hierarchy
def test_hierarchy_expands_boxes_positive_labels_up_and_negative_labels_down(tmp_path: Path) -> None:
    # animal > {dog, cat}. image 0: dog box. image 1: "no animal" (negative label).
    # detections: img0 dog (0.9, on the box), img0 animal (0.8, on the box), img1 dog (0.95), img1 cat (0.7)
    gt = _dataset(2, [{"image_index": 0, "bbox": [0, 0, 100, 100], "label": 2}])
    dets = _dets(
        [
            (0, [0, 0, 100, 100], 2, 0.9),
            (0, [0, 0, 100, 100], 1, 0.8),
            (1, [0, 0, 100, 100], 2, 0.95),
            (1, [0, 0, 50, 50], 3, 0.7),
        ]
    )
    labels = {1: (set(), {1})}

    # without hierarchy: animal has no boxes (nan) and is unverified in image 0; dog and cat are
    # unverified in image 1 -> dog: .9 TP -> AP 1, mAP 1
    flat = openimages_metric(gt, dets, image_labels=labels)
    assert flat["mAP"] == 1.0 and flat["per_class"][1]["ap"] is None and _column(flat, "num_det") == {1: 0, 2: 1, 3: 0}

    # with hierarchy: the dog box is also an animal box (animal AP: .8 TP -> 1); "no animal" in
    # image 1 means "no dog, no cat": dog entries .95 FP, .9 TP -> AP 0.5; cat has no positives.
    # mAP = (1 + 0.5) / 2 = 0.75
    path = tmp_path / "hierarchy.json"
    path.write_text(json.dumps(HIERARCHY))
    expanded = openimages_metric(gt, dets, image_labels=labels, hierarchy=path)
    assert expanded["per_class"][1]["ap"] == 1.0
    assert expanded["per_class"][2]["ap"] == pytest.approx(0.5, abs=1e-15)
    assert expanded["per_class"][3]["ap"] is None and expanded["per_class"][3]["num_det"] == 1
    assert expanded["mAP"] == pytest.approx(0.75, abs=1e-15)
    assert _column(expanded, "num_gt") == {1: 1, 2: 1, 3: 0}

    # detections are not expanded unless asked. Expanded, the dog detections also count as animal:
    # animal entries .95 FP (img1, animal verified absent), .9 TP, .8 FP (duplicate) -> AP 0.5
    # dog AP 0.5 -> mAP 0.5
    both = openimages_metric(gt, dets, image_labels=labels, hierarchy=HIERARCHY, expand_detections=True)
    assert both["per_class"][1]["ap"] == pytest.approx(0.5, abs=1e-15)
    assert both["mAP"] == pytest.approx(0.5, abs=1e-15)


def test_load_hierarchy_handles_dags_and_unknown_nodes() -> None:
    # "/m/pet" is not a dataset category; dog sits under animal and under pet (pet under animal):
    # dog's ancestors are just {animal}, once; animal's descendants are {dog, cat}.
    tree = {
        "LabelName": "/m/entity",
        "Subcategory": [
            {
                "LabelName": "/m/animal",
                "Subcategory": [
                    {"LabelName": "/m/dog"},
                    {"LabelName": "/m/cat"},
                    {"LabelName": "/m/pet", "Subcategory": [{"LabelName": "/m/dog"}]},
                ],
            }
        ],
    }
    h = load_hierarchy(tree, CATS)
    assert h.ancestors == {1: frozenset(), 2: frozenset({1}), 3: frozenset({1})}
    assert h.descendants == {1: frozenset({2, 3}), 2: frozenset(), 3: frozenset()}
    # categories are matched by the MID the Open Images reader keeps in extra["LabelName"]
    named = [Category(1, "Animal", {"LabelName": "/m/animal"}), Category(2, "Dog", {"LabelName": "/m/dog"})]
    assert load_hierarchy(tree, named).ancestors[2] == frozenset({1})


def test_user_errors() -> None:
    gt = _dataset(1, [{"image_index": 0, "bbox": [0, 0, 10, 10], "label": 2}])
    with pytest.raises(SoftSamplingError, match="category id 9"):
        openimages_metric(gt, _dets([(0, [0, 0, 1, 1], 9, 0.5)]), image_labels={})
    with pytest.raises(SoftSamplingError, match="image-level label has category id 7"):
        openimages_metric(gt, Detections.empty(), image_labels={0: ({7}, set())})
    with pytest.raises(SoftSamplingError, match="does not exist"):
        openimages_metric(gt, Detections.empty(), image_labels={}, hierarchy="/nonexistent/h.json")


# ----------------------------------------------------------------------------- agreement with a plain loop
def overlap(b: np.ndarray, g: np.ndarray, over_det_area: bool) -> float:
    """Intersection of detection ``b`` and ground truth ``g`` over ``b``'s area (group-of) or over their union."""
    iw = max(0.0, min(b[2], g[2]) - max(b[0], g[0]))
    ih = max(0.0, min(b[3], g[3]) - max(b[1], g[1]))
    a_d = (b[2] - b[0]) * (b[3] - b[1])
    a_g = (g[2] - g[0]) * (g[3] - g[1])
    return iw * ih / a_d if over_det_area else iw * ih / (a_d + a_g - iw * ih)


def _loop_reference(gt: DetectionDataset, dets: Detections, image_labels: dict, iou_thr: float = 0.5) -> dict:
    """The challenge metric written the slow, obvious way: per image, per class, per detection."""
    per_class: dict[int, list[tuple[float, bool]]] = {c.id: [] for c in gt.categories}
    num_gt = {c.id: 0 for c in gt.categories}
    for i in range(gt.num_images):
        rows = [j for j in range(gt.num_boxes) if gt.box_image[j] == i]
        pos, neg = image_labels.get(i, (set(), set()))
        verified = set(pos) | set(neg) | {int(gt.labels[j]) for j in rows}
        for c in per_class:
            boxes = [gt.boxes[j].astype(float) for j in rows if gt.labels[j] == c]
            group = [bool(gt.group_of[j]) for j in rows if gt.labels[j] == c]
            num_gt[c] += len(boxes)
            if c not in verified:
                continue
            ds = [d for d in range(len(dets)) if dets.image_index[d] == i and dets.labels[d] == c]
            ds = [d for d in ds if dets.boxes[d][0] < dets.boxes[d][2] and dets.boxes[d][1] < dets.boxes[d][3]]
            ds.sort(key=lambda d: -float(dets.scores[d]))
            taken = [False] * len(boxes)
            group_best = [0.0] * len(boxes)
            for d in ds:
                b = dets.boxes[d].astype(float)
                score = float(dets.scores[d])
                plain = [k for k in range(len(boxes)) if not group[k]]
                if plain:
                    k = max(plain, key=lambda k: (overlap(b, boxes[k], False), -k))
                    if overlap(b, boxes[k], False) >= iou_thr and not taken[k]:
                        taken[k] = True
                        per_class[c].append((score, True))
                        continue
                groups = [k for k in range(len(boxes)) if group[k]]
                if groups:
                    k = max(groups, key=lambda k: (overlap(b, boxes[k], True), -k))
                    if overlap(b, boxes[k], True) >= iou_thr:
                        group_best[k] = max(group_best[k], score)
                        continue
                per_class[c].append((score, False))
            per_class[c] += [(s, True) for s in group_best if s > 0]
    ap = {}
    for c, entries in per_class.items():
        if num_gt[c] == 0:
            ap[c] = float("nan")
            continue
        entries.sort(key=lambda e: -e[0])
        tp = fp = 0
        precision, recall = [], []
        for _, is_tp in entries:
            tp, fp = tp + is_tp, fp + (not is_tp)
            precision.append(tp / (tp + fp))
            recall.append(tp / num_gt[c])
        # area under the monotone envelope, summed over recall steps
        total, prev_r = 0.0, 0.0
        for n, r in enumerate(recall):
            if r != prev_r:
                total += (r - prev_r) * max(precision[n:])
                prev_r = r
        ap[c] = total
    return ap


def _random_case(seed: int) -> tuple[DetectionDataset, Detections, dict]:
    rng = np.random.default_rng(seed)
    boxes, rows = [], []
    n_images = 12
    for i in range(n_images):
        for _ in range(int(rng.integers(0, 6))):
            x, y = rng.uniform(0, 200, size=2)
            w, h = rng.uniform(10, 100, size=2)
            boxes.append(
                {
                    "image_index": i,
                    "bbox": [x, y, x + w, y + h],
                    "label": int(rng.integers(1, 4)),
                    "group_of": bool(rng.random() < 0.25),
                }
            )
    gt = _dataset(n_images, boxes)
    for j in range(gt.num_boxes):  # detections near boxes, several per group-of box
        for _ in range(int(rng.integers(0, 4 if gt.group_of[j] else 3))):
            x1, y1, x2, y2 = gt.boxes[j].astype(float)
            w, h = x2 - x1, y2 - y1
            jit = rng.normal(0, 0.15, 4) * [w, h, w, h]
            if gt.group_of[j]:
                s = rng.uniform(0.2, 0.6)
                cx, cy = rng.uniform(x1, x2), rng.uniform(y1, y2)
                box = [cx - s * w / 2, cy - s * h / 2, cx + s * w / 2, cy + s * h / 2]
            else:
                box = [x1 + jit[0], y1 + jit[1], x2 + jit[2], y2 + jit[3]]
            label = int(gt.labels[j]) if rng.random() < 0.85 else int(rng.integers(1, 4))
            rows.append((int(gt.box_image[j]), box, label))
    for _ in range(40):  # background false positives, some invalid
        i = int(rng.integers(0, n_images))
        x, y = rng.uniform(0, 250, size=2)
        w, h = rng.uniform(-5, 80, size=2)
        rows.append((i, [x, y, x + w, y + h], int(rng.integers(1, 4))))
    scores = rng.permutation(len(rows)) / len(rows) + 0.001  # distinct scores: no tie-order questions
    dets = _dets([(i, b, c, float(s)) for (i, b, c), s in zip(rows, scores, strict=True)])
    labels = {}
    for i in range(n_images):
        pos = {c for c in (1, 2, 3) if rng.random() < 0.3}
        neg = {c for c in (1, 2, 3) if rng.random() < 0.3} - pos
        labels[i] = (pos, neg)
    return gt, dets, labels


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_matches_a_plain_per_image_loop(seed: int) -> None:
    gt, dets, labels = _random_case(seed)
    expected = _loop_reference(gt, dets, labels)
    ours = openimages_metric(gt, dets, image_labels=labels)
    assert gt.group_of.any() and len(dets) > 50
    for c, ap in expected.items():
        got = ours["per_class"][c]["ap"]
        assert (math.isnan(ap) and got is None) or abs(got - ap) < 1e-12, (c, got, ap)
    assert 0.0 < ours["mAP"] < 1.0


def test_ground_truth_without_boxes_is_a_user_error() -> None:
    gt = _dataset(1, [])
    with pytest.raises(SoftSamplingError, match="no boxes"):
        openimages_metric(gt, _dets([(0, [0, 0, 5, 5], 2, 0.5)]), image_labels={0: ({2}, set())})


def test_with_the_open_images_reader(tmp_path: Path) -> None:
    # the hierarchy case above, read from Open Images CSV files: categories 1..3 in classes-file
    # order carry their MID in extra["LabelName"]; image-level labels come from the labels file.
    from softsampling.data.openimages import read_openimages

    (tmp_path / "classes.csv").write_text("/m/animal,Animal\n/m/dog,Dog\n/m/cat,Cat\n")
    (tmp_path / "boxes.csv").write_text(
        "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside\n"
        "img0,xclick,/m/dog,1,0,0.5,0,0.5,0,0,0,0,0\n"
    )
    (tmp_path / "labels.csv").write_text(
        "ImageID,Source,LabelName,Confidence\nimg0,verification,/m/dog,1\nimg1,verification,/m/animal,0\n"
    )
    (tmp_path / "sizes.csv").write_text("ImageID,width,height\nimg0,200,200\nimg1,200,200\n")
    (tmp_path / "hierarchy.json").write_text(json.dumps(HIERARCHY))
    gt = read_openimages(
        tmp_path / "boxes.csv",
        classes_csv=tmp_path / "classes.csv",
        labels_csv=tmp_path / "labels.csv",
        sizes_csv=tmp_path / "sizes.csv",
    )
    assert gt.image_ids == ["img0", "img1"] and gt.boxes.tolist() == [[0.0, 0.0, 100.0, 100.0]]
    labels = ImageLabels.from_dataset(gt)
    assert sorted(zip(labels.image_index.tolist(), labels.labels.tolist(), labels.positive.tolist(), strict=True)) == [
        (0, 2, True),
        (1, 1, False),
    ]
    dets = _dets(
        [
            (0, [0, 0, 100, 100], 2, 0.9),
            (0, [0, 0, 100, 100], 1, 0.8),
            (1, [0, 0, 100, 100], 2, 0.95),
            (1, [0, 0, 50, 50], 3, 0.7),
        ]
    )
    r = openimages_metric(gt, dets, image_labels=labels, hierarchy=tmp_path / "hierarchy.json")
    assert r["mAP"] == pytest.approx(0.75, abs=1e-15)  # animal 1, dog 0.5 (see the hierarchy test)
    assert r["per_class"][2]["name"] == "Dog"

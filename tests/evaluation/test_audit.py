"""softsampling audit: candidates, calibration, ranking, summary (hand-made cases with known answers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from softsampling.evaluation import audit
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset


def dataset(boxes: list[tuple[int, list[float], int]], images: int = 2) -> DetectionDataset:
    return DetectionDataset.from_lists(
        images=[{"id": i + 1, "file_name": f"im{i}.png", "width": 100, "height": 100} for i in range(images)],
        boxes=[{"image_index": r, "bbox": b, "label": c} for r, b, c in boxes],
        categories=[Category(1, "cat"), Category(2, "dog")],
    )


def test_unannotated_any_class_and_same_class():
    gt = dataset([(0, [0, 0, 10, 10], 1)])
    dets = Detections(
        [0, 0, 0, 1],
        [[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 60, 60], [0, 0, 10, 10]],
        [1, 2, 1, 1],
        [0.9, 0.8, 0.7, 0.6],
    )
    # any class: the dog on the annotated cat is a class confusion, not a missing box
    assert audit.unannotated(gt, dets).tolist() == [False, False, True, True]
    assert audit.unannotated(gt, dets, same_class=True).tolist() == [False, True, True, True]
    # IoU 0.5 exactly counts as matched; just below does not
    half = Detections([0], [[0, 0, 10, 20]], [1], [0.5])
    assert audit.unannotated(gt, half).tolist() == [False]
    assert audit.unannotated(gt, half, iou=0.51).tolist() == [True]


def test_isotonic_pools_violators_and_fills_empty_bins():
    fit = audit.isotonic_increasing(np.array([0.0, 0.8, 0.2, 0.0, 1.0]), np.array([1.0, 1.0, 3.0, 0.0, 2.0]))
    np.testing.assert_allclose(fit, [0.0, 0.35, 0.35, 0.35, 1.0])
    # a violator pooling into a block of several points, then more points after it
    fit = audit.isotonic_increasing(np.array([0.5, 0.6, 0.7, 0.0, 0.9, 1.0]), np.ones(6))
    np.testing.assert_allclose(fit, [0.45, 0.45, 0.45, 0.45, 0.9, 1.0])


def test_validation_calibration_maps_scores_to_local_precision():
    # val: class 1 detections at 0.9 are right (2 of 2), at 0.3 wrong (0 of 2); one val box is never found
    val = dataset([(0, [0, 0, 10, 10], 1), (1, [0, 0, 10, 10], 1), (1, [50, 50, 60, 60], 1)])
    val_dets = Detections(
        [0, 1, 0, 1],
        [[0, 0, 10, 10], [0, 0, 10, 10], [70, 70, 80, 80], [20, 20, 30, 30]],
        [1, 1, 1, 1],
        [0.9, 0.9, 0.3, 0.3],
    )
    cal = audit.fit_validation_calibration(val, val_dets, [1, 2], bins=10)
    np.testing.assert_allclose(cal(np.array([1, 1, 1]), np.array([0.95, 0.3, 0.1])), [1.0, 0.0, 0.0])
    assert cal(np.array([2]), np.array([0.42]))[0] == pytest.approx(0.45)  # no val detections: raw (bin centre)
    assert cal.detector_recall == {1: pytest.approx(2 / 3), 2: 1.0}

    train = dataset([(0, [0, 0, 10, 10], 1)])
    dets = Detections(
        [0, 0, 1, 1],
        [[0, 0, 10, 10], [40, 40, 50, 50], [5, 5, 15, 15], [60, 60, 70, 70]],
        [1, 1, 1, 1],
        [0.99, 0.3, 0.91, 0.5],
    )
    cands = audit.rank_candidates(train, [dets], [cal])
    assert cands.image_index.tolist() == [1, 1, 0]  # the annotated detection is gone; 0.91 first
    np.testing.assert_allclose(cands.detector_score, [0.91, 0.5, 0.3], rtol=1e-6)
    assert cands.score[0] == 1.0 and cands.support.tolist() == [1, 1, 1]


def test_unlabeled_calibration_known_answer():
    # at score 0.9: 3 matched, 1 unmatched -> g = 0.75 = c; at 0.2: 4 unmatched -> g = 0
    # P(real | 0.9, unmatched) = (1 - c) / c * g / (1 - g) = 1, P(real | 0.2, unmatched) = 0
    gt = dataset([(0, [0, 0, 10, 10], 1), (0, [20, 0, 30, 10], 1), (0, [40, 0, 50, 10], 1)])
    boxes = [[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]] + [
        [10 * k, 50, 10 * k + 5, 55] for k in range(4)
    ]
    dets = Detections([0] * 8, boxes, [1] * 8, [0.9] * 4 + [0.2] * 4)
    cal = audit.fit_unlabeled_calibration(gt, dets, [1, 2], bins=10)
    assert cal.label_frequency[1] == pytest.approx(0.75)
    np.testing.assert_allclose(cal(np.array([1, 1]), np.array([0.9, 0.2])), [1.0, 0.0])


def test_agreement_of_several_detection_sets():
    gt = dataset([], images=1)
    a = Detections([0, 0], [[0, 0, 10, 10], [50, 50, 60, 60]], [1, 1], [0.8, 0.9])
    b = Detections([0, 0], [[1, 0, 11, 10], [80, 80, 90, 90]], [1, 2], [0.6, 0.7])
    cal = audit.identity_calibration([1, 2])
    cands = audit.rank_candidates(gt, [a, b], [cal, cal])
    # the object both found: (p 0.8 + p 0.6) / 2 = 0.7, kept once (a's, the higher one); others p / 2
    assert len(cands) == 3
    assert cands.support.tolist() == [2, 1, 1]
    np.testing.assert_allclose(cands.score, [(0.8 + 0.6) / 2, 0.9 / 2, 0.7 / 2], atol=1e-6)
    assert cands.source.tolist() == [0, 0, 1] and cands.boxes[0].tolist() == [0, 0, 10, 10]


def test_summary_known_answer():
    gt = dataset([(0, [0, 0, 10, 10], 1), (1, [0, 0, 10, 10], 1), (0, [20, 20, 30, 30], 2)])
    c = audit.Candidates(
        np.zeros(3, np.int64),
        np.zeros((3, 4)),
        np.array([1, 1, 1]),
        np.array([1.0, 0.5, 0.5]),
        np.zeros(3),
        np.ones(3, np.int64),
        np.zeros(3, np.int64),
    )
    cat, dog, total = audit.summarize(gt, c)
    assert (cat.annotated, cat.candidates, cat.expected_missing) == (2, 3, 2.0)
    half = 1.96 * math.sqrt(0.5)
    assert cat.missing_low == pytest.approx(2 - half) and cat.missing_high == pytest.approx(2 + half)
    assert cat.annotation_recall == pytest.approx(0.5)
    assert cat.recall_low == pytest.approx(2 / (4 + half)) and cat.recall_high == pytest.approx(2 / (4 - half))
    assert (dog.expected_missing, dog.annotation_recall) == (0.0, 1.0)
    assert (total.name, total.annotated, total.expected_missing) == ("all", 3, 2.0)
    # a detector that finds half the objects: twice as many are missing
    cat2 = audit.summarize(gt, c, detector_recall={1: 0.5})[0]
    assert cat2.expected_missing == pytest.approx(4.0) and cat2.missing_high == pytest.approx(4 + 2 * half)
    assert "cat" in audit.format_summary([cat, dog, total])
    # a detector that finds none of the class's validation boxes cannot say how many are missing
    blind, _, total = audit.summarize(gt, c, detector_recall={1: 0.0})
    assert math.isnan(blind.expected_missing) and blind.annotation_recall is None
    assert blind.to_json()["expected_missing"] is None and math.isnan(total.expected_missing)
    assert "unknown" in audit.format_summary([blind])


def test_candidates_json_is_coco_results_best_first():
    gt = dataset([], images=1)
    dets = Detections([0, 0], [[0, 0, 10, 20], [50, 50, 60, 60]], [1, 2], [0.3, 0.9])
    cands = audit.rank_candidates(gt, [dets], [audit.identity_calibration([1, 2])])
    entries = audit.candidates_to_json(gt, cands)
    assert [e["rank"] for e in entries] == [1, 2]
    assert entries[1] == {
        "image_id": 1,
        "file_name": "im0.png",
        "category_id": 1,
        "bbox": [0.0, 0.0, 10.0, 20.0],
        "score": pytest.approx(0.3),
        "rank": 2,
        "detector_score": pytest.approx(0.3),
        "support": 1,
    }


@pytest.mark.parametrize("same_class", [False, True])
def test_unannotated_equals_brute_force_iou(same_class):
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 40, size=(60, 2))
    gt = dataset(
        [(int(rng.integers(0, 5)), [*p, *(p + rng.uniform(2, 20, 2))], int(rng.integers(1, 3))) for p in xy], images=6
    )
    d_xy = rng.uniform(0, 40, size=(300, 2))
    dets = Detections(
        rng.integers(0, 6, 300),
        np.concatenate([d_xy, d_xy + rng.uniform(2, 20, (300, 2))], 1),
        rng.integers(1, 3, 300),
        rng.random(300),
    )
    expected = []
    for row, box, label in zip(dets.image_index, dets.boxes.astype(np.float64), dets.labels, strict=True):
        best = 0.0
        for g, gl in zip(gt.boxes[gt.box_image == row].astype(np.float64), gt.labels[gt.box_image == row], strict=True):
            if same_class and gl != label:
                continue
            iw = max(0.0, min(box[2], g[2]) - max(box[0], g[0]))
            ih = max(0.0, min(box[3], g[3]) - max(box[1], g[1]))
            union = (box[2] - box[0]) * (box[3] - box[1]) + (g[2] - g[0]) * (g[3] - g[1]) - iw * ih
            best = max(best, iw * ih / union)
        expected.append(best < 0.3)
    assert 50 < sum(expected) < 300  # both kinds occur
    assert audit.unannotated(gt, dets, iou=0.3, same_class=same_class).tolist() == expected


def test_unannotated_in_parallel_chunks_equals_one_pass(monkeypatch):
    rng = np.random.default_rng(4)
    gt = dataset([(int(rng.integers(0, 4)), [*p, *(p + 10)], 1) for p in rng.uniform(0, 30, (20, 2))], images=4)
    xy = rng.uniform(0, 30, (500, 2))
    dets = Detections(rng.integers(0, 4, 500), np.concatenate([xy, xy + 10], 1), np.ones(500), rng.random(500))
    one = audit.unannotated(gt, dets, threads=1)
    monkeypatch.setattr(audit, "_CHUNK", 37)
    assert audit.unannotated(gt, dets, threads=3).tolist() == one.tolist() and 0 < one.sum() < 500


def test_ranking_quality_against_dropped_boxes():
    missing = dataset([(0, [0, 0, 10, 10], 1), (0, [50, 50, 60, 60], 2), (1, [0, 0, 10, 10], 1)])
    # ranked: hit, duplicate of the same box, wrong class on a missing box, false, hit; box 3 never listed
    q = audit.ranking_quality(
        missing,
        np.array([0, 0, 0, 1, 1]),
        np.array(
            [[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [70, 70, 80, 80], [0, 0, 10, 10]], dtype=np.float32
        ),
        np.array([1, 1, 1, 1, 1]),
    )
    assert (q.true_positives, q.missing, q.k) == (2, 3, 3)
    assert q.recall_at_k == pytest.approx(1 / 3)
    assert q.average_precision == pytest.approx((1.0 + 2 / 5) / 3)


@pytest.mark.parametrize("num_images,folds", [(10, 2), (11, 3), (7, 7)])
def test_fold_assignment_is_a_deterministic_balanced_partition(num_images, folds):
    fold = audit.fold_assignment(num_images, folds, seed=3)
    assert fold.shape == (num_images,) and set(fold.tolist()) == set(range(folds))  # every image in one fold
    sizes = np.bincount(fold, minlength=folds)
    assert sizes.sum() == num_images and sizes.max() - sizes.min() <= 1
    assert np.array_equal(fold, audit.fold_assignment(num_images, folds, seed=3))
    others = [audit.fold_assignment(num_images, folds, seed=s) for s in range(4, 10)]
    assert any(not np.array_equal(fold, o) for o in others)  # the seed matters
    with pytest.raises(ValueError, match="folds must lie in"):
        audit.fold_assignment(num_images, num_images + 1, seed=0)


def test_fold_calibration_applies_each_folds_own_table():
    gt = DetectionDataset.from_lists(
        images=[{"id": i, "file_name": f"{i}.png", "width": 50, "height": 50} for i in range(3)],
        boxes=[],
        categories=[Category(1, "a")],
    )
    doubled = audit.identity_calibration([1])
    doubled.table = np.minimum(doubled.table * 2, 1.0)
    doubled.method = "validation"
    cal = audit.FoldCalibration(np.array([0, 1, 0]), [audit.identity_calibration([1]), doubled])
    dets = Detections([0, 1, 2], [[0, 0, 9, 9]] * 3, [1, 1, 1], [0.3, 0.3, 0.2])
    assert np.allclose(cal.probabilities(dets), [0.3, 0.6, 0.2], atol=0.01)
    scored = audit.score_candidates(gt, [dets], [cal])
    assert np.allclose(scored.score, [0.3, 0.6, 0.2], atol=0.01)

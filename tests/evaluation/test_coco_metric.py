"""COCO metric: equality with pycocotools run on the original files, plus small hand cases."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from softsampling.errors import SoftSamplingError
from softsampling.evaluation.coco_metric import COCO_STAT_NAMES, coco_metric, coco_results
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset


# ----------------------------------------------------------------------------- fixtures
def _load_coco_dataset(path: Path) -> DetectionDataset:
    """Our dataset for a COCO JSON file, through the project's COCO reader."""
    from softsampling.data.coco import read_coco

    return read_coco(path)


def _synthetic_detections(gt: DetectionDataset, seed: int) -> Detections:
    """Seeded detections: jittered copies of ~80% of the GT boxes, duplicates, random false
    positives with random classes, and one image with 130 detections (beyond maxDets=100)."""
    rng = np.random.default_rng(seed)
    cat_ids = np.array([c.id for c in gt.categories])
    image_index, boxes, labels = [], [], []
    keep = rng.random(gt.num_boxes) < 0.8
    for j in np.flatnonzero(keep):
        x1, y1, x2, y2 = gt.boxes[j].astype(np.float64)
        w, h = x2 - x1, y2 - y1
        n_copies = 1 + int(rng.random() < 0.15)  # some duplicates
        for _ in range(n_copies):
            jitter = rng.normal(0.0, 0.08, size=4) * np.array([w, h, w, h])
            nx1, ny1, nx2, ny2 = x1 + jitter[0], y1 + jitter[1], x2 + jitter[2], y2 + jitter[3]
            if nx2 - nx1 < 1 or ny2 - ny1 < 1:
                continue
            label = gt.labels[j] if rng.random() < 0.9 else rng.choice(cat_ids)  # some wrong classes
            image_index.append(gt.box_image[j])
            boxes.append([nx1, ny1, nx2, ny2])
            labels.append(label)
    for i in range(gt.num_images):
        n_fp = int(rng.integers(0, 6)) if i != 3 else 130
        for _ in range(n_fp):
            W, H = float(gt.widths[i]), float(gt.heights[i])
            x1, y1 = rng.uniform(0, W * 0.8), rng.uniform(0, H * 0.8)
            x2, y2 = x1 + rng.uniform(2, W * 0.5), y1 + rng.uniform(2, H * 0.5)
            image_index.append(i)
            boxes.append([x1, y1, x2, y2])
            labels.append(rng.choice(cat_ids))
    scores = rng.random(len(boxes))
    return Detections(np.array(image_index), np.array(boxes), np.array(labels), scores)


def _pycocotools_on_files(gt_json: Path, results_json: Path) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_json))
        coco_dt = coco_gt.loadRes(str(results_json))
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _write_results_json(path: Path, gt_json: Path, dets: Detections) -> None:
    """Results file written independently of coco_metric: image row -> COCO image id by the JSON's order."""
    images = json.loads(gt_json.read_text())["images"]
    rows = []
    for d in range(len(dets)):
        x1, y1, x2, y2 = (float(v) for v in dets.boxes[d])
        rows.append(
            {
                "image_id": images[int(dets.image_index[d])]["id"],
                "category_id": int(dets.labels[d]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(dets.scores[d]),
            }
        )
    path.write_text(json.dumps(rows))


# ----------------------------------------------------------------------------- coco128 equality
@pytest.mark.parametrize("seed", [0, 1])
def test_equals_pycocotools_on_original_files(coco128_json: Path, tmp_path: Path, seed: int) -> None:
    gt = _load_coco_dataset(coco128_json)
    assert gt.num_images == 128 and gt.num_boxes == 939 and int(gt.iscrowd.sum()) == 10
    dets = _synthetic_detections(gt, seed=seed)
    assert len(dets) > 900

    results_json = tmp_path / "results.json"
    _write_results_json(results_json, coco128_json, dets)
    expected = _pycocotools_on_files(coco128_json, results_json)

    ours = coco_metric(gt, dets)
    for k, name in enumerate(COCO_STAT_NAMES):
        assert abs(ours[name] - expected[k]) <= 1e-12, (name, ours[name], expected[k])
    # a meaningful, non-degenerate evaluation
    assert 0.2 < ours["AP"] < 0.95 and ours["APs"] != ours["APl"]


def test_per_class_ap_averages_to_ap(coco128_json: Path) -> None:
    gt = _load_coco_dataset(coco128_json)
    result = coco_metric(gt, _synthetic_detections(gt, seed=2))
    present = {int(c) for c in np.unique(gt.labels[~gt.iscrowd])}
    per_class = result["per_class"]
    # classes without ground truth have no AP; pycocotools' AP is the mean over the others
    assert {c for c, v in per_class.items() if v["ap"] is not None} == present
    assert abs(np.mean([v["ap"] for v in per_class.values() if v["ap"] is not None]) - result["AP"]) < 1e-12
    assert result["mAP"] == result["AP"]
    assert sum(v["num_gt"] for v in per_class.values()) == 929
    assert per_class[1]["num_gt"] == 254  # person: 259 annotations in the README count, 5 of them crowds
    assert per_class[1]["name"] == "person"
    assert sum(v["num_det"] for v in per_class.values()) == len(_synthetic_detections(gt, seed=2))


# ----------------------------------------------------------------------------- hand cases
def _one_image(boxes: list[dict], area: list[float] | None = None) -> DetectionDataset:
    ds = DetectionDataset.from_lists(
        images=[{"id": 7, "file_name": "a.jpg", "width": 200, "height": 200}],
        boxes=boxes,
        categories=[Category(1, "cat"), Category(2, "dog")],
    )
    if area is not None:
        ds.box_extra["area"] = np.array(area)
    return ds


def test_hand_case_one_hit_one_miss() -> None:
    # 2 cats; one detection hits box 0 exactly (IoU 1), the other cat is missed.
    # Precision is 1 up to recall 0.5 and nothing beyond -> 101-point AP = 51/101 at every IoU.
    gt = _one_image(
        [
            {"image_index": 0, "bbox": [0, 0, 100, 100], "label": 1},
            {"image_index": 0, "bbox": [120, 120, 180, 180], "label": 1},
        ]
    )
    dets = Detections([0], [[0, 0, 100, 100]], [1], [0.9])
    r = coco_metric(gt, dets)
    assert r["AP"] == pytest.approx(51 / 101, abs=1e-12)
    assert r["AR100"] == pytest.approx(0.5, abs=1e-12)
    assert r["per_class"][1]["ap"] == pytest.approx(51 / 101, abs=1e-12)
    assert r["per_class"][1]["ap50"] == pytest.approx(51 / 101, abs=1e-12)
    assert r["per_class"][2]["ap"] is None  # dog has no ground truth
    assert (r["per_class"][1]["num_det"], r["per_class"][2]["num_det"]) == (1, 0)


def test_crowd_box_absorbs_detections_and_is_never_missed() -> None:
    # one cat + one crowd cat; two detections inside the crowd region are ignored, not FPs
    gt = _one_image(
        [
            {"image_index": 0, "bbox": [0, 0, 50, 50], "label": 1},
            {"image_index": 0, "bbox": [100, 100, 200, 200], "label": 1, "iscrowd": True},
        ]
    )
    dets = Detections(
        [0, 0, 0], [[0, 0, 50, 50], [110, 110, 150, 150], [150, 150, 190, 190]], [1, 1, 1], [0.5, 0.9, 0.8]
    )
    r = coco_metric(gt, dets)
    assert r["AP"] == pytest.approx(1.0, abs=1e-12)
    assert r["per_class"][1]["num_gt"] == 1


def test_area_field_decides_size_bucket() -> None:
    # a 100x100 box (box area 10000 = medium... no: > 96^2 = 9216 -> large) whose stored
    # segmentation area is 500 (< 32^2 = 1024 -> small): COCO buckets by the stored area.
    box = [{"image_index": 0, "bbox": [0, 0, 100, 100], "label": 1}]
    dets = Detections([0], [[0, 0, 100, 100]], [1], [0.9])
    with_area = coco_metric(_one_image(box, area=[500.0]), dets)
    assert with_area["APs"] == pytest.approx(1.0) and with_area["APl"] == -1.0
    without_area = coco_metric(_one_image(box), dets)  # falls back to the box area
    assert without_area["APl"] == pytest.approx(1.0) and without_area["APs"] == -1.0


def test_no_detections_gives_zero_ap() -> None:
    gt = _one_image([{"image_index": 0, "bbox": [0, 0, 50, 50], "label": 2}])
    r = coco_metric(gt, Detections.empty())
    assert r["AP"] == 0.0 and r["AR100"] == 0.0


def test_results_use_dataset_image_ids_and_xywh() -> None:
    gt = _one_image([{"image_index": 0, "bbox": [0, 0, 50, 50], "label": 2}])
    rows = coco_results(gt, Detections([0], [[10, 20, 40, 60]], [2], [0.25]))
    assert rows == [{"image_id": 7, "category_id": 2, "bbox": [10.0, 20.0, 30.0, 40.0], "score": 0.25}]


def test_bad_detection_reference_is_a_user_error() -> None:
    gt = _one_image([{"image_index": 0, "bbox": [0, 0, 50, 50], "label": 2}])
    with pytest.raises(SoftSamplingError, match="category id 5"):
        coco_metric(gt, Detections([0], [[0, 0, 5, 5]], [5], [0.5]))
    with pytest.raises(SoftSamplingError, match="image row 3"):
        coco_metric(gt, Detections([3], [[0, 0, 5, 5]], [2], [0.5]))
    with pytest.raises(SoftSamplingError, match="iou_type"):
        coco_metric(gt, Detections.empty(), iou_type="segm")


def test_area_from_the_coco_reader_matters(coco128_json: Path) -> None:
    # Without COCO's stored (segmentation) areas the size buckets change: the box-area fallback
    # is documented, and this shows the equality test above really depends on using the stored area.
    gt = _load_coco_dataset(coco128_json)
    dets = _synthetic_detections(gt, seed=0)
    with_area = coco_metric(gt, dets)
    gt.box_extra["coco_fields"] = [{k: v for k, v in f.items() if k != "area"} for f in gt.box_extra["coco_fields"]]
    box_area = coco_metric(gt, dets)
    assert box_area["AP"] == with_area["AP"]  # AP over all sizes does not use areas
    assert (box_area["APs"], box_area["APm"], box_area["APl"]) != (with_area["APs"], with_area["APm"], with_area["APl"])


# ----------------------------------------------------------------------------- backends, randomized
def _random_case(seed: int) -> tuple[DetectionDataset, Detections]:
    """Small random scenes: crowd boxes, empty images, a class without detections, a class without
    ground truth, tied scores, many detections of one class in one image (beyond maxDets)."""
    rng = np.random.default_rng(seed)
    num_images, num_boxes = 12, 40
    box_image = rng.integers(0, num_images - 3, size=num_boxes)  # the last 3 images stay empty
    xy = rng.uniform(0, 150, size=(num_boxes, 2))
    wh = np.exp(rng.uniform(np.log(4), np.log(120), size=(num_boxes, 2)))
    boxes = [
        {
            "image_index": int(i),
            "bbox": [*p, *(p + s)],
            "label": int(rng.integers(1, 4)),
            "iscrowd": bool(rng.random() < 0.15),
        }
        for i, p, s in zip(box_image, xy, wh, strict=True)
    ]
    gt = DetectionDataset.from_lists(
        images=[{"id": 100 - i, "file_name": f"{i}.jpg", "width": 300, "height": 300} for i in range(num_images)],
        boxes=boxes,
        categories=[Category(c, f"c{c}") for c in (1, 2, 3, 4, 5)],
    )  # 4: no gt; 5: no gt, no dets
    n = 150
    src = rng.integers(0, num_boxes, size=n)
    jitter = rng.normal(0, 0.15, size=(n, 4)) * np.concatenate([wh[src], wh[src]], axis=1)
    det_boxes = np.concatenate([xy[src], xy[src] + wh[src]], axis=1) + jitter
    det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 0.5)
    labels = np.where(rng.random(n) < 0.8, gt.labels[src], rng.choice([1, 2, 4], size=n))
    labels[labels == 3] = np.where(rng.random(int((labels == 3).sum())) < 0.5, 3, 1)
    scores = rng.choice([0.1, 0.3, 0.5, 0.7, 0.9], size=n) if seed % 2 else rng.random(n)  # ties when odd
    image_index = gt.box_image[src]
    crowded = rng.random(n) < 0.1  # extra copies pile onto image 0, class 1
    image_index[crowded], labels[crowded] = 0, 1
    return gt, Detections(image_index, det_boxes, labels, scores)


def _assert_same(ours: dict, ref: dict, tol: float = 1e-12) -> None:
    for name in ref:
        if name != "per_class":
            assert (
                ours[name] == pytest.approx(ref[name], abs=tol)
                if isinstance(ref[name], float)
                else ours[name] == ref[name]
            ), name
    for c, entry in ref["per_class"].items():
        for key, value in entry.items():
            if isinstance(value, float):
                assert ours["per_class"][c][key] == pytest.approx(value, abs=tol), (c, key)
            else:
                assert ours["per_class"][c][key] == value, (c, key)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("max_dets", [(1, 10, 100), (1, 2, 3), (5, 3, 1), (2, 2, 2)])
def test_numpy_backend_equals_pycocotools_randomized(seed: int, max_dets: tuple[int, int, int]) -> None:
    gt, dets = _random_case(seed)
    ref = coco_metric(gt, dets, max_dets=max_dets, backend="pycocotools")
    _assert_same(coco_metric(gt, dets, max_dets=max_dets), ref)


def test_numpy_backend_equals_pycocotools_on_coco128(coco128_json: Path) -> None:
    gt = _load_coco_dataset(coco128_json)
    dets = _synthetic_detections(gt, seed=3)
    _assert_same(coco_metric(gt, dets), coco_metric(gt, dets, backend="pycocotools"))


def test_faster_coco_eval_backend_equals_pycocotools() -> None:
    pytest.importorskip("faster_coco_eval")
    gt, dets = _random_case(0)
    _assert_same(
        coco_metric(gt, dets, backend="faster-coco-eval"), coco_metric(gt, dets, backend="pycocotools"), tol=1e-6
    )


def test_numpy_backend_edge_cases() -> None:
    gt, dets = _random_case(2)
    # no detections at all, and only crowd ground truth for a class
    _assert_same(coco_metric(gt, Detections.empty()), coco_metric(gt, Detections.empty(), backend="pycocotools"))
    crowd_only = _one_image(
        [
            {"image_index": 0, "bbox": [0, 0, 50, 50], "label": 1, "iscrowd": True},
            {"image_index": 0, "bbox": [60, 60, 90, 90], "label": 2},
        ]
    )
    few = Detections([0, 0, 0], [[0, 0, 40, 40], [1, 1, 45, 45], [60, 60, 90, 90]], [1, 1, 2], [0.9, 0.8, 0.7])
    _assert_same(coco_metric(crowd_only, few), coco_metric(crowd_only, few, backend="pycocotools"))
    with pytest.raises(SoftSamplingError, match="unknown COCO backend"):
        coco_metric(gt, dets, backend="fast")

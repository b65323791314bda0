"""Property tests (hypothesis) that the other test files do not already cover.

Already covered elsewhere (see docs/reliability.md): Gompertz / score weights
monotone and within a..1 (tests/sampling/test_weights.py); curation counts,
keep-one, nesting and determinism (tests/data/test_curate.py); VOC metric
perfect = 1 and invariance to detection and image order
(tests/evaluation/test_voc_metric.py).

Here: box IoU (torchvision's and ours: symmetry, bounds, identical boxes = 1,
agreement, invariance to translation and scale); the COCO and Open Images
metrics (AP in [0, 1], perfect detections = 1, invariance to detection order
and to image order); curation that does not depend on the file format the
dataset came from.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from softsampling.evaluation.voc_metric import box_iou_pairs
from softsampling.experiments.overlap_analysis import box_iou
from softsampling.structures.detections import Detections
from softsampling.structures.records import Category, DetectionDataset

coord = st.floats(0.0, 500.0, allow_nan=False, width=32)
size = st.floats(0.5, 300.0, allow_nan=False, width=32)
xywh = st.tuples(coord, coord, size, size)


def to_xyxy(boxes: list[tuple[float, float, float, float]]) -> np.ndarray:
    a = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], axis=1)


# ------------------------------------------------------------------ box IoU
@settings(max_examples=150, deadline=None)
@given(st.lists(xywh, min_size=1, max_size=8), st.lists(xywh, min_size=1, max_size=8))
def test_box_iou_symmetric_bounded_and_one_on_identical_boxes(a_list, b_list):
    a, b = to_xyxy(a_list), to_xyxy(b_list)
    ours = box_iou(a, b)
    assert ours.shape == (len(a), len(b))
    np.testing.assert_array_equal(ours, box_iou(b, a).T)
    assert ((ours >= 0.0) & (ours <= 1.0 + 1e-12)).all()
    np.testing.assert_allclose(np.diag(box_iou(a, a)), 1.0, rtol=1e-12)
    theirs = torchvision.ops.box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(theirs, torchvision.ops.box_iou(torch.from_numpy(b), torch.from_numpy(a)).numpy().T)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(xywh, xywh), min_size=1, max_size=8))
def test_voc_pair_iou_agrees_where_boxes_overlap_and_is_minus_inf_elsewhere(pairs):
    a = to_xyxy([p[0] for p in pairs])
    b = to_xyxy([p[1] for p in pairs])
    pair = box_iou_pairs(a, b)
    full = np.diag(box_iou(a, b))
    overlap = full > 0
    np.testing.assert_allclose(pair[overlap], full[overlap], rtol=1e-12)
    assert (pair[~overlap] == -np.inf).all()
    np.testing.assert_array_equal(pair, box_iou_pairs(b, a))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(xywh, min_size=1, max_size=6),
    st.lists(xywh, min_size=1, max_size=6),
    st.floats(-100, 100),
    st.floats(-100, 100),
    st.sampled_from([0.5, 2.0, 4.0]),
)
def test_box_iou_ignores_translation_and_scale(a_list, b_list, dx, dy, scale):
    a, b = to_xyxy(a_list), to_xyxy(b_list)
    shift = np.array([dx, dy, dx, dy])
    np.testing.assert_allclose(box_iou(a + shift, b + shift), box_iou(a, b), atol=1e-9)
    np.testing.assert_allclose(box_iou(a * scale, b * scale), box_iou(a, b), atol=1e-12)  # powers of 2: exact


# ------------------------------------------------------------------ COCO and Open Images metrics
@st.composite
def scenes(draw):
    """1-4 images of 100x100 px; boxes in disjoint 25-px grid cells (no ambiguous matches), classes 1..3."""
    n_images = draw(st.integers(1, 4))
    images, boxes = [], []
    for i in range(n_images):
        images.append({"id": 10 + i, "file_name": f"{i}.png", "width": 100, "height": 100})
        cells = draw(st.lists(st.integers(0, 15), min_size=1, max_size=5, unique=True))
        for c in cells:
            x, y = 25 * (c % 4) + 2, 25 * (c // 4) + 2
            w, h = draw(st.integers(8, 20)), draw(st.integers(8, 20))
            boxes.append(
                {"image_index": i, "bbox": [x, y, x + w, y + h], "label": draw(st.integers(1, 3)), "id": len(boxes) + 1}
            )
    gt = DetectionDataset.from_lists(
        images=images, boxes=boxes, categories=[Category(k, f"class{k}") for k in (1, 2, 3)]
    )
    n_fp = draw(st.integers(0, 6))
    fps = [
        (
            draw(st.integers(0, n_images - 1)),
            draw(st.integers(0, 80)),
            draw(st.integers(0, 80)),
            draw(st.integers(1, 3)),
        )
        for _ in range(n_fp)
    ]
    return gt, fps


def detections(gt: DetectionDataset, fps: list, seed: int) -> tuple[Detections, Detections]:
    """(perfect detections, perfect + false positives); all scores distinct."""
    rng = np.random.default_rng(seed)
    m = gt.num_boxes
    scores = (rng.permutation(m + len(fps)) + 1) / (m + len(fps) + 1)
    perfect = Detections(gt.box_image.copy(), gt.boxes.astype(np.float64), gt.labels.copy(), scores[:m])
    if not fps:
        return perfect, perfect
    fp_boxes = np.array([[x, y, x + 15, y + 15] for _, x, y, _ in fps], dtype=np.float64)
    noisy = Detections(
        np.concatenate([perfect.image_index, [f[0] for f in fps]]),
        np.concatenate([perfect.boxes, fp_boxes]),
        np.concatenate([perfect.labels, [f[3] for f in fps]]),
        scores,
    )
    return perfect, noisy


def permuted_images(gt: DetectionDataset, dets: Detections, perm: np.ndarray) -> tuple[DetectionDataset, Detections]:
    """The same data with image rows in order ``perm`` (new row k = old row perm[k])."""
    new_row = np.argsort(perm)
    images = [{"id": gt.image_ids[i], "file_name": gt.file_names[i], "width": 100, "height": 100} for i in perm]
    boxes = [
        {
            "image_index": int(new_row[gt.box_image[j]]),
            "bbox": gt.boxes[j].tolist(),
            "label": int(gt.labels[j]),
            "id": int(gt.box_ids[j]),
        }
        for j in range(gt.num_boxes)
    ]
    gt2 = DetectionDataset.from_lists(images=images, boxes=boxes, categories=gt.categories)
    return gt2, Detections(new_row[dets.image_index], dets.boxes, dets.labels, dets.scores)


def coco(gt, dets):
    from softsampling.evaluation.coco_metric import coco_metric

    return coco_metric(gt, dets)


def openimages(gt, dets):
    from softsampling.evaluation.metrics import exhaustive_labels
    from softsampling.evaluation.openimages_metric import openimages_metric

    return openimages_metric(gt, dets, image_labels=exhaustive_labels(gt))


def per_class_ap(result) -> dict:
    return {c: e["ap"] for c, e in result["per_class"].items()}


@settings(max_examples=25, deadline=None)
@given(scenes(), st.integers(0, 2**31 - 1))
def test_coco_and_openimages_metrics_perfect_is_one_bounded_and_order_free(scene, seed):
    gt, fps = scene
    perfect, noisy = detections(gt, fps, seed)
    present = set(gt.labels.tolist())
    rng = np.random.default_rng(seed + 1)
    for metric in (coco, openimages):
        best = metric(gt, perfect)
        assert best["mAP"] == pytest.approx(1.0, abs=1e-12), metric.__name__  # COCO: a mean of 10 ones
        aps = per_class_ap(best)
        assert {int(c) for c in aps} == {1, 2, 3}
        assert all(ap == pytest.approx(1.0, abs=1e-12) for c, ap in aps.items() if int(c) in present)
        base = metric(gt, noisy)
        assert 0.0 <= base["mAP"] <= 1.0
        assert all(ap is None or 0.0 <= ap <= 1.0 for ap in per_class_ap(base).values())
        shuffled = noisy.select(rng.permutation(len(noisy)))
        assert per_class_ap(metric(gt, shuffled)) == per_class_ap(base)
        gt_perm, dets_perm = permuted_images(gt, noisy, rng.permutation(gt.num_images))
        assert per_class_ap(metric(gt_perm, dets_perm)) == per_class_ap(base)


# ------------------------------------------------------------------ curation does not depend on the format
@st.composite
def datasets(draw):
    n_images = draw(st.integers(2, 6))
    images = [{"id": i + 1, "file_name": f"{i + 1:06d}.jpg", "width": 200, "height": 100} for i in range(n_images)]
    boxes = []
    for i in range(n_images):
        for _ in range(draw(st.integers(1, 5))):
            x, y = draw(st.integers(0, 150)), draw(st.integers(0, 60))
            boxes.append(
                {
                    "image_index": i,
                    "bbox": [x, y, x + draw(st.integers(4, 49)), y + draw(st.integers(4, 39))],
                    "label": draw(st.integers(1, 3)),
                    "id": len(boxes) + 1,
                }
            )
    return DetectionDataset.from_lists(
        images=images, boxes=boxes, categories=[Category(k, name) for k, name in ((1, "bird"), (2, "cat"), (3, "dog"))]
    )


@settings(max_examples=20, deadline=None)
@given(datasets(), st.integers(0, 2**32 - 1), st.sampled_from([0.3, 0.5]))
def test_curation_drops_the_same_boxes_whichever_format_the_dataset_came_from(tmp_path_factory, ds, seed, rate):
    from softsampling.data.curate import curate
    from softsampling.data.formats import load_dataset, save_dataset

    folder = tmp_path_factory.mktemp("formats")
    kept = {}
    for fmt, path in (("coco", folder / "d.json"), ("voc", folder / "VOC"), ("openimages", folder / "d.csv")):
        save_dataset(ds, path, fmt)
        options = {}
        if fmt == "openimages":
            (folder / "sizes.csv").write_text(
                "ImageID,width,height\n" + "".join(f"{image_id},200,100\n" for image_id in ds.image_ids)
            )
            options["sizes_csv"] = folder / "sizes.csv"
        back = load_dataset(path, fmt, **options)
        result = curate(back, rate=rate, seed=seed)
        out = result.dataset
        names = out.category_names
        kept[fmt] = sorted(
            (
                str(out.image_ids[out.box_image[j]]).lstrip("0"),
                names[int(out.labels[j])],
                tuple(np.round(out.boxes[j], 3).tolist()),
            )
            for j in range(out.num_boxes)
        )
        assert curate(back, rate=rate, seed=seed).dataset.num_boxes == out.num_boxes  # same seed, same result
    assert kept["coco"] == kept["voc"] == kept["openimages"]

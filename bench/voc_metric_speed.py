"""Speed of the vectorised VOC metric against a per-detection devkit-style reference.

The scene is synthetic but VOC-like: N images with 1..8 ground-truth boxes each
(20 classes, 10% difficult), and K detections per image, a third of them
jittered copies of the ground truth and the rest random boxes of random
classes, scores uniform. Boxes are integer inclusive pixel coordinates, fed to
the reference as they are and to ``voc_ap`` through the reader's mapping
``(xmin-1, ymin-1, xmax, ymax)``; the script checks both agree on every class.

Run from the repository root:

    .venv/bin/python bench/voc_metric_speed.py                      # 5,000 images x 100 detections
    .venv/bin/python bench/voc_metric_speed.py --images 500 --skip-reference
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.evaluation.test_voc_metric

from softsampling.evaluation.voc_metric import voc_ap  # noqa: E402
from softsampling.structures.detections import Detections  # noqa: E402
from softsampling.structures.records import Category, DetectionDataset  # noqa: E402
from tests.evaluation.test_voc_metric import devkit_reference  # noqa: E402


def make_scene(num_images: int, dets_per_image: int, num_classes: int, seed: int):
    """Return (gt_ref, det_ref) as lists of tuples with inclusive pixel boxes (the reference's input)."""
    rng = np.random.default_rng(seed)
    n_gt = rng.integers(1, 9, size=num_images)
    gt_image = np.repeat(np.arange(num_images), n_gt)
    m = len(gt_image)
    xy = rng.integers(1, 400, size=(m, 2))
    wh = rng.integers(10, 200, size=(m, 2))
    gt_box = np.concatenate([xy, xy + wh], axis=1)
    gt_cls = rng.integers(1, num_classes + 1, size=m)
    gt_diff = rng.random(m) < 0.1

    d = num_images * dets_per_image
    det_image = np.repeat(np.arange(num_images), dets_per_image)
    det_box = np.concatenate([rng.integers(1, 400, size=(d, 2)), np.zeros((d, 2), dtype=np.int64)], axis=1)
    det_box[:, 2:] = det_box[:, :2] + rng.integers(10, 200, size=(d, 2))
    det_cls = rng.integers(1, num_classes + 1, size=d)
    # A third of each image's detections copy (with jitter) one of its ground-truth boxes.
    first_gt = np.concatenate([[0], np.cumsum(n_gt)[:-1]])
    copy = rng.random(d) < 1 / 3
    src = first_gt[det_image] + (rng.random(d) * n_gt[det_image]).astype(np.int64)
    jitter = rng.integers(-15, 16, size=(d, 4))
    det_box[copy] = gt_box[src[copy]] + jitter[copy]
    det_box[:, 2:] = np.maximum(det_box[:, 2:], det_box[:, :2])
    det_cls[copy] = gt_cls[src[copy]]
    scores = np.round(rng.random(d), 6)

    gt_ref = list(zip(gt_image.tolist(), gt_cls.tolist(), *gt_box.T.tolist(), gt_diff.tolist(), strict=True))
    det_ref = list(zip(det_image.tolist(), det_cls.tolist(), scores.tolist(), *det_box.T.tolist(), strict=True))
    return gt_ref, det_ref


def to_records(gt_ref, det_ref, num_images: int, num_classes: int):
    gt = np.array([g[:6] for g in gt_ref], dtype=np.float64)
    ds = DetectionDataset(
        image_ids=list(range(num_images)),
        file_names=[f"{i}.jpg" for i in range(num_images)],
        widths=np.full(num_images, 640),
        heights=np.full(num_images, 640),
        box_image=gt[:, 0],
        boxes=np.stack([gt[:, 2] - 1, gt[:, 3] - 1, gt[:, 4], gt[:, 5]], axis=1),
        labels=gt[:, 1],
        box_ids=np.arange(len(gt)),
        iscrowd=np.zeros(len(gt), dtype=bool),
        difficult=np.array([g[6] for g in gt_ref]),
        group_of=np.zeros(len(gt), dtype=bool),
        truncated=np.zeros(len(gt), dtype=bool),
        categories=[Category(c, f"class{c}") for c in range(1, num_classes + 1)],
    )
    det = np.array(det_ref, dtype=np.float64)
    dets = Detections(
        det[:, 0], np.stack([det[:, 3] - 1, det[:, 4] - 1, det[:, 5], det[:, 6]], axis=1), det[:, 1], det[:, 2]
    )
    return ds, dets


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=3, help="timed runs of voc_ap (the best is reported)")
    parser.add_argument("--skip-reference", action="store_true", help="time voc_ap only")
    args = parser.parse_args()

    gt_ref, det_ref = make_scene(args.images, args.dets_per_image, args.classes, args.seed)
    ds, dets = to_records(gt_ref, det_ref, args.images, args.classes)
    print(
        f"machine: {platform.machine()} {platform.processor() or ''} python {platform.python_version()} "
        f"numpy {np.__version__}"
    )
    print(f"scene: {ds.num_images} images, {ds.num_boxes} gt boxes, {len(dets)} detections, {args.classes} classes")

    times = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        result = voc_ap(ds, dets, iou_thresholds=(0.5,))
        times.append(time.perf_counter() - t0)
    fast = min(times)
    print(f"voc_ap (vectorised):       {fast:8.3f} s  (best of {args.repeat}), mAP = {result['mAP']:.6f}")
    t0 = time.perf_counter()
    result7 = voc_ap(ds, dets, iou_thresholds=(0.5, 0.75), use_07_metric=True)
    print(f"voc_ap 11-point, 2 IoUs:   {time.perf_counter() - t0:8.3f} s, mAP = {result7['mAP_per_iou']}")

    if not args.skip_reference:
        t0 = time.perf_counter()
        ref_aps, ref_map = devkit_reference(gt_ref, det_ref, 0.5)
        slow = time.perf_counter() - t0
        diff = max(abs(result["per_class"][c]["ap"] - ap) for c, ap in ref_aps.items())
        print(f"per-detection reference:   {slow:8.3f} s, mAP = {ref_map:.6f}")
        print(f"speed-up: {slow / fast:.1f}x; largest per-class AP difference: {diff:.2e}")
        if diff > 1e-9:
            print("MISMATCH between voc_ap and the reference", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Speed of `softsampling audit`'s ranking: candidates, calibration and summary on N images x K detections.

Target (issue 11): 1M images x 100 detections in < 60 s on 2 cores. The scene
is synthetic: 1..8 annotated boxes per image (20 classes), K detections per
image (a third jittered copies of annotated boxes, the rest random boxes),
scores uniform; a validation split of N/10 images with the same statistics.
Timed: the validation calibration fit, the positive-unlabelled fit (the
fallback without a validation split), ranking (match against the annotations,
calibrate, sort) and the summary. Building the scene is not timed. The time
grows linearly with N x K (every step is O(D) or a sort), so a scaled-down run
is extrapolated to 1M x 100 and the printout says so.

Run from the repository root (the default is scaled down to fit a shared machine):

    OMP_NUM_THREADS=2 .venv/bin/python bench/audit_speed.py                     # 100,000 images x 100
    OMP_NUM_THREADS=2 .venv/bin/python bench/audit_speed.py --images 1000000    # the full target (~12 GB RAM)
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model  # noqa: E402

from softsampling.evaluation import audit  # noqa: E402
from softsampling.structures.detections import Detections  # noqa: E402
from softsampling.structures.records import Category, DetectionDataset  # noqa: E402


def make_scene(num_images: int, per_image: int, num_classes: int, seed: int) -> tuple[DetectionDataset, Detections]:
    rng = np.random.default_rng(seed)
    n_gt = rng.integers(1, 9, size=num_images)
    gt_image = np.repeat(np.arange(num_images), n_gt)
    m = len(gt_image)
    xy = rng.uniform(0, 400, size=(m, 2)).astype(np.float32)
    wh = rng.uniform(10, 100, size=(m, 2)).astype(np.float32)
    gt_boxes = np.concatenate([xy, xy + wh], axis=1)
    gt_labels = rng.integers(1, num_classes + 1, size=m)
    gt = DetectionDataset(
        image_ids=list(range(num_images)),
        file_names=[f"{i}.jpg" for i in range(num_images)],
        widths=np.full(num_images, 500),
        heights=np.full(num_images, 500),
        box_image=gt_image,
        boxes=gt_boxes,
        labels=gt_labels,
        box_ids=np.arange(m),
        iscrowd=np.zeros(m, bool),
        difficult=np.zeros(m, bool),
        group_of=np.zeros(m, bool),
        truncated=np.zeros(m, bool),
        categories=[Category(k, str(k)) for k in range(1, num_classes + 1)],
    )
    d = num_images * per_image
    det_image = np.repeat(np.arange(num_images), per_image)
    copy = rng.random(d) < 1 / 3
    # a jittered copy of a random annotated box of the same image
    first = np.concatenate([[0], np.cumsum(n_gt)[:-1]])
    pick = first[det_image] + (rng.random(d) * n_gt[det_image]).astype(np.int64)
    boxes = np.empty((d, 4), np.float32)
    boxes[copy] = gt_boxes[pick[copy]] + rng.normal(0, 3, size=(int(copy.sum()), 4)).astype(np.float32)
    r_xy = rng.uniform(0, 400, size=(d - int(copy.sum()), 2)).astype(np.float32)
    r_wh = rng.uniform(10, 100, size=(d - int(copy.sum()), 2)).astype(np.float32)
    boxes[~copy] = np.concatenate([r_xy, r_xy + r_wh], axis=1)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    labels = np.where(copy, gt_labels[pick], rng.integers(1, num_classes + 1, size=d))
    scores = rng.random(d).astype(np.float32)
    return gt, Detections(det_image, boxes, labels, scores)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--per-image", type=int, default=100)
    parser.add_argument("--classes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--top", type=int, default=100_000, help="candidates ranked in order (audit --max-candidates)")
    args = parser.parse_args()

    t = time.perf_counter()
    gt, dets = make_scene(args.images, args.per_image, args.classes, args.seed)
    val_gt, val_dets = make_scene(max(1, args.images // 10), args.per_image, args.classes, args.seed + 1)
    print(
        f"scene: {args.images:,} images, {len(dets):,} detections, {gt.num_boxes:,} annotated boxes; "
        f"validation {val_gt.num_images:,} images ({time.perf_counter() - t:.1f} s to build, not timed)"
    )
    ids = [c.id for c in gt.categories]
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}
    t, c = time.perf_counter(), time.process_time()
    cal = audit.fit_validation_calibration(val_gt, val_dets, ids)
    timings["validation calibration"], cpu["validation calibration"] = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    mask = audit.unannotated(gt, dets)
    timings["candidates (IoU with the annotations)"], cpu["candidates (IoU with the annotations)"] = (
        time.perf_counter() - t,
        time.process_time() - c,
    )
    t, c = time.perf_counter(), time.process_time()
    audit.fit_unlabeled_calibration(gt, dets, ids, candidate=mask)
    timings["unlabelled calibration (alternative)"], cpu["unlabelled calibration (alternative)"] = (
        time.perf_counter() - t,
        time.process_time() - c,
    )
    t, c = time.perf_counter(), time.process_time()
    scored = audit.score_candidates(gt, [dets], [cal], masks=[mask])
    timings["calibrated scores"], cpu["calibrated scores"] = time.perf_counter() - t, time.process_time() - c
    t, c = time.perf_counter(), time.process_time()
    cands = audit.rank(scored, args.top)
    timings[f"rank (top {args.top:,})"], cpu[f"rank (top {args.top:,})"] = (
        time.perf_counter() - t,
        time.process_time() - c,
    )
    t, c = time.perf_counter(), time.process_time()
    audit.summarize(gt, scored, detector_recall=cal.detector_recall)
    timings["summary"], cpu["summary"] = time.perf_counter() - t, time.process_time() - c
    main_path = sum(v for k, v in timings.items() if not k.startswith("unlabelled"))
    unlabelled_path = main_path - timings["validation calibration"] + timings["unlabelled calibration (alternative)"]
    main_cpu = sum(v for k, v in cpu.items() if not k.startswith("unlabelled"))
    scale = 1_000_000 * 100 / len(dets)
    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs visible, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
        f"Python {platform.python_version()}, numpy {np.__version__}; load average {os.getloadavg()[0]:.1f}"
    )
    print(f"  {'step':<40} {'wall':>8}   {'CPU (this process)':>18}")
    for name, seconds in timings.items():
        print(f"  {name:<40} {seconds:8.2f} s {cpu[name]:8.2f} s")
    print(
        f"  {'audit (all but the unlabelled fit)':<40} {main_path:8.2f} s for {len(dets):,} detections; "
        f"(CPU {main_cpu:.2f} s); {len(scored):,} candidates, top {len(cands):,} ranked"
    )
    if scale != 1:
        print(
            f"  extrapolated to 1M images x 100 detections (x{scale:g}, linear): {main_path * scale:.1f} s wall, "
            f"{main_cpu * scale:.1f} s CPU "
            f"(target < 60 s); with the unlabelled fit instead: "
            f"{unlabelled_path * scale:.1f} s"
        )


if __name__ == "__main__":
    main()

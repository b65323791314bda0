"""Speed and peak memory of the COCO metric: ours (numpy) vs. pycocotools vs. faster-coco-eval.

The set is synthetic but COCO-like (seeded): 5,000 images (about 0.5% of them
without boxes), 80 classes with Zipf-like frequencies, 32,665 ground-truth
boxes (sizes log-uniform so all three size buckets are filled, ~1% crowd,
stored ``area`` smaller than the box area as COCO's segmentation areas are),
and 100 detections per image = 500,000 detections: jittered copies of the
ground truth (10% with a wrong class) and random boxes, scores higher for the
copies. Some images get more than 100 detections of one class (maxDets).

Each measurement runs in its own subprocess, so its peak RSS (``ru_maxrss``)
is its own; the parent compares the numbers (12 stats and per-class AP) of
every backend with pycocotools'.

Timed, each from in-memory records to the result dict:
  ours          ``coco_metric(gt, dets)`` (numpy backend, the default)
  fce           ``coco_metric(gt, dets, backend="faster-coco-eval")``
  fce-lib       faster-coco-eval alone: COCO(), loadRes, evaluate, accumulate,
                summarize on prebuilt dictionaries (building them is not timed)
  pycocotools   ``coco_metric(gt, dets, backend="pycocotools")``
  sweep         ``coco_metric_sweep(gt, dets, 0:0.9:0.1)`` (10 thresholds, numpy)
  voc, voc-sweep                ``voc_ap`` once, and ``voc_ap_sweep`` over the same 10 thresholds
  openimages, openimages-sweep  ``openimages_metric`` and ``openimages_metric_sweep`` likewise; verified
                image labels: each image's ground-truth classes positive, the other classes it has
                detections of negative (so every detection is evaluated, as in VOC and COCO)

``--repeat N`` runs the whole list N times, interleaved, and prints each
sweep / single-evaluation ratio per repetition (same machine load for both).

Run from the repository root (takes a few minutes; pycocotools alone ~1 min):

    .venv/bin/python bench/coco_metric_speed.py
    .venv/bin/python bench/coco_metric_speed.py --images 500 --skip pycocotools
    .venv/bin/python bench/coco_metric_speed.py --skip fce fce-lib pycocotools --repeat 3
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import cpu_model  # noqa: E402

from softsampling.structures.detections import Detections  # noqa: E402
from softsampling.structures.records import Category, DetectionDataset  # noqa: E402

RUNS = ("ours", "fce", "fce-lib", "pycocotools", "sweep", "voc", "voc-sweep", "openimages", "openimages-sweep")
#: sweep run -> the single evaluation it is compared with
SWEEP_OF = {"sweep": "ours", "voc-sweep": "voc", "openimages-sweep": "openimages"}
SWEEP = [round(0.1 * k, 10) for k in range(10)]


def make_set(
    num_images: int, num_boxes: int, dets_per_image: int, num_classes: int, seed: int
) -> tuple[DetectionDataset, Detections]:
    """The seeded synthetic set described in the module docstring."""
    rng = np.random.default_rng(seed)
    width, height = 640.0, 480.0
    # boxes: image rows uniform (a few images stay empty), Zipf-like classes, log-uniform sizes
    box_image = np.sort(rng.integers(0, num_images, size=num_boxes))
    freq = 1.0 / np.arange(1, num_classes + 1) ** 0.8
    labels = rng.choice(np.arange(1, num_classes + 1), size=num_boxes, p=freq / freq.sum())
    w = np.exp(rng.uniform(np.log(8), np.log(400), size=num_boxes))
    h = np.clip(w * np.exp(rng.normal(0, 0.4, size=num_boxes)), 4, height - 1)
    x1 = rng.uniform(0, width - w)
    y1 = rng.uniform(0, height - h)
    boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1).round(2)
    iscrowd = rng.random(num_boxes) < 0.01
    gt = DetectionDataset(
        image_ids=list(range(1, num_images + 1)),
        file_names=[f"{i:012d}.jpg" for i in range(1, num_images + 1)],
        widths=np.full(num_images, int(width)),
        heights=np.full(num_images, int(height)),
        box_image=box_image,
        boxes=boxes,
        labels=labels,
        box_ids=np.arange(1, num_boxes + 1),
        iscrowd=iscrowd,
        difficult=np.zeros(num_boxes, dtype=bool),
        group_of=np.zeros(num_boxes, dtype=bool),
        truncated=np.zeros(num_boxes, dtype=bool),
        categories=[Category(c, f"class{c}") for c in range(1, num_classes + 1)],
    )
    gt.box_extra["area"] = (w * h * rng.uniform(0.4, 0.9, size=num_boxes)).round(1)

    # detections: per image, copies of its boxes (1-3 each, jittered), random boxes to fill up to dets_per_image
    n_det = num_images * dets_per_image
    det_image = np.repeat(np.arange(num_images), dets_per_image)
    copies = rng.integers(1, 4, size=num_boxes)
    src = np.repeat(np.arange(num_boxes), copies)
    src = src[rng.permutation(len(src))[: n_det // 4]]  # at most a quarter of all detections are copies
    src = np.sort(src)
    det_boxes = np.empty((n_det, 4))
    det_labels = rng.integers(1, num_classes + 1, size=n_det)
    scores = rng.random(n_det) * 0.6
    # place copies at the start of their image's slots
    first_slot = np.searchsorted(det_image, box_image[src])
    slot_in_image = np.arange(len(src)) - np.searchsorted(box_image[src], box_image[src])
    ok = slot_in_image < dets_per_image
    slots = first_slot[ok] + slot_in_image[ok]
    src = src[ok]
    jitter = rng.normal(0, 0.07, size=(len(src), 4)) * np.stack([w[src], h[src], w[src], h[src]], axis=1)
    is_copy = np.zeros(n_det, dtype=bool)
    is_copy[slots] = True
    rx = rng.uniform(0, width - 20, size=n_det)
    ry = rng.uniform(0, height - 20, size=n_det)
    rw = np.exp(rng.uniform(np.log(8), np.log(300), size=n_det))
    rh = np.exp(rng.uniform(np.log(8), np.log(300), size=n_det))
    det_boxes[:] = np.stack([rx, ry, rx + rw, ry + rh], axis=1)
    det_boxes[slots] = boxes[src] + jitter
    det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
    det_labels[slots] = np.where(rng.random(len(src)) < 0.9, labels[src], det_labels[slots])
    scores[slots] = 0.3 + 0.7 * rng.random(len(src))
    # one class crowded in every 50th image: 150 detections of class 1 (beyond maxDets=100)
    crowded = np.flatnonzero((det_image % 50 == 0) & ~is_copy)
    det_labels[crowded] = 1
    dets = Detections(det_image, det_boxes.round(2), det_labels, scores.round(4))
    return gt, dets


def image_labels(gt: DetectionDataset, dets: Detections) -> dict[int, tuple[set[int], set[int]]]:
    """Verified labels for the Open Images metric: ground-truth classes positive, other detected classes negative."""
    positive: dict[int, set[int]] = {i: set() for i in range(gt.num_images)}
    for i, c in set(zip(gt.box_image.tolist(), gt.labels.tolist(), strict=True)):
        positive[i].add(c)
    negative: dict[int, set[int]] = {i: set() for i in range(gt.num_images)}
    for i, c in set(zip(dets.image_index.tolist(), dets.labels.tolist(), strict=True)):
        if c not in positive[i]:
            negative[i].add(c)
    return {i: (positive[i], negative[i]) for i in range(gt.num_images)}


def _worker(run: str, data: Path, out: Path) -> None:
    """One timed run in this process; writes {"seconds", "peak_rss_mb", "stats", "per_class_ap"} to ``out``."""
    from softsampling.evaluation.coco_metric import coco_metric, coco_metric_sweep

    args = json.loads(data.with_suffix(".json").read_text())
    gt, dets = make_set(**args)
    labels = image_labels(gt, dets) if run.startswith("openimages") else None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result: dict | None = None
    if run == "fce-lib":
        from softsampling.evaluation.coco_metric import coco_ground_truth, coco_results

        gt_dict, results = coco_ground_truth(gt), coco_results(gt, dets)
        from faster_coco_eval import COCO, COCOeval_faster

        t0 = time.perf_counter()
        coco_gt = COCO()
        coco_gt.dataset = gt_dict
        coco_gt.createIndex()
        ev = COCOeval_faster(coco_gt, coco_gt.loadRes(results), iouType="bbox", print_function=lambda *a: None)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        seconds = time.perf_counter() - t0
        stats = [float(s) for s in ev.stats]
    elif run.startswith(("voc", "openimages")):
        from softsampling.evaluation.openimages_metric import openimages_metric, openimages_metric_sweep
        from softsampling.evaluation.voc_metric import voc_ap, voc_ap_sweep

        t0 = time.perf_counter()
        if run == "voc":
            result = voc_ap(gt, dets)
        elif run == "voc-sweep":
            sweep = voc_ap_sweep(gt, dets, SWEEP)
        elif run == "openimages":
            result = openimages_metric(gt, dets, image_labels=labels)
        else:
            sweep = openimages_metric_sweep(gt, dets, SWEEP, image_labels=labels)
        seconds = time.perf_counter() - t0
        result = sweep[0] if result is None else result
        stats = [result["mAP"]]
    else:
        t0 = time.perf_counter()
        if run == "sweep":
            sweep = coco_metric_sweep(gt, dets, SWEEP)
            result = sweep[0]
        else:
            backend = {"ours": "numpy", "fce": "faster-coco-eval", "pycocotools": "pycocotools"}[run]
            result = coco_metric(gt, dets, backend=backend)
        seconds = time.perf_counter() - t0
        stats = [
            result[k] for k in ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
        ]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    coco = run in ("ours", "fce", "fce-lib", "pycocotools", "sweep")
    per_class = None if result is None or not coco else {str(c): v["ap"] for c, v in result["per_class"].items()}
    sweep_maps = [r["mAP"] for r in sweep] if run in SWEEP_OF else None
    out.write_text(
        json.dumps(
            {
                "seconds": seconds,
                "peak_rss_mb": peak,
                "rss_before_mb": before,
                "stats": stats,
                "per_class_ap": per_class,
                "sweep": sweep_maps,
            }
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--boxes", type=int, default=32665)
    parser.add_argument("--dets-per-image", type=int, default=100)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip", nargs="*", default=[], choices=RUNS, help="runs to leave out")
    parser.add_argument("--repeat", type=int, default=1, help="run the list this many times (interleaved)")
    parser.add_argument("--worker", choices=RUNS, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker, args.data, args.out)
        return 0

    spec = {
        "num_images": args.images,
        "num_boxes": args.boxes,
        "dets_per_image": args.dets_per_image,
        "num_classes": args.classes,
        "seed": args.seed,
    }
    gt, dets = make_set(**spec)
    from importlib.metadata import version

    print(
        f"machine: {cpu_model()}, {len(__import__('os').sched_getaffinity(0))} cores, python "
        f"{platform.python_version()}, numpy {np.__version__}, pycocotools {version('pycocotools')}, "
        f"faster-coco-eval {version('faster-coco-eval')}"
    )
    print(
        f"set: {gt.num_images} images ({gt.num_images - len(np.unique(gt.box_image))} without boxes), "
        f"{gt.num_boxes} boxes ({int(gt.iscrowd.sum())} crowd), {len(dets)} detections, {args.classes} classes, "
        f"seed {args.seed}"
    )
    del gt, dets
    results: dict[str, dict] = {}
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "set"
        data.with_suffix(".json").write_text(json.dumps(spec))
        for repetition in range(args.repeat):
            for run in RUNS:
                if run in args.skip:
                    continue
                out = Path(tmp) / f"{run}.json"
                subprocess.run(
                    [sys.executable, __file__, "--worker", run, "--data", str(data), "--out", str(out)], check=True
                )
                results[run] = json.loads(out.read_text())
                r = results[run]
                seconds.setdefault(run, []).append(r["seconds"])
                print(
                    f"{run:16s} {r['seconds']:8.2f} s   peak RSS {r['peak_rss_mb']:7.0f} MB "
                    f"(set in memory before timing: {r['rss_before_mb']:.0f} MB)   "
                    f"{'AP' if r['per_class_ap'] is not None or run == 'fce-lib' else 'mAP'} {r['stats'][0]:.6f}",
                    flush=True,
                )
            for sweep_run, single in SWEEP_OF.items():
                if sweep_run in seconds and single in seconds:
                    print(
                        f"repetition {repetition + 1}: {sweep_run} / {single}: "
                        f"{seconds[sweep_run][-1] / seconds[single][-1]:.2f}",
                        flush=True,
                    )

    status = 0
    ref = results.get("pycocotools")
    if ref is not None:
        for run, r in results.items():
            if run not in ("ours", "fce", "fce-lib", "pycocotools", "sweep"):
                continue
            diff = max(abs(a - b) for a, b in zip(r["stats"], ref["stats"], strict=True))
            if r["per_class_ap"] is not None:
                diff = max(
                    [diff] + [abs(a - ref["per_class_ap"][c]) for c, a in r["per_class_ap"].items() if a is not None]
                )
            print(f"{run:12s} largest difference to pycocotools (12 stats, per-class AP): {diff:.1e}")
            status |= diff > 1e-6
    if "ours" in results:
        ours = results["ours"]["seconds"]
        for run in ("fce", "fce-lib", "pycocotools"):
            if run in results:
                print(f"{run} / ours time ratio: {results[run]['seconds'] / ours:.2f}")
        if "fce-lib" in results:
            print(f"ours / faster-coco-eval (library only): {ours / results['fce-lib']['seconds']:.2f} (target <= 1.2)")
    for sweep_run, single in SWEEP_OF.items():
        if sweep_run in seconds and single in seconds:
            ratios = sorted(s / o for s, o in zip(seconds[sweep_run], seconds[single], strict=True))
            print(
                f"10-threshold {sweep_run} / {single} (single evaluation): "
                f"median {ratios[len(ratios) // 2]:.2f} of {', '.join(f'{q:.2f}' for q in ratios)} (target <= 2); "
                f"single {min(seconds[single]):.2f} s, sweep {min(seconds[sweep_run]):.2f} s (best)"
            )
            print(f"{sweep_run} mAP:", " ".join(f"{m:.4f}" for m in results[sweep_run]["sweep"]))
            status |= results[sweep_run]["sweep"][0] != results[single]["stats"][0]
    return int(status)


if __name__ == "__main__":
    sys.exit(main())

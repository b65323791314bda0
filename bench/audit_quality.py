"""How well `softsampling audit` finds the boxes curation dropped, beside cleanlab on the same predictions.

On a curated dataset the curation manifest is the truth: a candidate is a true
positive when it has the class of a dropped box of its image and IoU >= 0.5,
each dropped box counted once. Prints, per detection source:

- AP of the ranking against the dropped boxes, recall at K = #dropped;
- the estimated missing count (sum over classes, with its interval) against
  the true count;
- the same AP and recall for cleanlab's ``compute_overlooked_box_scores`` on
  the same detections (lower score = more likely overlooked; boxes cleanlab
  does not score are left out), when cleanlab is installed (bench/test extra).

Skeleton for issue 11's study (3 seeds x 30%/50% dropped x baseline /
overlap_soft / best extended strategy); the study itself has not been run.
Give it the curated training annotations (COCO; the manifest is found beside
them), each model's detections on the training images (COCO results, e.g.
`softsampling predict --images digits/images/train`; plain, without flip TTA),
and the validation split with each model's detections for the calibration:

    python bench/audit_quality.py --gt digits/annotations/train_drop50.json \\
        --detections runs/oss50/train_dets.json \\
        --val-gt digits/annotations/val.json --val-detections runs/oss50/val_dets.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from softsampling.data.curate import read_manifest
from softsampling.data.formats import load_dataset
from softsampling.evaluation import audit
from softsampling.evaluation.io import read_detections
from softsampling.structures.detections import Detections
from softsampling.structures.records import DetectionDataset


def dropped_dataset(gt: DetectionDataset, manifest_path: Path | None) -> DetectionDataset:
    """The manifest's dropped boxes as a dataset over ``gt``'s images."""
    manifest = read_manifest(manifest_path if manifest_path is not None else gt.extra.get("source", ""))
    row_of = {im: r for r, im in enumerate(gt.image_ids)}
    rows = np.array([row_of[im] for im in manifest.image_ids.tolist()], dtype=np.int64)
    m = len(rows)
    return DetectionDataset(
        image_ids=gt.image_ids,
        file_names=gt.file_names,
        widths=gt.widths,
        heights=gt.heights,
        box_image=rows,
        boxes=manifest.boxes,
        labels=manifest.labels,
        box_ids=np.arange(m),
        iscrowd=np.zeros(m, bool),
        difficult=np.zeros(m, bool),
        group_of=np.zeros(m, bool),
        truncated=np.zeros(m, bool),
        categories=gt.categories,
    )


def cleanlab_ranking(
    gt: DetectionDataset, dets: Detections, threshold: float | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """cleanlab's overlooked-box ranking of ``dets`` (image rows, boxes, labels; most likely overlooked first)."""
    try:
        from cleanlab.object_detection.rank import compute_overlooked_box_scores
    except ImportError:
        return None
    ids = [c.id for c in gt.categories]
    index_of = {c: k for k, c in enumerate(ids)}
    labels, predictions, order = [], [], []
    for row in range(gt.num_images):
        box_rows = gt.box_indices_of(row)
        labels.append(
            {
                "bboxes": gt.boxes[box_rows].astype(np.float64),
                "labels": np.array([index_of[c] for c in gt.labels[box_rows]], dtype=np.int64),
            }
        )
        mine = np.flatnonzero(dets.image_index == row)
        per_class = []
        for cid in ids:
            sel = mine[dets.labels[mine] == cid]
            per_class.append(np.concatenate([dets.boxes[sel], dets.scores[sel, None]], axis=1).astype(np.float64))
            order.append(sel)  # cleanlab scores the boxes class by class, in this order
        predictions.append(per_class)
    # cleanlab scores only predictions above high_probability_threshold (its default 0.95) that overlap no label
    scores = compute_overlooked_box_scores(labels=labels, predictions=predictions, high_probability_threshold=threshold)
    flat_scores = np.concatenate([np.asarray(s, dtype=np.float64).reshape(-1) for s in scores])
    flat_index = np.concatenate(order)
    keep = np.isfinite(flat_scores)
    ranked = flat_index[keep][np.argsort(flat_scores[keep], kind="stable")]
    return dets.image_index[ranked], dets.boxes[ranked], dets.labels[ranked]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gt", type=Path, required=True, help="curated training annotations (COCO)")
    parser.add_argument("--manifest", type=Path, help="curation manifest (default: beside --gt)")
    parser.add_argument("--detections", type=Path, nargs="+", required=True, help="detections on the --gt images")
    parser.add_argument("--val-gt", type=Path, help="validation annotations (COCO) for the calibration")
    parser.add_argument("--val-detections", type=Path, nargs="+", help="each model's detections on --val-gt")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument(
        "--cleanlab-threshold",
        type=float,
        default=None,
        help="cleanlab's high_probability_threshold: only predictions above it are scored "
        "(default: cleanlab's, 0.95 in cleanlab 2.9)",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args()

    gt = load_dataset(args.gt, "coco", option="--gt")
    missing = dropped_dataset(gt, args.manifest or args.gt)
    ids = [c.id for c in gt.categories]
    sets = [read_detections(p, gt) for p in args.detections]
    if args.val_gt is not None:
        val_gt = load_dataset(args.val_gt, "coco", option="--val-gt")
        val_sets = [read_detections(p, val_gt) for p in args.val_detections]
        cals = [audit.fit_validation_calibration(val_gt, v, ids, iou=args.iou) for v in val_sets]
    else:
        cals = [audit.fit_unlabeled_calibration(gt, d, ids, iou=args.iou) for d in sets]
    scored = audit.score_candidates(gt, sets, cals, iou=args.iou)
    ranked = audit.rank(scored)
    rows = audit.summarize(gt, scored, detector_recall=cals[0].detector_recall)
    ours = audit.ranking_quality(missing, ranked.image_index, ranked.boxes, ranked.labels)
    total = rows[-1]
    result = {
        "dropped": missing.num_boxes,
        "ours": ours.to_json(),
        "estimated_missing": None if math.isnan(total.expected_missing) else total.expected_missing,
        "estimated_interval": [total.missing_low, total.missing_high],
        "calibration": cals[0].method,
    }
    print(f"dropped boxes (truth): {missing.num_boxes}; candidates: {len(scored)}")
    print(
        f"ours:     AP {100 * ours.average_precision:5.1f}  recall@{ours.k} {100 * ours.recall_at_k:5.1f}  "
        f"estimated missing {total.expected_missing:.1f} [{total.missing_low:.1f}, {total.missing_high:.1f}] "
        f"vs true {missing.num_boxes}"
    )
    theirs = cleanlab_ranking(gt, sets[0], args.cleanlab_threshold)
    if theirs is None:
        print("cleanlab: not installed (pip install cleanlab; it is in the bench/test extra)")
    else:
        q = audit.ranking_quality(missing, *theirs)
        result["cleanlab"] = q.to_json()
        print(
            f"cleanlab: AP {100 * q.average_precision:5.1f}  recall@{q.k} {100 * q.recall_at_k:5.1f}  "
            f"(compute_overlooked_box_scores on the first --detections)"
        )
    if args.out is not None:

        def clean(value):
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            if isinstance(value, list):
                return [clean(v) for v in value]
            return None if isinstance(value, float) and not math.isfinite(value) else value

        args.out.write_text(json.dumps(clean(result), indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    main()

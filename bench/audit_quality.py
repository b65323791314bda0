"""How well `softsampling audit` finds the boxes curation dropped, beside cleanlab on the same predictions.

On a curated dataset the curation manifest is the truth: a candidate is a true
positive when it has the class of a dropped box of its image and IoU >= 0.5,
each dropped box counted once. Reports, per detection source:

- AP of the ranking against the dropped boxes, recall at K = #dropped;
- the estimated missing count (sum over classes, with its interval) against
  the true count;
- the same AP and recall for cleanlab's ``compute_overlooked_box_scores`` on
  the same detections (lower score = more likely overlooked; boxes cleanlab
  does not score are left out), when cleanlab is installed (bench/test extra).

On a finished `softsampling reproduce` folder (issue 11's study: seeds x
30%/50% dropped x methods), each run predicts its curated training images and
the validation split with horizontal-flip TTA (as `softsampling audit --run`
does), calibrated on the validation split; prints a Markdown table of the
means over seeds and writes every figure as JSON:

    python bench/audit_quality.py --reproduce-dir results/digits --seeds 0,1,2 --rates 0.3,0.5 \
        --methods baseline,overlap_soft,overlap_soft+pseudo_label --cache /tmp/audit_preds --out audit_quality.json

It reads DIR/runs/seedS/METHOD-dropRR-HASH/ (cell_spec.json, model.pt; the
newest finished one when there are several) and the curation manifests beside
the curated files they trained on (DIR/data/curated/seedS/). --cache keeps the
predictions (one COCO results file per run and split) for the next call.
--folds-dir ROOT adds cross-fitted rows where ROOT/seedS/METHOD-dropRR/ is the
--out of `softsampling audit --folds K` on that run (its folds/ folder is read,
nothing is trained here).

Or give one set of detection files directly: the curated training
annotations (COCO; the manifest is found beside them), each model's
detections on the training images (COCO results) and the validation split
with each model's detections for the calibration:

    python bench/audit_quality.py --gt digits/annotations/train_drop50.json \
        --detections runs/oss50/train_dets.json \
        --val-gt digits/annotations/val.json --val-detections runs/oss50/val_dets.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def evaluate(
    gt: DetectionDataset,
    missing: DetectionDataset,
    sets: list[Detections],
    val_gt: DetectionDataset | None,
    val_sets: list[Detections],
    *,
    fold: np.ndarray | None = None,
    iou: float = 0.5,
    cleanlab_threshold: float | None = None,
) -> dict[str, Any]:
    """Our ranking and summary (and cleanlab's ranking of ``sets[0]``) against the ``missing`` boxes.

    Calibrated as `softsampling audit` does: on ``val_gt`` when given, else
    positive-unlabelled on ``gt``; with ``fold`` (cross-fitting) ``sets`` is one
    set of held-out detections and ``val_sets[k]`` fold ``k``'s model's.
    """
    ids = [c.id for c in gt.categories]
    masks = [audit.unannotated(gt, d, iou=iou) for d in sets]

    def fit(dets: Detections, val: Detections | None, mask: np.ndarray) -> audit.Calibration:
        if val_gt is not None and val is not None:
            return audit.fit_validation_calibration(val_gt, val, ids, iou=iou)
        return audit.fit_unlabeled_calibration(gt, dets, ids, iou=iou, candidate=mask)

    cals: list[Any]
    if fold is None:
        cals = [fit(d, val_sets[r] if val_sets else None, masks[r]) for r, d in enumerate(sets)]
    else:
        per_fold = []
        for k in range(int(fold.max()) + 1):
            mine = fold[sets[0].image_index] == k
            per_fold.append(fit(sets[0].select(mine), val_sets[k] if val_sets else None, masks[0][mine]))
        cals = [audit.FoldCalibration(fold, per_fold)]
    scored = audit.score_candidates(gt, sets, cals, iou=iou, masks=masks)
    ranked = audit.rank(scored)
    recall = [c.detector_recall for c in cals if c.detector_recall is not None]
    mean_recall = {k: float(np.mean([r[k] for r in recall])) for k in recall[0]} if recall else None
    total = audit.summarize(gt, scored, detector_recall=mean_recall)[-1]
    result: dict[str, Any] = {
        "dropped": missing.num_boxes,
        "candidates": len(scored),
        "ours": audit.ranking_quality(missing, ranked.image_index, ranked.boxes, ranked.labels, iou=iou).to_json(),
        "estimated_missing": total.expected_missing,
        "estimated_interval": [total.missing_low, total.missing_high],
        "calibration": cals[0].method,
        "cleanlab": None,
    }
    theirs = cleanlab_ranking(gt, sets[0], cleanlab_threshold)
    if theirs is not None:
        result["cleanlab"] = audit.ranking_quality(missing, *theirs, iou=iou).to_json()
    return result


# ------------------------------------------------------------------ a `softsampling reproduce` folder
@dataclass(frozen=True)
class Cell:
    """One finished run of a reproduce folder and the data it trained on (absolute paths)."""

    seed: int
    rate: float
    method: str
    run_dir: Path
    train: Path
    train_images: Path | None
    val: Path | None
    val_images: Path | None
    manifest: Path


def rate_tag(rate: float) -> str:
    """``0.3 -> 'drop30'`` (the reproduce grid's run names)."""
    return f"drop{round(rate * 100):d}"


def find_cell(reproduce_dir: Path, seed: int, rate: float, method: str) -> Cell | None:
    """The finished run ``runs/seedS/METHOD-dropRR-HASH`` (the newest ``model.pt`` if several), or None."""
    from softsampling.data.curate import find_manifest

    name = f"{method}-{rate_tag(rate)}-"
    runs = [
        p
        for p in (reproduce_dir / "runs" / f"seed{seed}").glob(f"{name}*")
        if p.name[len(name) :].isalnum() and (p / "model.pt").is_file() and (p / "cell_spec.json").is_file()
    ]
    if not runs:
        return None
    run_dir = max(runs, key=lambda p: ((p / "model.pt").stat().st_mtime_ns, p.name))
    data = json.loads((run_dir / "cell_spec.json").read_text(encoding="utf-8"))["config"]["data"]

    def path(key: str) -> Path | None:  # the grid writes paths relative to the reproduce folder
        value = data.get(key)
        return None if not value else (reproduce_dir / value if not Path(value).is_absolute() else Path(value))

    train = path("train")
    assert train is not None, f"{run_dir}/cell_spec.json names no data.train"
    manifest = path("manifest") or find_manifest(train)
    if manifest is None:
        raise SystemExit(f"{train}: no curation manifest beside it (fix: run the bench on a curated run)")
    return Cell(seed, rate, method, run_dir, train, path("images"), path("val"), path("val_images"), manifest)


def predict_cached(cell: Cell, gt: DetectionDataset, split: str, cache: Path | None) -> Detections:
    """The run's flip-TTA detections on ``gt`` (read from / written to ``cache`` when given)."""
    from softsampling.evaluation.io import write_detections_coco

    path = None if cache is None else cache / f"seed{cell.seed}" / cell.run_dir.name / f"{split}.json"
    if path is not None and path.is_file():
        return read_detections(path, gt)
    from softsampling.commands.audit import flip_tta_dataset
    from softsampling.engine.predict import load_run

    model, labels, _ = load_run(cell.run_dir, "cpu")
    print(f"predicting {gt.num_images} {split} images with {cell.run_dir} (flip TTA)", file=sys.stderr)
    dets = flip_tta_dataset(model, gt, labels, batch_size=8, device="cpu", progress=False)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_detections_coco(dets, gt, path)
    return dets


def read_folds(audit_dir: Path, gt: DetectionDataset, val_gt: DetectionDataset | None):
    """``softsampling audit --folds`` output: (fold of each image, held-out detections, per-fold val detections)."""
    folds_dir = audit_dir / "folds"
    split = json.loads((folds_dir / "split.json").read_text(encoding="utf-8"))
    fold_of = {image_id: k for image_id, k in split["images"]}
    fold = np.array([fold_of[i] for i in gt.image_ids], dtype=np.int64)
    parts, val_sets = [], []
    for k in range(split["folds"]):
        parts.append(read_detections(folds_dir / f"fold{k + 1}" / "heldout.json", gt))
        if val_gt is not None:
            val_sets.append(read_detections(folds_dir / f"fold{k + 1}" / "val.json", val_gt))
    heldout = Detections(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("image_index", "boxes", "labels", "scores"))
    )
    return fold, heldout, val_sets


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Means over seeds per (rate, method, predictions): AP, recall@K, estimated / true missing, cleanlab AP."""
    groups: dict[tuple[float, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["rate"], row["method"], row["predictions"]), []).append(row)

    def mean(values: list[float | None], scale: float = 1.0, digits: int = 1) -> str:
        clean = [v for v in values if v is not None and math.isfinite(v)]
        if not clean:
            return "–"
        text = f"{scale * float(np.mean(clean)):.{digits}f}"
        return text + (f" ± {scale * float(np.std(clean)):.{digits}f}" if len(clean) > 1 else "")

    lines = [
        "| dropped | method | predictions | seeds | AP (ours) | recall@K | est. / true missing | cleanlab AP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (rate, method, kind), group in sorted(groups.items()):
        ratio = [r["estimated_missing"] / r["dropped"] if r["dropped"] else None for r in group]
        lines.append(
            f"| {round(100 * rate)}% | {method} | {kind} | {len(group)} "
            f"| {mean([r['ours']['average_precision'] for r in group], 100)} "
            f"| {mean([r['ours']['recall_at_k'] for r in group], 100)} "
            f"| {mean(ratio, 1, 3)} "
            f"| {mean([(r['cleanlab'] or {}).get('average_precision') for r in group], 100)} |"
        )
    return "\n".join(lines)


def reproduce_study(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every (seed, rate, method) of ``--reproduce-dir`` (and its cross-fitted audit under ``--folds-dir``)."""
    rows = []
    for seed in args.seeds:
        for rate in args.rates:
            together: list[tuple[Detections, list[Detections]]] = []  # each method's in-sample detections
            gt = missing = val_gt = None
            for method in args.methods:
                cell = find_cell(args.reproduce_dir, seed, rate, method)
                if cell is None:
                    print(f"seed {seed}, {rate_tag(rate)}, {method}: no finished run, skipped", file=sys.stderr)
                    continue
                gt = load_dataset(cell.train, "coco", option="data.train", image_root=cell.train_images)
                missing = dropped_dataset(gt, cell.manifest)
                val_gt = None
                if cell.val is not None:
                    val_gt = load_dataset(cell.val, "coco", option="data.val", image_root=cell.val_images)
                sources = []
                dets = predict_cached(cell, gt, "train", args.cache)
                val = [predict_cached(cell, val_gt, "val", args.cache)] if val_gt is not None else []
                sources.append(("in-sample", [dets], val, None))
                together.append((dets, val))
                audit_dir = (
                    None if args.folds_dir is None else args.folds_dir / f"seed{seed}" / f"{method}-{rate_tag(rate)}"
                )
                if audit_dir is not None and (audit_dir / "folds" / "split.json").is_file():
                    fold, heldout, fold_val = read_folds(audit_dir, gt, val_gt)
                    sources.append(("cross-fitted", [heldout], fold_val, fold))
                for kind, sets, val_sets, fold in sources:
                    result = evaluate(
                        gt,
                        missing,
                        sets,
                        val_gt,
                        val_sets,
                        fold=fold,
                        iou=args.iou,
                        cleanlab_threshold=args.cleanlab_threshold,
                    )
                    result.update(seed=seed, rate=rate, method=method, predictions=kind, run=str(cell.run_dir))
                    rows.append(result)
                    print(f"seed {seed}, {rate_tag(rate)}, {method}, {kind}: {line(result)}", file=sys.stderr)
            if args.ensemble and len(together) >= 2 and gt is not None and missing is not None:
                # every method's run together: `softsampling audit --run A B C` (agreement between runs);
                # the runs trained on the same curated set, so one gt / manifest serves all
                sets = [d for d, _ in together]
                vals = [v[0] for _, v in together if v] if all(v for _, v in together) else []
                result = evaluate(
                    gt, missing, sets, val_gt, vals, iou=args.iou, cleanlab_threshold=args.cleanlab_threshold
                )
                name = "+".join(args.methods)
                result.update(seed=seed, rate=rate, method=f"all runs ({name})", predictions="in-sample")
                rows.append(result)
                print(f"seed {seed}, {rate_tag(rate)}, all runs, in-sample: {line(result)}", file=sys.stderr)
    return rows


def line(result: dict[str, Any]) -> str:
    ours, theirs = result["ours"], result["cleanlab"]
    text = (
        f"AP {100 * ours['average_precision']:5.1f}  recall@{ours['k']} {100 * ours['recall_at_k']:5.1f}  "
        f"estimated missing {result['estimated_missing']:.1f} "
        f"[{result['estimated_interval'][0]:.1f}, {result['estimated_interval'][1]:.1f}] vs true {result['dropped']}"
    )
    if theirs is None:
        return text + "; cleanlab: not installed (pip install -e '.[bench]')"
    return text + f"; cleanlab AP {100 * theirs['average_precision']:5.1f} recall@K {100 * theirs['recall_at_k']:5.1f}"


def json_clean(value: Any) -> Any:
    """``value`` with non-finite floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {k: json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def comma_list(kind: type) -> Any:
    return lambda text: [kind(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--reproduce-dir", type=Path, help="a `softsampling reproduce` output folder")
    source.add_argument("--gt", type=Path, help="curated training annotations (COCO)")
    parser.add_argument("--seeds", type=comma_list(int), default=[0, 1, 2], help="--reproduce-dir: e.g. 0,1,2")
    parser.add_argument("--rates", type=comma_list(float), default=[0.3, 0.5], help="--reproduce-dir: e.g. 0.3,0.5")
    parser.add_argument(
        "--methods",
        type=comma_list(str),
        default=["baseline", "overlap_soft", "overlap_soft+pseudo_label"],
        help="--reproduce-dir: the grid's method names",
    )
    parser.add_argument("--cache", type=Path, help="--reproduce-dir: keep the runs' predictions here")
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="--reproduce-dir: also rank with every --methods run of a (seed, rate) together, as "
        "`softsampling audit --run A B C` does (agreement between runs)",
    )
    parser.add_argument(
        "--folds-dir", type=Path, help="--reproduce-dir: ROOT/seedS/METHOD-dropRR = `audit --folds` outputs"
    )
    parser.add_argument("--manifest", type=Path, help="--gt: curation manifest (default: beside --gt)")
    parser.add_argument("--detections", type=Path, nargs="+", help="--gt: detections on the --gt images")
    parser.add_argument("--val-gt", type=Path, help="--gt: validation annotations (COCO) for the calibration")
    parser.add_argument("--val-detections", type=Path, nargs="+", help="--gt: each model's detections on --val-gt")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument(
        "--cleanlab-threshold",
        type=float,
        default=None,
        help="cleanlab's high_probability_threshold: only predictions above it are scored "
        "(default: cleanlab's, 0.95 in cleanlab 2.9)",
    )
    parser.add_argument("--out", type=Path, help="write the figures as JSON")
    args = parser.parse_args(argv)

    if args.reproduce_dir is not None:
        rows = reproduce_study(args)
        print(markdown_table(rows))
        document: Any = rows
    else:
        if not args.detections:
            parser.error("--gt needs --detections")
        gt = load_dataset(args.gt, "coco", option="--gt")
        missing = dropped_dataset(gt, args.manifest or args.gt)
        sets = [read_detections(p, gt) for p in args.detections]
        val_gt, val_sets = None, []
        if args.val_gt is not None:
            val_gt = load_dataset(args.val_gt, "coco", option="--val-gt")
            val_sets = [read_detections(p, val_gt) for p in args.val_detections or []]
        document = evaluate(
            gt, missing, sets, val_gt, val_sets, iou=args.iou, cleanlab_threshold=args.cleanlab_threshold
        )
        print(f"dropped boxes (truth): {missing.num_boxes}; candidates: {document['candidates']}")
        print(line(document))
    if args.out is not None:
        args.out.write_text(json.dumps(json_clean(document), indent=2, allow_nan=False) + "\n")


if __name__ == "__main__":
    main()

"""Find the annotations a dataset is missing: rank unannotated detections for review.

A candidate is a detection on an annotated (training) image that overlaps no
annotated box (IoU < --iou, any class unless --same-class). Its score is the
detector's confidence calibrated per class into the probability that it is a
real object: isotonic precision on a validation split (--val-gt, or the run's
data.val), else positive-unlabelled calibration on the audited images
themselves. With several --run / --detections (models predicting the same
images) a candidate's score is the mean over them, so agreement counts.

--run RUN [RUN ...]   predict the images of --gt (default: the run's data.train)
                      with each run's model, averaged with the horizontal flip
--detections F [F ...]  predictions of any model instead (COCO results .json with
                      image_id or file_name, or .csv; as `softsampling predict` writes)

Writes into --out DIR:
  candidates.json   COCO results list, best first: image_id, file_name,
                    category_id, bbox [x, y, w, h], score, rank, detector_score, support
  summary.json      per class: annotated boxes, estimated missing boxes with a
                    95% interval, estimated annotation recall (also printed)
  review.html       accept/reject the top --review-top candidates in a browser
                    (keys a/r/u and arrows), export decisions.json for `softsampling audit-merge`

Examples:
  softsampling audit --run runs/oss50 --out audit/
  softsampling audit --gt digits/annotations/train.json --gt-format coco \\
      --detections preds/detections.json --val-gt digits/annotations/val.json \\
      --val-detections preds_val/detections.json --out audit/

See docs/audit.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.errors import SoftSamplingError

GT_FORMATS = ("coco", "voc", "openimages")


def register(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, nargs="+", metavar="RUN", help="run folder(s) of `softsampling train`")
    src.add_argument(
        "--detections",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="detections on the --gt images: COCO results .json or .csv, one file per model",
    )
    parser.add_argument(
        "--gt", type=Path, metavar="PATH", help="annotations to audit (default with --run: the first run's data.train)"
    )
    parser.add_argument(
        "--gt-format", choices=GT_FORMATS, help="format of --gt (default with --run: the run's data.format)"
    )
    parser.add_argument("--images", type=Path, metavar="DIR", help="image folder of --gt")
    parser.add_argument("--split", default=None, help="voc: image set to read from --gt, e.g. trainval")
    parser.add_argument(
        "--val-gt",
        type=Path,
        metavar="PATH",
        help="complete validation annotations (same format) to calibrate on (default with --run: the run's data.val)",
    )
    parser.add_argument("--val-images", type=Path, metavar="DIR", help="image folder of --val-gt")
    parser.add_argument(
        "--val-detections",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="with --detections: each model's detections on --val-gt, in the same order",
    )
    parser.add_argument(
        "--calibration",
        choices=("auto", "validation", "unlabeled", "none"),
        default="auto",
        help="auto (default): validation when a validation split is given, else unlabeled "
        "(positive-unlabelled fit on the audited images); none: raw scores",
    )
    parser.add_argument(
        "--iou",
        type=float,
        default=0.5,
        help="a detection with IoU >= this with an annotated box is not a candidate (default 0.5)",
    )
    parser.add_argument(
        "--same-class",
        action="store_true",
        help="compare a detection with annotated boxes of its own class only (default: any class)",
    )
    parser.add_argument(
        "--agreement-iou",
        type=float,
        default=0.5,
        help="several models: IoU at which their candidates are the same object (default 0.5)",
    )
    parser.add_argument(
        "--max-candidates",
        type=int,
        default=100_000,
        help="candidates written to candidates.json, best first (default 100000; 0: all); "
        "the summary always counts all of them",
    )
    parser.add_argument(
        "--review-top", type=int, default=500, help="candidates shown in review.html, best first (default 500)"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    parser.add_argument("--force", action="store_true", help="overwrite the files of an existing --out")
    parser.add_argument("--device", default="auto", help="--run: auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=8, help="--run: images per forward pass (default 8)")
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="let the annotations name images outside their image folder (refused by default)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from softsampling.io import check_output_path, commit_together, output_lock

    for name in ("iou", "agreement_iou"):
        value = getattr(args, name)
        if not 0.0 <= value <= 1.0:
            raise SoftSamplingError(f"--{name.replace('_', '-')} must lie in [0, 1], got {value}", fix="pass e.g. 0.5")
    if args.review_top < 0 or args.max_candidates < 0 or args.batch_size < 1:
        raise SoftSamplingError(
            "--review-top and --max-candidates must be >= 0, --batch-size >= 1", fix="pass e.g. --review-top 500"
        )
    if args.detections is not None and args.gt is None:
        raise SoftSamplingError(
            "--detections needs --gt and --gt-format", fix="pass the annotations the detections belong to"
        )
    if args.detections is not None and args.gt_format is None:
        raise SoftSamplingError(
            "--gt-format is required with --detections", fix="pass --gt-format coco, voc or openimages"
        )
    if args.val_detections is not None and (
        args.detections is None or args.val_gt is None or len(args.val_detections) != len(args.detections)
    ):
        raise SoftSamplingError(
            "--val-detections needs --detections and --val-gt, one validation file per --detections file",
            fix="give them in the same order",
        )
    inputs = [
        args.gt,
        args.images,
        args.val_gt,
        args.val_images,
        *(args.detections or []),
        *(args.val_detections or []),
        *[r / "model.pt" for r in args.run or []],
    ]
    check_output_path(
        args.out,
        force=args.force,
        folder=True,
        inputs=inputs,
        keep_out_of=[p for p in (args.gt, args.val_gt) if p is not None and p.is_dir()],
    )
    with output_lock(args.out), commit_together():
        return _audit(args)


def _audit(args: argparse.Namespace) -> int:
    from softsampling.evaluation import audit
    from softsampling.evaluation.review import render_review_html, review_items
    from softsampling.io import atomic_write, write_json

    if args.run is not None:
        gt, val_gt, sets, val_sets = _predict_runs(args)
    else:
        gt, val_gt, sets, val_sets = _read_detections(args)
    ids = [c.id for c in gt.categories]
    method = args.calibration
    if method == "auto":
        method = "validation" if val_gt is not None else "unlabeled"
    if method == "validation" and val_gt is None:
        raise SoftSamplingError(
            "--calibration validation needs a validation split",
            fix="pass --val-gt (and --val-detections with --detections), or train the run with data.val",
        )
    masks = [audit.unannotated(gt, dets, iou=args.iou, same_class=args.same_class) for dets in sets]
    calibrations = []
    for r, dets in enumerate(sets):
        if method == "validation":
            cal = audit.fit_validation_calibration(val_gt, val_sets[r], ids, iou=args.iou)
        elif method == "unlabeled":
            cal = audit.fit_unlabeled_calibration(gt, dets, ids, candidate=masks[r])
        else:
            cal = audit.identity_calibration(ids)
        calibrations.append(cal)
    scored = audit.score_candidates(gt, sets, calibrations, agreement_iou=args.agreement_iou, masks=masks)
    rows = audit.summarize(gt, scored, detector_recall=_mean_recall(calibrations))
    cands = audit.rank(scored, args.max_candidates or None)

    entries = audit.candidates_to_json(gt, cands)
    text = json.dumps(entries, ensure_ascii=False, allow_nan=False) + "\n"
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    with atomic_write(args.out / "candidates.json") as f:
        f.write(text)
    write_json(
        args.out / "summary.json",
        {
            "annotations": str(args.gt),
            "sources": [str(p) for p in (args.run or args.detections)],
            "calibration": [c.to_json() for c in calibrations],
            "iou": args.iou,
            "same_class": args.same_class,
            "images": gt.num_images,
            "annotated_boxes": gt.num_boxes,
            "candidates": len(scored),
            "candidates_written": len(cands),
            "candidates_sha256": digest,
            "classes": [r.to_json() for r in rows],
        },
    )
    items = review_items(gt, entries, limit=args.review_top)
    page = render_review_html(
        items, gt.category_names, title=f"softsampling audit: {args.gt}", candidates_sha256=digest, total=len(entries)
    )
    with atomic_write(args.out / "review.html") as f:
        f.write(page)
    print(
        f"{gt.num_images} images, {gt.num_boxes} annotated boxes, {sum(len(s) for s in sets)} detections "
        f"from {len(sets)} model(s); calibration: {method}"
    )
    print(audit.format_summary(rows))
    more = f"; {len(scored) - len(cands)} more not written, see --max-candidates" if len(scored) > len(cands) else ""
    print(
        f"wrote {args.out / 'candidates.json'} ({len(cands)} candidates{more}), {args.out / 'summary.json'}, "
        f"{args.out / 'review.html'} (top {len(items)})"
    )
    return 0


def _mean_recall(calibrations: list[Any]) -> dict[int, float] | None:
    """Per class, the detector recall averaged over the models (None without a validation split)."""
    recalls = [c.detector_recall for c in calibrations if c.detector_recall is not None]
    if not recalls:
        return None
    return {k: float(np.mean([r[k] for r in recalls])) for k in recalls[0]}


def _load(
    path: Path, fmt: str, images: Path | None, args: argparse.Namespace, option: str, *, check_images: bool
) -> Any:
    from softsampling.data.formats import load_dataset

    options: dict[str, Any] = {}
    if check_images:
        from softsampling.data.formats import image_check_options

        options.update(image_check_options(fmt, images, args.allow_outside_root))
    elif images is not None:
        options["image_root"] = images
    if fmt == "voc":
        options["split"] = args.split or "trainval"
    return load_dataset(path, fmt, option=option, **options)


def _read_detections(args: argparse.Namespace) -> tuple[Any, Any, list[Any], list[Any]]:
    from softsampling.evaluation.io import read_detections

    gt = _load(args.gt, args.gt_format, args.images, args, "--gt", check_images=True)
    sets = [read_detections(p, gt) for p in args.detections]
    val_gt, val_sets = None, []
    if args.val_gt is not None and args.calibration != "none":
        val_gt = _load(args.val_gt, args.gt_format, args.val_images, args, "--val-gt", check_images=False)
        if args.val_detections is None:
            raise SoftSamplingError(
                "--val-gt with --detections needs --val-detections (each model's detections on --val-gt)",
                fix="pass --val-detections, or leave out --val-gt",
            )
        val_sets = [read_detections(p, val_gt) for p in args.val_detections]
    return gt, val_gt, sets, val_sets


def _predict_runs(args: argparse.Namespace) -> tuple[Any, Any, list[Any], list[Any]]:
    """Each run's flip-TTA detections on the audited images (and on the validation split)."""
    from softsampling.engine.device import pick_device
    from softsampling.engine.predict import load_run
    from softsampling.io import check_outputs_apart

    device = pick_device(args.device)
    models = [load_run(r, device) for r in args.run]
    _, first_labels, cfg = models[0]
    for r, (_, labels, _) in zip(args.run[1:], models[1:], strict=True):
        if labels != first_labels:
            raise SoftSamplingError(
                "the runs were trained on different classes", file=r, fix="audit with runs trained on the same dataset"
            )
    d = cfg.data
    check_outputs_apart([args.out], [d.train, d.val, d.manifest])
    fmt = args.gt_format or d.format
    given = args.gt is not None
    gt_path = args.gt if given else Path(d.train)
    images = args.images if given else (Path(d.images) if d.images else None)
    args.gt = gt_path
    gt = _load(gt_path, fmt, images, args, "--gt" if given else "the run's data.train", check_images=True)
    _check_classes(gt, first_labels, gt_path)
    val_gt = None
    if args.calibration in ("auto", "validation"):
        if args.val_gt is not None:
            val_gt = _load(args.val_gt, fmt, args.val_images, args, "--val-gt", check_images=True)
            _check_classes(val_gt, first_labels, args.val_gt)
        elif d.val:
            val_images = Path(d.val_images) if d.val_images else None
            val_gt = _load(Path(d.val), fmt, val_images, args, "the run's data.val", check_images=True)
            _check_classes(val_gt, first_labels, Path(d.val))
    sets, val_sets = [], []
    for model, labels, _ in models:
        sets.append(
            flip_tta_dataset(
                model, gt, labels, batch_size=args.batch_size, device=device, progress=not args.no_progress
            )
        )
        if val_gt is not None:
            val_sets.append(
                flip_tta_dataset(
                    model, val_gt, labels, batch_size=args.batch_size, device=device, progress=not args.no_progress
                )
            )
    return gt, val_gt, sets, val_sets


def flip_tta_dataset(model: Any, ds: Any, label_map: Any, *, batch_size: int, device: Any, progress: bool) -> Any:
    """Detections of ``model`` on every image of ``ds``, each averaged with its horizontal flip."""
    from tqdm import tqdm

    from softsampling.engine.data import load_image
    from softsampling.engine.prior import flip_tta_predict
    from softsampling.structures.detections import Detections

    parts = []
    for start in tqdm(
        range(0, ds.num_images, batch_size), disable=not progress, desc="predict (flip TTA)", unit="batch"
    ):
        rows = list(range(start, min(start + batch_size, ds.num_images)))
        images = [load_image(ds.image_path(r)).float().div_(255.0).to(device) for r in rows]
        for r, (boxes, labels, scores) in zip(rows, flip_tta_predict(model, images), strict=True):
            parts.append(
                Detections(np.full(len(scores), r), boxes.numpy(), label_map.to_dataset(labels.numpy()), scores.numpy())
            )
    if not parts:
        return Detections.empty()
    return Detections(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("image_index", "boxes", "labels", "scores"))
    )


def _check_classes(gt: Any, label_map: Any, source: Path) -> None:
    have = gt.category_names
    wrong = [
        f"{cid} {name!r}"
        for cid, name in zip(label_map.category_ids, label_map.names, strict=True)
        if have.get(cid) != name
    ]
    if wrong:
        raise SoftSamplingError(
            f"the annotations lack the run's class(es) {', '.join(wrong)} (as category id and name)",
            file=source,
            fix="audit annotations with the categories the run was trained on",
        )

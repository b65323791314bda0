"""Score detections against ground truth: VOC, COCO and Open Images metrics.

Reads the ground truth (--gt, in --gt-format) and the detections (--detections:
a COCO results JSON, a CSV with header image,label,score,xmin,ymin,xmax,ymax,
or, with --gt-format txt, a folder of one txt per image), prints a per-class
table (AP, #GT, #detections) and the mean, and optionally writes everything as
JSON (--out) and an mAP-vs-score-threshold sweep (--score-thresholds, --plot).

Metrics (--metric):
  voc       VOC2010+ devkit AP (area under the precision envelope), IoU --iou
  voc07     VOC2007 11-point AP at recall np.arange(0, 1.1, 0.1), as py-faster-rcnn,
            detectron2 and mmdetection compute it, IoU --iou
  voc07_exact  the same at the exact recall points k/10 (higher when a recall is
            exactly 0.3, 0.6 or 0.7), IoU --iou
  coco      the 12 COCO numbers, per-class AP@[.5:.95] and AP@.5, equal to pycocotools'
            (--coco-backend numpy|faster-coco-eval|pycocotools)
  openimages  Open Images challenge AP (verified labels, group-of boxes), IoU --iou
Detections of classes the ground truth lacks are ignored and counted in a note;
detections of unknown images are an error.

Examples:
  softsampling evaluate --gt tests/data/cartucho/ground-truth --gt-format txt \\
      --detections tests/data/cartucho/detection-results --metric voc
  softsampling evaluate --gt VOCdevkit/VOC2007 --gt-format voc --split test \\
      --detections dets.csv --metric voc07 --iou 0.5,0.75 --out results.json
  softsampling evaluate --gt instances_val2017.json --gt-format coco --detections results.json \\
      --metric coco --score-thresholds 0:0.9:0.1 --plot sweep.png

See docs/evaluation.md for each metric's exact rules and the file formats.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.data.validate import add_invalid_options
from softsampling.errors import SoftSamplingError
from softsampling.evaluation.metrics import METRICS, metric_function
from softsampling.io import check_output_path, check_outputs_apart, commit_together, output_lock, write_json
from softsampling.structures.detections import Detections
from softsampling.structures.records import DetectionDataset

GT_FORMATS = ("voc", "coco", "openimages", "txt")
# The VOC image set evaluate reads without --split: detectors are scored on test (readers default to trainval).
EVALUATE_VOC_SPLIT = "test"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--run",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="evaluate a trained run: predict with its model on --split (train, val or test, "
        "from the run's config) or on --gt, instead of reading --detections",
    )
    parser.add_argument(
        "--gt",
        type=Path,
        metavar="PATH",
        help="ground truth: VOC folder, COCO JSON, Open Images boxes CSV, or folder of txt files",
    )
    parser.add_argument("--gt-format", choices=GT_FORMATS, help="format of --gt")
    parser.add_argument(
        "--detections",
        type=Path,
        metavar="PATH",
        help="detections: COCO results .json, .csv, or (with --gt-format txt) a folder of txt files",
    )
    parser.add_argument(
        "--detections-format",
        choices=("auto", "coco", "csv"),
        default="auto",
        help="format of a --detections file (default: from the extension, .json or .csv)",
    )
    parser.add_argument("--metric", choices=METRICS, default="voc", help="metric (default: voc)")
    parser.add_argument(
        "--iou",
        default=None,
        metavar="T[,T...]",
        help="IoU threshold(s): voc, voc07 and voc07_exact take several (default 0.5), openimages one; "
        "coco uses its fixed 0.50:0.95",
    )
    parser.add_argument(
        "--coco-backend",
        choices=("numpy", "faster-coco-eval", "pycocotools"),
        default="numpy",
        help="--metric coco: who computes it (default numpy, our vectorised COCOeval; "
        "pycocotools is the reference, all give the same numbers)",
    )
    parser.add_argument(
        "--score-thresholds",
        default=None,
        metavar="START:STOP:STEP",
        help="also compute mAP after dropping detections below each threshold, "
        "e.g. 0:0.9:0.1 (stop included) or 0,0.5,0.9",
    )
    parser.add_argument("--out", type=Path, default=None, metavar="JSON", help="write all results as JSON")
    parser.add_argument(
        "--plot",
        type=Path,
        default=None,
        metavar="PNG",
        help="plot the score-threshold sweep (default thresholds 0:0.9:0.1)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing --out / --plot files")
    fmt = parser.add_argument_group("ground-truth options")
    fmt.add_argument(
        "--split",
        default=None,
        help="with --run: the run's train, val or test split; otherwise voc: image set to evaluate "
        f"(ImageSets/Main/SPLIT.txt, default {EVALUATE_VOC_SPLIT})",
    )
    fmt.add_argument(
        "--images",
        type=Path,
        default=None,
        metavar="DIR",
        help="image folder; txt: image sizes are read from it (otherwise taken from the boxes); "
        "openimages: sizes of <ImageID>.jpg turn the normalised ground truth into pixels",
    )
    fmt.add_argument(
        "--labels",
        type=Path,
        default=None,
        metavar="CSV",
        help="openimages: verified image-level labels CSV (needed by the openimages metric)",
    )
    fmt.add_argument(
        "--classes",
        type=Path,
        default=None,
        metavar="CSV",
        help="openimages: class descriptions CSV (LabelName,DisplayName)",
    )
    fmt.add_argument(
        "--sizes",
        type=Path,
        default=None,
        metavar="CSV",
        help="openimages: image sizes CSV (ImageID,width,height) to turn the normalised ground truth "
        "into pixels, like the detections (or give --images)",
    )
    fmt.add_argument(
        "--hierarchy",
        type=Path,
        default=None,
        metavar="JSON",
        help="openimages metric: class hierarchy JSON to expand the ground truth with",
    )
    add_invalid_options(fmt, what="ground-truth boxes (voc/coco/openimages)")
    fmt.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="with --run: let the annotations name images outside their image folder "
        "(absolute paths, '..', symlinks out); refused by default",
    )


def run(args: argparse.Namespace) -> int:
    thresholds = _sweep_thresholds(args)
    check_outputs(args)
    outputs = [p for p in (args.out, args.plot) if p is not None]
    with contextlib.ExitStack() as stack:
        for path in outputs:  # one run at a time per output; --out and --plot appear together
            stack.enter_context(output_lock(path))
        stack.enter_context(commit_together())
        return _evaluate(args, thresholds)


def check_outputs(args: argparse.Namespace) -> None:
    """--out and --plot: distinct, apart from every input (even with --force), writable; before any work."""
    if args.out is not None and args.plot is not None and os.path.abspath(args.out) == os.path.abspath(args.plot):
        raise SoftSamplingError("--out and --plot name the same file", file=args.out, fix="give them different paths")
    inputs = [args.gt, args.detections, args.images, args.labels, args.classes, args.hierarchy]
    datasets = [p for p in (args.gt, args.detections) if p is not None and p.is_dir()]  # VOC, txt folders
    if args.run is not None:
        from softsampling.engine.checkpoint import FINAL

        inputs.append(args.run / FINAL)
    for path, option in ((args.out, "--out"), (args.plot, "--plot")):
        if path is not None:
            check_output_path(path, force=args.force, option=option, inputs=inputs, keep_out_of=datasets)


def _evaluate(args: argparse.Namespace, thresholds: list[float]) -> int:
    notes: list[str] = []
    gt, dets = load_inputs(args, notes)
    if args.run is not None:
        from softsampling.engine.distributed import is_main_process

        if not is_main_process():  # under torchrun rank 0 holds every detection and reports
            return 0
    report = gt.extra.get("validation_report")
    if report is not None and (report.clipped or report.skipped):
        notes.append(f"ground truth: {report.summary()}")
    exhaustive = args.gt_format != "openimages"
    metric = metric_function(
        args.metric, gt, iou=args.iou, hierarchy=args.hierarchy, exhaustive=exhaustive, coco_backend=args.coco_backend
    )
    if args.metric == "openimages" and not exhaustive and args.labels is None:
        notes.append(
            "no image-level labels (--labels): a class counts as verified only in images with a box of it, "
            "so detections of other classes are ignored rather than counted as false positives"
        )
    result = metric(gt, dets)

    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    split = voc_split(args)
    if split is not None:
        how = "--split" if args.split is not None else "the default; choose another with --split"
        print(f"VOC image set: {split} (ImageSets/Main/{split}.txt, {how})")
    print(f"{gt.num_images} images, {gt.num_boxes} ground-truth boxes, {len(dets)} detections")
    print(format_table(result))

    sweep = None
    if thresholds:
        from softsampling.evaluation.sweep import plot_sweep, score_threshold_sweep

        sweep = score_threshold_sweep(gt, dets, thresholds, metric)
        print("\nscore threshold  mAP")
        for t, m in sweep:
            print(f"{t:15.3f}  {_pct(m):>6}")
        if args.plot is not None:
            plot_sweep(
                {str(args.detections.name): sweep}, args.plot, f"{args.metric} mAP vs. detection score threshold"
            )
            print(f"wrote {args.plot}")

    if args.out is not None:
        write_json(
            args.out,
            _jsonable(
                {
                    "gt": str(args.gt),
                    "gt_format": args.gt_format,
                    "split": split,
                    "detections": str(args.detections),
                    "metric": args.metric,
                    "num_images": gt.num_images,
                    "num_gt_boxes": gt.num_boxes,
                    "num_detections": len(dets),
                    "notes": notes,
                    "result": result,
                    "sweep": None if sweep is None else [{"score_threshold": t, "mAP": m} for t, m in sweep],
                }
            ),
        )
        print(f"wrote {args.out}")
    return 0


# ------------------------------------------------------------------ inputs
def load_inputs(args: argparse.Namespace, notes: list[str]) -> tuple[DetectionDataset, Detections]:
    """Ground truth and detections as the arguments describe them."""
    from softsampling.evaluation.io import read_detections, read_txt_layout

    if args.run is not None:
        return _predict_with_run(args)
    if args.gt is None or args.gt_format is None or args.detections is None:
        raise SoftSamplingError(
            "missing inputs", fix="pass --gt, --gt-format and --detections, or --run RUN_DIR --split test"
        )
    det_is_dir = args.detections.is_dir()
    if not args.detections.exists():
        raise SoftSamplingError("detections do not exist", file=args.detections, fix="check the --detections path")
    if args.gt_format == "txt":
        gt, dets = read_txt_layout(args.gt, args.detections if det_is_dir else None, args.images, notes=notes)
        if dets is not None:
            return gt, dets
    else:
        if det_is_dir:
            raise SoftSamplingError(
                "a folder of detection txt files needs --gt-format txt",
                file=args.detections,
                fix="pass a COCO results .json or a .csv of detections, or ground truth in the txt layout",
            )
        gt = _load_gt(args)
    fmt = None if args.detections_format == "auto" else args.detections_format
    return gt, read_detections(args.detections, gt, fmt=fmt, notes=notes)


def _predict_with_run(args: argparse.Namespace) -> tuple[DetectionDataset, Detections]:
    """Ground truth of the run's split (or --gt) and the run's model's detections on it."""
    from softsampling.engine.device import pick_device
    from softsampling.engine.distributed import distributed_context
    from softsampling.engine.predict import load_run, predict_dataset
    from softsampling.engine.splits import split_dataset

    if args.detections is not None:
        raise SoftSamplingError("--run and --detections exclude each other", fix="pass one of them")
    distributed_context()  # under torchrun: before the model goes to this process's GPU
    device = pick_device("auto")
    model, label_map, cfg = load_run(args.run, device)
    d = cfg.data  # the run's own annotations are inputs too
    check_outputs_apart([args.out, args.plot], [d.train, d.val, d.test, d.manifest])
    if args.gt is not None:
        args.gt_format = args.gt_format or cfg.data.format
        gt = _load_gt(args)
    else:
        if args.split is None:
            raise SoftSamplingError(
                "--run needs --split (train, val or test) or --gt", fix="e.g. --run RUN --split test"
            )
        gt = split_dataset(cfg, args.split, allow_outside_root=args.allow_outside_root)
        args.gt_format = cfg.data.format
    args.detections = args.run / "model.pt"
    return gt, predict_dataset(model, gt, label_map, device=device, progress=True, distributed=True)


def _load_gt(args: argparse.Namespace) -> DetectionDataset:
    from softsampling.data.formats import load_dataset

    options: dict[str, Any] = {"invalid": args.invalid}
    if args.images is not None:
        options["image_root"] = args.images
    if args.run is not None:  # the run's model will read the images: check them first
        from softsampling.data.formats import image_check_options

        options.update(image_check_options(args.gt_format, args.images, args.allow_outside_root))
    split = voc_split(args)
    if split is not None:
        options["split"] = split
    if args.gt_format == "openimages":
        if args.labels is not None:
            options["labels_csv"] = args.labels
        if args.classes is not None:
            options["classes_csv"] = args.classes
        if args.sizes is not None:
            options["sizes_csv"] = args.sizes
    unused = [
        flag
        for flag, value, fmt in (
            ("--split", args.split, "voc"),
            ("--labels", args.labels, "openimages"),
            ("--classes", args.classes, "openimages"),
            ("--sizes", args.sizes, "openimages"),
        )
        if value is not None and args.gt_format != fmt
    ]
    if unused:
        raise SoftSamplingError(
            f"{', '.join(unused)} does not apply to --gt-format {args.gt_format}", fix="leave the option out"
        )
    return load_dataset(args.gt, args.gt_format, option="--gt", **options)


def voc_split(args: argparse.Namespace) -> str | None:
    """The VOC image set read from --gt: --split, else test; None unless --gt is a VOC folder."""
    if args.gt is None or args.gt_format != "voc":
        return None
    return args.split if args.split is not None else EVALUATE_VOC_SPLIT


def _sweep_thresholds(args: argparse.Namespace) -> list[float]:
    from softsampling.evaluation.sweep import parse_thresholds

    if args.score_thresholds is not None:
        return parse_thresholds(args.score_thresholds)
    return parse_thresholds("0:0.9:0.1") if args.plot is not None else []


# ------------------------------------------------------------------ output
def format_table(result: dict[str, Any]) -> str:
    """Per-class table (class, AP column(s), #GT, #det) and the mean, as plain text."""
    per_class = result.get("per_class", {})
    ious = result.get("iou_thresholds") or []
    ap_cols: list[tuple[str, str | int]]  # (column title, key of the per-class AP or its index)
    if result.get("metric") == "coco":
        ap_cols = [("AP", "ap"), ("AP50", "ap50")]
    elif len(ious) > 1:
        ap_cols = [(f"AP@{t:g}", i) for i, t in enumerate(ious)]
    else:
        ap_cols = [(f"AP@{ious[0]:g}" if ious else "AP", "ap")]

    def cell(entry: dict[str, Any], key: str | int) -> str:
        value = entry.get("ap_per_iou", [None] * (key + 1))[key] if isinstance(key, int) else entry.get(key)
        return _pct(value)

    name_w = max([5] + [len(str(e.get("name", c))) for c, e in per_class.items()])
    head = f"{'class':<{name_w}}  " + "  ".join(f"{h:>8}" for h, _ in ap_cols) + f"  {'#GT':>7}  {'#det':>7}"
    lines = [head, "-" * len(head)]
    for cid, entry in per_class.items():
        lines.append(
            f"{str(entry.get('name', cid)):<{name_w}}  "
            + "  ".join(f"{cell(entry, k):>8}" for _, k in ap_cols)
            + f"  {entry.get('num_gt', ''):>7}  {entry.get('num_det', ''):>7}"
        )
    lines.append("-" * len(head))
    scored = sum(1 for e in per_class.values() if e.get("ap") is not None)
    if result.get("metric") == "coco":
        means = [_pct(result.get("AP")), _pct(result.get("AP50"))]
    elif len(ious) > 1:
        means = [_pct(m) for m in result.get("mAP_per_iou", [])]
    else:
        means = [_pct(result.get("mAP"))]
    lines.append(
        f"{'mean':<{name_w}}  "
        + "  ".join(f"{m:>8}" for m in means)
        + f"  ({scored} of {len(per_class)} classes have ground truth)"
    )
    if result.get("metric") == "coco":
        from softsampling.evaluation.coco_metric import COCO_STAT_NAMES

        stats = [f"{k} {_pct(result[k])}" for k in COCO_STAT_NAMES if k in result]
        lines.append("COCO: " + ", ".join(stats))
    return "\n".join(lines)


def _pct(value: Any) -> str:
    """A score as a percentage; "-" when there is none (None, NaN, or COCO's -1 for "no ground truth")."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or float(value) < 0:
        return "-"
    return f"{100.0 * float(value):.2f}"


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars -> Python, tuples -> lists, NaN -> None, keys -> str."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj

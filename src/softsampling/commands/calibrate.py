"""Choose a score threshold per class on a validation split, for `predict --thresholds`.

Runs the trained model of --run on the split's images (the run's config says
where its annotations are: data.val for --split val, data.train for --split
train; --gt overrides that), matches detections to the ground truth as the VOC
metric does (IoU >= --iou, each box matched once), and picks per class the
threshold that is best under --criterion:
  f1             maximise F1 (default); on a tie the higher threshold
  precision=P    the highest recall whose precision is >= P (e.g. precision=0.9)
  recall=R       the fewest detections whose recall is >= R (e.g. recall=0.8)
Prints precision / recall / F1 per class before (every detection scoring >=
--default-threshold, predict's own default 0.05) and after, and writes
thresholds.json: {"criterion", "iou", "split", "default_threshold",
"thresholds": {"<class name>": score}, "per_class": {"<class name>": {...}}}.
Every class of the run gets a threshold; a class the split cannot inform (no
ground truth, no detections, no true positive, target unreachable) keeps
--default-threshold, with a note saying why.

Examples:
  softsampling calibrate --run runs/oss50 --split val
  softsampling calibrate --run runs/oss50 --criterion precision=0.9 --out runs/oss50/thresholds_p90.json
  softsampling predict --run runs/oss50 --images digits/images/test --out preds \\
      --thresholds runs/oss50/thresholds.json

See docs/calibrate.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from softsampling.errors import SoftSamplingError
from softsampling.evaluation.calibrate import CRITERIA_HELP, ClassCalibration, parse_criterion


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="run folder written by `softsampling train`")
    parser.add_argument(
        "--split",
        choices=("val", "train"),
        default="val",
        help="which annotations of the run's config to calibrate on (default: val)",
    )
    parser.add_argument(
        "--gt", type=Path, metavar="PATH", help="calibrate on these annotations instead (in the run's data.format)"
    )
    parser.add_argument("--images", type=Path, help="image folder of --gt (default: the reader's guess)")
    parser.add_argument("--criterion", default="f1", help=f"{CRITERIA_HELP} (default: f1)")
    parser.add_argument("--iou", type=float, default=0.5, help="IoU a detection needs to match a box (default 0.5)")
    parser.add_argument(
        "--default-threshold",
        type=float,
        default=0.05,
        help="the 'before' threshold in [0, 1], kept for classes the split cannot calibrate (default 0.05)",
    )
    parser.add_argument("--out", type=Path, help="output JSON (default: RUN/thresholds.json)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if present")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="let the annotations name images outside their image folder (refused by default)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from softsampling.engine.checkpoint import FINAL
    from softsampling.engine.distributed import distributed_context
    from softsampling.io import check_output_path, output_lock

    parse_criterion(args.criterion)
    if not 0.0 <= args.iou <= 1.0:
        raise SoftSamplingError(f"--iou must lie in [0, 1], got {args.iou}", fix="pass e.g. --iou 0.5")
    if not 0.0 <= args.default_threshold <= 1.0:  # also refuses nan and inf, which JSON cannot hold
        raise SoftSamplingError(
            f"--default-threshold must be a score in [0, 1], got {args.default_threshold}",
            fix="pass e.g. --default-threshold 0.05",
        )
    if args.batch_size < 1:
        raise SoftSamplingError(f"--batch-size must be >= 1, got {args.batch_size}", fix="pass e.g. --batch-size 8")
    out = args.out if args.out is not None else args.run / "thresholds.json"
    check_output_path(
        out,
        force=args.force,
        inputs=[args.run / FINAL, args.gt, args.images],
        keep_out_of=[args.gt] if args.gt is not None and args.gt.is_dir() else [],
    )
    rank, _ = distributed_context()  # under torchrun: before the model goes to this process's GPU
    with output_lock(out):
        return _calibrate(args, out, rank)


def _calibrate(args: argparse.Namespace, out: Path, rank: int) -> int:
    from softsampling.engine.device import pick_device
    from softsampling.engine.predict import load_run, predict_dataset
    from softsampling.evaluation.calibrate import calibrate_thresholds, format_calibration
    from softsampling.io import check_outputs_apart, write_json

    device = pick_device(args.device)
    model, label_map, cfg = load_run(args.run, device)
    d = cfg.data  # the run's own annotations are inputs too
    check_outputs_apart([out], [d.train, d.val, d.manifest])
    if len(set(label_map.names)) != len(label_map.names):
        raise SoftSamplingError(
            f"the run's class names are not unique: {list(label_map.names)}",
            file=args.run,
            fix="thresholds are keyed by class name; rename the duplicate classes and retrain",
        )
    gt, source = _load_split(args, cfg)
    _check_classes(gt, label_map.category_ids, label_map.names, source)

    dets = predict_dataset(
        model,
        gt,
        label_map,
        batch_size=args.batch_size,
        device=device,
        score_threshold=0.0,
        progress=not args.no_progress,
        distributed=True,
    )
    if rank != 0:  # rank 0 holds every detection and writes the result
        return 0
    results = calibrate_thresholds(
        gt,
        dets,
        list(label_map.category_ids),
        iou=args.iou,
        criterion=args.criterion,
        default_threshold=args.default_threshold,
    )

    print(
        f"{gt.num_images} images, {int((~gt.difficult).sum())} ground-truth boxes, {len(dets)} detections "
        f"({args.split if args.gt is None else source}); criterion {args.criterion}, IoU >= {args.iou}"
    )
    print(format_calibration(results))
    write_json(
        out,
        thresholds_document(
            results,
            criterion=args.criterion,
            iou=args.iou,
            split=args.split if args.gt is None else None,
            annotations=str(source),
            run=str(args.run),
            default_threshold=args.default_threshold,
        ),
    )
    print(f"wrote {out}")
    return 0


def thresholds_document(
    results: list[ClassCalibration],
    *,
    criterion: str,
    iou: float,
    split: str | None,
    annotations: str,
    run: str,
    default_threshold: float,
) -> dict[str, Any]:
    """The thresholds.json content; ``thresholds`` is what `predict --thresholds` reads."""
    return {
        "criterion": criterion,
        "iou": iou,
        "split": split,
        "annotations": annotations,
        "run": run,
        "default_threshold": default_threshold,
        "thresholds": {r.name: r.threshold for r in results},
        "per_class": {r.name: r.to_json() for r in results},
    }


def _load_split(args: argparse.Namespace, cfg: Any) -> tuple[Any, Path]:
    """The annotations to calibrate on, and their path."""
    from softsampling.data.formats import image_check_options, load_dataset

    d = cfg.data
    option = "--gt" if args.gt is not None else f"the run's data.{args.split}"
    if args.gt is not None:
        path, images, split = args.gt, args.images, d.val_split
    elif args.split == "val":
        if not d.val:
            raise SoftSamplingError(
                "the run's config has no validation annotations (data.val)",
                file=args.run / "config.yaml",
                fix="pass --gt PATH (and --images DIR)",
            )
        path, images, split = Path(d.val), d.val_images, d.val_split
    else:
        path, images, split = Path(d.train), d.images, d.split
    options = image_check_options(d.format, images, args.allow_outside_root)
    if d.format == "voc":
        options["split"] = split
    return load_dataset(path, d.format, option=option, **options), path


def _check_classes(gt: Any, category_ids: tuple[int, ...], names: tuple[str, ...], source: Path) -> None:
    """The run's classes must be the annotations' classes (same id, same name)."""
    have = gt.category_names
    wrong = [f"{cid} {name!r}" for cid, name in zip(category_ids, names, strict=True) if have.get(cid) != name]
    if wrong:
        raise SoftSamplingError(
            f"the annotations lack the run's class(es) {', '.join(wrong)} (as category id and name)",
            file=source,
            fix="calibrate on annotations with the same categories the run was trained on",
        )

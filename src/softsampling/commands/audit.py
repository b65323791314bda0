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
--folds K             cross-fitting: train K models (with --run's config.yaml, or
                      --config, plus --set), each on K-1 folds of the --gt images,
                      and score each image with the model that did not see it;
                      the models and their predictions stay in DIR/folds/ and a
                      rerun into the same --out reuses (or resumes) them

Writes into --out DIR:
  candidates.json   COCO results list, best first: image_id, file_name,
                    category_id, bbox [x, y, w, h], score, rank, detector_score, support
  summary.json      per class: annotated boxes, estimated missing boxes with a
                    95% interval, estimated annotation recall (also printed)
  review.html       accept/reject the top --review-top candidates in a browser
                    (keys a/r/u and arrows), export decisions.json for `softsampling audit-merge`

Examples:
  softsampling audit --run runs/oss50 --out audit/
  softsampling audit --run runs/oss50 --folds 5 --out audit_cv/
  softsampling audit --gt digits/annotations/train.json --gt-format coco \\
      --detections preds/detections.json --val-gt digits/annotations/val.json \\
      --val-detections preds_val/detections.json --out audit/

See docs/audit.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.errors import SoftSamplingError

GT_FORMATS = ("coco", "voc", "openimages")
FOLDS_DIR = "folds"  # under --out: the cross-fitting models and their predictions


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
    src.add_argument("--config", type=Path, metavar="YAML", help="with --folds: the training config of the fold models")
    parser.add_argument(
        "--folds",
        type=int,
        metavar="K",
        help="cross-fit: train K models, each on K-1 folds of the --gt images (split by image, seeded by the "
        "config's seed), each predicting its held-out fold; kept in OUT/folds/ and reused by a rerun",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --folds: override a key of the fold models' config, e.g. --set train.iterations=200",
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
    if args.folds is None and (args.config is not None or args.overrides):
        raise SoftSamplingError("--config and --set apply only with --folds", fix="add --folds K or drop them")
    if args.folds is not None and args.detections is not None:
        raise SoftSamplingError(
            "--folds trains its own models: it takes --run or --config, not --detections",
            fix="pass --run RUN (its config trains the folds) or --config YAML",
        )
    inputs = [
        args.gt,
        args.images,
        args.val_gt,
        args.val_images,
        *(args.detections or []),
        *(args.val_detections or []),
        *[r / "model.pt" for r in args.run or []],
        args.config,
    ]
    # a cross-fitted audit's --out holding only its fold models is continued without --force
    resuming = args.folds is not None and args.out.is_dir() and set(os.listdir(args.out)) <= {FOLDS_DIR}
    check_output_path(
        args.out,
        force=args.force or resuming,
        folder=True,
        inputs=inputs,
        keep_out_of=[p for p in (args.gt, args.val_gt) if p is not None and p.is_dir()],
    )
    with output_lock(args.out):
        # predictions (and fold models) first: training checkpoints must land as they are written
        fold = None
        if args.folds is not None:
            gt, val_gt, sets, val_sets, fold = _cross_fit(args)
        elif args.run is not None:
            gt, val_gt, sets, val_sets = _predict_runs(args)
        else:
            gt, val_gt, sets, val_sets = _read_detections(args)
        with commit_together():
            return _audit(args, gt, val_gt, sets, val_sets, fold)


def _audit(
    args: argparse.Namespace, gt: Any, val_gt: Any, sets: list[Any], val_sets: list[Any], fold: np.ndarray | None
) -> int:
    """Rank, summarise and write; ``fold`` (cross-fitting): the fold of each image, whose model made
    ``sets[0]`` there and ``val_sets[fold]``."""
    from softsampling.evaluation import audit
    from softsampling.evaluation.review import render_review_html, review_items
    from softsampling.io import atomic_write, write_json

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
    calibrations: list[Any] = []
    if fold is not None:  # one calibration per fold model, each applied to the images it predicted
        per_fold = []
        for k in range(int(fold.max()) + 1):
            if method == "validation":
                per_fold.append(audit.fit_validation_calibration(val_gt, val_sets[k], ids, iou=args.iou))
            elif method == "unlabeled":
                mine = fold[sets[0].image_index] == k
                per_fold.append(
                    audit.fit_unlabeled_calibration(gt, sets[0].select(mine), ids, candidate=masks[0][mine])
                )
            else:
                per_fold.append(audit.identity_calibration(ids))
        calibrations.append(audit.FoldCalibration(fold, per_fold))
    for r, dets in enumerate(sets if fold is None else []):
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
            "sources": [str(p) for p in (args.run or args.detections or [args.config])],
            "folds": args.folds,
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
        f"from {len(sets) if fold is None else int(fold.max()) + 1} model(s)"
        f"{'' if fold is None else ' (cross-fitted)'}; calibration: {method}"
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

    device = pick_device(args.device)
    models = [load_run(r, device) for r in args.run]
    _, first_labels, cfg = models[0]
    for r, (_, labels, _) in zip(args.run[1:], models[1:], strict=True):
        if labels != first_labels:
            raise SoftSamplingError(
                "the runs were trained on different classes", file=r, fix="audit with runs trained on the same dataset"
            )
    gt, val_gt = _audit_data(args, cfg, first_labels)
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


def _audit_data(args: argparse.Namespace, cfg: Any, label_map: Any | None) -> tuple[Any, Any]:
    """The audited annotations (--gt, else the config's data.train; sets ``args.gt``) and the validation
    split to calibrate on (--val-gt, else data.val; None without one or when not calibrating on it);
    with ``label_map``, both must hold its classes."""
    from softsampling.io import check_outputs_apart

    d = cfg.data
    check_outputs_apart([args.out], [d.train, d.val, d.manifest])
    fmt = args.gt_format or d.format
    given = args.gt is not None
    gt_path = args.gt if given else Path(d.train)
    images = args.images if given else (Path(d.images) if d.images else None)
    args.gt = gt_path
    where = "the run's" if args.run is not None else "the config's"
    gt = _load(gt_path, fmt, images, args, "--gt" if given else f"{where} data.train", check_images=True)
    if label_map is not None:
        _check_classes(gt, label_map, gt_path)
    val_gt = None
    if args.calibration in ("auto", "validation"):
        if args.val_gt is not None:
            val_path, val_images, option = args.val_gt, args.val_images, "--val-gt"
        elif d.val:
            val_path, val_images = Path(d.val), Path(d.val_images) if d.val_images else None
            option = f"{where} data.val"
        else:
            return gt, None
        val_gt = _load(val_path, fmt, val_images, args, option, check_images=True)
        if label_map is not None:
            _check_classes(val_gt, label_map, val_path)
    return gt, val_gt


def _cross_fit(args: argparse.Namespace) -> tuple[Any, Any, list[Any], list[Any], np.ndarray]:
    """``--folds``: the fold models' out-of-sample detections (see the ``CROSS-FITTING`` note below)."""
    cfg = _fold_config(args)
    gt, val_gt = _audit_data(args, cfg, None)
    fold, heldout, val_sets = _train_and_predict_folds(args, cfg, gt, val_gt, args.gt)
    return gt, val_gt, [heldout], val_sets, fold


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


# ------------------------------------------------------------------ CROSS-FITTING (--folds)
# `softsampling audit --folds K`: cross-fitted (out-of-sample) predictions on the audited images.
#
# The audited images are split into K folds by image (seeded, see
# :func:`softsampling.evaluation.audit.fold_assignment`); model ``k`` trains on
# the other K-1 folds and predicts fold ``k`` (with horizontal-flip TTA), so no
# image is scored by a model that saw its annotations. Everything lives under
# ``OUT/folds/`` and is reused by a rerun into the same ``--out``:
#
#   split.json            K, seed, the annotations and the fold of every image id
#   foldK/train.json      the K-1 training folds (COCO JSON; image paths as in --gt)
#   foldK/run/            the training run (a finished one is reused, an unfinished one resumed)
#   foldK/heldout.json    its detections on fold K (COCO results; reused)
#   foldK/val.json        its detections on the validation split (for the calibration; reused)


def _fold_config(args: argparse.Namespace) -> Any:
    """The config the fold models train with: ``--config`` or the run's config.yaml, then ``--set``."""
    from softsampling.engine.config import apply_overrides, load_config

    if args.config is not None:
        path = args.config
    else:
        if len(args.run) != 1:
            raise SoftSamplingError(
                "--folds takes one --run (its config.yaml trains the fold models)", fix="pass one --run, or --config"
            )
        path = args.run[0] / "config.yaml"
        if not path.is_file():
            raise SoftSamplingError("the run has no config.yaml", file=args.run[0], fix="pass --config instead")
    return apply_overrides(load_config(path), args.overrides or [])


def _split_document(gt: Any, fold: np.ndarray, folds: int, seed: int, gt_path: Path) -> dict[str, Any]:
    ids = [i.item() if isinstance(i, np.generic) else i for i in gt.image_ids]
    return {
        "folds": folds,
        "seed": seed,
        "annotations": str(gt_path),
        "images": [[image_id, int(k)] for image_id, k in zip(ids, fold.tolist(), strict=True)],
    }


def _train_and_predict_folds(
    args: argparse.Namespace, cfg: Any, gt: Any, val_gt: Any, gt_path: Path
) -> tuple[np.ndarray, Any, list[Any]]:
    """Train (or reuse) the K fold models; return the fold of each image, the held-out detections of all
    folds as one set, and each fold model's detections on ``val_gt`` (empty without it)."""
    from softsampling.data.coco import write_coco
    from softsampling.engine.device import pick_device
    from softsampling.engine.predict import load_run
    from softsampling.engine.train import train
    from softsampling.evaluation.audit import fold_assignment
    from softsampling.evaluation.io import read_detections, write_detections_coco
    from softsampling.io import write_json
    from softsampling.structures.detections import Detections

    k_folds = args.folds
    if not 2 <= k_folds <= gt.num_images:
        raise SoftSamplingError(
            f"--folds {k_folds} needs 2 <= K <= the number of images ({gt.num_images})", fix="pass e.g. --folds 5"
        )
    folds_dir = args.out / FOLDS_DIR
    fold = fold_assignment(gt.num_images, k_folds, cfg.seed)
    split = _split_document(gt, fold, k_folds, cfg.seed, gt_path)
    split_path = folds_dir / "split.json"
    if split_path.exists():
        try:
            previous = json.loads(split_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SoftSamplingError(f"unreadable ({exc})", file=split_path, fix="delete the folds folder") from None
        if previous != split:
            raise SoftSamplingError(
                "the fold models there were trained on another split (other --folds, seed or annotations)",
                file=split_path,
                fix="choose another --out, or delete its folds folder to train new fold models",
            )
    else:
        write_json(split_path, split)
    device = pick_device(args.device)
    root = gt.image_root.resolve() if gt.image_root is not None else Path.cwd()
    progress = not args.no_progress
    parts, val_sets = [], []
    for k in range(k_folds):
        here = folds_dir / f"fold{k + 1}"
        train_path, run_dir = here / "train.json", here / "run"
        heldout_path, val_path = here / "heldout.json", here / "val.json"
        held = fold == k
        if not (run_dir / "DONE").exists():
            for stale in (heldout_path, val_path):
                stale.unlink(missing_ok=True)
            if not (run_dir / "last.pt").exists():  # the data of a started run stays as it was
                write_coco(gt.select_images(~held), train_path)
            # the fold models are audit tools: the audit predicts the validation split itself
            data = dataclasses.replace(
                cfg.data,
                format="coco",
                train=str(train_path),
                images=str(root),
                split="trainval",
                val=None,
                val_images=None,
                test=None,
                test_images=None,
            )
            print(f"fold {k + 1}/{k_folds}: training on {int((~held).sum())} images -> {run_dir}")
            train(
                dataclasses.replace(cfg, data=data),
                run_dir,
                resume=True,
                progress=progress,
                allow_outside_root=args.allow_outside_root,
                report=False,
            )
        rows = np.flatnonzero(held)
        held_gt = gt.select_images(held)
        model = None
        if heldout_path.exists():
            dets = read_detections(heldout_path, held_gt)
        else:
            model, labels, _ = load_run(run_dir, device)
            dets = flip_tta_dataset(
                model, held_gt, labels, batch_size=args.batch_size, device=device, progress=progress
            )
            write_detections_coco(dets, held_gt, heldout_path)
        parts.append(Detections(rows[dets.image_index], dets.boxes, dets.labels, dets.scores))
        if val_gt is not None:
            if val_path.exists():
                val_sets.append(read_detections(val_path, val_gt))
            else:
                if model is None:
                    model, labels, _ = load_run(run_dir, device)
                val_dets = flip_tta_dataset(
                    model, val_gt, labels, batch_size=args.batch_size, device=device, progress=progress
                )
                write_detections_coco(val_dets, val_gt, val_path)
                val_sets.append(val_dets)
    heldout = Detections(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("image_index", "boxes", "labels", "scores"))
    )
    return fold, heldout, val_sets

"""One cell of the reproduction grid, run as its own process: train, then evaluate.

Usage (``softsampling reproduce`` does this for you, in the output folder)::

    python -m softsampling.experiments.cell OUT/runs/seed0/baseline-full-<digest>/cell_spec.json

The spec (written by :mod:`softsampling.experiments.grid`) holds the resolved
run config, the run folder and the evaluation settings. The cell

1. trains with :func:`softsampling.engine.train.train` (``resume=True``: an
   interrupted run continues from its last checkpoint; a run with ``DONE`` is
   not trained again);
2. predicts on the test set and computes VOC mAP (area under the precision
   envelope) at IoU 0.5 -- or, with ``"metric": "openimages"``, the official
   Open Images metric at IoU 0.5 with the test split's verified image-level
   labels -- and the score-threshold sweep (mAP after discarding detections
   below each threshold, the paper's Fig. 2);
3. optionally does the same on (the first N images of) the fully annotated
   training set;
4. writes ``results.json`` in the run folder atomically. Besides the test
   (and train) scores it records what training already measured
   (:func:`run_extras`): ``"val"``, the validation mAP training computed after
   its last step (``None`` without a validation split), and
   ``"pseudo_boxes"``, the pseudo-box numbers of a pseudo-label run (``None``
   for other strategies). Readers must accept ``results.json`` files written
   before these two keys existed (:func:`run_extras` recomputes them from the
   run folder).

Under ``torchrun`` every process trains; only rank 0 evaluates and writes.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from softsampling.io import write_json


def evaluate_detections(
    gt: Any, dets: Any, *, thresholds: list[float], iou: float = 0.5, metric_name: str = "voc"
) -> dict[str, Any]:
    """mAP of ``dets`` on ``gt`` (``metric_name`` ``voc`` or ``openimages``) and the score-threshold sweep.

    ``openimages`` uses the image-level labels the reader kept
    (``read_openimages(..., labels_csv=...)``) as the verified labels.
    Returns ``{"mAP": float, "per_class": {category_id: ap}, "num_images",
    "num_detections", "sweep": {"thresholds": [...], "mAP": [...]}}`` with mAP
    as a fraction in [0, 1].
    """
    from functools import partial

    from softsampling.evaluation.sweep import score_threshold_sweep

    if metric_name == "openimages":
        from softsampling.evaluation.openimages_metric import ImageLabels, openimages_metric

        metric = partial(openimages_metric, image_labels=ImageLabels.from_dataset(gt), iou=iou)
    else:
        from softsampling.evaluation.voc_metric import voc_ap

        metric = partial(voc_ap, iou_thresholds=(iou,), use_07_metric=False)
    result = metric(gt, dets)
    sweep = [float(m) for _, m in score_threshold_sweep(gt, dets, thresholds, metric)]
    return {
        "mAP": float(result["mAP"]),
        "per_class": {str(k): v["ap"] for k, v in result["per_class"].items()},
        "num_images": int(gt.num_images),
        "num_detections": int(len(dets)),
        "sweep": {"thresholds": [float(t) for t in thresholds], "mAP": sweep},
    }


def check_same_classes(label_map: Any, gt: Any, path: str) -> None:
    """The model's classes must be the evaluation data's (same ids, same names), or every AP is wrong."""
    from softsampling.errors import SoftSamplingError

    have = [(c.id, c.name) for c in gt.categories]
    trained = list(zip(label_map.category_ids, label_map.names, strict=True))
    if have != trained:
        raise SoftSamplingError(
            f"the model was trained on {len(trained)} classes that differ from the {len(have)} classes of the "
            "evaluation data (ids and names must match)",
            file=path,
            fix="train and evaluate on splits with the same classes (e.g. both files of one openimages-subset folder)",
        )


def evaluate_run(run_dir: Path, evaluation: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Load the trained model of ``run_dir`` and evaluate it as ``evaluation`` says (see the module docstring)."""
    from softsampling.engine.predict import load_run, predict_dataset
    from softsampling.experiments.grid import SplitSpec

    model, label_map, _ = load_run(run_dir, device=device)
    out: dict[str, Any] = {}
    for split in ("test", "train"):
        spec = evaluation.get(split)
        if not spec:
            out[split] = None
            continue
        gt = SplitSpec(spec["path"], spec["format"], spec.get("options", {})).load()
        limit = evaluation.get("train_images") if split == "train" else None
        if limit is not None and gt.num_images > limit:
            gt = gt.select_images(np.arange(gt.num_images) < limit)
        if evaluation.get("metric") == "openimages":  # ids follow each file's LabelNames: check they agree
            check_same_classes(label_map, gt, spec["path"])
        dets = predict_dataset(model, gt, label_map, batch_size=int(evaluation.get("batch_size", 8)), device=device)
        out[split] = evaluate_detections(
            gt,
            dets,
            thresholds=list(evaluation["sweep_thresholds"]),
            iou=float(evaluation.get("iou", 0.5)),
            metric_name=str(evaluation.get("metric", "voc")),
        )
    return out


def final_val_map(run_dir: Path) -> dict[str, Any] | None:
    """The validation mAP@0.5 training computed after its last step, from the run's ``metrics.jsonl``.

    Returns ``{"mAP": fraction, "iteration": N}`` of the last line with ``val_mAP50``, or ``None`` when
    the run had no validation split (or no log). A line torn by a kill is skipped.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    found = None
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and record.get("val_mAP50") is not None:
            found = {"mAP": float(record["val_mAP50"]), "iteration": int(record["iteration"])}
    return found


def pseudo_box_numbers(run_dir: Path) -> dict[str, Any] | None:
    """The pseudo boxes of a pseudo-label run, from its ``pseudo_boxes_summary.json`` (``None`` without one).

    Returns ``{"count", "images", "dropped_boxes", "matched_dropped", "precision_vs_dropped",
    "recall_vs_dropped"}``; the last four are ``None`` when training found no curation manifest (full
    annotations), precision also when there are no pseudo boxes (see
    :func:`softsampling.engine.prior.prepare_pseudo_boxes`).
    """
    path = Path(run_dir) / "pseudo_boxes_summary.json"
    if not path.exists():
        return None
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None  # cut by a kill: as if absent
    against = summary.get("against_dropped") or {}
    return {
        "count": int(summary["pseudo_boxes"]),
        "images": int(summary.get("images_with_pseudo_boxes", 0)),
        "dropped_boxes": against.get("dropped_boxes"),
        "matched_dropped": against.get("matched_dropped"),
        "precision_vs_dropped": against.get("precision_vs_dropped"),
        "recall_vs_dropped": against.get("recall_vs_dropped"),
    }


def run_extras(run_dir: Path) -> dict[str, Any]:
    """``{"val": final_val_map(...), "pseudo_boxes": pseudo_box_numbers(...)}`` of a trained run folder."""
    return {"val": final_val_map(run_dir), "pseudo_boxes": pseudo_box_numbers(run_dir)}


def run_cell(spec_path: Path) -> int:
    """Train and evaluate the cell described by ``spec_path``; 0 on success."""
    import torch
    import torch.distributed as dist

    from softsampling.engine.config import RunConfig, config_from_dict
    from softsampling.engine.train import train

    spec = json.loads(Path(spec_path).read_text(encoding="utf-8"))
    cfg: RunConfig = config_from_dict(spec["config"])
    run_dir = Path(spec["run_dir"])
    timing_path = run_dir / "timing.json"
    rank = int(os.environ.get("RANK", "0"))  # set by torchrun

    if not (run_dir / "DONE").exists():
        tic = time.perf_counter()
        train(cfg, run_dir, resume=True, progress=False, report=False)
        if dist.is_initialized():
            dist.destroy_process_group()
        if rank != 0:
            return 0
        previous = json.loads(timing_path.read_text()) if timing_path.exists() else {}
        train_seconds = float(previous.get("train_seconds", 0.0)) + time.perf_counter() - tic
        write_json(timing_path, {"train_seconds": round(train_seconds, 2)})
    if rank != 0:
        return 0
    timing = json.loads(timing_path.read_text()) if timing_path.exists() else {}

    tic = time.perf_counter()
    device = "cuda" if torch.cuda.is_available() and cfg.train.device != "cpu" else "cpu"
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    scores = evaluate_run(run_dir, spec["evaluation"], device=device)
    results = {
        "key": spec["key"],
        "seed": spec["seed"],
        "method": spec["method"],
        "rate": spec["rate"],
        "run_dir": spec["run_dir"],
        "config_digest": cfg.digest(),
        "strategy": cfg.strategy,
        "iterations": cfg.train.iterations,
        "evaluation": spec["evaluation"],
        "test": scores["test"],
        "train": scores["train"],
        **run_extras(run_dir),
        "train_seconds": timing.get("train_seconds"),
        "eval_seconds": round(time.perf_counter() - tic, 2),
    }
    write_json(run_dir / "results.json", results)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m softsampling.experiments.cell CELL_SPEC.json", file=sys.stderr)
        return 2
    from softsampling.errors import SoftSamplingError

    try:
        return run_cell(Path(args[0]))
    except SoftSamplingError as exc:
        print(f"cell failed: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Round one of two-round strategies: the prior (score soft sampling) and the teacher (pseudo labels).

Score soft sampling:

The paper trains a detector on the curated data, then weights each background
RoI of the second round by ``G(s, T)`` where ``s`` is that detector's score
and ``T`` a per-class threshold: the median score of the annotated boxes of
the class on the training set. :func:`prepare_prior` loads the prior run
(``prior_run``), computes ``T`` by scoring every annotated training box, and
writes ``score_soft_thresholds.json`` into the new run folder.

Pseudo labels (:func:`prepare_pseudo_boxes`): the prior run is the teacher.
It predicts the validation split and every training image, each averaged over
horizontal-flip test-time augmentation; per class, the threshold is the lowest
score whose validation precision reaches ``pseudo_precision`` (calibration's
``precision=P`` criterion); a training detection above its threshold that
duplicates no annotation becomes a pseudo box. The run folder receives
``pseudo_boxes.json`` (COCO, with scores) and ``pseudo_boxes_summary.json``
(per class: threshold, validation precision/recall, count and, when the
curation manifest is found, precision and recall against the dropped boxes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from softsampling.engine.data import DetectionTrainingSet
from softsampling.errors import SoftSamplingError
from softsampling.io import write_json


def prepare_prior(
    cfg, train_set: DetectionTrainingSet, out_dir: Path | None, device: torch.device, *, batch_size: int = 16
) -> tuple[torch.nn.Module, torch.Tensor]:
    """Load ``cfg.prior_run``'s detector (frozen) and compute ``T`` [C] on ``train_set``."""
    from softsampling.engine.predict import load_run
    from softsampling.model import PriorScorer
    from softsampling.sampling import median_thresholds

    prior_dir = Path(cfg.prior_run)
    prior, prior_labels, prior_cfg = load_run(prior_dir, device)
    if prior_labels != train_set.label_map:
        raise SoftSamplingError(
            "the prior run was trained on different classes",
            file=prior_dir,
            fix="use a run trained on the same dataset (usually the baseline on the same curated data)",
        )
    check_prior_transform(cfg, prior, prior_dir)
    scorer = PriorScorer(prior)
    scores, labels = [], []
    for start in range(0, len(train_set), batch_size):
        rows = range(start, min(start + batch_size, len(train_set)))
        images, boxes, cls = [], [], []
        for r in rows:
            image, target = train_set[r]
            images.append(image)
            boxes.append(target["boxes"])
            cls.append(target["labels"])
        for s, c in zip(scorer.score_images(images, boxes), cls, strict=True):
            scores.append(s.cpu().gather(1, c.view(-1, 1)).view(-1))
            labels.append(c)
    gt_scores = torch.cat(scores) if scores else torch.zeros(0)
    gt_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    thresholds = median_thresholds(gt_scores, gt_labels, train_set.label_map.num_classes)
    if out_dir is not None:
        names = train_set.label_map.names
        write_json(
            out_dir / "score_soft_thresholds.json",
            {
                "prior_run": str(prior_dir),
                "rule": "T = median prior score of the annotated training boxes of each class",
                "thresholds": {n: round(float(t), 6) for n, t in zip(names, thresholds[1:].tolist(), strict=True)},
                "boxes_scored": {n: int((gt_labels == i + 1).sum()) for i, n in enumerate(names)},
            },
        )
    return prior, thresholds


@torch.no_grad()
def flip_tta_predict(
    model: torch.nn.Module, images: list[torch.Tensor]
) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The detector's (boxes, model labels, scores) per image, averaged with its horizontal flip (on CPU).

    ``images``: float [3, H, W] in 0..1 on the model's device. See
    :func:`softsampling.sampling.pseudo.merge_flip_detections`.
    """
    from softsampling.sampling.pseudo import flip_boxes, merge_flip_detections

    model.eval()
    plain = model(images)
    flipped = model([image.flip(-1) for image in images])
    out = []
    for image, a, b in zip(images, plain, flipped, strict=True):
        a = {k: v.cpu() for k, v in a.items()}
        b = {k: v.cpu() for k, v in b.items()}
        back = flip_boxes(b["boxes"], image.shape[-1])
        out.append(merge_flip_detections(a["boxes"], a["labels"], a["scores"], back, b["labels"], b["scores"]))
    return out


def prepare_pseudo_boxes(
    cfg,
    train_set: DetectionTrainingSet,
    out_dir: Path | None,
    device: torch.device,
    *,
    allow_outside_root: bool = False,
    batch_size: int = 16,
) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The teacher's pseudo boxes per training image row: (boxes [P, 4], model labels [P], scores [P])."""
    from softsampling.data.curate import find_manifest, read_manifest
    from softsampling.engine.config import composition_of
    from softsampling.engine.data import load_image
    from softsampling.engine.predict import load_run
    from softsampling.engine.splits import split_dataset
    from softsampling.evaluation.calibrate import calibrate_thresholds
    from softsampling.sampling.pseudo import select_pseudo_boxes
    from softsampling.structures.detections import Detections

    params = composition_of(cfg).params
    teacher_dir = Path(cfg.prior_run)
    teacher, teacher_labels, _ = load_run(teacher_dir, device)
    label_map = train_set.label_map
    if teacher_labels != label_map:
        raise SoftSamplingError(
            "the teacher (prior) run was trained on different classes",
            file=teacher_dir,
            fix="use a run trained on the same dataset (usually the baseline on the same curated data)",
        )
    if not cfg.data.val:
        raise SoftSamplingError(
            "pseudo_label chooses its per-class thresholds on the validation split, and the config has no data.val",
            fix="--set data.val=PATH (annotations of a validation split)",
        )

    # 1. thresholds on val: the lowest score whose precision reaches the target
    val_ds = split_dataset(cfg, "val", allow_outside_root=allow_outside_root)
    parts = []
    for start in range(0, val_ds.num_images, batch_size):
        rows = list(range(start, min(start + batch_size, val_ds.num_images)))
        images = [load_image(val_ds.image_path(r)).float().div_(255.0).to(device) for r in rows]
        for r, (boxes, labels, scores) in zip(rows, flip_tta_predict(teacher, images), strict=True):
            parts.append(
                Detections(np.full(len(scores), r), boxes.numpy(), label_map.to_dataset(labels.numpy()), scores.numpy())
            )
    val_dets = (
        Detections(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in ("image_index", "boxes", "labels", "scores"))
        )
        if parts
        else Detections.empty()
    )
    criterion = f"precision={params['pseudo_precision']}"
    calibration = calibrate_thresholds(
        val_ds, val_dets, list(label_map.category_ids), criterion=criterion, default_threshold=1.0
    )
    thresholds = torch.full((label_map.num_classes,), float("inf"))
    for index, c in enumerate(calibration, start=1):
        if c.note is None:
            thresholds[index] = c.threshold

    # 2. every training image: detections above threshold that duplicate no annotation
    pseudo: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for start in range(0, len(train_set), batch_size):
        rows = list(range(start, min(start + batch_size, len(train_set))))
        samples = [train_set[r] for r in rows]
        predictions = flip_tta_predict(teacher, [image.to(device) for image, _ in samples])
        for r, (_, target), (boxes, labels, scores) in zip(rows, samples, predictions, strict=True):
            keep = select_pseudo_boxes(
                boxes,
                labels,
                scores,
                thresholds,
                target["boxes"],
                target["labels"],
                duplicate_iou=params["pseudo_duplicate_iou"],
                duplicate_inside=params["pseudo_duplicate_inside"],
            )
            if bool(keep.any()):
                pseudo[r] = (boxes[keep].float(), labels[keep].to(torch.int64), scores[keep].float())
    teacher.cpu()

    if out_dir is not None:
        manifest_path = Path(cfg.data.manifest) if cfg.data.manifest else find_manifest(Path(cfg.data.train))
        manifest = read_manifest(manifest_path) if manifest_path is not None and manifest_path.exists() else None
        _write_pseudo_boxes(out_dir, train_set, pseudo, calibration, criterion, teacher_dir, manifest)
    return pseudo


def _write_pseudo_boxes(
    out_dir: Path,
    train_set: DetectionTrainingSet,
    pseudo: dict,
    calibration: list,
    criterion: str,
    teacher_dir: Path,
    manifest: Any,
) -> None:
    """``pseudo_boxes.json`` (COCO with scores) and ``pseudo_boxes_summary.json``."""
    ds, label_map = train_set.ds, train_set.label_map
    annotations: list[dict[str, Any]] = []
    for r in sorted(pseudo):
        boxes, labels, scores = pseudo[r]
        for box, cid, score in zip(
            boxes.tolist(), label_map.to_dataset(labels.numpy()).tolist(), scores.tolist(), strict=True
        ):
            x1, y1, x2, y2 = box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": _json_id(ds.image_ids[r]),
                    "category_id": int(cid),
                    "bbox": [round(v, 2) for v in (x1, y1, x2 - x1, y2 - y1)],
                    "area": round((x2 - x1) * (y2 - y1), 2),
                    "iscrowd": 0,
                    "score": round(score, 4),
                }
            )
    write_json(
        out_dir / "pseudo_boxes.json",
        {
            "info": {"description": f"pseudo boxes of teacher {teacher_dir} ({criterion} on val, flip TTA)"},
            "images": [
                {"id": _json_id(i), "file_name": f, "width": int(w), "height": int(h)}
                for i, f, w, h in zip(ds.image_ids, ds.file_names, ds.widths, ds.heights, strict=True)
            ],
            "annotations": annotations,
            "categories": [
                {"id": int(c), "name": n} for c, n in zip(label_map.category_ids, label_map.names, strict=True)
            ],
        },
    )
    found = _match_dropped(ds, pseudo, label_map, manifest) if manifest is not None else None
    classes = {}
    for index, c in enumerate(calibration, start=1):
        count = sum(int((labels == index).sum()) for _, labels, _ in pseudo.values())
        row: dict[str, Any] = {
            "threshold": None if c.note is not None else round(c.threshold, 6),
            "note": c.note,
            "val_precision": round(c.after.precision, 4),
            "val_recall": round(c.after.recall, 4),
            "pseudo_boxes": count,
        }
        if found is not None:
            row.update(_rates(*found[index]))
        classes[c.name] = row
    summary: dict[str, Any] = {
        "teacher": str(teacher_dir),
        "criterion": criterion,
        "tta": "horizontal flip",
        "pseudo_boxes": len(annotations),
        "images_with_pseudo_boxes": len(pseudo),
        "classes": classes,
    }
    if found is not None:
        summary["against_dropped"] = _rates(*(sum(v[k] for v in found.values()) for k in range(3)))
        summary["manifest"] = str(manifest.path)
    write_json(out_dir / "pseudo_boxes_summary.json", summary)


def _json_id(value: Any) -> Any:
    return int(value) if isinstance(value, (int, np.integer)) else str(value)


def _rates(true_positive: int, num_pseudo: int, num_dropped: int) -> dict[str, Any]:
    return {
        "dropped_boxes": num_dropped,
        "matched_dropped": true_positive,
        "precision_vs_dropped": round(true_positive / num_pseudo, 4) if num_pseudo else None,
        "recall_vs_dropped": round(true_positive / num_dropped, 4) if num_dropped else None,
    }


def _match_dropped(ds, pseudo: dict, label_map, manifest) -> dict[int, list[int]]:
    """Per model class: [pseudo boxes matching a dropped box (same class, IoU >= 0.5, greedy by score),
    pseudo boxes, dropped boxes]."""
    from torchvision.ops import box_iou

    from softsampling.engine.data import dropped_by_image

    dropped = dropped_by_image(ds, list(manifest.image_ids), manifest.boxes)
    row_of = {im: r for r, im in enumerate(ds.image_ids)}
    dropped_labels: dict[int, list[int]] = {}
    for im, cid in zip(manifest.image_ids.tolist(), manifest.labels.tolist(), strict=True):
        dropped_labels.setdefault(row_of[im], []).append(int(cid))
    counts = {k: [0, 0, 0] for k in range(1, label_map.num_classes)}
    for r in set(dropped) | set(pseudo):
        d_boxes = torch.from_numpy(dropped.get(r, np.zeros((0, 4), np.float32)))
        d_labels = torch.from_numpy(label_map.to_model(np.array(dropped_labels.get(r, []), dtype=np.int64)))
        p_boxes, p_labels, p_scores = pseudo.get(
            r, (torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), torch.zeros(0))
        )
        for k in d_labels.tolist():
            counts[k][2] += 1
        for k in p_labels.tolist():
            counts[k][1] += 1
        if not (len(d_boxes) and len(p_boxes)):
            continue
        iou = box_iou(p_boxes, d_boxes)
        iou[p_labels[:, None] != d_labels[None, :]] = -1.0
        taken = torch.zeros(len(d_boxes), dtype=torch.bool)
        for i in torch.argsort(p_scores, descending=True, stable=True).tolist():
            row = iou[i].masked_fill(taken, -1.0)
            j = int(row.argmax())
            if float(row[j]) >= 0.5:
                taken[j] = True
                counts[int(p_labels[i])][0] += 1
    return counts


def check_prior_transform(cfg, prior: torch.nn.Module, prior_dir: Path) -> None:
    """The prior must see images as this run's model will (same resize and normalisation)."""
    import dataclasses

    from softsampling.engine.build import build_model

    ours = build_model(
        dataclasses.replace(cfg, strategy="baseline", prior_run=None, strategy_params={}), 2, load_weights=False
    ).transform
    for name in ("image_mean", "image_std", "min_size", "max_size"):
        mine, theirs = getattr(ours, name, None), getattr(prior.transform, name, None)
        if mine != theirs:
            raise SoftSamplingError(
                f"the prior run's model transforms images differently: {name} is {theirs} there, {mine} here",
                file=prior_dir,
                fix="train the prior with the same model settings (model.name, model.min_size, "
                "model.max_size, model.options)",
            )

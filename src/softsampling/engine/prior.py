"""Round one of score soft sampling: the prior detector and the per-class thresholds T.

The paper trains a detector on the curated data, then weights each background
RoI of the second round by ``G(s, T)`` where ``s`` is that detector's score
and ``T`` a per-class threshold: the median score of the annotated boxes of
the class on the training set. :func:`prepare_prior` loads the prior run
(``prior_run``), computes ``T`` by scoring every annotated training box, and
writes ``score_soft_thresholds.json`` into the new run folder.
"""

from __future__ import annotations

from pathlib import Path

import torch

from softsampling.engine.data import DetectionTrainingSet
from softsampling.errors import SoftSamplingError
from softsampling.io import write_json


def prepare_prior(cfg, train_set: DetectionTrainingSet, out_dir: Path | None, device: torch.device,
                  *, batch_size: int = 16) -> tuple[torch.nn.Module, torch.Tensor]:
    """Load ``cfg.prior_run``'s detector (frozen) and compute ``T`` [C] on ``train_set``."""
    from softsampling.engine.predict import load_run
    from softsampling.model import PriorScorer
    from softsampling.sampling import median_thresholds

    prior_dir = Path(cfg.prior_run)
    prior, prior_labels, prior_cfg = load_run(prior_dir, device)
    if prior_labels != train_set.label_map:
        raise SoftSamplingError("the prior run was trained on different classes", file=prior_dir,
                                fix="use a run trained on the same dataset (usually the baseline on the same curated data)")
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
        for s, c in zip(scorer.score_images(images, boxes), cls):
            scores.append(s.cpu().gather(1, c.view(-1, 1)).view(-1))
            labels.append(c)
    gt_scores = torch.cat(scores) if scores else torch.zeros(0)
    gt_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    thresholds = median_thresholds(gt_scores, gt_labels, train_set.label_map.num_classes)
    if out_dir is not None:
        names = train_set.label_map.names
        write_json(out_dir / "score_soft_thresholds.json", {
            "prior_run": str(prior_dir),
            "rule": "T = median prior score of the annotated training boxes of each class",
            "thresholds": {n: round(float(t), 6) for n, t in zip(names, thresholds[1:].tolist())},
            "boxes_scored": {n: int((gt_labels == i + 1).sum()) for i, n in enumerate(names)},
        })
    return prior, thresholds


def check_prior_transform(cfg, prior: torch.nn.Module, prior_dir: Path) -> None:
    """The prior must see images as this run's model will (same resize and normalisation)."""
    import dataclasses

    from softsampling.engine.train import build_model

    ours = build_model(dataclasses.replace(cfg, strategy="baseline", prior_run=None, strategy_params={}), 2).transform
    for name in ("image_mean", "image_std", "min_size", "max_size"):
        mine, theirs = getattr(ours, name, None), getattr(prior.transform, name, None)
        if mine != theirs:
            raise SoftSamplingError(f"the prior run's model transforms images differently: {name} is {theirs} there, "
                                    f"{mine} here", file=prior_dir,
                                    fix="train the prior with the same model settings (model.name, model.min_size, "
                                        "model.max_size, model.options)")

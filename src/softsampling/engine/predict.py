"""Load a trained run and run its detector on images or on a whole dataset."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from softsampling.engine.build import build_model
from softsampling.engine.checkpoint import FINAL, FINAL_KEYS, load_checkpoint, load_state
from softsampling.engine.config import RunConfig, config_from_dict
from softsampling.engine.data import LabelMap, load_image
from softsampling.errors import SoftSamplingError
from softsampling.structures.detections import Detections
from softsampling.structures.records import DetectionDataset


def load_run(run_dir: str | Path, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, LabelMap, RunConfig]:
    """The trained model (eval mode, on ``device``), its label map and config, from ``run_dir/model.pt``."""
    path = Path(run_dir) / FINAL
    state = load_checkpoint(path, required=FINAL_KEYS)
    try:
        cfg = config_from_dict(state["config"])
        label_map = LabelMap.from_json(state["labels"])
    except SoftSamplingError as exc:
        raise SoftSamplingError(
            f"the saved config is invalid: {exc.problem}", file=path, fix="retrain the run with a valid config"
        ) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SoftSamplingError(f"the saved labels are invalid ({exc!r})", file=path, fix="retrain the run") from None
    # score_soft's prior is only needed for training; rebuild the plain head for inference
    cfg_for_build = dataclasses.replace(
        cfg, strategy="baseline", prior_run=None, strategy_params={}, rpn_full_annotations=False
    )
    model = build_model(cfg_for_build, label_map.num_classes, load_weights=False)  # model.pt holds them all
    load_state(model, state["model"], path, "model")
    model.eval().to(device)
    return model, label_map, cfg


@torch.no_grad()
def predict_images(
    model: torch.nn.Module, images: list[torch.Tensor], device: torch.device | str = "cpu"
) -> list[dict[str, torch.Tensor]]:
    """Run the detector on ``uint8 [3,H,W]`` images; returns torchvision outputs (boxes, labels, scores) on CPU."""
    batch = [im.to(device).float().div_(255.0) for im in images]
    return [{k: v.cpu() for k, v in out.items()} for out in model(batch)]


def predict_dataset(
    model: torch.nn.Module,
    ds: DetectionDataset,
    label_map: LabelMap,
    *,
    batch_size: int = 8,
    device: torch.device | str = "cpu",
    score_threshold: float = 0.0,
    progress: bool = False,
    distributed: bool = False,
) -> Detections:
    """Detections for every image of ``ds`` (labels in ``ds``'s category ids).

    ``distributed=True`` (every process of a ``torchrun`` job must call it): each
    process runs every ``world``-th batch (the batches are those of one process,
    see :mod:`softsampling.engine.distributed`); rank 0 returns all detections,
    in the order one process gives, the other ranks an empty :class:`Detections`.
    """
    from tqdm import tqdm

    from softsampling.engine.distributed import distributed_context, gather_in_main, owned

    rank, world = distributed_context() if distributed else (0, 1)
    done: list[tuple[int, Detections]] = []
    batches = [b for b in range((ds.num_images + batch_size - 1) // batch_size) if owned(b, rank, world)]
    for b in tqdm(batches, disable=not progress or rank != 0, desc="predict", unit="batch"):
        rows = list(range(b * batch_size, min((b + 1) * batch_size, ds.num_images)))
        outs = predict_images(model, [load_image(ds.image_path(r)) for r in rows], device)
        parts = []
        for r, out in zip(rows, outs, strict=True):
            keep = out["scores"] >= score_threshold
            n = int(keep.sum())
            parts.append(
                Detections(
                    np.full(n, r),
                    out["boxes"][keep].numpy(),
                    label_map.to_dataset(out["labels"][keep].numpy()),
                    out["scores"][keep].numpy(),
                )
            )
        done.append((b, _concatenate(parts)))
    merged = gather_in_main(done) if distributed else done
    return _concatenate([dets for _, dets in merged])


def _concatenate(parts: list[Detections]) -> Detections:
    if not parts:
        return Detections.empty()
    return Detections(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ("image_index", "boxes", "labels", "scores"))
    )

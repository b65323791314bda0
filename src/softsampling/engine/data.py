"""Turn a :class:`DetectionDataset` into what torchvision detectors eat.

Model class indices are contiguous (0 = background, 1..K = the dataset's
categories in their listed order); :class:`LabelMap` converts both ways and
is saved with every run so predictions come back in the dataset's own ids.

Training targets drop ``iscrowd`` and ``difficult`` boxes (as torchvision's
references and py-faster-rcnn do). They carry, besides ``boxes``/``labels``:
- ``group_of`` bool [G]: Open Images group-of flags (those RoIs get ignored);
- ``dropped_boxes`` float32 [K, 4]: boxes the curation removed (upper bound and
  the RPN-on-full-annotations ablation).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from softsampling.errors import SoftSamplingError
from softsampling.io import is_regular_file
from softsampling.structures.records import DetectionDataset


@dataclass(frozen=True)
class LabelMap:
    """Dataset category ids <-> contiguous model indices (1..K; 0 is background)."""

    category_ids: tuple[int, ...]
    names: tuple[str, ...]

    @classmethod
    def from_dataset(cls, ds: DetectionDataset) -> LabelMap:
        return cls(tuple(c.id for c in ds.categories), tuple(c.name for c in ds.categories))

    @property
    def num_classes(self) -> int:
        """Including background."""
        return len(self.category_ids) + 1

    def to_model(self, category_ids: np.ndarray) -> np.ndarray:
        lookup = {c: i + 1 for i, c in enumerate(self.category_ids)}
        return np.array([lookup[int(c)] for c in category_ids], dtype=np.int64)

    def to_dataset(self, model_labels: np.ndarray) -> np.ndarray:
        ids = np.array((0,) + self.category_ids, dtype=np.int64)
        return ids[np.asarray(model_labels, dtype=np.int64)]

    def to_json(self) -> dict:
        return {"category_ids": list(self.category_ids), "names": list(self.names)}

    @classmethod
    def from_json(cls, obj: dict) -> LabelMap:
        return cls(tuple(int(c) for c in obj["category_ids"]), tuple(str(n) for n in obj["names"]))


def load_image(path: Path, *, max_pixels: int = 250_000_000) -> torch.Tensor:
    """Read an image as ``uint8 [3, H, W]`` (RGB). Clear errors for missing, broken or huge files."""
    if not is_regular_file(path):  # also keeps FIFOs and devices (which would block) from being opened
        raise SoftSamplingError(
            "image file not found" if not path.exists() else "not a regular file, not an image",
            file=path,
            fix="check the dataset's image folder (--images / data.images)",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > max_pixels:
                    raise SoftSamplingError(
                        f"image has {w}x{h} = {w * h:,} pixels, above the limit of {max_pixels:,} "
                        "(possible decompression bomb)",
                        file=path,
                        fix="resize the image or raise the pixel limit",
                    )
                arr = np.asarray(im.convert("RGB"))
    except SoftSamplingError:
        raise
    except Image.DecompressionBombError as exc:
        raise SoftSamplingError(
            f"image is too large to open safely ({exc})",
            file=path,
            fix="resize the image; if it is genuine, raise PIL.Image.MAX_IMAGE_PIXELS",
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise SoftSamplingError(
            f"cannot read image ({exc})", file=path, fix="replace the file with a valid image"
        ) from None
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


class DetectionTrainingSet(torch.utils.data.Dataset):
    """Images (``float32 [3,H,W]`` in 0..1) and torchvision targets for one dataset.

    ``dropped``: image row -> float32 [K, 4] boxes removed by curation.
    ``pseudo``: image row -> (boxes float32 [P, 4], model labels int64 [P], scores float32 [P]),
    a teacher's pseudo boxes (``pseudo_label``); when set, every target carries
    ``pseudo_boxes``, ``pseudo_labels`` and ``pseudo_scores`` (empty for rows not in it).
    ``cache``: keep decoded images in memory (small datasets such as the digit benchmark).
    """

    def __init__(
        self,
        ds: DetectionDataset,
        label_map: LabelMap,
        *,
        dropped: dict[int, np.ndarray] | None = None,
        pseudo: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] | None = None,
        cache: bool = False,
    ) -> None:
        self.ds = ds
        self.label_map = label_map
        self.dropped = dropped
        self.pseudo = pseudo
        self.cache: dict[int, torch.Tensor] | None = {} if cache else None

    def __len__(self) -> int:
        return self.ds.num_images

    def image(self, i: int) -> torch.Tensor:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        img = load_image(self.ds.image_path(i))
        if self.cache is not None:
            self.cache[i] = img
        return img

    def _boxes(self, ds: DetectionDataset, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        idx = ds.box_indices_of(i)
        keep = ~(ds.iscrowd[idx] | ds.difficult[idx])
        idx = idx[keep]
        boxes = torch.from_numpy(ds.boxes[idx].copy()).reshape(-1, 4)
        labels = torch.from_numpy(self.label_map.to_model(ds.labels[idx]))
        group_of = torch.from_numpy(ds.group_of[idx].copy())
        return boxes, labels, group_of

    def target(self, i: int) -> dict[str, torch.Tensor]:
        boxes, labels, group_of = self._boxes(self.ds, i)
        target = {"boxes": boxes, "labels": labels, "group_of": group_of, "image_index": torch.tensor(i)}
        if self.dropped is not None:
            d = self.dropped.get(i)
            target["dropped_boxes"] = torch.from_numpy(d.copy()) if d is not None else torch.zeros((0, 4))
        if self.pseudo is not None:
            empty = (torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64), torch.zeros(0))
            boxes_p, labels_p, scores_p = self.pseudo.get(i, empty)
            target.update(pseudo_boxes=boxes_p.clone(), pseudo_labels=labels_p.clone(), pseudo_scores=scores_p.clone())
        return target

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return self.image(i).float().div_(255.0), self.target(i)


def dropped_by_image(
    ds: DetectionDataset, manifest_image_ids: list, manifest_boxes: np.ndarray
) -> dict[int, np.ndarray]:
    """Group a curation manifest's dropped boxes by image row of ``ds`` (unknown images are an error)."""
    row_of = {im: r for r, im in enumerate(ds.image_ids)}
    out: dict[int, list[np.ndarray]] = {}
    for im, box in zip(manifest_image_ids, np.asarray(manifest_boxes, dtype=np.float32).reshape(-1, 4), strict=True):
        r = row_of.get(im)
        if r is None:
            raise SoftSamplingError(
                f"manifest lists a dropped box of image {im!r}, which is not in the training set",
                fix="use the manifest written by `softsampling curate` for this file (data.manifest)",
            )
        out.setdefault(r, []).append(box)
    return {r: np.stack(v) for r, v in out.items()}


def collate(batch: list) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = zip(*batch, strict=True)
    return list(images), list(targets)

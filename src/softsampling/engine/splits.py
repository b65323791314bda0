"""The annotations of a run's splits, read with every image checked first.

Training reads its ``train`` split, ``evaluate --run`` and the pseudo-label
round a ``val`` or ``test`` split (:func:`split_dataset`), with the image checks
of :func:`softsampling.data.formats.image_check_options`.
"""

from __future__ import annotations

from softsampling.data.formats import image_check_options, load_dataset
from softsampling.engine.config import RunConfig
from softsampling.errors import SoftSamplingError
from softsampling.structures.records import DetectionDataset


def split_dataset(cfg: RunConfig, split: str, *, allow_outside_root: bool = False) -> DetectionDataset:
    """The annotations of a run's ``train``, ``val`` or other split named in its config (images checked)."""
    path: str | None
    if split == "train":
        path, images, voc_split = cfg.data.train, cfg.data.images, cfg.data.split
    elif split == "val":
        path, images, voc_split = cfg.data.val, cfg.data.val_images, cfg.data.val_split
    elif split == "test":
        path, images, voc_split = cfg.data.test, cfg.data.test_images, cfg.data.test_split
    else:
        raise SoftSamplingError(
            f"unknown split {split!r}", fix="use train, val or test (or pass the annotations explicitly)"
        )
    if not path:
        raise SoftSamplingError(
            f"the run's config has no data.{split}",
            fix=f"pass the {split} annotations explicitly, or train with --set data.{split}=PATH",
        )
    options = image_check_options(cfg.data.format, images, allow_outside_root)
    if cfg.data.format == "voc":
        options["split"] = voc_split
    return load_dataset(path, cfg.data.format, option=f"data.{split}", **options)

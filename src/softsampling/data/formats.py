"""One place to read and write a dataset in any supported format.

>>> FORMATS
('voc', 'coco', 'openimages')

``load_dataset(path, fmt, **options)`` and ``save_dataset(ds, path, fmt)``
dispatch to the format modules (``voc.py``, ``coco.py``, ``openimages.py``),
whose docstrings describe the layouts and options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from softsampling.errors import SoftSamplingError
from softsampling.io import check_input_dir, check_input_file
from softsampling.structures.records import DetectionDataset

FORMATS = ("voc", "coco", "openimages")


# reader keyword -> (option that names it, kind) for the extra paths a reader opens
_PATH_OPTIONS = {
    "classes_csv": ("--classes", "file"),
    "labels_csv": ("--labels", "file"),
    "sizes_csv": ("--sizes", "file"),
    "image_root": ("--images", "folder"),
}


# what a dataset path of each format is
DATASET_KINDS = {"voc": "VOC dataset folder", "coco": "COCO JSON file", "openimages": "Open Images boxes CSV file"}


def check_dataset_path(path: str | Path, fmt: str, *, option: str) -> Path:
    """A VOC dataset must be a folder, COCO and Open Images annotations a regular, non-empty, readable file."""
    if fmt == "voc":
        return check_input_dir(path, option=option, what=DATASET_KINDS[fmt])
    return check_input_file(path, option=option, what=DATASET_KINDS.get(fmt, "file"))


def image_check_options(fmt: str, images: str | Path | None, allow_outside_root: bool) -> dict[str, Any]:
    """Reader options that check every image before training or prediction reads it.

    The reader then refuses, with the annotation record named, image paths that
    leave the image folder (``..``, absolute, symlinks out) unless
    ``allow_outside_root``, missing or unreadable image files, decompression
    bombs and sizes that disagree with the annotation. Headers only: no pixels
    are decoded. (Open Images needs ``images`` to know where its images are.)
    """
    options: dict[str, Any] = {"allow_outside_root": allow_outside_root}
    if images:
        options["image_root"] = images
    if fmt != "openimages" or images:
        options["check_images"] = True
    return options


def load_dataset(path: str | Path, fmt: str, *, option: str = "the dataset path", **options: Any) -> DetectionDataset:
    """Read ``path`` in format ``fmt``; ``options`` go to the format's reader.

    Every path is checked before anything opens it (:func:`softsampling.io.check_input_file`):
    a VOC dataset is a folder, COCO and Open Images are files; a folder where a
    file belongs, a FIFO, an empty or unreadable file is one clear error naming
    ``option`` (the command-line option or config key that gave ``path``).
    """
    path = Path(path)
    check_dataset_path(path, fmt, option=option)
    for keyword, (flag, kind) in _PATH_OPTIONS.items():
        if options.get(keyword) is not None:
            check = check_input_dir if kind == "folder" else check_input_file
            check(options[keyword], option=flag)
    if fmt == "coco":
        from softsampling.data.coco import read_coco

        return read_coco(path, **options)
    if fmt == "voc":
        from softsampling.data.voc import read_voc

        return read_voc(path, **options)
    if fmt == "openimages":
        from softsampling.data.openimages import read_openimages

        return read_openimages(path, **options)
    raise SoftSamplingError(f"unknown format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")


def save_dataset(ds: DetectionDataset, path: str | Path, fmt: str, **options: Any) -> None:
    """Write ``ds`` to ``path`` in format ``fmt`` (atomically); ``options`` go to the format's writer."""
    if fmt == "coco":
        from softsampling.data.coco import write_coco

        write_coco(ds, path, **options)
    elif fmt == "voc":
        from softsampling.data.voc import write_voc

        write_voc(ds, path, **options)
    elif fmt == "openimages":
        from softsampling.data.openimages import write_openimages

        write_openimages(ds, path, **options)
    else:
        raise SoftSamplingError(f"unknown format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")

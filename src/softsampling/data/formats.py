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

from softsampling.data.records import DetectionDataset
from softsampling.errors import SoftSamplingError

FORMATS = ("voc", "coco", "openimages")


def load_dataset(path: str | Path, fmt: str, **options: Any) -> DetectionDataset:
    """Read ``path`` in format ``fmt``; ``options`` go to the format's reader."""
    path = Path(path)
    if not path.exists():
        raise SoftSamplingError("input does not exist", file=path, fix="check the path")
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

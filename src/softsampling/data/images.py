"""Checks on the image files a dataset points at, shared by every format reader.

Readers call :func:`check_images` when the user asks for ``check_images=True``.
For every image row it

1. resolves ``image_root / file_name`` and refuses paths that escape the root
   (absolute file names, ``..`` components, symlinks pointing outside) unless
   ``allow_outside_root``: an annotation file should not be able to make the
   toolkit read ``/etc/passwd`` or a neighbour's data;
2. checks that the file exists;
3. reads the real ``(width, height)`` from the file header (Pillow opens
   lazily, so no pixels are decoded) and compares it with the annotation;
   images above ``max_pixels`` are refused as possible decompression bombs.

Every problem raises :class:`SoftSamplingError` naming the annotation file,
the image record and the fix.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> root = Path(tempfile.mkdtemp())
    >>> Image.new("RGB", (32, 24)).save(root / "a.png")
    >>> image_size(root / "a.png")
    (32, 24)
    >>> resolve_image_path(root, "../secret.png")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    softsampling.errors.SoftSamplingError: image path '../secret.png' leaves the image folder ... (fix: ...)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

from softsampling.errors import SoftSamplingError
from softsampling.structures.records import DetectionDataset

# Pillow itself refuses to open images above 2 * Image.MAX_IMAGE_PIXELS (about 179 Mpx);
# we use the same number so the two limits agree. Pass a smaller max_pixels to be stricter.
DEFAULT_MAX_PIXELS = 178_956_970


def resolve_image_path(
    root: str | Path,
    file_name: str,
    *,
    allow_outside_root: bool = False,
    file: str | Path | None = None,
    record: str | None = None,
) -> Path:
    """Return ``root / file_name``; refuse a path that leaves ``root`` unless ``allow_outside_root``.

    "Leaves" means: ``file_name`` is absolute, or the fully resolved path
    (``..`` collapsed, symlinks followed) is not inside the resolved ``root``.
    A missing file is not an error here (see :func:`check_images`).
    """
    root = Path(root)
    path = root / file_name
    if allow_outside_root:
        return path
    if os.path.isabs(file_name):
        raise SoftSamplingError(
            f"image path {file_name!r} is absolute; image paths must be relative to the image folder {str(root)!r}",
            file=file,
            record=record,
            fix="make file names relative to the image folder, or pass allow_outside_root=True (--allow-outside-root)",
        )
    real_root = os.path.realpath(root)
    real_path = os.path.realpath(path)
    if os.path.commonpath([real_root, real_path]) != real_root:
        raise SoftSamplingError(
            f"image path {file_name!r} leaves the image folder {str(root)!r} (resolves to {real_path!r})",
            file=file,
            record=record,
            fix="keep images inside the image folder, or pass allow_outside_root=True (--allow-outside-root)",
        )
    return path


def image_size(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    file: str | Path | None = None,
    record: str | None = None,
) -> tuple[int, int]:
    """``(width, height)`` of an image, read from its header only (no pixels are decoded).

    Raises :class:`SoftSamplingError` if the file is missing, not an image
    Pillow can read, or larger than ``max_pixels`` (decompression-bomb guard).
    ``file``/``record`` name the annotation that points at the image.
    """
    from PIL import Image, UnidentifiedImageError  # lazy: only image checks need Pillow

    path = Path(path)
    if not path.is_file():
        raise SoftSamplingError(
            f"image file not found: {str(path)!r}",
            file=file,
            record=record,
            fix="check the image folder (image_root / --images) and the file name",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                width, height = im.size
    except Image.DecompressionBombError as exc:
        raise SoftSamplingError(
            f"image {str(path)!r} is too large for Pillow to open safely ({exc})",
            file=file,
            record=record,
            fix="downscale the image; if it is genuine, raise PIL.Image.MAX_IMAGE_PIXELS",
        ) from None
    except (UnidentifiedImageError, OSError) as exc:
        raise SoftSamplingError(
            f"cannot read image {str(path)!r}: {exc}",
            file=file,
            record=record,
            fix="replace the file with a valid image",
        ) from None
    if width * height > max_pixels:
        raise SoftSamplingError(
            f"image {str(path)!r} has {width}x{height} = {width * height:,} pixels, "
            f"more than the limit of {max_pixels:,} (possible decompression bomb)",
            file=file,
            record=record,
            fix="downscale the image, or raise max_pixels if it is genuine",
        )
    return int(width), int(height)


def check_images(
    ds: DetectionDataset,
    *,
    file: str | Path,
    describe_image: Callable[[int], str],
    allow_outside_root: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> None:
    """Check every image of ``ds``: path inside ``ds.image_root``, file exists, size matches.

    ``file`` is the annotation file (for messages); ``describe_image(i)``
    names image row ``i`` the way that file does, e.g. ``"image id 9"``.
    """
    root = ds.image_root if ds.image_root is not None else Path(".")
    for i, name in enumerate(ds.file_names):
        record = f"{describe_image(i)} (file_name {name!r})"
        path = resolve_image_path(root, name, allow_outside_root=allow_outside_root, file=file, record=record)
        width, height = image_size(path, max_pixels=max_pixels, file=file, record=record)
        if (width, height) != (int(ds.widths[i]), int(ds.heights[i])):
            raise SoftSamplingError(
                f"the annotation says the image is {ds.widths[i]}x{ds.heights[i]} "
                f"but the file {str(path)!r} is {width}x{height}",
                file=file,
                record=record,
                fix="correct width/height in the annotation (boxes are checked against it)",
            )

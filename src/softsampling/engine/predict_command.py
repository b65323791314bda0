"""Run a trained model on images and write its detections.

Writes OUT/detections.json in COCO results format (one entry per detection:
image_id, file_name, category_id, bbox [x, y, w, h], score); with --draw
also OUT/drawn/<image>.png with boxes, class names and scores of the
detections scoring >= --draw-threshold (default 0.5), upscaled to at least
512 px so that labels stay readable.

Per-class thresholds (--thresholds) come from `softsampling calibrate`: a
JSON file {"thresholds": {"<class name>": score, ...}}; classes it does not
list keep every detection (threshold 0; --score-threshold cannot be combined
with --thresholds).

Examples:
  softsampling predict --run runs/oss50 --images digits/images/test --out preds --draw
  softsampling predict --run runs/oss50 --images a.png b.png --out preds --score-threshold 0.5
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from softsampling.errors import SoftSamplingError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="run folder written by `softsampling train`")
    parser.add_argument("--images", type=Path, nargs="+", required=True, help="image files and/or folders of images")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--draw", action="store_true",
                        help="also write OUT/drawn/<image>.png: the image upscaled to at least 512 px with the "
                             "detections scoring >= --draw-threshold drawn")
    parser.add_argument("--draw-threshold", type=float, default=0.5,
                        help="with --draw: draw only detections scoring at least this (default 0.5; "
                             "detections.json keeps every detection above the score thresholds)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--score-threshold", type=float, default=0.05, help="drop detections below this score (default 0.05)")
    group.add_argument("--thresholds", type=Path, help="per-class thresholds JSON from `softsampling calibrate`; classes it omits use 0")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (others are refused)")
    parser.add_argument("--force", action="store_true", help="overwrite OUT/detections.json if present")


def collect_images(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            found.append(p)
        else:
            raise SoftSamplingError("image path does not exist", file=p, fix="pass existing image files or folders")
    if not found:
        raise SoftSamplingError("no images found", file=", ".join(map(str, paths)), fix="pass image files or folders of images")
    return found


def read_thresholds(path: Path, names: tuple[str, ...]) -> dict[str, float]:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
        table = {str(k): float(v) for k, v in obj["thresholds"].items()}
    except FileNotFoundError:
        raise SoftSamplingError("thresholds file not found", file=path, fix="run `softsampling calibrate` first") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SoftSamplingError(f"not a thresholds file ({exc})", file=path,
                                fix='expected {"thresholds": {"<class name>": score}} as written by `softsampling calibrate`') from None
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise SoftSamplingError(f"unknown class name(s) {unknown}", file=path, fix=f"the run's classes are {list(names)}")
    return table


def run(args: argparse.Namespace) -> int:

    from softsampling.engine.data import load_image
    from softsampling.engine.predict import load_run, predict_images
    from softsampling.engine.train import pick_device
    from softsampling.io import check_can_write, write_json

    if not 0.0 <= args.draw_threshold <= 1.0:
        raise SoftSamplingError(f"--draw-threshold must be a score in [0, 1], got {args.draw_threshold}",
                                fix="pass e.g. --draw-threshold 0.5")
    out_json = args.out / "detections.json"
    check_can_write(out_json, force=args.force)
    files = collect_images(args.images)
    device = pick_device(args.device)
    model, label_map, _ = load_run(args.run, device)
    per_class = read_thresholds(args.thresholds, label_map.names) if args.thresholds else {}
    default = args.score_threshold if not args.thresholds else 0.0
    cut = np.array([default] + [per_class.get(n, default) for n in label_map.names], dtype=np.float32)
    results = []
    for i, f in enumerate(files):
        image = load_image(f)
        out = predict_images(model, [image], device)[0]
        labels = out["labels"].numpy()
        keep = out["scores"].numpy() >= cut[labels]
        boxes, scores = out["boxes"].numpy()[keep], out["scores"].numpy()[keep]
        cats = label_map.to_dataset(labels[keep])
        for b, c, s in zip(boxes, cats, scores):
            x1, y1, x2, y2 = (round(float(v), 2) for v in b)
            results.append({"image_id": i, "file_name": f.name, "category_id": int(c),
                            "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)], "score": round(float(s), 5)})
        if args.draw:
            from softsampling.engine.draw import draw_detections

            names = dict(zip(label_map.category_ids, label_map.names))
            shown = scores >= args.draw_threshold
            draw_detections(image, boxes[shown], [names[int(c)] for c in cats[shown]], scores[shown],
                            args.out / "drawn" / f"{f.stem}.png")
    write_json(out_json, results, indent=None)
    print(f"{len(results)} detections on {len(files)} image(s) -> {out_json}")
    return 0

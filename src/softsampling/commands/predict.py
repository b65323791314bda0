"""Run a trained model on images and write its detections.

Writes OUT/detections.json in COCO results format (one entry per detection:
file_name, category_id, bbox [x, y, w, h], score); with --draw
also OUT/drawn/<image>.png with boxes, class names and scores of the
detections scoring >= --draw-threshold (default 0.5), upscaled to at least
512 px so that labels stay readable.

Per-class thresholds (--thresholds) come from `softsampling calibrate`: a
JSON file {"thresholds": {"<class name>": score, ...}}; classes it does not
list keep every detection (threshold 0; --score-threshold cannot be combined
with --thresholds).

Images are named by file name, not by an image_id: predict does not know the
ground truth's ids, and `softsampling evaluate` matches file_name to the
ground truth's file names (relative path, base name or stem). Two images
with the same base name are refused, as their detections could not be told
apart.

Many images (--image-list, torchrun): the list is streamed, detections are
written in chunks to OUT/detections.partial/ and merged at the end; a killed
run continues where it stopped when started again with the same command.
Under torchrun each process predicts every N-th chunk; the output is the same
as one process's.

Examples:
  softsampling predict --run runs/oss50 --images digits/images/test --out preds --draw
  torchrun --nproc-per-node 8 -m softsampling.cli predict --run runs/oss50 --image-list all.txt --out preds
  softsampling predict --run runs/oss50 --images a.png b.png --out preds --score-threshold 0.5
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from softsampling.errors import SoftSamplingError
from softsampling.io import check_input_file

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", type=Path, required=True, help="run folder written by `softsampling train`")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, nargs="+", help="image files and/or folders of images")
    source.add_argument(
        "--image-list",
        type=Path,
        metavar="FILE",
        help="text file of image paths, one per line (relative to the file's folder), read as a "
        "stream: for millions of images",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--draw",
        action="store_true",
        help="also write OUT/drawn/<image>.png: the image upscaled to at least 512 px with the "
        "detections scoring >= --draw-threshold drawn",
    )
    parser.add_argument(
        "--draw-threshold",
        type=float,
        default=0.5,
        help="with --draw: draw only detections scoring at least this (default 0.5; "
        "detections.json keeps every detection above the score thresholds)",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--score-threshold", type=float, default=0.05, help="drop detections below this score (default 0.05)"
    )
    group.add_argument(
        "--thresholds",
        type=Path,
        help="per-class thresholds JSON from `softsampling calibrate`; classes it omits use 0",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (others are refused)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="overwrite OUT/detections.json if present, and start over instead of resuming",
    )
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=1000,
        metavar="N",
        help="images per chunk written to OUT/detections.partial/ (what a resumed run skips; default 1000)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def refuse_duplicate_names(paths: Iterable[Path]) -> int:
    """The number of paths; two with the same base name are an error (detections name images by file name)."""
    first: dict[str, Path] = {}
    for f in paths:
        if f.name in first:
            raise SoftSamplingError(
                f"two images are named {f.name!r} ({first[f.name]} and {f})",
                file=f,
                fix="detections name images by file name: predict each folder into its own --out",
            )
        first[f.name] = f
    return len(first)


def collect_images(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        if p.is_dir():
            found.extend(sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            found.append(p)
        else:
            raise SoftSamplingError("image path does not exist", file=p, fix="pass existing image files or folders")
    for f in found:  # before the model loads: a FIFO would block, a folder named x.png would fail late
        check_input_file(f, option="--images", what="image file")
    if not found:
        raise SoftSamplingError(
            "no images found", file=", ".join(map(str, paths)), fix="pass image files or folders of images"
        )
    refuse_duplicate_names(found)
    return found


def read_thresholds(path: Path, names: tuple[str, ...]) -> dict[str, float]:
    from softsampling.parsing import parse_json

    if not path.is_file():
        raise SoftSamplingError("thresholds file not found", file=path, fix="run `softsampling calibrate` first")
    obj = parse_json(path.read_bytes(), file=path)
    try:
        table = {str(k): float(v) for k, v in obj["thresholds"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise SoftSamplingError(
            f"not a thresholds file ({exc})",
            file=path,
            fix='expected {"thresholds": {"<class name>": score}} as written by `softsampling calibrate`',
        ) from None
    unknown = sorted(set(table) - set(names))
    if unknown:
        raise SoftSamplingError(
            f"unknown class name(s) {unknown}", file=path, fix=f"the run's classes are {list(names)}"
        )
    return table


def run(args: argparse.Namespace) -> int:

    from softsampling.engine.checkpoint import FINAL
    from softsampling.engine.distributed import distributed_context
    from softsampling.engine.predict_stream import read_image_list
    from softsampling.io import check_output_path, output_lock

    if args.chunk_size < 1:
        raise SoftSamplingError(f"--chunk-size must be >= 1, got {args.chunk_size}", fix="e.g. --chunk-size 1000")
    if not 0.0 <= args.draw_threshold <= 1.0:
        raise SoftSamplingError(
            f"--draw-threshold must be a score in [0, 1], got {args.draw_threshold}",
            fix="pass e.g. --draw-threshold 0.5",
        )
    if args.image_list is not None:
        check_input_file(args.image_list, option="--image-list", what="image list (one path per line)")
        num_images = refuse_duplicate_names(read_image_list(args.image_list))  # streamed: count and check names
        files: Iterable[Path] = read_image_list(args.image_list)
        source: dict = {"image_list": str(args.image_list.resolve()), "num_images": num_images}
        inputs = [args.run / FINAL, args.thresholds, args.image_list]
    else:
        files = collect_images(args.images)
        num_images = len(files)
        source = {"images": [str(p.resolve()) for p in args.images], "num_images": num_images}
        inputs = [args.run / FINAL, args.thresholds, *args.images]
    if num_images == 0:
        raise SoftSamplingError("no images found", file=args.image_list, fix="list one image path per line")
    if args.thresholds is not None:
        check_input_file(args.thresholds, option="--thresholds", what="thresholds JSON file")
    check_output_path(args.out, force=True, folder=True, inputs=inputs)  # OUT may exist (it must not hold an input)
    out_json = check_output_path(args.out / "detections.json", force=args.force, inputs=inputs)
    rank, _ = distributed_context()  # under torchrun: before the model goes to this process's GPU
    with output_lock(args.out):  # one predict per --out
        return _predict(args, files, num_images, source, out_json, rank)


def _predict(
    args: argparse.Namespace, files: Iterable[Path], num_images: int, source: dict, out_json: Path, rank: int
) -> int:
    from softsampling.engine.device import pick_device
    from softsampling.engine.predict import load_run
    from softsampling.engine.predict_stream import predict_to_file

    device = pick_device(args.device)
    model, label_map, _ = load_run(args.run, device)
    per_class = read_thresholds(args.thresholds, label_map.names) if args.thresholds else {}
    default = args.score_threshold if not args.thresholds else 0.0
    cut = np.array([default] + [per_class.get(n, default) for n in label_map.names], dtype=np.float32)

    def draw(path: Path, image, boxes, cats, scores) -> None:
        from softsampling.engine.draw import draw_detections

        names = dict(zip(label_map.category_ids, label_map.names, strict=True))
        shown = scores >= args.draw_threshold
        draw_detections(
            image,
            boxes[shown],
            [names[int(c)] for c in cats[shown]],
            scores[shown],
            args.out / "drawn" / f"{path.stem}.png",
        )

    job = {"run": str(args.run.resolve()), **source, "thresholds": cut.tolist()}
    images, count = predict_to_file(
        model,
        label_map,
        files,
        out_json,
        job=job,
        cut=cut,
        device=device,
        num_images=num_images,
        chunk_size=args.chunk_size,
        force=args.force,
        progress=not args.no_progress,
        on_image=draw if args.draw else None,
    )
    if rank == 0:
        print(f"{count} detections on {images} image(s) -> {out_json}")
    return 0

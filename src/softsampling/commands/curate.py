"""Drop annotations reproducibly to simulate missing labels.

Reads a dataset (annotation files only; images are not needed), drops boxes by
a seeded protocol, and writes the curated dataset in the input's format plus a
manifest of every dropped box (beside an output file as OUT_STEM.manifest.json,
inside an output folder as OUT/manifest.json). Same input and seed give
byte-identical files. The input is never modified.

Protocols (--preset):
  uniform  the paper's (default): every class loses --drop-rate of its boxes;
           images with one box are never touched and every image keeps a box;
           same seed: boxes dropped at 30% are a subset of those at 40%, 50%
  easy     drop one box of every image with >= 2 boxes      (Co-mining)
  hard     drop half of each image's boxes, rounded down     (Co-mining)
  extreme  keep one box per image                            (Co-mining)
  keep1    keep one box per class per image                  (SIOD)
Crowd and group-of boxes are never dropped and do not count as boxes above.
The per-image presets take no --drop-rate.

Examples:
  softsampling curate --input instances_train2017.json --format coco \\
      --drop-rate 0.3 --seed 0 --out curated/train_drop30.json
  softsampling curate --input VOCdevkit/VOC2007 --format voc --split trainval \\
      --drop-rate 0.5 --seed 0 --out curated/voc07_drop50
  softsampling curate --input oidv6-train-annotations-bbox.csv --format openimages \\
      --classes class-descriptions-boxable.csv --preset keep1 --seed 0 --out curated/oi_keep1.csv

See docs/curate.md for the protocol details and the manifest format.
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path
from typing import Any

from softsampling.data.curate import (
    PRESETS,
    check_protocol,
    curate,
    format_summary,
    manifest_path_for,
    sha256_of_input,
    write_manifest,
)
from softsampling.data.formats import FORMATS, check_dataset_path, load_dataset, save_dataset
from softsampling.data.validate import add_invalid_options
from softsampling.errors import SoftSamplingError
from softsampling.io import check_output_path, commit_together, output_lock

# CLI option -> reader keyword, for the options that only some formats take
_READER_OPTIONS = {
    "split": "split",
    "classes": "classes_csv",
    "labels": "labels_csv",
    "sizes": "sizes_csv",
    "images": "image_root",
}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        required=True,
        type=Path,
        metavar="PATH",
        help="annotations to curate: COCO JSON file, VOC folder (VOCdevkit/VOC2007), or Open Images boxes CSV",
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="format of --input (and of the output)")
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        metavar="PATH",
        help="curated output: a file for coco/openimages, a folder for voc",
    )
    parser.add_argument(
        "--preset", choices=PRESETS, default="uniform", help="curation protocol (default: uniform, the paper's)"
    )
    parser.add_argument(
        "--drop-rate",
        type=float,
        default=None,
        metavar="P",
        help="uniform only: fraction of each class's boxes to drop, in [0, 1], e.g. 0.3",
    )
    parser.add_argument("--seed", type=int, required=True, help="random seed; same seed, same dropped boxes")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output and manifest")
    add_invalid_options(parser, what="boxes in the input")
    parser.add_argument(
        "--images",
        type=Path,
        default=None,
        metavar="DIR",
        help="image folder recorded with the dataset (optional; images are never read)",
    )
    fmt = parser.add_argument_group("format options")
    fmt.add_argument("--split", default=None, help="voc: image set to read, e.g. trainval (ImageSets/Main/SPLIT.txt)")
    fmt.add_argument(
        "--classes",
        type=Path,
        default=None,
        metavar="CSV",
        help="openimages: class descriptions CSV (LabelName,DisplayName)",
    )
    fmt.add_argument("--labels", type=Path, default=None, metavar="CSV", help="openimages: image-level labels CSV")
    fmt.add_argument(
        "--sizes", type=Path, default=None, metavar="CSV", help="openimages: image sizes CSV (ImageID,width,height)"
    )


def reader_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for the format's reader, from the options the user gave."""
    options: dict[str, Any] = {"invalid": args.invalid}
    for flag, keyword in _READER_OPTIONS.items():
        value = getattr(args, flag)
        if value is not None:
            options[keyword] = value
    reader = _reader(args.format)
    accepted = inspect.signature(reader).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    for flag, keyword in _READER_OPTIONS.items():
        if keyword in options and keyword not in accepted and not takes_any:
            raise SoftSamplingError(f"--{flag} does not apply to --format {args.format}", fix=f"leave out --{flag}")
    if "invalid" not in accepted and not takes_any:
        options.pop("invalid")
    return options


def writer_options(args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments for the format's writer: VOC writes the split file it read."""
    if args.format == "voc" and args.split is not None:
        return {"split": args.split}
    return {}


def _reader(fmt: str) -> Any:
    if fmt == "coco":
        from softsampling.data.coco import read_coco

        return read_coco
    if fmt == "voc":
        from softsampling.data.voc import read_voc

        return read_voc
    from softsampling.data.openimages import read_openimages

    return read_openimages


def run(args: argparse.Namespace) -> int:
    check_protocol(args.drop_rate, args.preset)
    if args.seed < 0:
        raise SoftSamplingError(f"seed must be >= 0, got {args.seed}", fix="pass e.g. --seed 0")
    src: Path = args.input
    out: Path = args.out
    out_is_dir = args.format == "voc"
    options = reader_options(args)
    check_dataset_path(src, args.format, option="--input")
    manifest = manifest_path_for(out, is_dir=out_is_dir)
    outputs = [out, manifest]
    if args.format == "openimages" and args.labels is not None:
        from softsampling.data.openimages import labels_path_for

        outputs.append(labels_path_for(out))  # the writer puts the image-level labels there
    inputs = [src, *(getattr(args, flag) for flag in _READER_OPTIONS if flag != "split")]
    datasets = [src] if src.is_dir() else []
    for path in outputs:
        check_output_path(
            path, force=args.force, folder=out_is_dir and path == out, inputs=inputs, keep_out_of=datasets
        )

    with output_lock(out), commit_together():  # a second run into --out stops; file and manifest appear together
        _curate(args, src, out, manifest, options)
    return 0


def _curate(args: argparse.Namespace, src: Path, out: Path, manifest: Path, options: dict[str, Any]) -> None:
    input_sha256 = sha256_of_input(src)
    ds = load_dataset(src, args.format, option="--input", **options)
    result = curate(ds, rate=args.drop_rate, seed=args.seed, preset=args.preset)
    save_dataset(result.dataset, out, args.format, **writer_options(args))
    recorded = {k: str(v) for k, v in options.items()}
    write_manifest(
        manifest, ds, result, input_path=src, input_format=args.format, input_sha256=input_sha256, options=recorded
    )

    report = ds.extra.get("validation_report")
    if report is not None and (report.clipped or report.skipped):
        print(f"input: {report.summary()}")
    print(format_summary(result))
    t = result.totals()
    print(
        f"wrote {out} ({t['boxes_after']} boxes in {t['images']} images) and {manifest} ({t['dropped']} dropped boxes)"
    )

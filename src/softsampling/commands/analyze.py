"""Analyses of missing labels.

overlap: for background proposals (overlap < 0.5 with every annotated box) of
a curated training set, measure the probability that a proposal lies on a
dropped object (IoU >= 0.5 with a box the curation removed) as a function of
its overlap with the annotated boxes -- the paper's Fig. 3 -- and fit the
Gompertz weight w(o) = a + (1 - a) exp(-b exp(-c o)) to 1 - P(dropped | o),
the probability that the background label is right. Proposals come from the
RPN of the model in --run. Writes DIR/overlap.png and DIR/overlap.json
(curve, counts, fitted a, b, c); use the fitted values with
--set strategy_params.a=... when training on your own data.

Example:
  softsampling curate --input digits/annotations/train.json --format coco \\
      --drop-rate 0.5 --seed 0 --out curated/train_drop50.json
  softsampling train --config configs/digits.yaml --out runs/base50 \\
      --set data.train=curated/train_drop50.json --set data.images=digits/images/train
  softsampling analyze overlap --data curated/train_drop50.json --format coco \\
      --images-root digits/images/train --run runs/base50 --out analysis/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from softsampling.errors import SoftSamplingError


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="analysis", metavar="ANALYSIS")
    p = sub.add_parser(
        "overlap",
        help="P(proposal on a dropped object | overlap) and a fitted Gompertz weight",
        description=(__doc__ or "").strip(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--data", type=Path, required=True, help="curated training annotations (output of softsampling curate)"
    )
    p.add_argument(
        "--format", choices=("coco", "voc", "openimages"), default="coco", help="format of --data (default coco)"
    )
    p.add_argument("--split", default=None, help="voc: image set of --data (default trainval)")
    p.add_argument(
        "--images-root",
        type=Path,
        default=None,
        metavar="DIR",
        help="image folder of --data (default: the reader's guess)",
    )
    p.add_argument("--manifest", type=Path, default=None, help="curation manifest (default: found beside --data)")
    p.add_argument("--run", type=Path, required=True, help="trained run folder whose RPN proposes regions")
    p.add_argument("--out", type=Path, required=True, help="output folder for overlap.png and overlap.json")
    p.add_argument("--images", type=int, default=200, metavar="N", help="random training images analysed (default 200)")
    p.add_argument("--seed", type=int, default=0, help="seed of the image subset (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="let the annotations name images outside their image folder (absolute paths, '..', "
        "symlinks out); refused by default, as in train",
    )


def run(args: argparse.Namespace) -> int:
    if getattr(args, "analysis", None) != "overlap":
        raise SoftSamplingError("choose an analysis", fix="softsampling analyze overlap --help")
    from softsampling.data.curate import find_manifest, read_manifest
    from softsampling.data.formats import image_check_options, load_dataset
    from softsampling.engine.checkpoint import FINAL
    from softsampling.engine.data import dropped_by_image
    from softsampling.engine.predict import load_run
    from softsampling.experiments.figures import plot_overlap
    from softsampling.experiments.overlap_analysis import analyze_overlap
    from softsampling.io import (
        check_input_file,
        check_output_path,
        check_outputs_apart,
        commit_together,
        output_lock,
        write_json,
    )

    if args.images < 1:
        raise SoftSamplingError(f"--images is {args.images}", fix="pass a positive number, e.g. --images 200")
    if not (args.run / FINAL).exists():
        raise SoftSamplingError(
            "run folder has no trained model (model.pt)",
            file=args.run,
            fix="pass a finished `softsampling train` run folder",
        )
    manifest_path = args.manifest or find_manifest(args.data)
    if manifest_path is None:
        raise SoftSamplingError(
            "no curation manifest found beside the data",
            file=args.data,
            fix="pass --manifest PATH (written by `softsampling curate`)",
        )
    check_input_file(manifest_path, option="--manifest", what="curation manifest (JSON)")
    inputs = [args.data, args.images_root, manifest_path, args.run / FINAL]
    datasets = [args.data] if args.data.is_dir() else []  # a VOC folder
    check_output_path(args.out, force=True, folder=True, inputs=inputs, keep_out_of=datasets)
    outputs = [args.out / "overlap.json", args.out / "overlap.png"]
    for path in outputs:  # replaced if present, as before
        check_output_path(path, force=True, inputs=inputs, keep_out_of=datasets)
    # the images are opened: the same checks as train (inside the image folder unless --allow-outside-root)
    options = image_check_options(args.format, args.images_root, args.allow_outside_root)
    if args.format == "voc":
        options["split"] = args.split or "trainval"
    ds = load_dataset(args.data, args.format, option="--data", **options)
    if ds.image_root is not None:  # the reader's guess: --out must not be or hold it
        check_outputs_apart([args.out], [ds.image_root])
    manifest = read_manifest(manifest_path)
    dropped = dropped_by_image(ds, manifest.image_ids.tolist(), manifest.boxes)
    model, _, _ = load_run(args.run, device=args.device)
    analysis = analyze_overlap(ds, dropped, model, images=args.images, seed=args.seed)
    data = {**analysis.to_json(), "data": str(args.data), "manifest": str(manifest_path), "run": str(args.run)}
    with output_lock(args.out), commit_together():  # both files appear together
        write_json(outputs[0], data)
        plot_overlap(data, outputs[1])
    print(
        f"{analysis.background} background proposals in {analysis.images} images, "
        f"{analysis.on_dropped} on dropped objects"
    )
    curve = data["curve"]  # edges: one more than the bins; each bin is printed with its lower edge
    for lo, n, p in zip(curve["edges"][:-1], curve["count"], curve["p_dropped"], strict=True):
        print(f"  overlap >= {lo:.2f}: {n:>7} proposals, P(dropped) = {'-' if p is None else f'{p:.3f}'}")
    if analysis.fitted:
        a, b, c = analysis.fitted
        print(
            f"fitted weight w(o) = a + (1-a) exp(-b exp(-c o)): a={a:.3f} b={b:.4g} c={c:.4g} (paper: a=0.25 b=50 c=20)"
        )
    else:
        print("too few overlap bins with proposals to fit a, b, c")
    print(f"wrote {args.out / 'overlap.png'} and {args.out / 'overlap.json'}")
    return 0

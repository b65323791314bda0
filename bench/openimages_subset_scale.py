"""The Open50 subset builder at Open Images scale: 15M train boxes, 1.5M test boxes, label files.

Generates, seeded, in a temporary folder: the 15M-box synthetic train boxes
CSV of bench/curate_openimages_scale.py (1M images, 500 Zipf-like classes,
about 6% group-of boxes), a test boxes CSV of 100k images / 1.5M boxes over
the same classes, one image-level labels CSV per split (a positive row per
(image, class) with a box, sorted by ImageID) and the header-less classes CSV.
Then times, in a fresh process so that peak memory is the builder's own,

    softsampling.data.openimages_subset.build_subset(num_classes=50, min_train=200, min_test=100)

and reports the wall time and the peak resident memory
(``resource.getrusage(...).ru_maxrss``). Target on a 2-core machine:
< 90 s, < 6 GB. Results are recorded in docs/benchmarks.md.

    python bench/openimages_subset_scale.py            # 15M + 1.5M boxes
    python bench/openimages_subset_scale.py --small    # 300k + 30k boxes, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import cpu_model  # noqa: E402 (bench/ helpers, beside this script)
from curate_openimages_scale import synthetic_dataset  # noqa: E402

from softsampling.data.openimages import LABEL_COLUMNS, join_columns, write_openimages


def _write_labels(ds, path: Path) -> int:
    """One positive label row per (image, class) that has a box, in box order."""
    pairs = np.unique(ds.box_image.astype(np.int64) * (len(ds.categories) + 1) + ds.labels)
    image = pairs // (len(ds.categories) + 1)
    label = pairs % (len(ds.categories) + 1)
    ids = np.array(ds.image_ids, dtype="S")[image]
    names = np.array([""] + [c.extra["LabelName"] for c in ds.categories], dtype="S")[label]
    n = len(pairs)
    with open(path, "wb") as f:
        f.write((",".join(LABEL_COLUMNS) + "\n").encode())
        step = 1_000_000
        for s in range(0, n, step):
            m = min(n, s + step) - s
            f.write(join_columns([ids[s : s + m], np.full(m, b"verification"), names[s : s + m], np.full(m, b"1")]))
    return n


def generate(folder: Path, images: int, boxes: int, classes: int, seed: int) -> None:
    train = synthetic_dataset(images, boxes, classes, seed)
    write_openimages(train, folder / "train-bbox.csv")
    _write_labels(train, folder / "train-labels.csv")
    with open(folder / "classes.csv", "w", encoding="utf-8") as f:  # official layout: no header
        f.writelines(f"{c.extra['LabelName']},{c.name}\n" for c in train.categories)
    categories = train.categories
    del train
    test = synthetic_dataset(images // 10, boxes // 10, classes, seed + 1)
    test.categories = categories  # same class names as train
    test.image_ids = [f"t{i[1:]}" for i in test.image_ids]
    test.file_names = [f"{i}.jpg" for i in test.image_ids]
    write_openimages(test, folder / "test-bbox.csv")
    _write_labels(test, folder / "test-labels.csv")


def run(folder: Path, min_train: int, min_test: int) -> dict:
    from softsampling.data.openimages_subset import build_subset

    t = time.perf_counter()
    stats = build_subset(
        folder / "train-bbox.csv",
        folder / "test-bbox.csv",
        [folder / "train-labels.csv", folder / "test-labels.csv"],
        folder / "classes.csv",
        folder / "open50",
        num_classes=50,
        min_train=min_train,
        min_test=min_test,
        force=True,
    )
    seconds = time.perf_counter() - t
    use = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(use.ru_utime + use.ru_stime, 2),
        **stats["totals"],
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1_000_000, help="train images (default 1M; test: a tenth)")
    p.add_argument("--boxes", type=int, default=15_000_000, help="train boxes (default 15M; test: a tenth)")
    p.add_argument("--classes", type=int, default=500, help="number of classes (default 500)")
    p.add_argument(
        "--small", action="store_true", help="quick check: 20k images, 300k boxes, --min-train 4 --min-test 2"
    )
    p.add_argument("--min-train", type=int, default=200, help="a class needs more train instances (default 200)")
    p.add_argument("--min-test", type=int, default=100, help="a class needs more test instances (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data (default 0)")
    p.add_argument(
        "--workdir", type=Path, default=None, help="folder for the CSVs (default: a temporary folder, removed)"
    )
    p.add_argument("--stage", choices=["all", "generate", "run"], default="all", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.small:
        args.images, args.boxes, args.min_train, args.min_test = 20_000, 300_000, 4, 2
    if args.stage == "generate":
        generate(args.workdir, args.images, args.boxes, args.classes, args.seed)
        return 0
    if args.stage == "run":
        print(json.dumps(run(args.workdir, args.min_train, args.min_test)))
        return 0

    folder = args.workdir or Path(tempfile.mkdtemp(prefix="oi_subset_"))
    folder.mkdir(parents=True, exist_ok=True)
    base = [
        sys.executable,
        __file__,
        "--images",
        str(args.images),
        "--boxes",
        str(args.boxes),
        "--classes",
        str(args.classes),
        "--seed",
        str(args.seed),
        "--workdir",
        str(folder),
        "--min-train",
        str(args.min_train),
        "--min-test",
        str(args.min_test),
    ]
    try:
        t = time.perf_counter()
        if not (folder / "test-labels.csv").exists():
            subprocess.run(base + ["--stage", "generate"], check=True)
        gen_s = time.perf_counter() - t
        sizes = {
            n: (folder / n).stat().st_size / 2**20
            for n in ("train-bbox.csv", "test-bbox.csv", "train-labels.csv", "test-labels.csv")
        }
        out = subprocess.run(base + ["--stage", "run"], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"the builder failed:\n{out.stderr}")
        res = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(
        f"machine: {os.cpu_count()} CPU(s), {cpu_model()}, python {platform.python_version()}, numpy {np.__version__}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"data: {args.images:,} train images / {args.boxes:,} boxes, test a tenth, {args.classes} classes; "
        + ", ".join(f"{n} {s:,.0f} MiB" for n, s in sizes.items())
        + f" (generated in {gen_s:.1f} s, not counted)"
    )
    print(
        f"subset: {res['classes']} classes of {res['eligible_classes']} eligible; "
        f"train {res['train_images']:,} images / "
        f"{res['train_boxes']:,} boxes, test {res['test_images']:,} / {res['test_boxes']:,}; "
        f"label rows {res['train_label_rows']:,} + {res['test_label_rows']:,}"
    )
    print(f"total  {res['seconds']:7.2f} s   (target < 90 s); CPU time of the process {res['cpu_seconds']:.2f} s")
    print(f"peak   {res['peak_rss_gb']:7.2f} GB  (target < 6 GB; ru_maxrss of the builder's process)")
    ok = res["seconds"] < 90 and res["peak_rss_gb"] < 6
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

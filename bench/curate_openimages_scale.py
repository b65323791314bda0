"""Curation at Open Images scale: read a 15M-box boxes CSV, drop 30% per class, write it back.

Generates a seeded synthetic Open Images boxes CSV (default 1M images, 15M
boxes, 500 classes with Zipf-like frequencies, 1-60 boxes per image, about 6%
group-of boxes, sorted by ImageID like the official files) in a temporary
folder, then times, in a fresh process so that peak memory is the pipeline's
own:

    read   softsampling.data.openimages.read_openimages
    curate softsampling.data.curate.curate(rate=0.3, seed=0, preset="uniform")
    write  softsampling.data.openimages.write_openimages

and reports wall time per stage and the peak resident memory
(``resource.getrusage(...).ru_maxrss``). Target on a 2-core machine:
total < 90 s, peak < 6 GB. Results are recorded in docs/benchmarks.md.

    python bench/curate_openimages_scale.py                 # 1M images / 15M boxes
    python bench/curate_openimages_scale.py --small         # 20k images / 300k boxes, seconds
    python bench/curate_openimages_scale.py --images 100000 --boxes 1500000 --with-sizes
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
from _machine import cpu_model  # noqa: E402 (bench/ helper, beside this script)

from softsampling.data.openimages import BOX_COLUMNS, read_openimages, write_openimages
from softsampling.structures.records import Category, DetectionDataset

HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def boxes_per_image(num_images: int, num_boxes: int, rng: np.random.Generator) -> np.ndarray:
    """int64 [I] in 1..60 summing to ``num_boxes``: a skewed (geometric-like) spread around the mean."""
    if not num_images <= num_boxes <= 60 * num_images:
        raise SystemExit(f"--boxes must be between --images and 60 x --images, got {num_boxes} for {num_images}")
    mean = num_boxes / num_images
    counts = np.clip(rng.geometric(1.0 / mean, size=num_images), 1, 60).astype(np.int64)
    while (diff := num_boxes - int(counts.sum())) != 0:  # nudge random images up or down to hit the total
        room = np.flatnonzero(counts < 60) if diff > 0 else np.flatnonzero(counts > 1)
        pick = rng.choice(room, size=min(abs(diff), len(room)), replace=False)
        counts[pick] += 1 if diff > 0 else -1
    return counts


def synthetic_dataset(num_images: int, num_boxes: int, num_classes: int, seed: int) -> DetectionDataset:
    """A normalised (1 x 1 images) dataset shaped like Open Images, with official-looking 6-decimal texts."""
    rng = np.random.default_rng(seed)
    ids = HEX[rng.integers(0, 16, size=(num_images, 16))].view("S16").reshape(-1)
    ids = np.unique(ids)  # sorted, like the official files
    while len(ids) < num_images:  # 64-bit ids: collisions are (astronomically) rare
        extra = HEX[rng.integers(0, 16, size=(num_images - len(ids), 16))].view("S16").reshape(-1)
        ids = np.unique(np.concatenate([ids, extra]))
    counts = boxes_per_image(num_images, num_boxes, rng)
    box_image = np.repeat(np.arange(num_images), counts)
    freq = 1.0 / np.arange(1, num_classes + 1) ** 1.1  # Zipf-like class frequencies
    labels = rng.choice(num_classes, size=num_boxes, p=freq / freq.sum()).astype(np.int64) + 1
    names = [f"/m/0{np.base_repr(int(v), 36).lower()}" for v in rng.choice(36**5, num_classes, replace=False)]
    w = rng.uniform(0.01, 0.9, size=num_boxes)
    h = rng.uniform(0.01, 0.9, size=num_boxes)
    x1 = np.round(rng.uniform(0, 1 - w), 6)
    y1 = np.round(rng.uniform(0, 1 - h), 6)
    coords = np.stack([x1, y1, np.round(x1 + w, 6), np.round(y1 + h, 6)], axis=1)
    flags = (rng.random((num_boxes, 5)) < np.array([0.6, 0.25, 0.06, 0.05, 0.02])).astype(np.int8)
    source = (rng.random(num_boxes) < 0.1).astype(np.uint16)  # 90% xclick, 10% activemil
    return DetectionDataset(
        image_ids=[i.decode() for i in ids.tolist()],
        file_names=[f"{i.decode()}.jpg" for i in ids.tolist()],
        widths=np.ones(num_images, np.int64),
        heights=np.ones(num_images, np.int64),
        box_image=box_image,
        boxes=coords.astype(np.float32),
        labels=labels,
        box_ids=np.arange(num_boxes),
        iscrowd=np.zeros(num_boxes, bool),
        difficult=np.zeros(num_boxes, bool),
        group_of=flags[:, 2] == 1,
        truncated=flags[:, 1] == 1,
        categories=[Category(i + 1, f"class {i + 1}", {"LabelName": n}) for i, n in enumerate(names)],
        box_extra={
            "oi_coords": coords,
            "oi_decimals": np.full((num_boxes, 4), 6, np.uint8),
            "oi_flags": flags,
            "oi_source": source,
            "oi_confidence": np.zeros(num_boxes, np.uint16),
        },
        extra={
            "normalized": True,
            "openimages": {
                "header": list(BOX_COLUMNS),
                "sources": ["xclick", "activemil"],
                "confidences": ["1"],
                "coord_text": {},
            },
        },
    )


def generate(folder: Path, num_images: int, num_boxes: int, num_classes: int, seed: int, with_sizes: bool) -> None:
    ds = synthetic_dataset(num_images, num_boxes, num_classes, seed)
    write_openimages(ds, folder / "boxes.csv")
    with open(folder / "classes.csv", "w", encoding="utf-8") as f:  # official layout: no header
        f.writelines(f"{c.extra['LabelName']},{c.name}\n" for c in ds.categories)
    if with_sizes:
        rng = np.random.default_rng(seed + 1)
        sizes = rng.choice([(1024, 768), (1024, 683), (768, 1024), (1024, 1024)], size=num_images)
        with open(folder / "sizes.csv", "w", encoding="utf-8") as f:
            f.write("ImageID,width,height\n")
            f.writelines(f"{i},{w},{h}\n" for i, (w, h) in zip(ds.image_ids, sizes.tolist(), strict=True))


def csv_module_baseline(path: Path) -> float:
    """Seconds for the simplest csv-module reader: every row through csv.reader, 4 coordinates to float.

    A lower bound for any reader that makes Python objects per row (no ids,
    labels, flags or validation), measured for the ratio in docs/benchmarks.md.
    """
    import array
    import csv

    t = time.perf_counter()
    coords = array.array("d")
    with open(path, newline="", encoding="utf-8") as f:
        rows = csv.reader(f)
        next(rows)
        for row in rows:
            coords.extend((float(row[4]), float(row[5]), float(row[6]), float(row[7])))
    return time.perf_counter() - t


def run_pipeline(folder: Path, rate: float, seed: int, with_sizes: bool, compare_csv: bool = False) -> dict:
    from softsampling.data.curate import curate  # written alongside; imported here so --help works without it

    times = {}
    t = time.perf_counter()
    ds = read_openimages(
        folder / "boxes.csv", classes_csv=folder / "classes.csv", sizes_csv=folder / "sizes.csv" if with_sizes else None
    )
    times["read_s"] = time.perf_counter() - t
    t = time.perf_counter()
    result = curate(ds, rate=rate, seed=seed, preset="uniform")
    times["curate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    write_openimages(result.dataset, folder / "curated.csv")
    times["write_s"] = time.perf_counter() - t
    times["total_s"] = times["read_s"] + times["curate_s"] + times["write_s"]
    out = {
        **{k: round(v, 2) for k, v in times.items()},
        "images": ds.num_images,
        "boxes_in": ds.num_boxes,
        "boxes_out": result.dataset.num_boxes,
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }
    if compare_csv:
        del ds, result
        out["csv_module_s"] = round(csv_module_baseline(folder / "boxes.csv"), 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=1_000_000, help="number of images (default 1M)")
    p.add_argument("--boxes", type=int, default=15_000_000, help="number of boxes (default 15M)")
    p.add_argument("--classes", type=int, default=500, help="number of classes (default 500)")
    p.add_argument("--small", action="store_true", help="quick check: 20k images, 300k boxes")
    p.add_argument("--with-sizes", action="store_true", help="also write and read an ImageID,width,height CSV")
    p.add_argument("--rate", type=float, default=0.3, help="drop rate per class (default 0.3)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of the curation (default 0)")
    p.add_argument(
        "--workdir", type=Path, default=None, help="folder for the CSVs (default: a temporary folder, removed)"
    )
    p.add_argument(
        "--compare-csv",
        action="store_true",
        help="also time a bare csv-module pass over the file (after the peak-memory reading)",
    )
    p.add_argument("--stage", choices=["all", "generate", "run"], default="all", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.small:
        args.images, args.boxes = 20_000, 300_000

    if args.stage == "generate":
        generate(args.workdir, args.images, args.boxes, args.classes, args.seed, args.with_sizes)
        return 0
    if args.stage == "run":
        print(json.dumps(run_pipeline(args.workdir, args.rate, args.seed, args.with_sizes, args.compare_csv)))
        return 0

    folder = args.workdir or Path(tempfile.mkdtemp(prefix="oi_scale_"))
    folder.mkdir(parents=True, exist_ok=True)
    base = (
        [
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
            "--rate",
            str(args.rate),
            "--workdir",
            str(folder),
        ]
        + (["--with-sizes"] if args.with_sizes else [])
        + (["--compare-csv"] if args.compare_csv else [])
    )
    try:
        t = time.perf_counter()
        subprocess.run(base + ["--stage", "generate"], check=True)
        gen_s = time.perf_counter() - t
        size_mb = (folder / "boxes.csv").stat().st_size / 2**20
        out = subprocess.run(base + ["--stage", "run"], check=True, capture_output=True, text=True)
        res = json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if args.workdir is None:
            shutil.rmtree(folder, ignore_errors=True)
    print(
        f"machine: {os.cpu_count()} CPU(s), {cpu_model()}, python {platform.python_version()}, numpy {np.__version__}"
    )
    print(
        f"data: {res['images']:,} images, {res['boxes_in']:,} boxes, {args.classes} classes, "
        f"boxes.csv {size_mb:,.0f} MiB (generated in {gen_s:.1f} s, not counted)"
    )
    print(f"read   {res['read_s']:7.2f} s")
    if "csv_module_s" in res:
        print(
            f"       {res['csv_module_s']:7.2f} s  bare csv.reader pass + float() of 4 coordinates, same file "
            f"({res['csv_module_s'] / res['read_s']:.1f}x our full read)"
        )
    print(f"curate {res['curate_s']:7.2f} s  (rate {args.rate}: {res['boxes_in'] - res['boxes_out']:,} boxes dropped)")
    print(f"write  {res['write_s']:7.2f} s")
    print(f"total  {res['total_s']:7.2f} s   (target < 90 s)")
    print(f"peak   {res['peak_rss_gb']:7.2f} GB  (target < 6 GB; ru_maxrss of the read-curate-write process)")
    ok = res["total_s"] < 90 and res["peak_rss_gb"] < 6
    print("target met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

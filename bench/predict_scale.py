"""A million-image prediction, simulated: streamed list, chunked output, constant memory, resume after a kill.

    python bench/predict_scale.py [--images 1000000] [--chunk-size 1000] [--kill-after 20] [--out DIR]

The images are 8x8 PNGs (16 distinct files, listed over and over in a text file of --images lines) and the
model is a stub that returns 3 fixed boxes per image, so what is measured is softsampling's own machinery:
reading the list, decoding, thresholding, writing chunks and merging them (the detector's time is the GPU's).
Three steps, each in its own process (peak RSS is per process):
  1. the whole list in one go: images/s and peak RSS; run again on a tenth of the list to show that RSS
     does not grow with the number of images;
  2. the same run killed with SIGKILL after --kill-after seconds, then started again: it resumes from the
     chunks on disk, and its detections.json must equal step 1's byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch


class StubDetector(torch.nn.Module):
    """Three fixed boxes per image, scores 0.9 / 0.5 / 0.01, classes 1..3: torchvision's output format."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        boxes = torch.tensor([[0.0, 0.0, 4.0, 4.0], [1.0, 1.0, 6.0, 7.0], [2.0, 0.0, 8.0, 3.0]])
        return [
            {"boxes": boxes, "labels": torch.tensor([1, 2, 3]), "scores": torch.tensor([0.9, 0.5, 0.01])}
            for _ in images
        ]


def make_inputs(root: Path, num_images: int) -> Path:
    from PIL import Image

    (root / "img").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(16):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / "img" / f"{k:02d}.png")
    listing = root / f"list_{num_images}.txt"
    if not listing.exists():
        with open(listing, "w") as f:
            for i in range(num_images):
                f.write(f"img/{i % 16:02d}.png\n")
    return listing


def predict(listing: Path, out: Path, chunk_size: int) -> None:
    """One prediction run in this process; prints a JSON line with images, detections, seconds, peak RSS."""
    from softsampling.engine.data import LabelMap
    from softsampling.engine.predict_stream import predict_to_file
    from softsampling.engine.predict_stream import read_image_list as stream

    label_map = LabelMap((1, 2, 3), ("a", "b", "c"))
    cut = np.array([0.05, 0.05, 0.05, 0.05], dtype=np.float32)
    start = time.perf_counter()
    images, dets = predict_to_file(
        StubDetector().eval(),
        label_map,
        stream(listing),
        out / "detections.json",
        job={"list": str(listing)},
        cut=cut,
        device=torch.device("cpu"),
        chunk_size=chunk_size,
        progress=False,
    )
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "images": images,
                "detections": dets,
                "seconds": round(seconds, 1),
                "images_per_s": round(images / seconds),
                "peak_rss_mb": round(rss),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--kill-after", type=float, default=20.0)
    parser.add_argument("--out", type=Path, default=Path("/tmp/softsampling_predict_scale"))
    parser.add_argument("--child", nargs=2, metavar=("LIST", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        predict(Path(args.child[0]), Path(args.child[1]), args.chunk_size)
        return
    import shutil

    from _machine import cpu_model  # noqa: PLC0415 - bench/ sibling

    shutil.rmtree(args.out, ignore_errors=True)
    small = make_inputs(args.out, args.images // 10)
    full = make_inputs(args.out, args.images)
    child = [sys.executable, __file__, "--chunk-size", str(args.chunk_size), "--child"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores; {args.images:,} images, chunks of {args.chunk_size}")
    for listing, name in ((small, "tenth"), (full, "whole")):
        done = subprocess.run([*child, str(listing), str(args.out / name)], capture_output=True, text=True, env=env)
        print(f"{name}: {done.stdout.strip() or done.stderr[-2000:]}")
    killed = subprocess.Popen([*child, str(full), str(args.out / "killed")], env=env, stdout=subprocess.DEVNULL)
    time.sleep(args.kill_after)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    chunks = len(list((args.out / "killed" / "detections.partial").glob("chunk-*.json")))
    print(f"killed after {args.kill_after:g} s with {chunks} chunk(s) on disk")
    done = subprocess.run([*child, str(full), str(args.out / "killed")], capture_output=True, text=True, env=env)
    print(f"resumed: {done.stdout.strip() or done.stderr[-2000:]}")
    same = (args.out / "killed" / "detections.json").read_bytes() == (
        args.out / "whole" / "detections.json"
    ).read_bytes()
    print(f"resumed output identical to the uninterrupted one: {same}")


if __name__ == "__main__":
    main()

"""Time pseudo-label generation: the teacher predicts val and every training image (flip TTA), then selects.

Issue 10's speed target: pseudo-label generation for 2,000 training images takes at most
60 s on 2 cores. This script repeats exactly what training does before round two
(:func:`softsampling.engine.prior.prepare_pseudo_boxes`) for the config of an existing
pseudo-label run, without writing anything, and prints the wall time, split into reading
the training images (the run's data set, cached in memory as training caches it) and the
generation itself (validation predictions + calibration + training predictions + selection).

Run it from the folder the run's paths are relative to (for ``softsampling reproduce``:
its --out folder)::

    cd results/digits
    python ../../bench/pseudo_label_speed.py runs/seed0/pseudo_label-drop50-*/

Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", type=Path, help="a pseudo_label run folder (its config.yaml names teacher and data)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as the reproduce grid trains)")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass (default 16, as training)")
    args = p.parse_args(argv)

    from softsampling.engine.config import load_config
    from softsampling.engine.data import DetectionTrainingSet
    from softsampling.engine.prior import prepare_pseudo_boxes
    from softsampling.engine.train import load_training_data

    torch.set_num_threads(args.threads)
    cfg = load_config(args.run / "config.yaml")
    tic = time.perf_counter()
    ds, label_map, dropped = load_training_data(cfg)
    train_set = DetectionTrainingSet(ds, label_map, dropped=dropped, cache=True)
    for row in range(len(train_set)):  # training caches the decoded images before round two too
        train_set[row]
    read = time.perf_counter() - tic
    tic = time.perf_counter()
    pseudo = prepare_pseudo_boxes(cfg, train_set, None, torch.device("cpu"), batch_size=args.batch_size)
    generate = time.perf_counter() - tic
    boxes = sum(len(v[0]) for v in pseudo.values())
    print(
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}, nproc {os.cpu_count()}, "
        f"threads {args.threads}\n"
        f"{len(train_set)} training images (teacher {cfg.prior_run}): reading {read:.1f} s, "
        f"pseudo-label generation {generate:.1f} s ({len(train_set) / generate:.0f} images/s), "
        f"{boxes} pseudo boxes on {len(pseudo)} images"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Train a Faster R-CNN with one label-assignment strategy.

Strategies (``--set strategy=...``): baseline, hard_negative, overlap_soft,
score_soft (needs ``--set prior_run=RUN_DIR``), upper_bound (needs the
curation manifest, found beside the curated file). The run folder receives
config.yaml (the resolved config), labels.json, metrics.jsonl, last.pt
(resumable checkpoint) and model.pt (final weights).

Examples:
  softsampling train --config configs/digits.yaml --out runs/base50 \\
      --set data.train=digits/annotations/train_drop50.json --set strategy=baseline
  softsampling train --config configs/digits.yaml --out runs/oss50 \\
      --set data.train=digits/annotations/train_drop50.json --set strategy=overlap_soft
  softsampling train --config configs/digits.yaml --out runs/oss50 --resume   # after a crash
  torchrun --nproc-per-node 2 -m softsampling.cli train --config configs/voc.yaml --out runs/voc
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from softsampling.engine.config import apply_overrides, load_config
from softsampling.errors import SoftSamplingError


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML config (see configs/); defaults apply to keys it omits")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set strategy=overlap_soft --set train.iterations=200")
    parser.add_argument("--out", type=Path, required=True, help="run folder (created)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (uses the config saved there)")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: continue although config.yaml or --set changed a key since the checkpoint "
                             "(refused by default; the change is recorded in metrics.jsonl)")
    parser.add_argument("--allow-outside-root", action="store_true",
                        help="let annotation files name images outside their image folder (absolute paths, '..', "
                             "symlinks out); refused by default")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (logs still go to metrics.jsonl; the final lines are still printed)")


def run(args: argparse.Namespace) -> int:
    from softsampling.engine.train import train

    if args.allow_config_change and not args.resume:
        raise SoftSamplingError("--allow-config-change applies only with --resume", fix="add --resume or drop it")
    saved = args.out / "config.yaml"
    if args.resume and saved.exists():
        cfg = apply_overrides(load_config(saved), args.overrides)
    elif args.resume and not (args.out / "last.pt").exists() and not args.config:
        raise SoftSamplingError("nothing to resume", file=args.out, fix="pass --config to start a new run here")
    else:
        cfg = apply_overrides(load_config(args.config), args.overrides)
    if not cfg.data.train:
        raise SoftSamplingError("no training data given", fix="--set data.train=PATH (or set data.train in the config)")
    final = train(cfg, args.out, resume=args.resume, progress=not args.no_progress,
                  allow_outside_root=args.allow_outside_root, allow_config_change=args.allow_config_change)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"trained {cfg.strategy}: weights in {final}")
    return 0

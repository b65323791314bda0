"""Train a Faster R-CNN with one label-assignment strategy.

Strategies (``--set strategy=...``, listed below with their parameters): a
name, or a list of rules applied in order such as
``--set strategy=[overlap_soft,pseudo_label]``. score_soft and pseudo_label
need ``--set prior_run=RUN_DIR``; upper_bound needs the curation manifest
(found beside the curated file). The run folder receives config.yaml (the
resolved config), labels.json, metrics.jsonl, last.pt (resumable checkpoint),
model.pt (final weights), and for pseudo_label pseudo_boxes.json (COCO) with
pseudo_boxes_summary.json.

Examples:
  softsampling train --config configs/digits.yaml --out runs/base50 \\
      --set data.train=digits/annotations/train_drop50.json --set strategy=baseline
  softsampling train --config configs/digits.yaml --out runs/oss50 \\
      --set data.train=digits/annotations/train_drop50.json --set strategy=overlap_soft
  softsampling train --config configs/digits.yaml --out runs/oss_pl50 \\
      --set data.train=digits/annotations/train_drop50.json --set prior_run=runs/base50 \\
      --set strategy=[overlap_soft,pseudo_label]
  softsampling train --out runs/oss50 --resume   # after a crash (needs runs/oss50/last.pt)
  torchrun --nproc-per-node 2 -m softsampling.cli train --config configs/voc.yaml --out runs/voc
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from softsampling.engine.config import apply_overrides, load_config
from softsampling.errors import SoftSamplingError
from softsampling.io import check_output_path, output_lock


def register(parser: argparse.ArgumentParser) -> None:
    plain_help = parser.format_help

    def help_with_strategies() -> str:  # the rule table imports torch: only when help is shown
        from softsampling.sampling.rules import describe_strategies

        parser.epilog = describe_strategies()
        return plain_help()

    parser.format_help = help_with_strategies  # type: ignore[method-assign]
    parser.add_argument("--config", type=Path, help="YAML config (see configs/); defaults apply to keys it omits")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set strategy=overlap_soft --set train.iterations=200",
    )
    parser.add_argument("--out", type=Path, required=True, help="run folder (created)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its last checkpoint last.pt (uses the config saved "
        "there); without a checkpoint it is an error, unless --config is given: then a new "
        "run starts from it (start-or-continue, e.g. in a retry loop)",
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue although config.yaml or --set changed a key since the checkpoint "
        "(refused by default; the change is recorded in metrics.jsonl)",
    )
    parser.add_argument(
        "--allow-outside-root",
        action="store_true",
        help="let annotation files name images outside their image folder (absolute paths, '..', "
        "symlinks out); refused by default",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (logs still go to metrics.jsonl; the final lines are still printed)",
    )


def run(args: argparse.Namespace) -> int:
    from softsampling.engine.checkpoint import FINAL, LAST
    from softsampling.engine.train import train
    from softsampling.sampling import strategy_name

    if args.allow_config_change and not args.resume:
        raise SoftSamplingError("--allow-config-change applies only with --resume", fix="add --resume or drop it")
    saved = args.out / "config.yaml"
    has_checkpoint = (args.out / LAST).is_file()
    if args.resume and not has_checkpoint and not args.config:
        what = "no checkpoint (last.pt)" if args.out.is_dir() else "no run folder"
        raise SoftSamplingError(
            f"nothing to resume: {what}",
            file=args.out,
            fix="start a new run here without --resume (e.g. --config "
            f"{saved if saved.is_file() else 'configs/digits.yaml'}), or check --out",
        )
    if args.resume and has_checkpoint and saved.exists():
        cfg = apply_overrides(load_config(saved), args.overrides)
    else:
        cfg = apply_overrides(load_config(args.config), args.overrides)
    if not cfg.data.train:
        raise SoftSamplingError("no training data given", fix="--set data.train=PATH (or set data.train in the config)")
    d = cfg.data
    inputs = [
        d.train,
        d.val,
        d.test,
        d.manifest,
        d.images,
        d.val_images,
        d.test_images,
        None if cfg.prior_run is None else Path(cfg.prior_run) / FINAL,
    ]
    if not (args.resume and has_checkpoint):
        inputs.append(args.config)  # a resumed run reads its own config.yaml
    datasets = [p for p in (d.train, d.val, d.test) if p and Path(p).is_dir()]  # VOC folders
    # --out may exist (train() checks what it holds), but never be, hold or lie in an input
    check_output_path(args.out, force=True, folder=True, inputs=inputs, keep_out_of=datasets)
    if args.resume and not has_checkpoint:
        print(f"no checkpoint in {args.out}: starting a new run from {args.config}")
    is_main = int(os.environ.get("RANK", "0")) == 0
    with output_lock(args.out):  # one training per run folder
        final = train(
            cfg,
            args.out,
            resume=args.resume,
            progress=not args.no_progress,
            allow_outside_root=args.allow_outside_root,
            allow_config_change=args.allow_config_change,
        )
    if is_main:
        print(f"trained {strategy_name(cfg.strategy)}: weights in {final}")
    return 0

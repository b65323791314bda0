"""Reproduce the paper's Table 1 and Figures 2, 3, 5 in one command.

Builds (or reuses) the dataset, curates it at each drop rate (nested, one
curation seed per replicate seed), trains every cell of the grid -- for each
seed, on the full annotations: baseline, overlap soft sampling and overlap
soft sampling + pseudo labels; at each drop
rate: baseline, hard negative (0.1, 0.2), overlap soft sampling, score soft
sampling, the upper bound, pseudo labels, objectness mining and overlap soft
sampling + pseudo labels (the two-round rows use that rate's baseline as
prior or teacher) -- evaluates each on validation and test (VOC mAP@0.5 and
the score-threshold sweep) and writes to --out: table1.md, table1.csv,
gap_closed.csv, targets.csv (the paper's targets (a)-(d) and the later
methods' (e)-(h); "the best new strategy" is chosen on validation mAP, never
test), results.csv, fig2_score_threshold.png, fig3_overlap.png (+ .json),
fig5_examples.png and report.md (also the validation mAP table and the pseudo
boxes' precision and recall against the dropped boxes). The open50 preset has
no drop rates: it trains baseline, hard negative (0.1) and overlap soft
sampling on Open Images as annotated, scores them with the official Open
Images metric at IoU 0.5 and writes table1.md/.csv (ours beside the paper's
numbers), results.csv, fig2 (test sweep), fig5 and report.md. The digits-one-stage preset trains a small RetinaNet
(digits_retinanet): baseline on the full data, and baseline, overlap soft
sampling, BRL and the upper bound at each drop rate; table1.md holds the
one-stage table and its targets.

Progress: runs done of total, time elapsed and time left, as a bar on a
terminal and as lines (one per run started or finished, one a minute) in a log.

Interrupted? Run the same command again: finished runs (keyed by a hash of
their config) are reused and unfinished ones resume from their checkpoint.

Presets:
  digits  (default) built-in digit scenes, drops 30/40/50%; ~25 min per seed (30 runs) on 2 idle CPU cores
  digits-hard  hard digit scenes (160 px, 3-30 digits, 4x sizes, Zipf classes, occlusion,
          textured clutter), drops 30/40/50%; ~32 min per seed (30 runs) on 2 idle CPU cores
  digits-one-stage  the digit scenes with a one-stage RetinaNet (digits_retinanet): baseline,
          overlap soft, BRL, upper bound at drops 30/40/50%; ~17 min per seed (measured)
  smoke   tiny digit set, one drop rate, a few iterations; < 3 min (used by CI)
  voc     PASCAL VOC 2007 trainval -> test, ResNet-50-FPN; needs --voc-root and a GPU
  open50  the paper's 50 Open Images classes, ResNet-50-FPN, Open Images metric; needs --oi-root
          (built by `softsampling data openimages-subset`, images in DIR/images/{train,test}) and a GPU

Examples:
  softsampling reproduce --out results/digits                       # one seed, ~25 min
  softsampling reproduce --seeds 0,1,2 --out results/digits         # the committed 3-seed study
  softsampling reproduce --preset smoke --out /tmp/smoke
  softsampling reproduce --seeds 1,2 --rows baseline,overlap_soft --out results/digits   # some rows only
  softsampling reproduce --preset digits-hard --seeds 0,1,2 --out results/digits-hard
  softsampling reproduce --preset digits-one-stage --seeds 0,1,2 --out results/digits-one-stage
  softsampling reproduce --preset voc --voc-root VOCdevkit/VOC2007 \\
      --backbone-weights resnet50-0676ba61.pth --jobs 1 --nproc-per-node 8 --out results/voc
  softsampling reproduce --preset open50 --oi-root data/open50 \\
      --backbone-weights resnet50-0676ba61.pth --jobs 1 --nproc-per-node 8 --out results/open50

See docs/reproduce.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from softsampling.errors import SoftSamplingError
from softsampling.experiments.presets import PRESET_NAMES, get_preset


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=PRESET_NAMES, default="digits", help="which study (default: digits)")
    parser.add_argument(
        "--seeds",
        default=None,
        metavar="S,S,...",
        help="replicate seeds (training and curation), e.g. 0,1,2 (default: 0)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder (created; reused when it exists)")
    parser.add_argument("--jobs", type=int, default=2, help="runs trained at the same time (default 2, one core each)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per run (OMP_NUM_THREADS; default 1)")
    parser.add_argument("--voc-root", default=None, metavar="DIR", help="voc preset: the VOCdevkit/VOC2007 folder")
    parser.add_argument(
        "--oi-root",
        default=None,
        metavar="DIR",
        help="open50 preset: the --out folder of `softsampling data openimages-subset`, "
        "with the images in DIR/images/train and DIR/images/test",
    )
    parser.add_argument(
        "--backbone-weights",
        default=None,
        metavar="NAME|FILE",
        help="voc and open50 presets: ResNet-50 ImageNet weights, a torchvision name "
        "(ResNet50_Weights.IMAGENET1K_V1, downloaded once into torchvision's cache) or a local file",
    )
    parser.add_argument(
        "--config", default=None, metavar="YAML", help="start every run from this config instead of the preset's"
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key in every run, e.g. --set train.iterations=300 "
        "(changes the runs' hashes: nothing is reused from runs with other values)",
    )
    parser.add_argument(
        "--nproc-per-node",
        type=int,
        default=1,
        metavar="N",
        help="train each run with torchrun on N processes (GPUs); use with --jobs 1",
    )
    parser.add_argument(
        "--rows",
        default=None,
        metavar="ROW,ROW,...",
        help="train only these rows of the grid (row keys as in the run names, e.g. "
        "baseline,overlap_soft,overlap_soft+pseudo_label; a two-round row needs baseline too); "
        "the report still covers every finished run of the grid",
    )
    parser.add_argument("--dry-run", action="store_true", help="prepare the data, list the runs and stop")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="train nothing: rebuild tables, figures and report from the finished runs",
    )


def parse_seeds(text: str | None) -> list[int]:
    """``"0,1,2" -> [0, 1, 2]``; ``None -> [0]``."""
    if text is None:
        return [0]
    try:
        seeds = [int(s) for s in text.split(",") if s.strip() != ""]
    except ValueError:
        raise SoftSamplingError(
            f"bad --seeds {text!r}", fix="give comma-separated integers, e.g. --seeds 0,1,2"
        ) from None
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise SoftSamplingError(f"bad --seeds {text!r}", fix="give distinct non-negative integers, e.g. --seeds 0,1,2")
    return seeds


def command_line(args: argparse.Namespace, seeds: list[int]) -> str:
    """The equivalent command line, for the report."""
    parts = [
        "softsampling",
        "reproduce",
        "--preset",
        args.preset,
        "--seeds",
        ",".join(map(str, seeds)),
        "--out",
        str(args.out),
        "--jobs",
        str(args.jobs),
    ]
    for flag in ("threads", "voc_root", "oi_root", "backbone_weights", "config", "nproc_per_node"):
        value = getattr(args, flag)
        if value is not None and not (flag in ("threads", "nproc_per_node") and value == 1):
            parts += ["--" + flag.replace("_", "-"), str(value)]
    for item in args.overrides:
        parts += ["--set", item]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from softsampling.experiments.grid import base_config
    from softsampling.io import check_output_path, output_lock

    started = time.perf_counter()
    preset = get_preset(
        args.preset, voc_root=args.voc_root, backbone_weights=args.backbone_weights, oi_root=args.oi_root
    )
    if args.config:
        preset = dataclasses.replace(preset, config=str(Path(args.config).resolve()))
    seeds = parse_seeds(args.seeds)
    if args.jobs < 1 or args.threads < 1 or args.nproc_per_node < 1:
        raise SoftSamplingError("--jobs, --threads and --nproc-per-node must be >= 1", fix="e.g. --jobs 2")
    out: Path = args.out
    command = command_line(args, seeds)
    overrides = list(args.overrides)
    if args.threads != 1:
        overrides.append(f"train.threads={args.threads}")
    base = base_config(preset, overrides)  # --config and --set are checked before anything is built
    # --out is reused when it exists (finished runs are kept), but it must be a folder apart from the inputs
    check_output_path(
        out,
        force=True,
        folder=True,
        inputs=[args.backbone_weights, args.config],
        keep_out_of=[args.voc_root, args.oi_root],
    )
    with output_lock(out):  # two studies into one folder would mix their runs
        return _reproduce(args, preset, seeds, base, overrides, command, started)


def _reproduce(
    args: argparse.Namespace,
    preset: Any,
    seeds: list[int],
    base: Any,
    overrides: list[str],
    command: str,
    started: float,
) -> int:
    from softsampling.experiments.grid import (
        CellOutcome,
        build_cells,
        is_finished,
        load_results,
        prepare_data,
        run_cells,
        select_rows,
        subprocess_launcher,
    )
    from softsampling.experiments.report import build_outputs
    from softsampling.io import write_json

    out: Path = args.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SoftSamplingError(
            f"cannot create the output folder ({exc.strerror})", file=out, fix="choose a writable folder path for --out"
        ) from None
    print(f"reproduce: preset {preset.name}, seeds {seeds}, output {out}")

    layout = prepare_data(preset, seeds, out)
    cells = build_cells(preset, seeds, layout, base)
    write_json(
        out / "reproduce.json",
        {
            "preset": dataclasses.asdict(preset),
            "seeds": seeds,
            "overrides": overrides,
            "command": command,
            "cells": [c.run_dir for c in cells],
        },
    )
    if args.dry_run:
        for c in cells:
            state = "finished" if is_finished(c, out) else "to run"
            print(f"{c.key:<36} {c.run_dir}  ({state})")
        return 0
    if args.report_only:
        outcomes = [
            CellOutcome(c, "reused", load_results(out / c.run_dir))
            if is_finished(c, out)
            else CellOutcome(c, "skipped", error="not finished (--report-only)")
            for c in cells
        ]
    else:
        prefix = None
        if args.nproc_per_node > 1:
            prefix = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--standalone",
                f"--nproc-per-node={args.nproc_per_node}",
            ]
        chosen = select_rows(cells, args.rows.split(",")) if args.rows else cells
        print(f"{len(chosen)} runs, {args.jobs} at a time")
        ran = run_cells(chosen, out, jobs=args.jobs, launcher=subprocess_launcher(prefix, threads=args.threads))
        by_key = {o.cell.key: o for o in ran}
        outcomes = [
            by_key.get(c.key)
            or (
                CellOutcome(c, "reused", load_results(out / c.run_dir))
                if is_finished(c, out)
                else CellOutcome(c, "skipped", error="not in --rows")
            )
            for c in cells
        ]
    report = build_outputs(
        out, preset, seeds, layout, outcomes, wall_seconds=time.perf_counter() - started, command=command
    )
    bad = [o for o in outcomes if o.status in ("failed", "skipped")]
    print(f"report: {report}  (table1.md, table1.csv, fig2/3/5 PNGs beside it); {time.perf_counter() - started:.0f} s")
    if bad:
        print(f"{len(bad)} run(s) failed or were skipped: {', '.join(o.cell.key for o in bad)}", file=sys.stderr)
        return 1
    return 0

"""Per-step overhead of the one-stage weighting against plain torchvision RetinaNet, measured side by side.

One training step = forward in train mode, backward of the summed losses, one
SGD step at learning rate 0 (so every variant keeps the same weights), as in
``bench/train_step_speed.py``, whose data, step and interleaving helpers this
script calls. The model is the one-stage digit model
(``softsampling.model.build_digits_retinanet``: the digit backbone, one
stride-8 map, 2048 anchors at 128 px, torchvision's ``RetinaNetHead`` with
GroupNorm as in configs/digits-retinanet.yaml; ``--head-norm none``: without), batch
8, on real digit scenes curated at 50% (so ``upper_bound`` has dropped boxes).

Variants (copies of one freshly initialised model):

    stock          torchvision RetinaNet as built (its own head.compute_loss)
    baseline       use_strategy(model, "baseline")        our head, every weight 1
    overlap_soft   use_strategy(model, "overlap_soft")    a=0.25, b=50, c=20
    brl            use_strategy(model, "brl")             Background Recalibration Loss
    hard_negative  use_strategy(model, "hard_negative")   min_overlap=0.1
    upper_bound    use_strategy(model, "upper_bound")     targets carry dropped_boxes

Each round runs one step of every variant on the same batch, in an order
rotated from round to round, so machine noise hits every variant alike. The
script reports the median step time per variant and the median over rounds of
the per-round ratio to ``stock`` (paired). Target: the weighting
(``overlap_soft``) at most 3% over ``stock``. To show where a difference comes
from, it then times the classification and box losses alone (the detector's
``compute_loss``, forward and backward, on fixed head outputs of one batch,
interleaved the same way) and prints each variant's extra milliseconds per
step against ``stock`` and their share of stock's median step.

    python bench/one_stage_step_speed.py                          # threads 1, 40 rounds
    python bench/one_stage_step_speed.py --rounds 10 --variants stock overlap_soft

Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from _machine import cpu_model  # noqa: E402 (bench/ helper, beside this script)
from torch import nn
from train_step_speed import Batch, interleaved_times, make_batches, paired_ratio  # noqa: E402 (beside this script)

from softsampling.model import build_digits_retinanet, use_strategy

VARIANTS = ("stock", "baseline", "overlap_soft", "brl", "hard_negative", "upper_bound")
TARGET = 0.03  # the weighting's overhead per step, at most


def build_variants(base: nn.Module, names: tuple[str, ...]) -> dict[str, tuple[nn.Module, torch.optim.Optimizer]]:
    """A copy of ``base`` per variant (same weights), each with an SGD optimizer at lr 0."""
    out = {}
    for name in names:
        model = copy.deepcopy(base)
        if name != "stock":
            model = use_strategy(model, name)
        model.train()
        out[name] = (model, torch.optim.SGD(model.parameters(), lr=0.0, momentum=0.9, weight_decay=1e-4))
    return out


def loss_times(
    variants: dict[str, tuple[nn.Module, torch.optim.Optimizer]], batch: Batch, rounds: int, warmup: int
) -> dict[str, list[float]]:
    """Seconds of ``detector.compute_loss`` + backward per variant, on one batch's fixed head outputs."""
    first = next(iter(variants.values()))[0]
    images, targets = batch
    with torch.no_grad():
        image_list, targets = first.transform(images, copy.deepcopy(targets))
        features = first.backbone(image_list.tensors)
        features = list(features.values()) if isinstance(features, dict) else [features]
        outputs = first.head(features)
        anchors = first.anchor_generator(image_list, features)
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            model = variants[name][0]
            head_outputs = {k: v.clone().requires_grad_() for k, v in outputs.items()}
            tic = time.perf_counter()
            sum(model.compute_loss(targets, head_outputs, anchors).values()).backward()
            if r >= warmup:
                times[name].append(time.perf_counter() - tic)
    return times


def report(times: dict[str, list[float]], threads: int) -> list[str]:
    """Median and p10-p90 step time per variant, and each one's paired ratio to ``stock``."""
    med = {n: statistics.median(v) for n, v in times.items()}
    lines = [
        f"threads={threads}: {len(next(iter(times.values())))} interleaved rounds",
        f"  {'variant':<14} {'median ms':>10} {'p10-p90 ms':>15} {'vs stock':>9} {'(paired)':>9}",
    ]
    for n, v in times.items():
        q = np.percentile(v, [10, 90]) * 1000
        ratio = (
            f"{med[n] / med['stock'] - 1:>+9.1%} {paired_ratio(times, n, 'stock') - 1:>+9.1%}" if "stock" in med else ""
        )
        lines.append(f"  {n:<14} {med[n] * 1000:>10.1f} {q[0]:>7.1f}-{q[1]:<7.1f} {ratio}")
    if "stock" in med and "overlap_soft" in med:
        paired = paired_ratio(times, "overlap_soft", "stock") - 1
        lines.append(
            f"  overlap_soft vs stock RetinaNet: paired {paired:+.1%} (ratio {paired + 1:.3f}); "
            f"target <= +{TARGET:.0%}: {'PASS' if paired <= TARGET else 'FAIL'}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, nargs="+", default=[1], help="torch intra-op threads to test (default 1)")
    p.add_argument("--rounds", type=int, default=40, help="measured interleaved rounds per thread setting (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="rounds run before measuring (default 5)")
    p.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    p.add_argument("--images", type=int, default=48, help="digit scenes generated (default 48 = 6 batches)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="variants to time")
    p.add_argument(
        "--head-norm",
        default="group",
        choices=("none", "group"),
        help="build_digits_retinanet's head_norm (default group, as configs/digits-retinanet.yaml)",
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)  # as the engine trains
    print(
        f"machine: nproc {os.cpu_count()}, {cpu_model()}, python {platform.python_version()}, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory(prefix="one_stage_step_speed_") as tmp:
        batches, num_classes = make_batches(Path(tmp), args.images, args.batch_size, args.seed)
    boxes = sum(len(t["boxes"]) for _, ts in batches for t in ts)
    print(f"data: {len(batches)} batches of {args.batch_size} digit scenes (128 px), {boxes} annotated boxes")
    print(f"model: build_digits_retinanet(head_norm={args.head_norm!r})")
    variants = build_variants(build_digits_retinanet(num_classes, head_norm=args.head_norm), tuple(args.variants))
    for threads in args.threads:
        torch.set_num_threads(threads)
        times = interleaved_times(variants, batches, args.rounds, args.warmup)
        print("\n".join(report(times, threads)))
        if "stock" in variants:
            step = statistics.median(times["stock"])
            loss = loss_times(variants, batches[0], args.rounds, args.warmup)
            stock_loss = statistics.median(loss["stock"])
            print(f"  losses alone (compute_loss + backward, one batch), stock {stock_loss * 1000:.1f} ms:")
            for name, values in loss.items():
                extra = statistics.median(values) - stock_loss
                print(f"    {name:<14} {extra * 1000:>+6.1f} ms/step = {extra / step:>+6.1%} of stock's step")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

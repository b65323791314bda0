"""Training-step speed of the label-assignment strategies, measured side by side.

One training step = forward in train mode, backward of the summed losses,
one SGD step (at learning rate 0, so every variant keeps the same weights and
meets the same proposals from step to step). The model is the digit
benchmark's (``softsampling.model.build_digits_model``), batch 8, on real
digit scenes written by ``softsampling.data.digits.make_digit_scenes`` into a
temporary folder, curated at 50% (``softsampling.data.curate``) so that the
strategies see missing annotations and ``upper_bound`` has dropped boxes.

Variants (all copies of one model, briefly trained first with the stock head
so that the RPN proposes realistic boxes):

    stock          torchvision FasterRCNN as built (its own RoIHeads)
    baseline       use_strategy(model, "baseline")
    overlap_soft   use_strategy(model, "overlap_soft")            a=0.25, b=50, c=20
    hard_negative  use_strategy(model, "hard_negative")           min_overlap=0.1
    upper_bound    use_strategy(model, "upper_bound")             targets carry dropped_boxes
    score_soft     use_strategy(model, "score_soft", prior=...)   + the prior's forward
    tv_roi_align   baseline with torchvision's own MultiScaleRoIAlign (its element-wise CPU backward)
                   instead of the digit model's FastBackwardRoIAlign: what the vectorised backward saves

Steps are interleaved: each round runs one step of every variant on the same
batch, in an order rotated from round to round, so machine noise (other jobs,
frequency changes) hits every variant alike. After warm-up rounds, the script
reports the median step time per variant and the median over rounds of the
per-round ratio to ``baseline`` (or to ``stock``). Targets: baseline within 3%
of stock, overlap_soft at most 3% over baseline. It then profiles baseline
steps with ``torch.profiler`` and prints the top operators by self CPU time.

    python bench/train_step_speed.py                      # threads 1 and 2, 40 rounds each
    python bench/train_step_speed.py --rounds 10 --threads 1 --no-profile   # quick look

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
from torchvision.ops import MultiScaleRoIAlign

from softsampling.data.curate import curate
from softsampling.data.digits import make_digit_scenes
from softsampling.data.formats import load_dataset
from softsampling.engine.data import DetectionTrainingSet, LabelMap, collate
from softsampling.model import PriorScorer, build_digits_model, use_strategy
from softsampling.sampling import median_thresholds

Batch = tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]
VARIANTS = ("stock", "baseline", "overlap_soft", "hard_negative", "upper_bound", "score_soft", "tv_roi_align")


# ----------------------------------------------------------------------------- data
def make_batches(folder: Path, num_images: int, batch_size: int, seed: int) -> tuple[list[Batch], int]:
    """Digit scenes curated at 50%, as ``num_images // batch_size`` training batches; also the class count."""
    make_digit_scenes(folder / "digits", train=num_images, val=0, test=0, seed=seed)
    ds = load_dataset(folder / "digits" / "annotations" / "train.json", "coco")
    result = curate(ds, rate=0.5, seed=seed)
    gone = np.flatnonzero(result.dropped)
    dropped = {int(r): ds.boxes[gone[ds.box_image[gone] == r]] for r in np.unique(ds.box_image[gone])}
    label_map = LabelMap.from_dataset(ds)
    train_set = DetectionTrainingSet(result.dataset, label_map, dropped=dropped, cache=True)
    batches = []
    for start in range(0, num_images - batch_size + 1, batch_size):
        images, targets = collate([train_set[i] for i in range(start, start + batch_size)])
        batches.append((images, [{k: v for k, v in t.items() if k != "image_index"} for t in targets]))
    return batches, label_map.num_classes


# ---------------------------------------------------------------------------- model
def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, batch: Batch) -> float:
    """One training step; returns its wall time in seconds."""
    images, targets = batch
    tic = time.perf_counter()
    losses = model(images, targets)
    loss = sum(losses.values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - tic


def pretrain(model: nn.Module, batches: list[Batch], iterations: int, lr: float) -> None:
    """A short real training run (so the RPN and the prior are not random)."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    for i in range(iterations):
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (i + 1) / 20)
        train_step(model, optimizer, batches[i % len(batches)])


def prior_thresholds(prior: nn.Module, batches: list[Batch], num_classes: int) -> torch.Tensor:
    """T per class: median prior score of the annotated boxes (as softsampling.engine.prior does)."""
    scorer = PriorScorer(copy.deepcopy(prior))
    scores, labels = [], []
    for images, targets in batches:
        for s, t in zip(scorer.score_images(images, [t["boxes"] for t in targets]), targets, strict=True):
            scores.append(s.gather(1, t["labels"].view(-1, 1)).view(-1))
            labels.append(t["labels"])
    return median_thresholds(torch.cat(scores), torch.cat(labels), num_classes)


Variants = dict[str, tuple[nn.Module, torch.optim.Optimizer]]


def build_variants(base: nn.Module, thresholds: torch.Tensor, names: tuple[str, ...]) -> Variants:
    """A copy of ``base`` per variant (same weights), each with an SGD optimizer at lr 0."""
    out = {}
    for name in names:
        model = copy.deepcopy(base)
        if name == "score_soft":
            model = use_strategy(model, "score_soft", prior=copy.deepcopy(base), thresholds=thresholds)
        elif name == "tv_roi_align":
            pool = model.roi_heads.box_roi_pool
            model.roi_heads.box_roi_pool = MultiScaleRoIAlign(
                featmap_names=pool.featmap_names, output_size=pool.output_size, sampling_ratio=pool.sampling_ratio
            )
            model = use_strategy(model, "baseline")
        elif name != "stock":
            model = use_strategy(model, name)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        out[name] = (model, torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4))
    return out


# -------------------------------------------------------------------------- measure
def interleaved_times(variants: Variants, batches: list[Batch], rounds: int, warmup: int) -> dict[str, list[float]]:
    """Step times per variant: every round runs each variant once on the same batch, order rotated."""
    names = list(variants)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(warmup + rounds):
        batch = batches[r % len(batches)]
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            model, optimizer = variants[name]
            t = train_step(model, optimizer, batch)
            if r >= warmup:
                times[name].append(t)
    return times


def paired_ratio(times: dict[str, list[float]], name: str, reference: str) -> float:
    """Median over rounds of ``time[name] / time[reference]`` (same round, same batch)."""
    return statistics.median(a / b for a, b in zip(times[name], times[reference], strict=True))


def report(times: dict[str, list[float]], threads: int) -> list[str]:
    med = {n: statistics.median(v) for n, v in times.items()}
    lines = [
        f"threads={threads}: {len(next(iter(times.values())))} interleaved rounds",
        f"  {'variant':<14} {'median ms':>10} {'p10-p90 ms':>15} {'vs baseline':>12} {'(paired)':>9}",
    ]
    for n, v in times.items():
        q = np.percentile(v, [10, 90]) * 1000
        ref = "baseline" if "baseline" in med else n
        lines.append(
            f"  {n:<14} {med[n] * 1000:>10.1f} {q[0]:>7.1f}-{q[1]:<7.1f} "
            f"{med[n] / med[ref] - 1:>+11.1%} {paired_ratio(times, n, ref) - 1:>+9.1%}"
        )
    if "stock" in med and "baseline" in med:
        lines.append(
            f"  baseline vs stock: {med['baseline'] / med['stock'] - 1:+.1%} "
            f"(paired {paired_ratio(times, 'baseline', 'stock') - 1:+.1%}; target within 3%)"
        )
    if "tv_roi_align" in med and "baseline" in med:
        lines.append(
            f"  baseline with torchvision's RoIAlign: {med['tv_roi_align'] / med['baseline'] - 1:+.1%} "
            f"(paired {paired_ratio(times, 'tv_roi_align', 'baseline') - 1:+.1%}) over FastBackwardRoIAlign"
        )
    if "overlap_soft" in med and "baseline" in med:
        lines.append(
            f"  overlap_soft vs baseline: {med['overlap_soft'] / med['baseline'] - 1:+.1%} "
            f"(paired {paired_ratio(times, 'overlap_soft', 'baseline') - 1:+.1%}; target <= +3%)"
        )
    return lines


def profile(
    model: nn.Module, optimizer: torch.optim.Optimizer, batches: list[Batch], steps: int, top: int
) -> list[str]:
    """Top operators by self CPU time over ``steps`` training steps, and roi_align backward's share."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    for b in batches[:2]:
        train_step(model, optimizer, b)
    wall = 0.0
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            wall += train_step(model, optimizer, batches[i % len(batches)])
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    lines = [
        f"profile: {steps} steps, {wall / steps * 1000:.1f} ms/step under the profiler; "
        f"top {top} operators by self CPU time"
    ]
    for e in events[:top]:
        lines.append(
            f"  {e.self_cpu_time_total / total:>6.1%}  {e.self_cpu_time_total / steps / 1000:>7.2f} ms/step  "
            f"{e.count // steps:>5} calls/step  {e.key}"
        )
    roi = sum(e.self_cpu_time_total for e in events if "roi_align" in e.key.lower() and "backward" in e.key.lower())
    lines.append(f"  roi_align backward: {roi / total:.1%} of self CPU time")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch intra-op threads to test (default 1 2)"
    )
    p.add_argument("--rounds", type=int, default=40, help="measured interleaved rounds per thread setting (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="rounds run before measuring (default 5)")
    p.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    p.add_argument("--images", type=int, default=48, help="digit scenes generated (default 48 = 6 batches)")
    p.add_argument("--pretrain", type=int, default=100, help="stock training iterations before copying (default 100)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS, help="variants to time")
    p.add_argument("--no-profile", action="store_true", help="skip the torch.profiler table")
    p.add_argument("--profile-steps", type=int, default=10, help="baseline steps under the profiler (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--no-deterministic",
        action="store_true",
        help="do not call torch.use_deterministic_algorithms (the engine does by default)",
    )
    args = p.parse_args(argv)

    torch.manual_seed(args.seed)
    if not args.no_deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.set_num_threads(1)
    print(
        f"machine: nproc {os.cpu_count()}, {cpu_model()}, python {platform.python_version()}, "
        f"torch {torch.__version__}, torchvision {torchvision.__version__}, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    with tempfile.TemporaryDirectory(prefix="train_step_speed_") as tmp:
        batches, num_classes = make_batches(Path(tmp), args.images, args.batch_size, args.seed)
    boxes = sum(len(t["boxes"]) for _, ts in batches for t in ts)
    dropped = sum(len(t["dropped_boxes"]) for _, ts in batches for t in ts)
    print(
        f"data: {len(batches)} batches of {args.batch_size} digit scenes (128 px), {boxes} annotated boxes, "
        f"{dropped} dropped (curated at 50%)"
    )

    base = build_digits_model(num_classes=num_classes)
    tic = time.perf_counter()
    pretrain(base, batches, args.pretrain, lr=0.02)
    print(f"pretrained the stock model for {args.pretrain} iterations ({time.perf_counter() - tic:.1f} s)")
    thresholds = prior_thresholds(base, batches, num_classes)
    variants = build_variants(base, thresholds, tuple(args.variants))

    for threads in args.threads:
        torch.set_num_threads(threads)
        times = interleaved_times(variants, batches, args.rounds, args.warmup)
        print("\n".join(report(times, threads)))
    if not args.no_profile:
        torch.set_num_threads(1)
        name = "baseline" if "baseline" in variants else next(iter(variants))
        print(f"[{name}, threads=1] " + "\n".join(profile(*variants[name], batches, args.profile_steps, top=12)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Per-step cost of the rule framework against the head it replaced, measured side by side.

Issue 10 turned label assignment into composable rules (``softsampling.sampling.rules``).
Its speed target: for the existing strategies, the rule framework adds at most 3% per
training step over the previous head. Two versions of a package cannot share one Python
process, so this script starts one worker process per source tree:

    new   this checkout's ``src/``
    ref   ``src/`` of git revision ``--ref`` (default: the commit before the rules were merged),
          extracted with ``git archive`` into a temporary folder

Both workers load the same pretrained digit model (``softsampling.model.build_digits_model``,
pretrained here for ``--pretrain`` iterations with the stock head) and the same batches
(digit scenes curated at 50%, as in ``bench/train_step_speed.py``), install each strategy with
their own ``use_strategy`` and take steps on command: forward in train mode, backward, SGD at
learning rate 0 (weights and proposals stay the same from step to step). The parent
interleaves them: every round runs each (strategy, tree) once on the same batch, in an order
rotated from round to round, so machine noise hits both trees alike. Reported: median step
time per (strategy, tree) and the median over rounds of the per-round ratio new / ref.
Both workers pool with torchvision's own ``MultiScaleRoIAlign`` (this checkout's digit model
has a faster RoIAlign backward, ``softsampling.model.roi_align``, that would otherwise count
as the rules' gain), so only the heads differ.

    python bench/rules_overhead.py                     # 40 rounds, baseline overlap_soft hard_negative upper_bound
    python bench/rules_overhead.py --rounds 10         # quick look

Results are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
REF = "3cf6d8b^1"  # main just before "Merge h-f: assignment as composable rules"
STRATEGIES = ("baseline", "overlap_soft", "hard_negative", "upper_bound")

WORKER = r"""
import sys, time, torch
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True, warn_only=True)
from torchvision.ops import MultiScaleRoIAlign
from softsampling.model import build_digits_model, use_strategy
state_path, strategies = sys.argv[1], sys.argv[2].split(",")
saved = torch.load(state_path, weights_only=False)
batches = saved["batches"]
models = {}
for name in strategies:
    model = build_digits_model(num_classes=saved["num_classes"])
    model.load_state_dict(saved["state"])
    pool = model.roi_heads.box_roi_pool  # both trees pool with torchvision's RoIAlign: only the head differs
    model.roi_heads.box_roi_pool = MultiScaleRoIAlign(
        featmap_names=pool.featmap_names, output_size=pool.output_size, sampling_ratio=pool.sampling_ratio
    )
    model = use_strategy(model, name)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    models[name] = (model, torch.optim.SGD(params, lr=0.0, momentum=0.9, weight_decay=1e-4))
print("ready", flush=True)
for line in sys.stdin:
    name, index = line.split()
    model, optimizer = models[name]
    images, targets = batches[int(index)]
    tic = time.perf_counter()
    loss = sum(model(images, targets).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    print(f"{time.perf_counter() - tic:.6f}", flush=True)
"""


def extract_ref(rev: str, into: Path) -> Path:
    """``src/`` of git revision ``rev`` under ``into``; returns the folder to put on PYTHONPATH."""
    data = subprocess.run(["git", "archive", rev, "src"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


class Worker:
    """One process on one source tree, taking training steps on command."""

    def __init__(self, src: Path, state_path: Path, strategies: tuple[str, ...]) -> None:
        env = {**os.environ, "PYTHONPATH": str(src), "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(state_path), ",".join(strategies)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"worker on {src} failed to start (got {line!r})")

    def step(self, name: str, batch: int) -> float:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{name} {batch}\n")
        self.proc.stdin.flush()
        return float(self.proc.stdout.readline())

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ref", default=REF, help=f"git revision of the previous head (default {REF})")
    p.add_argument("--rounds", type=int, default=40, help="measured interleaved rounds (default 40)")
    p.add_argument("--warmup", type=int, default=5, help="rounds run before measuring (default 5)")
    p.add_argument("--images", type=int, default=48, help="digit scenes generated (default 48 = 6 batches of 8)")
    p.add_argument("--pretrain", type=int, default=100, help="stock training iterations first (default 100)")
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    from train_step_speed import make_batches, pretrain  # noqa: E402 (bench/ helper beside this script)

    from softsampling.model import build_digits_model

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True, warn_only=True)
    rev = subprocess.run(["git", "rev-parse", "--short", args.ref], cwd=ROOT, check=True, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True, capture_output=True)
    print(
        f"machine: nproc {os.cpu_count()}, python {platform.python_version()}, torch {torch.__version__}, "
        f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}; "
        f"ref {rev.stdout.decode().strip()} vs new {head.stdout.decode().strip()} (+ working tree)"
    )
    strategies = tuple(args.strategies)
    with tempfile.TemporaryDirectory(prefix="rules_overhead_") as tmp_name:
        tmp = Path(tmp_name)
        batches, num_classes = make_batches(tmp, args.images, 8, args.seed)
        model = build_digits_model(num_classes=num_classes)
        pretrain(model, batches, args.pretrain, lr=0.02)
        state_path = tmp / "state.pt"
        torch.save({"state": model.state_dict(), "batches": batches, "num_classes": num_classes}, state_path)
        workers = {
            "ref": Worker(extract_ref(args.ref, tmp / "ref"), state_path, strategies),
            "new": Worker(ROOT / "src", state_path, strategies),
        }
        slots = [(s, tree) for s in strategies for tree in workers]
        times: dict[tuple[str, str], list[float]] = {slot: [] for slot in slots}
        tic = time.perf_counter()
        for r in range(args.warmup + args.rounds):
            shift = r % len(slots)
            for strategy, tree in slots[shift:] + slots[:shift]:
                t = workers[tree].step(strategy, r % len(batches))
                if r >= args.warmup:
                    times[(strategy, tree)].append(t)
        for w in workers.values():
            w.close()
    print(f"{args.rounds} rounds (+{args.warmup} warm-up) in {time.perf_counter() - tic:.0f} s\n")
    print("| strategy | ref median step | new median step | new / ref (median of per-round ratios) |")
    print("|---|---|---|---|")
    for s in strategies:
        ref, new = times[(s, "ref")], times[(s, "new")]
        ratio = statistics.median(n / r for n, r in zip(new, ref, strict=True))
        print(
            f"| {s} | {1000 * statistics.median(ref):.1f} ms | {1000 * statistics.median(new):.1f} ms "
            f"| {100 * (ratio - 1):+.1f}% |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

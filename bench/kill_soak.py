"""Timing-based SIGKILL soak of training: many kills at random moments, then bit-identical weights.

The CI test (tests/reliability/test_kill_harness.py) places its 10 kills at chosen iterations and
checkpoint writes (``SOFTSAMPLING_TEST_KILL_AT``), so it does not depend on the machine's speed.
This soak is the complement: it kills the training process from outside with SIGKILL at seeded
random wall-clock moments -- during start-up, inside the training loop, and while ``last.pt`` is
being written (while its temp file exists) -- resuming with ``--resume`` after each kill. After every
kill ``last.pt`` must load with ``torch.load(weights_only=True)`` and never go backwards; at the end
the weights must equal the uninterrupted run's bit for bit. Where the kills land depends on the
machine's speed and load, so it is a benchmark, not a CI test; it prints the figures quoted in
docs/reliability.md.

  python bench/kill_soak.py                       # 50 kills, 150 iterations (~4 min on 2 cores)
  python bench/kill_soak.py --kills 200 --iterations 600 --seed 3 --work /tmp/soak

Exit status 0 when every kill was survived and the final weights equal the uninterrupted run's;
an AssertionError (status 1) names what broke, e.g. "the run finished after 9 kills; raise
iterations above 30" when the machine is faster than the iteration count allows.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.reliability.test_kill_harness import CLI, make_tiny_digits, temp_files, train_args  # noqa: E402


def _kill_at_random_moment(
    proc: subprocess.Popen, run: Path, mode: str, rng: random.Random, launched_ns: int, window_s: float
) -> bool:
    """SIGKILL ``proc`` at a moment chosen by ``mode``; False if it exited first.

    ``startup``: 0.2..2.5 s after launch (reading data, building the model);
    ``loop``: 0..window_s after the training loop started (config.yaml rewritten);
    ``write``: while the n-th checkpoint of this launch (n = 1..3) is being written,
    i.e. while its temp file ``.last.pt.XXXX.tmp`` exists.
    """
    config = run / "config.yaml"
    seen: set[str] = set(temp_files(run))
    wanted = rng.randint(1, 3)
    deadline = time.monotonic() + (rng.uniform(0.2, 2.5) if mode == "startup" else 600.0)
    loop_deadline = None
    while proc.poll() is None:
        now = time.monotonic()
        if mode == "startup" and now >= deadline:
            break
        if mode == "loop":
            if loop_deadline is None and config.exists() and config.stat().st_mtime_ns >= launched_ns:
                loop_deadline = now + rng.uniform(0.0, window_s)
            if loop_deadline is not None and now >= loop_deadline:
                break
        if mode == "write":
            new = {n for n in temp_files(run) if n.startswith(".last.pt.")} - seen
            if new:
                seen |= new
                wanted -= 1
                if wanted == 0:
                    break
        time.sleep(0.0005 if mode == "write" else 0.005)
    if proc.poll() is not None:
        return False
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return True


def run_kill_soak(
    train_json: Path,
    work: Path,
    *,
    kills: int,
    iterations: int,
    seed: int = 0,
    window_s: float = 0.6,
    log: Callable[[str], None] = lambda s: None,
) -> dict[str, Any]:
    """Train once straight, once with ``kills`` SIGKILLs and resumes; return the measured figures.

    Raises AssertionError if a checkpoint is unreadable, a resume fails, or the final weights differ.
    """
    args = train_args(train_json, iterations)
    started = time.perf_counter()
    straight = work / "straight"
    subprocess.run([*CLI, *args, "--out", str(straight)], check=True, capture_output=True, timeout=600)
    straight_s = time.perf_counter() - started
    log(f"uninterrupted run: {iterations} iterations in {straight_s:.1f} s")

    run = work / "killed"
    rng = random.Random(seed)
    records: list[dict[str, Any]] = []
    soak_started = time.perf_counter()
    last_iteration = 0
    while len(records) < kills:
        mode = rng.choices(["startup", "loop", "write"], weights=[1, 2, 2])[0]
        stale = temp_files(run)
        launched_ns = time.time_ns()
        errors = work / "stderr.txt"
        with open(errors, "wb") as err:
            proc = subprocess.Popen([*CLI, *args, "--out", str(run), "--resume"], stdout=subprocess.DEVNULL, stderr=err)
            killed = _kill_at_random_moment(proc, run, mode, rng, launched_ns, window_s)
        if not killed:
            assert proc.returncode == 0, errors.read_text()
            raise AssertionError(f"the run finished after {len(records)} kills; raise iterations above {iterations}")
        mid_write = any(n.startswith(".last.pt.") for n in temp_files(run) - stale)  # this launch's write
        iteration = 0
        if (run / "last.pt").exists():
            state = torch.load(run / "last.pt", weights_only=True)  # must never be torn
            iteration = int(state["iteration"])
        assert iteration >= last_iteration, "a resume went backwards"
        last_iteration = iteration
        records.append({"mode": mode, "iteration": iteration, "mid_write": mid_write})
        log(
            f"kill {len(records):2d}: {mode:<7} last.pt at iteration {iteration:3d}"
            f"{'  (killed inside a checkpoint write)' if mid_write else ''}"
        )
    final = subprocess.run([*CLI, *args, "--out", str(run), "--resume"], capture_output=True, timeout=600)
    assert final.returncode == 0, final.stderr.decode()
    soak_s = time.perf_counter() - soak_started

    a = torch.load(straight / "model.pt", weights_only=True)["model"]
    b = torch.load(run / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ from the uninterrupted run: {differing[:5]}"
    assert (straight / "metrics.jsonl").read_text().count("\n") == (run / "metrics.jsonl").read_text().count("\n")
    assert temp_files(run) == set(), "resume removes temp files that kills left behind"
    summary = {
        "kills": len(records),
        "mid_write_kills": sum(r["mid_write"] for r in records),
        "modes": {m: sum(r["mode"] == m for r in records) for m in ("startup", "loop", "write")},
        "iterations_at_kills": [r["iteration"] for r in records],
        "iterations": iterations,
        "straight_seconds": round(straight_s, 1),
        "soak_seconds": round(soak_s, 1),
        "seconds_per_kill": round(soak_s / len(records), 1),
        "identical_weights": True,
    }
    log(f"{summary}")
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=50, help="SIGKILLs to survive (default 50)")
    parser.add_argument("--iterations", type=int, default=150, help="training iterations (default 150)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments (default 0)")
    parser.add_argument("--window", type=float, default=0.6, help="seconds of the in-loop kill window (default 0.6)")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a new temp folder)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="kill_soak_"))
    work.mkdir(parents=True, exist_ok=True)
    train_json = make_tiny_digits(work / "digits")
    summary = run_kill_soak(
        train_json, work, kills=args.kills, iterations=args.iterations, seed=args.seed, window_s=args.window, log=print
    )
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Crashes and faults: SIGKILL at random moments, and outputs that cannot be written.

Training: :func:`run_kill_soak` trains a tiny digit set once without
interruption, then again while killing the process with SIGKILL at seeded
random moments -- during start-up, inside the training loop, and while
``last.pt`` is being written -- resuming with ``--resume`` after each kill.
After every kill ``last.pt`` must load with ``torch.load(weights_only=True)``;
at the end the weights must equal the uninterrupted run's bit for bit.
bench/kill_soak.py runs the same harness longer.

Curation and evaluation killed mid-way: every visible output is either absent
or complete (byte-identical to an uninterrupted run's). A kill inside an
atomic write can leave only a hidden ``.NAME.XXXX.tmp`` beside it.

NaN/inf losses are covered by tests/engine/test_train.py
(test_non_finite_loss_stops_with_advice_and_keeps_last_checkpoint); reproduce
resuming from finished cells by tests/experiments/test_grid.py.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import torch

from tests.conftest import REPO
from tests.reliability.helpers import BAD, assert_one_line_error, files_under, run_cli

CLI = [sys.executable, "-m", "softsampling.cli"]


# ------------------------------------------------------------------ the training kill harness
def make_tiny_digits(root: Path) -> Path:
    from softsampling.data.digits import make_digit_scenes

    make_digit_scenes(root, train=8, val=1, test=1, size=64, seed=0)
    return root / "annotations" / "train.json"


def train_args(train_json: Path, iterations: int) -> list[str]:
    return ["train", "--config", str(REPO / "configs" / "digits.yaml"), "--set", f"data.train={train_json}",
            "--set", "data.val=null", "--set", "data.test=null", "--set", f"train.iterations={iterations}",
            "--set", "train.batch_size=2", "--set", "train.checkpoint_every=1", "--set", "train.log_every=1",
            "--set", "train.warmup_iterations=2", "--set", "train.threads=1", "--no-progress"]


def _temp_files(run: Path) -> set[str]:
    try:
        return {e.name for e in os.scandir(run) if e.name.startswith(".") and e.name.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def _kill_at_random_moment(proc: subprocess.Popen, run: Path, mode: str, rng: random.Random,
                           launched_ns: int, window_s: float) -> bool:
    """SIGKILL ``proc`` at a moment chosen by ``mode``; False if it exited first.

    ``startup``: 0.2..2.5 s after launch (reading data, building the model);
    ``loop``: 0..window_s after the training loop started (config.yaml rewritten);
    ``write``: while the n-th checkpoint of this launch (n = 1..3) is being written,
    i.e. while its temp file ``.last.pt.XXXX.tmp`` exists.
    """
    config = run / "config.yaml"
    seen: set[str] = set(_temp_files(run))
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
            new = {n for n in _temp_files(run) if n.startswith(".last.pt.")} - seen
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


def run_kill_soak(train_json: Path, work: Path, *, kills: int, iterations: int, seed: int = 0,
                  window_s: float = 0.6, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
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
        stale = _temp_files(run)
        launched_ns = time.time_ns()
        errors = work / "stderr.txt"
        with open(errors, "wb") as err:
            proc = subprocess.Popen([*CLI, *args, "--out", str(run), "--resume"], stdout=subprocess.DEVNULL,
                                    stderr=err)
            killed = _kill_at_random_moment(proc, run, mode, rng, launched_ns, window_s)
        if not killed:
            assert proc.returncode == 0, errors.read_text()
            raise AssertionError(f"the run finished after {len(records)} kills; raise iterations above {iterations}")
        mid_write = any(n.startswith(".last.pt.") for n in _temp_files(run) - stale)  # this launch's write
        iteration = 0
        if (run / "last.pt").exists():
            state = torch.load(run / "last.pt", weights_only=True)  # must never be torn
            iteration = int(state["iteration"])
        assert iteration >= last_iteration, "a resume went backwards"
        last_iteration = iteration
        records.append({"mode": mode, "iteration": iteration, "mid_write": mid_write})
        log(f"kill {len(records):2d}: {mode:<7} last.pt at iteration {iteration:3d}"
            f"{'  (killed inside a checkpoint write)' if mid_write else ''}")
    final = subprocess.run([*CLI, *args, "--out", str(run), "--resume"], capture_output=True, timeout=600)
    assert final.returncode == 0, final.stderr.decode()
    soak_s = time.perf_counter() - soak_started

    a = torch.load(straight / "model.pt", weights_only=True)["model"]
    b = torch.load(run / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ from the uninterrupted run: {differing[:5]}"
    assert (straight / "metrics.jsonl").read_text().count("\n") == (run / "metrics.jsonl").read_text().count("\n")
    assert _temp_files(run) == set(), "resume removes temp files that kills left behind"
    summary = {
        "kills": len(records), "mid_write_kills": sum(r["mid_write"] for r in records),
        "modes": {m: sum(r["mode"] == m for r in records) for m in ("startup", "loop", "write")},
        "iterations_at_kills": [r["iteration"] for r in records], "iterations": iterations,
        "straight_seconds": round(straight_s, 1), "soak_seconds": round(soak_s, 1),
        "seconds_per_kill": round(soak_s / len(records), 1), "identical_weights": True,
    }
    log(f"{summary}")
    return summary


@pytest.mark.slow
def test_training_survives_10_sigkills_and_ends_bit_identical(tmp_path):
    train_json = make_tiny_digits(tmp_path / "digits")
    summary = run_kill_soak(train_json, tmp_path, kills=10, iterations=30, seed=0, log=print)
    assert summary["kills"] == 10
    assert summary["mid_write_kills"] >= 1, "at least one kill must land inside a checkpoint write"
    assert summary["modes"]["loop"] >= 1 and summary["modes"]["startup"] >= 1


def test_a_torn_metrics_line_and_stale_temp_files_do_not_stop_a_resume(tmp_path):
    from softsampling.engine.train import _truncate_metrics
    from softsampling.io import remove_stale_temp_files

    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"iteration": 1, "loss": 2.0}\n{"iteration": 2, "loss": 1.5}\n{"iteration": 3, "lo')
    _truncate_metrics(metrics, 2)
    assert metrics.read_text() == '{"iteration": 1, "loss": 2.0}\n{"iteration": 2, "loss": 1.5}\n'
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / "last.pt").write_bytes(b"kept")
    assert [p.name for p in remove_stale_temp_files(tmp_path)] == [".last.pt.abc123.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "metrics.jsonl"]


# ------------------------------------------------------------------ curation and evaluation killed mid-way
def _visible_outputs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in files_under(folder) if not p.name.startswith(".")}


def _kill_midway(argv: list[str], out: Path, *, kills: int, seed: int) -> dict[str, int]:
    """Run ``argv`` to completion once, then ``kills`` times killed at seeded random moments of its lifetime."""
    t0 = time.perf_counter()
    subprocess.run([*CLI, *argv, "--force"], check=True, capture_output=True, timeout=300)
    duration = time.perf_counter() - t0
    reference = _visible_outputs(out)
    assert reference
    rng = random.Random(seed)
    complete = absent = temp_left = 0
    for _ in range(kills):
        for p in files_under(out):
            p.unlink()
        proc = subprocess.Popen([*CLI, *argv, "--force"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.5, 1.05) * duration)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        seen = _visible_outputs(out)
        for name, data in seen.items():
            assert data == reference[name], f"{name} is partial after a kill"
        complete += len(seen)
        absent += len(reference) - len(seen)
        temp_left += sum(p.name.startswith(".") for p in files_under(out))
    return {"complete": complete, "absent": absent, "temp_files": temp_left}


@pytest.mark.slow
def test_curate_killed_midway_leaves_complete_files_or_none(coco128_json, tmp_path):
    out = tmp_path / "out"
    argv = ["curate", "--input", str(coco128_json), "--format", "coco", "--drop-rate", "0.5", "--seed", "0",
            "--out", str(out / "curated.json")]
    counts = _kill_midway(argv, out, kills=4, seed=1)
    print(counts)
    assert counts["complete"] + counts["absent"] == 4 * 2


@pytest.mark.slow
def test_evaluate_killed_midway_leaves_complete_files_or_none(cartucho_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["evaluate", "--gt", str(cartucho_dir / "ground-truth"), "--gt-format", "txt",
            "--detections", str(cartucho_dir / "detection-results"), "--out", str(out / "results.json"),
            "--plot", str(out / "sweep.png")]
    counts = _kill_midway(argv, out, kills=4, seed=2)
    print(counts)
    assert counts["complete"] + counts["absent"] == 4 * 2


# ------------------------------------------------------------------ unwritable output: refused before any work
def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder where creating a file fails. Root ignores permission bits, so use /proc there."""
    if os.geteuid() == 0:
        return Path("/proc")
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o500)
    return folder


def _outputs_under(base: Path) -> dict[str, list]:
    good = BAD / "coco_good.json"
    return {
        "curate": ["curate", "--input", good, "--format", "coco", "--drop-rate", "0.5", "--seed", "0",
                   "--out", base / "curated.json"],
        "train": ["train", "--config", REPO / "configs" / "digits.yaml", "--set", f"data.train={good}",
                  "--out", base / "run", "--no-progress"],
        "evaluate": ["evaluate", "--gt", good, "--gt-format", "coco", "--detections", BAD / "det_good.json",
                     "--out", base / "results.json"],
        "data": ["data", "digits", "--out", base / "digits", "--train", "2000"],
    }


@pytest.mark.parametrize("where", ["under_a_file", "unwritable_folder"])
@pytest.mark.parametrize("command", ["curate", "train", "evaluate", "data"])
def test_unwritable_output_is_refused_before_any_work(command, where, tmp_path, capsys):
    if where == "under_a_file":
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder\n")
        base, problem = blocker / "sub", "output path lies under a file"
    else:
        base, problem = _unwritable_folder(tmp_path) / "softsampling-out", "output folder is not writable"
    argv = _outputs_under(base)[command]
    started = time.perf_counter()
    code, stdout, err = run_cli(argv, capsys)
    elapsed = time.perf_counter() - started
    assert_one_line_error(code, err, command, problem)
    assert stdout == ""  # nothing ran: no progress, no summary
    assert elapsed < 3.0, f"{command} worked {elapsed:.1f} s before noticing"
    assert not base.exists()

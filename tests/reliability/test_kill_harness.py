"""Crashes and faults: SIGKILL at chosen points, and outputs that cannot be written.

Training: :func:`run_kill_plan` trains a tiny digit set once without
interruption, then again while the process kills itself with SIGKILL at the
points of :data:`KILL_PLAN` -- after an iteration's step but before its
checkpoint, and inside checkpoint writes between the temp file and the rename
-- resuming with ``--resume`` after each kill. The points are set with the
test-only ``SOFTSAMPLING_TEST_KILL_AT`` (softsampling.engine.faults), so where
each kill lands does not depend on the machine's speed or load. After every
kill ``last.pt`` must load with ``torch.load(weights_only=True)`` and hold the
iteration before the kill point; at the end the weights and the loss log must
equal the uninterrupted run's bit for bit. bench/kill_soak.py kills at random
wall-clock moments instead (a longer soak, not run in CI).

Curation and evaluation killed mid-way: every visible output is either absent
or complete (byte-identical to an uninterrupted run's). A kill inside an
atomic write can leave only a hidden ``.NAME.XXXX.tmp`` beside it.

NaN/inf losses are covered by tests/engine/test_train.py
(test_non_finite_loss_stops_with_advice_and_keeps_last_checkpoint); reproduce
resuming from finished cells by tests/experiments/test_grid.py.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from softsampling.engine.faults import KILL_AT_ENV
from tests.conftest import REPO
from tests.reliability.helpers import BAD, assert_one_line_error, files_under, run_cli

CLI = [sys.executable, "-m", "softsampling.cli"]

# The 10 kill points of the CI harness for a 12-iteration run with a checkpoint every iteration: before the
# first checkpoint exists, inside the first and the last checkpoint write, twice in a row at the first write
# after a resume (ckpt:4, ckpt:5), twice in a row after a step (iter:7, iter:8).
KILL_PLAN = ("iter:1", "ckpt:1", "ckpt:2", "iter:3", "ckpt:4", "ckpt:5", "iter:7", "iter:8", "ckpt:10", "ckpt:12")
PLAN_ITERATIONS = 12


# ------------------------------------------------------------------ the training kill harness
def make_tiny_digits(root: Path) -> Path:
    from softsampling.data.digits import make_digit_scenes

    make_digit_scenes(root, train=8, val=1, test=1, size=64, seed=0)
    return root / "annotations" / "train.json"


def train_args(train_json: Path, iterations: int) -> list[str]:
    settings = {
        "data.train": train_json,
        "data.val": "null",
        "data.test": "null",
        "train.iterations": iterations,
        "train.batch_size": 2,
        "train.checkpoint_every": 1,
        "train.log_every": 1,
        "train.warmup_iterations": 2,
        "train.threads": 1,
    }
    args = ["train", "--config", str(REPO / "configs" / "digits.yaml"), "--no-progress"]
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    return args


def temp_files(run: Path) -> set[str]:
    """The hidden temp files (``.NAME.XXXX.tmp``) in ``run``; empty if it does not exist."""
    try:
        return {e.name for e in os.scandir(run) if e.name.startswith(".") and e.name.endswith(".tmp")}
    except FileNotFoundError:
        return set()


def _env(kill_at: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != KILL_AT_ENV}
    if kill_at is not None:
        env[KILL_AT_ENV] = kill_at
    return env


def _metrics_without_timing(path: Path) -> list[dict[str, Any]]:
    """The loss log without its wall-clock field, which differs between any two runs."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "sec_per_iter"} for line in lines]


def run_kill_plan(
    train_json: Path,
    work: Path,
    *,
    plan: tuple[str, ...] = KILL_PLAN,
    iterations: int = PLAN_ITERATIONS,
    log: Callable[[str], None] = lambda s: None,
) -> list[dict]:
    """Train once straight, once killed at each point of ``plan`` and resumed; return one record per kill.

    Raises AssertionError if a kill does not land where planned, a checkpoint is unreadable or not the
    one before the kill point, a resume fails, or the final weights or loss log differ.
    """
    args = train_args(train_json, iterations)
    straight = work / "straight"
    subprocess.run([*CLI, *args, "--out", str(straight)], check=True, capture_output=True, timeout=600, env=_env(None))
    run = work / "killed"
    records: list[dict[str, Any]] = []
    for point in plan:
        kind, n = point.split(":")
        stale = temp_files(run)
        proc = subprocess.run(
            [*CLI, *args, "--out", str(run), "--resume"], capture_output=True, timeout=600, env=_env(point)
        )
        stderr = proc.stderr.decode()
        assert proc.returncode == -signal.SIGKILL, f"{point}: exit {proc.returncode}, not killed:\n{stderr}"
        iteration = 0
        if (run / "last.pt").exists():
            iteration = int(torch.load(run / "last.pt", weights_only=True)["iteration"])  # must never be torn
        assert iteration == int(n) - 1, f"{point}: last.pt holds iteration {iteration}, expected {int(n) - 1}"
        new_temps = sorted(temp_files(run) - stale)
        if kind == "ckpt":  # killed between the complete temp file and its rename
            assert len(new_temps) == 1 and new_temps[0].startswith(".last.pt."), f"{point}: temp files {new_temps}"
            pending = torch.load(run / new_temps[0], weights_only=True)
            assert int(pending["iteration"]) == int(n), f"{point}: the temp file holds {pending['iteration']}"
        else:  # killed after the step and its metrics line, before the checkpoint
            assert new_temps == [], f"{point}: temp files {new_temps}"
            assert _metrics_without_timing(run / "metrics.jsonl")[-1]["iteration"] == int(n)
        records.append({"point": point, "last_pt_iteration": iteration, "temp_files": len(new_temps)})
        log(f"kill {len(records):2d} at {point:<8} last.pt at iteration {iteration:2d}")
    final = subprocess.run(
        [*CLI, *args, "--out", str(run), "--resume"], capture_output=True, timeout=600, env=_env(None)
    )
    assert final.returncode == 0, final.stderr.decode()

    a = torch.load(straight / "model.pt", weights_only=True)["model"]
    b = torch.load(run / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"weights differ from the uninterrupted run: {differing[:5]}"
    assert _metrics_without_timing(run / "metrics.jsonl") == _metrics_without_timing(straight / "metrics.jsonl")
    assert temp_files(run) == set(), "resume removes temp files that kills left behind"
    return records


@pytest.mark.slow
def test_training_survives_10_sigkills_and_ends_bit_identical(tmp_path):
    train_json = make_tiny_digits(tmp_path / "digits")
    records = run_kill_plan(train_json, tmp_path, log=print)
    assert [r["point"] for r in records] == list(KILL_PLAN)
    assert sum(r["temp_files"] for r in records) == sum(p.startswith("ckpt:") for p in KILL_PLAN)


@pytest.mark.parametrize(
    ("kill_at", "killed"),
    [("iter:5", True), ("ckpt:12, iter:5", True), ("iter:4,ckpt:5", False), ("", False), (None, False)],
)
def test_kill_point_fires_only_at_the_named_point(kill_at, killed):
    code = "from softsampling.engine.faults import kill_point; kill_point('iter', 5); print('alive')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=_env(kill_at))
    assert (proc.returncode, proc.stdout) == ((-signal.SIGKILL, "") if killed else (0, "alive\n")), proc.stderr


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
    argv = [
        "curate",
        "--input",
        str(coco128_json),
        "--format",
        "coco",
        "--drop-rate",
        "0.5",
        "--seed",
        "0",
        "--out",
        str(out / "curated.json"),
    ]
    counts = _kill_midway(argv, out, kills=4, seed=1)
    print(counts)
    assert counts["complete"] + counts["absent"] == 4 * 2


@pytest.mark.slow
def test_evaluate_killed_midway_leaves_complete_files_or_none(cartucho_dir, tmp_path):
    out = tmp_path / "out"
    argv = [
        "evaluate",
        "--gt",
        str(cartucho_dir / "ground-truth"),
        "--gt-format",
        "txt",
        "--detections",
        str(cartucho_dir / "detection-results"),
        "--out",
        str(out / "results.json"),
        "--plot",
        str(out / "sweep.png"),
    ]
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
        "curate": [
            "curate",
            "--input",
            good,
            "--format",
            "coco",
            "--drop-rate",
            "0.5",
            "--seed",
            "0",
            "--out",
            base / "curated.json",
        ],
        "train": [
            "train",
            "--config",
            REPO / "configs" / "digits.yaml",
            "--set",
            f"data.train={good}",
            "--out",
            base / "run",
            "--no-progress",
        ],
        "evaluate": [
            "evaluate",
            "--gt",
            good,
            "--gt-format",
            "coco",
            "--detections",
            BAD / "det_good.json",
            "--out",
            base / "results.json",
        ],
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

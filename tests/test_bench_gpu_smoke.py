"""bench/gpu_smoke.sh without a GPU: --dry-run writes a valid config and prints the commands; the summary reads runs."""

from __future__ import annotations

import json
import os
import runpy
import shlex
import subprocess
import sys

import yaml

from softsampling.engine.config import apply_overrides, load_config
from tests.conftest import REPO

SCRIPT = REPO / "bench" / "gpu_smoke.sh"


def test_dry_run_writes_a_valid_config_and_prints_every_step(tmp_path) -> None:
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--dry-run",
            "--steps",
            "20",
            "--size",
            "256",
            "--backbone-weights",
            "none",
            str(tmp_path / "smoke"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    commands = [shlex.split(line[2:]) for line in done.stdout.splitlines() if line.startswith("+ ")]
    assert not (tmp_path / "smoke" / "runs").exists()  # nothing ran
    cfg = load_config(tmp_path / "smoke" / "gpu_smoke.yaml")
    assert (cfg.model.name, cfg.model.min_size, cfg.model.backbone_weights) == ("resnet50_fpn", 256, None)
    assert (cfg.train.iterations, cfg.train.amp, cfg.train.device) == (20, True, "cuda")
    trains = [c for c in commands if "train" in c]
    strategies = []
    for command in trains:
        sets = [command[i + 1] for i, word in enumerate(command) if word == "--set"]
        run_cfg = apply_overrides(cfg, sets)  # every printed command's overrides are valid
        strategies.append(run_cfg.strategy)
    assert strategies == ["baseline", "hard_negative", "overlap_soft", "upper_bound", "score_soft"]
    assert run_cfg.prior_run == str(tmp_path / "smoke" / "runs" / "baseline")
    assert sum("predict" in c for c in commands) == sum("evaluate" in c for c in commands) == 5
    assert commands[0][3:5] == ["data", "digits"] and "--size" in commands[0]
    bad = subprocess.run(
        ["bash", str(SCRIPT), "--steps", "x", str(tmp_path / "bad")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "positive integers" in bad.stderr


def test_summary_reads_speed_memory_and_map(tmp_path, capsys, monkeypatch) -> None:
    run = tmp_path / "baseline"
    run.mkdir()
    lines = [
        {"iteration": 10, "sec_per_iter": 1.0, "max_memory_mb": 900.0},
        {"iteration": 20, "sec_per_iter": 0.25, "max_memory_mb": 1000.0},
        {"iteration": 30, "sec_per_iter": 0.25, "max_memory_mb": 1000.0},
        {"iteration": 30, "val_mAP50": 0.5},
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    (run / "config.yaml").write_text(yaml.safe_dump({"train": {"batch_size": 8}}))
    (run / "eval_test.json").write_text(json.dumps({"result": {"mAP": 0.4567}}))
    monkeypatch.setattr(sys, "argv", ["gpu_smoke_summary.py", str(tmp_path), "baseline"])
    runpy.run_path(str(REPO / "bench" / "gpu_smoke_summary.py"), run_name="__main__")
    assert "| baseline | 4.00 | 32.0 | 1000 | 45.67 |" in capsys.readouterr().out
